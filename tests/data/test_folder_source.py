"""ImageFolderSource: scanning, odd files, errors naming the folder, test-class checks."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from data_files import noise, solid, truncated_bytes, write
from PIL import Image

from jaxgluon.data import ImageFolderSource, check_class_names


def test_mixed_folder_scanned_with_odd_files_skipped(tmp_path, caplog):
    root = tmp_path / "train"
    write(root / "cat" / "a.jpg", noise(40, 30))
    write(root / "cat" / "b.PNG", Image.new("L", (16, 16), 50))
    write(root / "cat" / "nested" / "c.gif", solid((1, 2, 3)).convert("P"))
    write(root / "cat" / ".hidden.png", solid((0, 0, 0)))  # hidden file: ignored
    write(root / "cat" / ".thumbs" / "d.png", solid((0, 0, 0)))  # hidden folder: ignored
    (root / "cat" / "notes.txt").write_text("not an image")  # non-image: ignored
    (root / "cat" / ".DS_Store").write_bytes(b"\0\1")
    write(root / "dog" / "a.webp", Image.new("RGBA", (8, 8), (1, 2, 3, 128)))
    write(root / "dog" / "b.bmp", solid((5, 5, 5)))
    write(root / "dog" / "c.tif", solid((5, 5, 5)))  # TIFF: read like any format Pillow decodes
    (root / "dog" / "broken.jpg").write_bytes(b"garbage bytes")
    (root / "dog" / "trunc.jpg").write_bytes(truncated_bytes(noise(64, 48), "JPEG"))
    (root / "dog" / "trunc.png").write_bytes(truncated_bytes(noise(64, 48), "PNG"))
    (root / ".git").mkdir()  # hidden folder at the top: not a class

    with caplog.at_level(logging.WARNING, logger="jaxgluon.data.folder"):
        src = ImageFolderSource(root)
    assert src.class_names == ["cat", "dog"]
    assert len(src) == 6
    assert [p.rsplit("/", 1)[-1] for p in src.paths] == ["a.jpg", "b.PNG", "c.gif", "a.webp", "b.bmp", "c.tif"]
    np.testing.assert_array_equal(src.labels, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(src.image_sizes[:2], [[40, 30], [16, 16]])
    assert sorted(s.path.rsplit("/", 1)[-1] for s in src.skipped) == ["broken.jpg", "trunc.jpg", "trunc.png"]
    assert any("skipped 3 unreadable" in r.getMessage() for r in caplog.records)
    for i in range(len(src)):
        item = src[i]
        assert item["image"].dtype == np.uint8 and item["image"].ndim == 3 and item["image"].shape[2] == 3
        assert item["label"] == src.labels[i]
    assert "6 images" in repr(src) and "3 skipped" in repr(src)
    assert src.ignored == {".txt": 1}
    assert any("ignored 1 file(s): 1 .txt (not images Pillow reads) in" in r.getMessage() for r in caplog.records)


def test_every_format_pillow_decodes_is_read(tmp_path):
    """.tif/.tiff (8- and 16-bit), .webp, .bmp, .gif, .ppm, .tga: read, not ignored (was: a fixed extension list)."""
    root = tmp_path / "train"
    files = {"a.tif": solid((10, 20, 30)), "b.TIFF": Image.new("I;16", (6, 5), 65535), "c.webp": solid((1, 1, 1)),
             "d.bmp": solid((2, 2, 2)), "e.gif": solid((3, 3, 3)).convert("P"), "f.ppm": solid((4, 4, 4)),
             "g.tga": solid((5, 5, 5))}
    for name, image in files.items():
        write(root / "x" / name, image)
        write(root / "y" / name, image)
    src = ImageFolderSource(root)
    assert [p.rsplit("/", 1)[-1] for p in src.paths[:7]] == sorted(files) and not src.skipped and not src.ignored
    np.testing.assert_array_equal(src[0]["image"][0, 0], [10, 20, 30])
    np.testing.assert_array_equal(src[1]["image"], np.full((5, 6, 3), 255, np.uint8))   # 16-bit white


def test_ignored_files_are_summed_up_per_extension_in_one_line(tmp_path, caplog):
    root = tmp_path / "train"
    for cls in ("a", "b"):
        write(root / cls / "1.png", solid((0, 0, 0)))
    for name in ("a/notes.txt", "a/more.txt", "b/labels.json", "b/README"):
        (root / name).write_text("x")
    with caplog.at_level(logging.WARNING, logger="jaxgluon.data.folder"):
        src = ImageFolderSource(root)
    assert src.ignored == {".txt": 2, ".json": 1, "(no extension)": 1}
    lines = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("ignored 4 file(s): 2 .txt, 1 (no extension), 1 .json (not images Pillow reads) in ")


def test_tilde_expanded(tmp_path, monkeypatch, make_folder):
    make_folder({"a": 1, "b": 1})
    monkeypatch.setenv("HOME", str(tmp_path))
    assert len(ImageFolderSource("~/imgs")) == 2


def test_missing_path_and_file_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        ImageFolderSource(tmp_path / "nope")
    f = write(tmp_path / "x.png", solid((0, 0, 0)))
    with pytest.raises(NotADirectoryError, match="x.png"):
        ImageFolderSource(f)


def test_folder_without_class_subfolders(tmp_path):
    root = tmp_path / "flat"
    write(root / "1.jpg", noise(8, 8))
    with pytest.raises(ValueError, match=r"flat has 1 image files but no class subfolders"):
        ImageFolderSource(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty has no class subfolders"):
        ImageFolderSource(tmp_path / "empty")


def test_empty_class_named(make_folder):
    root = make_folder({"a": 2, "b": 1})
    (root / "c").mkdir()
    (root / "c" / "readme.txt").write_text("no images")
    with pytest.raises(ValueError, match=r"without images.*/c \(found only 1 file\(s\): 1 .txt\)"):
        ImageFolderSource(root)


def test_class_left_empty_by_corrupt_files(make_folder):
    root = make_folder({"a": 2})
    (root / "b").mkdir()
    (root / "b" / "x.jpg").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"left without readable images.*/b"):
        ImageFolderSource(root)


def test_test_folder_classes_must_match(tmp_path, make_folder):
    train = ImageFolderSource(make_folder({"a": 1, "b": 1, "c": 1}, root_name="train"))
    test_root = make_folder({"a": 1, "b": 1, "d": 1}, root_name="test")
    with pytest.raises(ValueError, match=r"test.*missing \['c'\].*unexpected \['d'\]"):
        ImageFolderSource(test_root, class_names=train.class_names)
    same = ImageFolderSource(make_folder({"a": 1, "b": 1, "c": 2}, root_name="test2"), class_names=train.class_names)
    assert same.class_names == train.class_names
    check_class_names(["a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match="different order"):
        check_class_names(["b", "a"], ["a", "b"], folder="x")


def test_unchecked_scan_raises_naming_the_file_on_load(make_folder):
    root = make_folder({"a": 1})
    (root / "a" / "zz.jpg").write_bytes(b"junk")
    src = ImageFolderSource(root, check=False)
    assert len(src) == 2 and src.image_sizes is None
    with pytest.raises(OSError, match="zz.jpg"):
        src[1]
