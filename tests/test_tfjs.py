"""tfjs face recognisers run in torch (obscrowd_lib.formats.tfjs).

* The face-api dlib ResNet port against native dlib (an independent implementation of the same
  network) on dlib's own face chips.
* Human's tfjs graphs against tfjs itself: ``fixtures/tfjs_graph_reference.json`` holds the
  embedding-node values tfjs-core 4.22 (cpu backend) computed on a synthetic input
  (``fixtures/tfjs_graph_reference.js`` made it).
* Recognizer contract (shape, unit norm, gradients reaching the pixels) and identity ordering
  (same person more similar than different persons) on real photos.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from obscrowd_lib.formats import tfjs

FIXTURES = Path(__file__).parent / "fixtures"
PHOTOS = ("obama", "obama2", "biden")  # obama/obama2: genuine pair; biden: impostor for both
GRAPHS = ("faceres", "faceres-deep", "mobileface")


# --------------------------------------------------------------------------------------------
# without weights
# --------------------------------------------------------------------------------------------

def test_read_weights_dequantises_and_checks_size(tmp_path):
    q = np.array([0, 1, 255], np.uint8)
    half = np.array([0.5, -2.0], np.float16)
    ints = np.array([[1, -1]], np.int32)
    (tmp_path / "w.bin").write_bytes(q.tobytes() + half.tobytes() + ints.tobytes())
    manifest = [{"paths": ["w.bin"], "weights": [
        {"name": "q", "shape": [3], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "h", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}},
        {"name": "i", "shape": [1, 2], "dtype": "int32"}]}]
    w = tfjs.read_weights(manifest, tmp_path)
    np.testing.assert_array_equal(w["q"], np.array([-1.0, -0.5, 126.5], np.float32))
    assert w["q"].dtype == np.float32 and w["h"].dtype == np.float32
    np.testing.assert_array_equal(w["h"], [0.5, -2.0])
    np.testing.assert_array_equal(w["i"], ints)
    (tmp_path / "w.bin").write_bytes(q.tobytes() + half.tobytes())
    with pytest.raises(ValueError, match="w.bin"):
        tfjs.read_weights(manifest, tmp_path)


def _node(name, op, inputs=(), **attr):
    return {"name": name, "op": op, "input": list(inputs), "attr": attr}


def test_graph_conv_uses_tf_same_padding(tmp_path):
    """Stride-2 SAME on an even size pads 0 before and 1 after (TF), unlike a symmetric torch padding."""
    rng = np.random.default_rng(0)
    k = rng.standard_normal((3, 3, 2, 3)).astype(np.float32)  # HWIO
    dw = rng.standard_normal((3, 3, 3, 2)).astype(np.float32)  # H, W, C, multiplier
    (tmp_path / "g.bin").write_bytes(k.tobytes() + dw.tobytes() + np.array([1, 2], np.int32).tobytes())
    same = {"s": "U0FNRQ=="}  # base64 "SAME", as in tfjs model.json
    stride2 = {"list": {"i": ["1", "2", "2", "1"]}}
    graph = {"modelTopology": {"node": [
        _node("x", "Placeholder"), _node("k", "Const"), _node("dw", "Const"), _node("axes", "Const"),
        _node("conv", "Conv2D", ["x", "k"], padding=same, strides=stride2),
        _node("dconv", "DepthwiseConv2dNative", ["conv", "dw"], padding=same, strides=stride2),
        _node("out", "Mean", ["dconv", "axes"])]},
        "weightsManifest": [{"paths": ["g.bin"], "weights": [
            {"name": "k", "shape": list(k.shape), "dtype": "float32"},
            {"name": "dw", "shape": list(dw.shape), "dtype": "float32"},
            {"name": "axes", "shape": [2], "dtype": "int32"}]}]}
    (tmp_path / "g.json").write_text(json.dumps(graph))
    x = rng.standard_normal((2, 6, 6, 2)).astype(np.float32)

    def tf_conv(inp, w, depthwise):  # direct NHWC loop; 6 -> 3 and 3 -> 2: pads (0, 1) and (1, 1)
        pad = {6: (0, 1), 3: (1, 1)}[inp.shape[1]]  # TF: total (out-1)*2 + 3 - in, the odd pixel after
        p = np.pad(inp, ((0, 0), pad, pad, (0, 0)))
        n_out = -(-inp.shape[1] // 2)
        out = []
        for i in range(n_out):
            row = []
            for j in range(n_out):
                patch = p[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3, :]
                if depthwise:
                    row.append(np.einsum("nhwc,hwcm->ncm", patch, w).reshape(len(inp), -1))
                else:
                    row.append(np.einsum("nhwc,hwco->no", patch, w))
            out.append(np.stack(row, 1))
        return np.stack(out, 1)

    expected = tf_conv(tf_conv(x, k, False), dw, True).mean(axis=(1, 2))
    got = tfjs.TfjsGraph(tmp_path / "g.json", "out")(torch.from_numpy(x))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# with the registry weights
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dlib_faces():
    """dlib's own view of the sample photos: (RGB image, 5-point shape, 150x150 chip, native descriptor)."""
    dlib = pytest.importorskip("dlib")
    from PIL import Image

    from obscrowd_lib import artifacts, zoo

    files = zoo.entry_files("dlib-native")
    rec = dlib.face_recognition_model_v1(str(next(p for p in files if "recognition" in p.name)))
    predictor = dlib.shape_predictor(str(next(p for p in files if "shape_predictor" in p.name)))
    detector = dlib.get_frontal_face_detector()
    folder = artifacts.fetch("face-recognition") / "face_recognition-1.3.0" / "tests" / "test_images"
    faces = {}
    for name in PHOTOS:
        img = np.asarray(Image.open(folder / f"{name}.jpg").convert("RGB"))
        boxes = detector(img, 0)
        assert len(boxes) == 1, f"{name}.jpg: dlib HOG found {len(boxes)} faces"
        shape = predictor(img, boxes[0])
        chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
        faces[name] = (img, shape, chip, np.array(rec.compute_face_descriptor(chip)))
    return faces


def _to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


@pytest.mark.slow
def test_faceapi_dlib_matches_native_dlib(dlib_faces):
    model = tfjs.load_faceapi_dlib()
    assert model.crop_size == 150 and model.embedding_dim == 128 and tuple(model.template.shape) == (5, 2)
    with torch.no_grad():
        ours = model(_to_tensor([dlib_faces[n][2] for n in PHOTOS])).numpy()
    native = np.stack([dlib_faces[n][3] for n in PHOTOS])
    native /= np.linalg.norm(native, axis=1, keepdims=True)
    cosine = (ours * native).sum(axis=1)
    assert cosine.min() >= 0.99, dict(zip(PHOTOS, cosine.round(5)))


def _mtcnn_order_landmarks(shape) -> np.ndarray:
    """(5, 2) left eye, right eye, nose, mouth left, mouth right in image pixels, from dlib's 5 points.

    dlib's 5 points (eye corners, base of the nose) have no mouth. Instead take the similarity that
    dlib's own chip uses (``get_face_chip_details``, 150 px, padding 0.25; chip pixel -> image, as
    dlib's ``get_mapping_to_chip`` builds it from the rotated rectangle) and carry the mean
    MTCNN-order landmarks of that chip (``tfjs.DLIB_CHIP_TEMPLATE``) back into the image.
    """
    import cv2
    import dlib

    d = dlib.get_face_chip_details(shape, 150, 0.25)
    r = d.rect
    centre = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
    rot = np.array([[np.cos(d.angle), -np.sin(d.angle)], [np.sin(d.angle), np.cos(d.angle)]])
    corners = np.array([[r.left(), r.top()], [r.right(), r.top()], [r.right(), r.bottom()]])
    chip_corners = np.array([[0, 0], [d.cols - 1, 0], [d.cols - 1, d.rows - 1]], np.float32)
    chip_to_image = cv2.getAffineTransform(chip_corners, ((corners - centre) @ rot.T + centre).astype(np.float32))
    return np.array(tfjs.DLIB_CHIP_TEMPLATE) @ chip_to_image[:, :2].T + chip_to_image[:, 2]


def _similarity_crop(img: np.ndarray, landmarks: np.ndarray, template: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) uint8 crop: the similarity taking ``landmarks`` closest to ``template`` (cv2)."""
    import cv2

    matrix, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), template.astype(np.float32))
    return cv2.warpAffine(img, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)


@pytest.mark.slow
def test_chip_landmarks_fall_on_dlib_eyes(dlib_faces):
    """The MTCNN-order landmarks used for the crops below put each eye between dlib's two corners of it."""
    for name in PHOTOS:
        shape = dlib_faces[name][1]
        pts = np.array([[p.x, p.y] for p in shape.parts()], float)
        eyes = np.stack([pts[2:4].mean(0), pts[0:2].mean(0)])  # dlib 0-1: image-right eye, 2-3: image-left
        eye_distance = np.linalg.norm(eyes[1] - eyes[0])
        error = np.linalg.norm(_mtcnn_order_landmarks(shape)[:2] - eyes, axis=1).max()
        assert error < 0.15 * eye_distance, (name, error, eye_distance)


@pytest.mark.slow
@pytest.mark.parametrize("name", GRAPHS)
def test_human_graph_contract_and_identity(name, dlib_faces):
    model = tfjs.load_human_graph(name)
    size = model.crop_size
    assert size == tfjs.HUMAN_GRAPHS[name].crop_size and tuple(model.template.shape) == (5, 2)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    crops = _to_tensor([_similarity_crop(dlib_faces[n][0], _mtcnn_order_landmarks(dlib_faces[n][1]),
                                         model.template.numpy(), size) for n in PHOTOS]).requires_grad_(True)
    emb = model(crops)
    assert tuple(emb.shape) == (len(PHOTOS), model.embedding_dim)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(len(PHOTOS)))
    sim = emb @ emb.T
    (sim[0, 1] - sim[0, 2] - sim[1, 2]).backward()
    grad = crops.grad
    assert torch.isfinite(grad).all() and all(g.abs().sum() > 0 for g in grad)
    if name != "mobileface":  # mobileface does not separate these identities (MODEL_SOURCES)
        assert sim[0, 1] > max(sim[0, 2], sim[1, 2]), sim.detach().numpy().round(3)
    with pytest.raises(ValueError, match="expected crops"):
        model(torch.zeros(1, 3, size + 1, size + 1))


@pytest.mark.slow
@pytest.mark.parametrize("name", GRAPHS)
def test_human_graph_matches_tfjs(name):
    ref = json.loads((FIXTURES / "tfjs_graph_reference.json").read_text())["models"][name]
    s = ref["size"]
    n, h, w, c = np.meshgrid(np.arange(2), np.arange(s), np.arange(s), np.arange(3), indexing="ij")
    x = (ref["offset"] + 100 * np.sin(0.05 * h * (c + 1) + 0.07 * w + n)).astype(np.float32)
    graph = tfjs.load_human_graph(name).graph
    assert graph.output_name == ref["node"] and graph.input_name == ref["input"]
    with torch.no_grad():
        got = graph(torch.from_numpy(x)).numpy()
    expected = np.array(ref["values"], np.float32).reshape(ref["shape"])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-5 * np.abs(expected).max())


def test_unknown_graph_name():
    with pytest.raises(ValueError, match="known: faceres"):
        tfjs.load_human_graph("mobilefacenet")
