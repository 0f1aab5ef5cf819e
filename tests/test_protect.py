"""``obscrowd protect`` behaviour (obscrowd_lib.protect): bad inputs, PNG-only, no overwrite, metadata, sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from obscrowd_lib import data
from obscrowd_lib.protect import NoFacesError, ProtectError, protect_path
from obscrowd_lib.teacher import TeacherConfig

FAST = TeacherConfig(steps=2, ensemble=("mobileface",), attacks=("identity",), step_size_255=2.0, early_stop=False)


@pytest.fixture(scope="module")
def face_jpeg(tmp_path_factory):
    """A small 2-face JPEG carrying EXIF (with a GPS block) and a 90° orientation tag."""
    comp = data.make_composite([data.sample_path("obama.jpg"), data.sample_path("biden.jpg")], tile=128)
    path = tmp_path_factory.mktemp("in") / "two_faces.jpg"
    im = Image.fromarray(comp.image)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° CW to display
    exif[0x010F] = "CameraMaker"
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}  # GPS IFD: latitude
    # store the pixels rotated so that applying the tag gives the upright composite back
    im.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    with Image.open(path) as check:  # the input really carries what the output must drop
        assert check.getexif().get_ifd(0x8825) and check.getexif().get(0x0112) == 6
    return path, comp.image.shape


def _flat(tmp_path, name="flat.png", size=(96, 80)):
    p = tmp_path / name
    Image.fromarray(np.full((size[1], size[0], 3), 180, np.uint8)).save(p)
    return p


def test_missing_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        protect_path(tmp_path / "nope.jpg", tmp_path / "out.png", config=FAST)


def test_corrupt_input(tmp_path):
    from obscrowd_lib.io import ImageError

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(ImageError, match="broken.jpg"):
        protect_path(bad, tmp_path / "out.png", config=FAST)
    assert not (tmp_path / "out.png").exists()


def test_output_equal_to_input_is_refused(tmp_path):
    p = _flat(tmp_path)
    before = p.read_bytes()
    with pytest.raises(ProtectError, match="never overwrites"):
        protect_path(p, p, config=FAST, overwrite=True)
    assert p.read_bytes() == before


def test_non_png_output_is_refused(tmp_path):
    p = _flat(tmp_path)
    for suffix in (".jpg", ".jpeg", ".webp", ""):
        with pytest.raises(ProtectError, match="png"):
            protect_path(p, tmp_path / f"out{suffix}", config=FAST)


def test_existing_output_needs_overwrite(tmp_path):
    p = _flat(tmp_path)
    out = tmp_path / "taken.png"
    out.write_bytes(b"keep me")
    with pytest.raises(ProtectError, match="already exists"):
        protect_path(p, out, config=FAST)
    assert out.read_bytes() == b"keep me"


def test_no_faces_copy_warns_and_strips_metadata(tmp_path):
    src = tmp_path / "flat.jpg"
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    Image.fromarray(np.full((64, 96, 3), 180, np.uint8)).save(src, exif=exif)
    out = tmp_path / "copy.png"
    with pytest.warns(UserWarning, match="no face"):
        doc = protect_path(src, out, config=FAST, report=tmp_path / "r.json")
    assert doc["files"][0]["status"] == "copied"
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (96, 64)
        assert not im.getexif() and "exif" not in im.info
    assert json.loads((tmp_path / "r.json").read_text())["files"][0]["status"] == "copied"


def test_no_faces_refuse(tmp_path):
    src = _flat(tmp_path)
    out = tmp_path / "refused.png"
    with pytest.raises(NoFacesError, match="no face"):
        protect_path(src, out, config=FAST, no_faces="refuse")
    assert not out.exists()


def test_protect_file_keeps_size_orientation_and_budget(face_jpeg, tmp_path):
    from obscrowd_lib.io import load_image

    src, shape = face_jpeg
    out = tmp_path / "protected.png"
    doc = protect_path(src, out, config=FAST, eps_255=6, report=tmp_path / "report.json", progress=False)
    e = doc["files"][0]
    assert e["status"] == "protected" and len(e["faces"]) == 2
    assert e["budget_used_255"] <= 6
    assert set(e["times"]) >= {"detect", "teacher", "load", "save"}
    with Image.open(out) as im:
        assert im.format == "PNG"
        assert im.size == (shape[1], shape[0])  # upright: the orientation tag was applied, then dropped
        assert not im.getexif() and not {"exif", "icc_profile", "XML:com.adobe.xmp"} & set(im.info)
        got = np.asarray(im.convert("RGB")).astype(int)
    clean = load_image(src).astype(int)
    assert np.abs(got - clean).max() <= 6
    assert np.abs(got - clean)[:4, :4].max() == 0  # the corner is far from both faces: untouched
    assert src.exists()


def test_huge_photo_path_upsamples_delta(face_jpeg, tmp_path):
    """A working copy smaller than the photo (max_side below its size): full size out, budget kept."""
    src, shape = face_jpeg
    out = tmp_path / "big.png"
    doc = protect_path(src, out, config=FAST, max_side=200, progress=False)
    e = doc["files"][0]
    assert e["working_scale"] < 1
    with Image.open(out) as im:
        assert im.size == (shape[1], shape[0])
    assert e["budget_used_255"] <= 8 and e["budget_used_255"] > 0


def test_folder_reports_each_file_and_carries_on(face_jpeg, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a_faces.jpg").write_bytes(face_jpeg[0].read_bytes())
    _flat(folder, "b_flat.png")
    (folder / "c_broken.jpg").write_bytes(b"garbage")
    with pytest.raises(ProtectError, match="input folder"):
        protect_path(folder, folder, config=FAST)
    out = tmp_path / "out"
    with pytest.warns(UserWarning):
        doc = protect_path(folder, out, config=FAST, progress=False)
    status = {e["input"].rsplit("/", 1)[-1]: e["status"] for e in doc["files"]}
    assert status == {"a_faces.jpg": "protected", "b_flat.png": "copied", "c_broken.jpg": "failed"}
    assert sorted(p.name for p in out.iterdir()) == ["a_faces.png", "b_flat.png"]
    assert doc["failed"] == 1 and doc["ok"] == 2
