"""Image loading variants, every bad-input error, and atomic metadata-free PNG writing."""

import numpy as np
import pytest
from PIL import Image

from obscrowd_lib import io


def test_grayscale_rgba_palette_16bit(tmp_path):
    g = np.tile(np.arange(64, dtype=np.uint8)[None], (32, 1))
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    assert io.load_image(tmp_path / "g.png").shape == (32, 64, 3)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 255  # top half opaque red, bottom transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    a = io.load_image(tmp_path / "a.png")
    assert (a[0, 0] == [255, 0, 0]).all() and (a[7, 7] == [255, 255, 255]).all()  # composited on white
    Image.fromarray(g, "L").convert("P").save(tmp_path / "p.png")
    assert io.load_image(tmp_path / "p.png").shape == (32, 64, 3)
    sixteen = (np.tile(np.linspace(0, 65535, 64), (4, 1))).astype(np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "s.png")
    s = io.load_image(tmp_path / "s.png")
    assert s.dtype == np.uint8 and s[0, 0, 0] == 0 and s[0, -1, 0] == 255
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).convert("CMYK").save(tmp_path / "c.tif")
    assert io.load_image(tmp_path / "c.tif").shape == (4, 4, 3)


@pytest.mark.parametrize("kind,message", [("missing", "no such file"), ("empty", "empty file"),
                                          ("text", "not an image"), ("truncated", "corrupt or truncated"),
                                          ("folder", "is a folder")])
def test_bad_inputs_name_the_file(tmp_path, kind, message):
    p = tmp_path / f"{kind}.jpg"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("hello")
    elif kind == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
        p.write_bytes(p.read_bytes()[:400])
    elif kind == "folder":
        p.mkdir()
    with pytest.raises(io.ImageError, match=message) as e:
        io.load_image(p)
    assert str(p) in str(e.value)


def test_save_png_is_atomic_metadata_free_and_refuses_overwrite(tmp_path):
    img = np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    out = io.save_png(img, tmp_path / "out.png")
    back = Image.open(out)
    assert back.format == "PNG" and not back.info.get("exif") and not back.text
    assert (np.asarray(back) == img).all()
    with pytest.raises(io.ImageError, match="refusing to overwrite"):
        io.save_png(img, out)
    with pytest.raises(io.ImageError, match="PNG only"):
        io.save_png(img, tmp_path / "out.jpg")
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temp files left


def test_tensor_roundtrip():
    img = np.random.default_rng(2).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    assert (io.to_uint8(io.to_tensor(img)) == img).all()


def test_list_images(tmp_path):
    for n in ["b.png", "a.jpg", ".hidden.png", "notes.txt"]:
        (tmp_path / n).write_bytes(b"x")
    assert [p.name for p in io.list_images(tmp_path)] == ["a.jpg", "b.png"]


def test_downscale_keeps_aspect_and_small_images():
    from obscrowd_lib.io import downscale

    img = np.zeros((300, 600, 3), np.uint8)
    img[:, 300:] = 255
    small = downscale(img, 100)
    assert small.shape == (50, 100, 3) and small[:, :45].max() < 10 and small[:, 55:].min() > 245
    assert downscale(img, 600) is img  # already small enough: returned as it is
    with pytest.raises(ValueError, match="max_side"):
        downscale(img, 0)
