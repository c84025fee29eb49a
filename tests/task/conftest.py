"""Fixtures for the task tests."""
from __future__ import annotations

import pathlib

import pytest
from task_files import write_folder


@pytest.fixture(scope="session")
def image_folders(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
    root = tmp_path_factory.mktemp("images")
    return write_folder(root / "train", 40, 0), write_folder(root / "test", 8, 1)
