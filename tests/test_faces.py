"""Detection on real sample photos, landmark order, input variants, and the detect CLI."""

import json

import numpy as np
import pytest
from PIL import Image

from obscrowd_lib import cli, data, faces
from obscrowd_lib.io import load_image


def _small(name: str, side: int) -> np.ndarray:
    """Sample photo ``name`` downscaled so that its long side is ``side`` px (keeps tests fast)."""
    img = load_image(data.sample_path(name))
    s = side / max(img.shape[:2])
    return np.asarray(Image.fromarray(img).resize((round(img.shape[1] * s), round(img.shape[0] * s)),
                                                  Image.Resampling.BILINEAR))


@pytest.fixture(scope="module")
def mtcnn():
    return faces.FaceDetector("mtcnn")


@pytest.fixture(scope="module")
def mtcnn_found(mtcnn):
    """MTCNN's faces on each full-size sample photo, detected once for the module."""
    return {n: mtcnn.detect(data.sample_path(n)) for n in ("t1.jpg", "obama.jpg", "astronaut.png", "group.jpg")}


@pytest.mark.parametrize("name,count", [("t1.jpg", 6), ("obama.jpg", 1), ("astronaut.png", 1), ("group.jpg", 8)])
def test_mtcnn_counts_on_samples(mtcnn_found, name, count):
    found = mtcnn_found[name]
    assert len(found) == count
    xs = [f.box[0] for f in found]
    assert xs == sorted(xs)


@pytest.fixture(scope="module")
def dlib_cnn():
    # min_size=80 keeps dlib from upsampling the (downscaled) photos: the faces below are >= 80 px.
    return faces.FaceDetector("dlib-cnn", min_size=80)


@pytest.mark.parametrize("name,side,count", [("t1.jpg", 900, 6), ("obama.jpg", 320, 1), ("astronaut.png", 512, 1)])
def test_dlib_cnn_counts_on_downscaled_samples(dlib_cnn, name, side, count):
    found = dlib_cnn.detect(_small(name, side))
    assert len(found) == count
    for f in found:
        le, re, nose, ml, mr = f.landmarks
        assert le[0] < re[0] and ml[0] < mr[0] and max(le[1], re[1]) < min(ml[1], mr[1])
        down = np.array([le[1] - re[1], re[0] - le[0]])  # perpendicular to the eye line, down the face
        assert (nose - le) @ down > 0 and (ml - nose) @ down > 0 and (mr - nose) @ down > 0


def test_blank_photo_has_no_face(mtcnn, dlib_cnn):
    blank = np.full((200, 300, 3), 128, np.uint8)
    assert mtcnn.detect(blank) == [] and dlib_cnn.detect(blank) == []


def test_landmark_order(mtcnn_found):
    for f in mtcnn_found["t1.jpg"]:
        le, re, nose, ml, mr = f.landmarks
        assert le[0] < re[0] and ml[0] < mr[0]
        assert max(le[1], re[1]) < min(ml[1], mr[1])
        x0, y0, x1, y1 = f.box
        assert x0 <= nose[0] <= x1 and y0 <= nose[1] <= y1


def test_dlib_cnn_agrees_with_mtcnn_on_a_portrait(mtcnn, dlib_cnn):
    img = _small("obama.jpg", 320)
    (a,) = mtcnn.detect(img)
    (b,) = faces.detect_faces(img, detector=dlib_cnn)
    assert np.linalg.norm(a.landmarks[:2] - b.landmarks[:2], axis=1).max() < 0.15 * a.size
    le, re, _nose, ml, mr = b.landmarks
    assert le[0] < re[0] and ml[0] < mr[0] and le[1] < ml[1]


def test_exif_rotated_photo_is_made_upright(mtcnn, tmp_path):
    img = _small("obama.jpg", 400)
    (upright,) = mtcnn.detect(img)
    rotated = Image.fromarray(img).rotate(90, expand=True)  # stored sideways...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...with "rotate 90° clockwise to display"
    path = tmp_path / "sideways.jpg"
    rotated.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.shape == img.shape
    (f,) = mtcnn.detect(path)
    assert np.abs(np.array(f.box) - np.array(upright.box)).max() < 0.1 * upright.size


def test_grayscale_and_tensor_inputs(mtcnn):
    import torch

    img = _small("obama.jpg", 400)
    gray = img.mean(2).astype(np.uint8)
    assert len(mtcnn.detect(gray)) == 1
    t = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
    assert len(mtcnn.detect(t)) == 1


def test_large_photo_is_downscaled_and_mapped_back(tmp_path):
    img = _small("obama.jpg", 320)
    big = np.asarray(Image.fromarray(img).resize((img.shape[1] * 3, img.shape[0] * 3)))
    det = faces.FaceDetector("mtcnn", max_side=max(img.shape[:2]))
    (f,) = det.detect(big)
    (g,) = det.detect(img)
    assert np.abs(np.array(f.box) / 3 - np.array(g.box)).max() < 0.1 * g.size


def test_dlib5_conversion_geometry():
    # dlib order: right-eye corners, left-eye corners, nose
    pts = np.array([[70, 50], [60, 50], [30, 50], [40, 50], [50, 70]], float)
    lm = faces.dlib5_to_mtcnn(pts)
    assert np.allclose(lm[0], [35, 50]) and np.allclose(lm[1], [65, 50]) and np.allclose(lm[2], [50, 70])
    assert lm[3][1] > 70 and lm[3][0] < 50 < lm[4][0]


def test_unknown_detector_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown detector"):
        faces.FaceDetector("nope")


def test_detect_cli_json(capsys):
    assert cli.main(["detect", str(data.sample_path("obama.jpg")), "--json"]) == 0
    (face,) = json.loads(capsys.readouterr().out)
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and face["score"] > 0.9


def test_detect_cli_bad_file(tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    assert cli.main(["detect", str(bad)]) == 2
    assert "broken.jpg" in capsys.readouterr().err
