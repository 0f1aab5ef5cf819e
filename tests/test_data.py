"""Sample photos from registry packages and controlled composites."""

import numpy as np
import pytest

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


def test_load_photo_resolves_samples_composites_and_files(tmp_path):
    from obscrowd_lib.io import ImageError, save_png

    t1 = data.load_photo("t1.jpg", max_side=320)
    assert t1.dtype == np.uint8 and max(t1.shape[:2]) == 320 and t1.shape[1] / t1.shape[0] == \
        pytest.approx(1280 / 886, rel=0.01)
    assert data.load_photo("t1.jpg").shape[:2] == (886, 1280)  # no max_side: full size
    pair = data.load_photo("composite:obama.jpg,biden.jpg", tile=64)
    assert np.array_equal(pair, data.make_composite([data.sample_path("obama.jpg"), data.sample_path("biden.jpg")],
                                                    tile=64).image)
    assert np.array_equal(data.load_photo("composite", tile=64), data.default_composite(tile=64).image)
    mine = save_png(np.full((40, 60, 3), 7, np.uint8), tmp_path / "mine.png")
    assert data.load_photo(mine, max_side=30).shape == (20, 30, 3)
    with pytest.raises(ValueError, match="unknown: nobody.jpg"):
        data.load_photo("composite:obama.jpg,nobody.jpg")
    with pytest.raises(ImageError, match="no such file"):
        data.load_photo(tmp_path / "absent.jpg")
