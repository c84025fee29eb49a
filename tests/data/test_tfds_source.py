"""TFDSSource without TensorFlow: clear errors when a dataset is unknown or not prepared (offline)."""
from __future__ import annotations

import pytest

from jaxgluon.data import TFDSSource


def test_not_prepared_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'mnist' is not prepared in .*download=True"):
        TFDSSource("mnist", "train", data_dir=tmp_path)
    assert not any((tmp_path).rglob("*.array_record*"))  # nothing downloaded


def test_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="no dataset named 'no_such_dataset_xyz'"):
        TFDSSource("no_such_dataset_xyz", "train", data_dir=tmp_path)
