"""ONNX recognizers (onnx2torch) and the SCRFD decoder: exactness against onnxruntime, batching, gradients,
identity separation on real photos, and the local-path loaders with tiny ONNX models built here."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from obscrowd_lib import zoo
from obscrowd_lib.faces import Face
from obscrowd_lib.formats.onnx import (
    ARCFACE_TEMPLATE,
    arcface_template,
    decode_scrfd,
    load_faceplugin_arcface,
    load_insightface_arcface,
    load_insightface_scrfd,
    make_batchable,
)

PHOTOS = ("obama", "obama2", "obama3", "biden")


def dlib_aligned_crops(template: torch.Tensor, size: int, names=PHOTOS, side: int = 640) -> torch.Tensor:
    """(len(names), 3, size, size) crops in [0, 1] of the face_recognition test photos, aligned by a similarity
    transform taking dlib's eye centres and nose point (5-point shape predictor, HOG detector) to the first three
    template points. A test-only stand-in for the library aligner; dlib's 5 points have no mouth corners."""
    import cv2
    import dlib
    from PIL import Image

    from obscrowd_lib import artifacts

    folder = artifacts.fetch("face-recognition") / "face_recognition-1.3.0" / "tests" / "test_images"
    predictor_path = next(p for p in zoo.entry_files("dlib-hog") if p.name.startswith("shape_predictor_5"))
    detector, predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path))
    crops = []
    for name in names:
        img = Image.open(folder / f"{name}.jpg").convert("RGB")
        s = side / max(img.size)
        a = np.asarray(img.resize((round(img.width * s), round(img.height * s)), Image.BILINEAR))
        rects = detector(a, 1)
        assert len(rects) == 1, f"{name}: dlib found {len(rects)} faces"
        p = np.array([[q.x, q.y] for q in predictor(a, rects[0]).parts()], np.float32)
        src = np.stack([p[2:4].mean(0), p[0:2].mean(0), p[4]])  # image-left eye, image-right eye, nose
        m, _ = cv2.estimateAffinePartial2D(src, template[:3].numpy().astype(np.float32), method=cv2.LMEDS)
        crops.append(cv2.warpAffine(a, m, (size, size), flags=cv2.INTER_LINEAR))
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0


# --- graph editing and tiny local models ---------------------------------------------------------------------

def _tiny_recognizer(path, shape_as_constant_node: bool) -> None:
    """Conv(8x8/8) -> Relu -> Reshape([1, -1]) -> Gemm: a 112x112 insightface-like recognizer pinned to batch 1."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 8, 8)).astype(np.float32) * 0.05, "w"),
             numpy_helper.from_array(rng.normal(size=(16, 4 * 14 * 14)).astype(np.float32) * 0.05, "fc")]
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], kernel_shape=[8, 8], strides=[8, 8]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc"], ["output"], transB=1)]
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    if shape_as_constant_node:
        nodes.insert(2, helper.make_node("Constant", [], ["shape"], value=shape))
    else:
        inits.append(shape)
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 16])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))


def _tiny_scrfd(path) -> None:
    """An SCRFD-shaped detector with random weights: 9 outputs (scores, boxes, keypoints at strides 8/16/32,
    2 anchors), dynamic input size, outputs reshaped to (A, 1), (A, 4), (A, 10) as insightface's exports."""
    rng = np.random.default_rng(1)
    nodes, inits, outs = [], [], {}
    for kind, ch in (("score", 1), ("bbox", 4), ("kps", 10)):
        for s in (8, 16, 32):
            name = f"{kind}_{s}"
            inits.append(numpy_helper.from_array(rng.normal(size=(2 * ch, 3, s, s)).astype(np.float32) * 0.02, f"w_{name}"))
            inits.append(numpy_helper.from_array(np.array([-1, ch], np.int64), f"shape_{name}"))
            nodes += [helper.make_node("Conv", ["input", f"w_{name}"], [f"c_{name}"], kernel_shape=[s, s], strides=[s, s]),
                      helper.make_node("Transpose", [f"c_{name}"], [f"t_{name}"], perm=[0, 2, 3, 1]),
                      helper.make_node("Reshape", [f"t_{name}", f"shape_{name}"],
                                       [f"r_{name}" if kind == "score" else name])]
            if kind == "score":
                nodes.append(helper.make_node("Sigmoid", [f"r_{name}"], [name]))
            outs[name] = helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", ch])
    graph = helper.make_graph(nodes, "tiny_scrfd",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])],
                              list(outs.values()), inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))


@pytest.mark.parametrize("constant_node", [False, True])
def test_make_batchable_rewrites_pinned_reshape(tmp_path, constant_node):
    _tiny_recognizer(tmp_path / "m.onnx", constant_node)
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert make_batchable(model, "m.onnx") == 1
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape")
    target = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}[reshape.input[1]]
    assert target.tolist() == [-1, 4 * 14 * 14]
    x = np.random.default_rng(2).normal(size=(3, 3, 112, 112)).astype(np.float32)
    batched = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert batched.run(None, {"input": x})[0].shape == (3, 16)


def test_arcface_template_sizes():
    assert torch.allclose(arcface_template(112), torch.tensor(ARCFACE_TEMPLATE))
    assert torch.allclose(arcface_template(224), 2 * torch.tensor(ARCFACE_TEMPLATE))
    assert torch.allclose(arcface_template(128)[0], torch.tensor([38.2946 + 8, 51.6963]))
    with pytest.raises(ValueError, match="112 or 128"):
        arcface_template(100)


def test_insightface_arcface_local_path_matches_onnxruntime(tmp_path):
    path = tmp_path / "w600k_tiny.onnx"
    _tiny_recognizer(path, shape_as_constant_node=False)
    rec = load_insightface_arcface(path=str(path))
    assert (rec.crop_size, rec.embedding_dim) == (112, 16)
    assert torch.allclose(rec.template, torch.tensor(ARCFACE_TEMPLATE))
    crops = torch.rand(3, 3, 112, 112, generator=torch.Generator().manual_seed(3))
    blob = ((crops * 255 - 127.5) / 127.5).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = np.concatenate([session.run(None, {"input": blob[i:i + 1]})[0] for i in range(3)])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    with torch.no_grad():
        out = rec(crops).numpy()
    assert np.abs(out - ref).max() < 1e-5


@pytest.mark.parametrize("loader,name", [(load_insightface_arcface, "insightface-arcface"),
                                         (load_insightface_scrfd, "insightface-scrfd")])
def test_missing_local_model_raises(tmp_path, monkeypatch, loader, name):
    monkeypatch.setenv("OBSCROWD_HOME", str(tmp_path))  # no registered local paths
    monkeypatch.delenv(f"OBSCROWD_{name.upper().replace('-', '_')}", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no insightface pack in its default folder either
    with pytest.raises(zoo.ModelNotAvailable, match=name) as e:
        loader()
    assert "~/.insightface/models/buffalo_l/" in str(e.value)  # says where else the file may go
    with pytest.raises(zoo.ModelNotAvailable, match=name):
        loader(path=str(tmp_path / "absent.onnx"))


def test_decode_scrfd_places_one_known_face():
    """32x32 input: stride 8 -> 4x4 locations x 2 anchors; one candidate at row 1, column 2, anchor 1."""
    sizes = {8: 32, 16: 8, 32: 2}
    scores = [np.zeros((n, 1), np.float32) for n in sizes.values()]
    boxes = [np.zeros((n, 4), np.float32) for n in sizes.values()]
    kps = [np.zeros((n, 10), np.float32) for n in sizes.values()]
    idx = (1 * 4 + 2) * 2 + 1
    scores[0][idx] = 0.9
    boxes[0][idx] = [1, 1, 2, 2]  # stride units: left, top, right, bottom
    kps[0][idx] = [0.5, -0.5] * 5
    b, s, k = decode_scrfd(scores + boxes + kps, (32, 32), score_threshold=0.5)
    # centre (x, y) = (2 * 8, 1 * 8) = (16, 8)
    assert b.tolist() == [[8, 0, 32, 24]] and s.tolist() == pytest.approx([0.9])
    assert k.shape == (1, 5, 2) and np.all(k[0] == [20, 4])
    with pytest.raises(ValueError, match="keypoint"):
        decode_scrfd(scores + boxes, (32, 32), 0.5)


def test_scrfd_tiny_model_runs_through_detect(tmp_path):
    path = tmp_path / "det_tiny.onnx"
    _tiny_scrfd(path)
    det = load_insightface_scrfd(path=str(path), det_size=64)
    image = np.random.default_rng(4).integers(0, 256, size=(48, 80, 3), dtype=np.uint8)
    faces = det.detect(image, score_threshold=0.3)
    assert isinstance(faces, list) and len(faces) > 0  # random weights: sigmoid scores near 0.5
    for f in faces:
        assert isinstance(f, Face) and f.landmarks.shape == (5, 2) and np.all(np.isfinite(f.landmarks))
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    assert det.detect(image, score_threshold=1.01) == []
    with pytest.raises(ValueError, match="uint8"):
        det.detect(image.astype(np.float32))


# --- faceplugin fr_feature.onnx (fetched weights) --------------------------------------------------------------

@pytest.fixture(scope="module")
def faceplugin():
    return load_faceplugin_arcface()


@pytest.mark.slow
def test_faceplugin_matches_onnxruntime_at_batch_3(faceplugin):
    assert (faceplugin.crop_size, faceplugin.embedding_dim) == (112, 512)
    assert not any(p.requires_grad for p in faceplugin.parameters()) and not faceplugin.training
    crops = torch.rand(3, 3, 112, 112, generator=torch.Generator().manual_seed(5))
    blob = ((crops * 255 - 127) / 128).numpy()
    session = ort.InferenceSession(str(zoo.entry_files("arcface-faceplugin")[0]), providers=["CPUExecutionProvider"])
    ref = np.concatenate([session.run(None, {"input": blob[i:i + 1]})[0] for i in range(3)])
    with torch.no_grad():
        raw = faceplugin.net(torch.from_numpy(blob)).numpy()
        emb = faceplugin(crops)
    assert np.abs(raw - ref).max() < 1e-4
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)


@pytest.mark.slow
def test_faceplugin_gradients_reach_input(faceplugin):
    crops = torch.rand(2, 3, 112, 112, requires_grad=True)
    faceplugin(crops)[:, 0].sum().backward()
    assert crops.grad is not None and crops.grad.abs().sum() > 0


@pytest.mark.slow
def test_faceplugin_genuine_above_impostor(faceplugin):
    with torch.no_grad():
        e = faceplugin(dlib_aligned_crops(faceplugin.template, 112))
    sim = (e @ e.T).numpy()
    genuine = [sim[0, 1], sim[0, 2], sim[1, 2]]
    impostor = sim[:3, 3]
    assert min(genuine) > max(impostor) + 0.1, (genuine, impostor)


def test_insightface_pack_in_its_default_folder_is_found(tmp_path, monkeypatch):
    """A buffalo_l pack that insightface itself downloaded (~/.insightface/models/buffalo_l) needs no registration."""
    monkeypatch.setenv("OBSCROWD_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("OBSCROWD_INSIGHTFACE_ARCFACE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert not zoo.is_available("insightface-arcface")
    pack = tmp_path / ".insightface" / "models" / "buffalo_l"
    pack.mkdir(parents=True)
    _tiny_recognizer(pack / "w600k_r50.onnx", shape_as_constant_node=False)
    assert zoo.is_available("insightface-arcface") and not zoo.is_available("insightface-scrfd")
    assert zoo.local_path("insightface-arcface") == str(pack / "w600k_r50.onnx")
    rec = load_insightface_arcface()
    assert rec.embedding_dim == 16
    other = tmp_path / "mine.onnx"  # a registered path wins over the default folder
    _tiny_recognizer(other, shape_as_constant_node=False)
    zoo.register_local("insightface-arcface", str(other))
    assert zoo.local_path("insightface-arcface") == str(other.resolve())


# --- insightface's own code as the independent reference ------------------------------------------------------

def test_scrfd_decoding_and_detection_match_insightface(tmp_path):
    """Our decoder and detect() against insightface 0.7.3's SCRFD class on the same tiny random SCRFD graph."""
    import cv2
    from insightface.model_zoo.scrfd import SCRFD

    path = tmp_path / "det_tiny.onnx"
    _tiny_scrfd(path)
    theirs = SCRFD(model_file=str(path))
    theirs.prepare(-1, input_size=(64, 64), det_thresh=0.45)
    ours = load_insightface_scrfd(path=str(path), det_size=64)
    # before NMS, on one 64x64 canvas: every candidate, box and keypoint
    canvas = np.random.default_rng(5).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    scores, boxes, kps = theirs.forward(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), 0.45)
    blob = ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
    b, s, k = decode_scrfd(ours.session.run(ours.output_names, {ours.input_name: blob}), (64, 64), 0.45)
    assert len(s) == sum(len(v) for v in scores) > 0
    np.testing.assert_allclose(s, np.concatenate(scores).ravel(), atol=1e-6)
    np.testing.assert_allclose(b, np.concatenate(boxes), atol=1e-4)
    np.testing.assert_allclose(k, np.concatenate(kps), atol=1e-4)
    # whole detection on a 96x96 photo (it fills the canvas: no zero padding whose equal scores would tie; one
    # scale for both axes, so both rescalings agree exactly). NMS conventions differ (insightface counts box
    # sides +1 px), so compare the best face
    image = np.random.default_rng(6).integers(0, 256, size=(96, 96, 3), dtype=np.uint8)
    det, kpss = theirs.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    faces = ours.detect(image, score_threshold=0.45)
    assert len(faces) > 0 and det.shape[0] > 0
    np.testing.assert_allclose(faces[0].box, det[0, :4], atol=1e-3)
    assert faces[0].score == pytest.approx(float(det[0, 4]), abs=1e-6)
    np.testing.assert_allclose(faces[0].landmarks, kpss[0], atol=1e-3)


def test_arcface_preprocessing_matches_insightface(tmp_path):
    """Our insightface-arcface recognizer = insightface 0.7.3's ArcFaceONNX.get_feat (L2-normalised) on the same crops."""
    import cv2
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    path = tmp_path / "w600k_tiny.onnx"
    _tiny_recognizer(path, shape_as_constant_node=False)
    theirs = ArcFaceONNX(model_file=str(path))
    ours = load_insightface_arcface(path=str(path))
    crops = np.random.default_rng(7).integers(0, 256, size=(2, 112, 112, 3), dtype=np.uint8)
    ref = np.concatenate([theirs.get_feat([cv2.cvtColor(c, cv2.COLOR_RGB2BGR)]) for c in crops])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    with torch.no_grad():
        out = ours(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)
