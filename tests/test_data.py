"""Sample photos from registry packages and controlled composites."""

import numpy as np

from obscrowd_lib import artifacts, data


def test_samples_are_extracted_and_hash_checked():
    for name in data.SAMPLES:
        p = data.sample_path(name)
        assert p.is_file() and artifacts.sha256_of(p) == data.SAMPLES[name].sha256


def test_tampered_sample_is_replaced(tmp_path, monkeypatch):
    p = data.sample_path("biden.jpg")
    monkeypatch.setenv("OBSCROWD_HOME", str(artifacts.cache_home()))
    p.write_bytes(b"junk")
    assert artifacts.sha256_of(data.sample_path("biden.jpg")) == data.SAMPLES["biden.jpg"].sha256


def test_manifest_lists_every_sample():
    data.fetch_samples()
    lines = (data.samples_dir() / "manifest.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + len(data.SAMPLES)
    assert lines[0].startswith("file,package")


def test_composite_geometry_and_identities():
    a = np.full((100, 80, 3), 10, np.uint8)
    b = np.full((60, 90, 3), 200, np.uint8)
    c = data.make_composite([a, b, a], identities=["x", "y", "x"], tile=32, columns=2, gap=4)
    assert c.image.shape == (2 * 36 + 4, 2 * 36 + 4, 3)
    assert c.identities == ["x", "y", "x"]
    x0, y0, x1, y1 = c.tiles[1]
    assert (x1 - x0, y1 - y0) == (32, 32)
    assert np.all(c.image[y0:y1, x0:x1] == 200)
    assert np.all(c.image[:4] == 235)  # gap is background
    # a face box is assigned to the tile holding its centre; a box centred in a gap to none
    assert c.identity_at((x0 + 5, y0 + 5, x0 + 20, y0 + 20)) == "y"
    bx0, by0, _, _ = c.tiles[2]
    assert c.identity_at((bx0, by0, bx0 + 10, by0 + 10)) == "x"
    assert c.identity_at((0, 0, 3, 3)) is None


def test_default_composite_has_four_known_people():
    c = data.default_composite(tile=64)
    assert len(c.tiles) == 4 and len(set(c.identities)) == 4
