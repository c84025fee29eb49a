"""Download path: sha256 check, atomic write, no re-download, clear offline errors (local HTTP server)."""
from __future__ import annotations

import hashlib

import pytest

from jaxgluon.models.weights import (ChecksumError, IncompleteDownloadError, WeightSource, WeightsUnavailableError,
                                     cache_root, download, locate)

PAYLOAD = bytes(range(256)) * 4096      # 1 MiB
PREFIX = hashlib.sha256(PAYLOAD).hexdigest()[:8]


@pytest.fixture(autouse=True)
def _fresh_home(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXGLUON_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("JAXGLUON_WEIGHTS_PATH", raising=False)


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_download_checks_sha256_and_is_reused(weights_server, tmp_path):
    weights_server.files["good.bin"] = PAYLOAD
    before = weights_server.requests.count("good.bin")
    path = download(weights_server.url("good.bin"), tmp_path / "dl", sha256_prefix=PREFIX)
    assert path.read_bytes() == PAYLOAD
    again = download(weights_server.url("good.bin"), tmp_path / "dl", sha256_prefix=PREFIX)
    assert again == path
    assert weights_server.requests.count("good.bin") == before + 1     # the second call did not hit the server
    assert _leftovers(tmp_path / "dl") == ["good.bin"]


def test_checksum_mismatch_is_rejected_and_leaves_nothing(weights_server, tmp_path):
    weights_server.files["tampered.bin"] = PAYLOAD[:-1] + b"x"
    with pytest.raises(ChecksumError, match=PREFIX):
        download(weights_server.url("tampered.bin"), tmp_path / "dl", sha256_prefix=PREFIX)
    assert _leftovers(tmp_path / "dl") == []


def test_interrupted_download_leaves_no_cache_entry(weights_server, tmp_path):
    weights_server.files["cut.bin"] = PAYLOAD
    weights_server.truncate.add("cut.bin")
    with pytest.raises(IncompleteDownloadError):
        download(weights_server.url("cut.bin"), tmp_path / "dl")       # no checksum: the length check catches it
    assert _leftovers(tmp_path / "dl") == []


def test_locate_downloads_into_jaxgluon_home_once(weights_server):
    weights_server.files["net-abc.pth"] = PAYLOAD
    source = WeightSource("net-abc.pth", url=weights_server.url("net-abc.pth"), sha256_prefix=PREFIX)
    path = locate(source)
    assert path == cache_root() / "downloads" / "net-abc.pth"
    count = weights_server.requests.count("net-abc.pth")
    assert locate(source) == path and weights_server.requests.count("net-abc.pth") == count


def test_locate_prefers_weights_path_and_verifies_it(tmp_path, monkeypatch, closed_port_url):
    folder = tmp_path / "shared_weights"
    folder.mkdir()
    (folder / "net.pth").write_bytes(PAYLOAD)
    monkeypatch.setenv("JAXGLUON_WEIGHTS_PATH", str(folder))
    assert locate(WeightSource("net.pth", url=closed_port_url + "/net.pth", sha256_prefix=PREFIX)) == folder / "net.pth"
    with pytest.raises(ChecksumError):
        locate(WeightSource("net.pth", url=closed_port_url + "/net.pth", sha256_prefix="00000000"))


def test_offline_error_names_file_and_where_to_put_it(closed_port_url):
    source = WeightSource("resnet18-f37072fd.pth", url=closed_port_url + "/resnet18-f37072fd.pth")
    with pytest.raises(WeightsUnavailableError) as info:
        locate(source)
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message
    assert str(cache_root() / "downloads" / "resnet18-f37072fd.pth") in message
    assert "JAXGLUON_WEIGHTS_PATH" in message
    assert _leftovers(cache_root() / "downloads") == []
