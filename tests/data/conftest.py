"""Fixtures for the data tests."""
from __future__ import annotations

import pathlib

import pytest
from data_files import solid, write


@pytest.fixture
def make_folder(tmp_path):
    """make_folder({'cat': 3, 'dog': 2}) -> a folder of solid-colour PNGs, one subfolder per class."""

    def build(counts: dict[str, int], size=(20, 12), root_name: str = "imgs") -> pathlib.Path:
        root = tmp_path / root_name
        for label, (name, count) in enumerate(sorted(counts.items())):
            (root / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                write(root / name / f"{i:03d}.png", solid((label * 60 % 256, i * 7 % 256, 100), size))
        return root

    return build
