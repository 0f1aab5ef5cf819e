"""ONNX face models: ArcFace-style recognizers through onnx2torch, insightface's SCRFD detector through onnxruntime.

Recognizers are converted to torch with ``onnx2torch`` so gradients reach the input pixels. Graphs
exported from PyTorch often pin the batch at 1 with a constant ``Reshape`` target ``[1, -1]``; the
graph is edited in memory before conversion so that it batches (:func:`make_batchable`). The files
on disk are never modified.

The recognizers are members of the FR ensemble (the identity term of the teacher and student, and the
evaluation); SCRFD is an alternative face detector for users with insightface packs.

* :func:`load_faceplugin_arcface`: ``faceplugin-face-recognition-js``'s ``fr_feature.onnx`` (512-D,
  a MobileFaceNet-style network fed ArcFace-aligned 112×112 crops, RGB ``(x − 127) / 128``).
* :func:`load_insightface_arcface`: a user's insightface recognition ONNX (e.g. ``buffalo_l/w600k_r50.onnx``).
* :func:`load_insightface_scrfd`: a user's insightface SCRFD detector ONNX (e.g. ``buffalo_l/det_10g.onnx``),
  run with onnxruntime (detection needs no gradients) and decoded as insightface does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..faces import Face

# insightface's arcface_dst: the five landmarks (left eye, right eye, nose, mouth left, mouth right) in a 112x112 crop.
ARCFACE_TEMPLATE = ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655),
                    (70.7299, 92.2041))


def arcface_template(size: int) -> torch.Tensor:
    """ArcFace template (5, 2) for a ``size``×``size`` crop, scaled as insightface's ``estimate_norm`` does.

    Multiples of 112 scale the 112 template; multiples of 128 scale it by size/128 and shift x by 8·size/128.
    """
    t = torch.tensor(ARCFACE_TEMPLATE, dtype=torch.float32)
    if size % 112 == 0:
        return t * (size / 112)
    if size % 128 == 0:
        r = size / 128
        return t * r + torch.tensor([8.0 * r, 0.0])
    raise ValueError(f"ArcFace crops must be a multiple of 112 or 128 pixels, got {size}")


def _load_onnx(path: str | Path):
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError and friends
        raise ValueError(f"{path}: not a readable ONNX model ({e})") from e


def _static_dims(value_info) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def make_batchable(model, path: str | Path = "<onnx>") -> int:
    """Rewrite, in memory, constant ``Reshape`` targets that pin the batch at 1 so the graph batches.

    A target ``[1, d1, ..., dk]`` (initializer or ``Constant`` node) becomes ``[-1, d1, ..., dk]``; when a
    ``d`` is also ``-1`` (e.g. ``[1, -1]``), the output's static shape from ONNX shape inference is used
    instead (``[1, -1]`` → ``[-1, 512]``). Graph inputs and outputs get a symbolic batch dimension.
    Returns the number of rewritten Reshapes. Raises ``ValueError`` naming ``path`` when a pinned
    target cannot be resolved.
    """
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model)
    out_shapes = {vi.name: _static_dims(vi) for vi in [*inferred.graph.value_info, *inferred.graph.output]}
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            inits.setdefault(node.output[0], numpy_helper.to_array(node.attribute[0].t))
    changed = 0
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] not in inits:
            continue
        target = inits[node.input[1]]
        if target.ndim != 1 or target.size < 2 or int(target[0]) != 1:
            continue
        rest = [int(v) for v in target[1:]]
        if -1 in rest:
            out = out_shapes.get(node.output[0])
            if out is None or len(out) != target.size or any(d is None for d in out[1:]):
                raise ValueError(f"{path}: Reshape {node.name or node.output[0]!r} pins the batch at 1 with target "
                                 f"{target.tolist()} and its output shape cannot be inferred; cannot make it batch")
            rest = out[1:]
        name = f"{node.input[1]}__batched_{changed}"
        graph.initializer.append(numpy_helper.from_array(np.array([-1, *rest], dtype=np.int64), name))
        node.input[1] = name
        changed += 1
    for vi in [*graph.input, *graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) and vi.name not in inits:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    return changed


class OnnxRecognizer(nn.Module):
    """An ONNX recognizer converted with onnx2torch, wrapped to the obscrowd recognizer contract.

    ``forward(crops)``: (N, 3, S, S) float RGB in [0, 1], aligned to :attr:`template` -> (N, D)
    L2-normalised embeddings. Preprocessing inside: ``(crops · 255 − mean) / std``, NCHW RGB.
    """

    def __init__(self, net: nn.Module, crop_size: int, template: torch.Tensor, mean: float, std: float, name: str):
        super().__init__()
        self.net = net
        self.crop_size = int(crop_size)
        self.mean = float(mean)
        self.std = float(std)
        self.name = name
        self.register_buffer("template", template.to(torch.float32))
        with torch.no_grad():
            out = net(torch.zeros(2, 3, crop_size, crop_size))
        if out.shape[0] != 2:
            raise ValueError(f"{name}: the converted graph does not batch (2 crops in, {tuple(out.shape)} out)")
        self.embedding_dim = int(out.flatten(1).shape[1])

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        s = self.crop_size
        if crops.ndim != 4 or crops.shape[1:] != (3, s, s):
            raise ValueError(f"{self.name} expects crops (N, 3, {s}, {s}), got {tuple(crops.shape)}")
        x = (crops * 255.0 - self.mean) / self.std
        return F.normalize(self.net(x).flatten(1), dim=1)


def _onnx_recognizer(path: str | Path, *, mean: float, std: float, name: str, device: Any,
                     model=None) -> OnnxRecognizer:
    """Load an ONNX recognizer (1 NCHW square input, 1 output) as a frozen :class:`OnnxRecognizer`."""
    from onnx2torch import convert

    model = _load_onnx(path) if model is None else model
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise ValueError(f"{path}: expected one input and one output, found {len(inputs)} and {len(model.graph.output)}")
    dims = _static_dims(inputs[0])
    if len(dims) != 4 or dims[1] not in (3, None):
        raise ValueError(f"{path}: input {inputs[0].name!r} has shape {dims}; expected (N, 3, S, S)")
    h, w = dims[2] or 112, dims[3] or 112  # insightface's default when the graph leaves the size open
    if h != w:
        raise ValueError(f"{path}: input {inputs[0].name!r} is {h}x{w}; expected a square crop")
    make_batchable(model, path)
    net = convert(model)
    rec = OnnxRecognizer(net, h, arcface_template(h), mean, std, name)
    rec = rec.to(device).eval()
    for p in rec.parameters():
        p.requires_grad_(False)
    return rec


def load_faceplugin_arcface(device: Any = "cpu") -> OnnxRecognizer:
    """Faceplugin's ``fr_feature.onnx`` (zoo entry ``arcface-faceplugin``) as an obscrowd recognizer.

    112×112 crops aligned to the ArcFace template, RGB ``(x − 127) / 128`` as the package's own
    ``lib/fr_feature.js`` feeds it; output (N, 512) L2-normalised (the graph's own output is not).
    """
    from .. import zoo

    return _onnx_recognizer(zoo.entry_files("arcface-faceplugin")[0], mean=127.0, std=128.0,
                            name="arcface-faceplugin", device=device)


def _local_file(name: str, path: str | None) -> Path:
    from .. import zoo

    p = Path(zoo.local_path(name, path)).expanduser()
    if not p.is_file():
        raise zoo.ModelNotAvailable(f"model {name!r}: {p} is not a file (give the .onnx file of the pack)")
    return p


def load_insightface_arcface(device: Any = "cpu", path: str | None = None) -> OnnxRecognizer:
    """A user's insightface recognition ONNX (e.g. ``buffalo_l/w600k_r50.onnx``; zoo entry ``insightface-arcface``).

    ``path`` defaults to the registered local path (:func:`obscrowd_lib.zoo.local_path`); raises
    :class:`obscrowd_lib.zoo.ModelNotAvailable` when none is given or the file is missing. The crop size
    is read from the graph's input (112 when open); template = insightface's ``arcface_dst`` for that
    size. Preprocessing as insightface's ``ArcFaceONNX``: RGB ``(x − 127.5) / 127.5``, unless the graph
    normalises itself (a ``Sub`` and a ``Mul`` among its first 8 nodes), then raw 0..255.
    """
    p = _local_file("insightface-arcface", path)
    model = _load_onnx(p)
    first = [n.name for n in model.graph.node[:8]]
    normalises = (any(n.startswith(("Sub", "_minus")) for n in first)
                  and any(n.startswith(("Mul", "_mul")) for n in first))
    mean, std = (0.0, 1.0) if normalises else (127.5, 127.5)
    return _onnx_recognizer(p, mean=mean, std=std, name="insightface-arcface", device=device, model=model)


# --- SCRFD detector -------------------------------------------------------------------------------------------

# Output layouts of insightface's SCRFD exports: number of outputs -> (strides, anchors per location, keypoints).
SCRFD_LAYOUTS = {6: ((8, 16, 32), 2, False), 9: ((8, 16, 32), 2, True),
                 10: ((8, 16, 32, 64, 128), 1, False), 15: ((8, 16, 32, 64, 128), 1, True)}


def decode_scrfd(outputs: list[np.ndarray], input_hw: tuple[int, int], score_threshold: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode SCRFD's raw outputs (scores, box distances, keypoint offsets per stride) into candidates.

    ``outputs``: 3·k arrays in the graph's order -- k score maps (A, 1), k box maps (A, 4), k keypoint
    maps (A, 10), one per stride, where A = (H/stride)·(W/stride)·anchors, locations row-major and the
    anchors of one location adjacent (a leading batch axis of 1 is dropped). Distances are in stride
    units from the anchor centre (x·stride, y·stride): box = centre ∓ distance (left, top, right,
    bottom); keypoint = centre + offset. Returns boxes (M, 4) x0 y0 x1 y1, scores (M,), keypoints
    (M, 5, 2), in input pixels, for scores >= ``score_threshold``; no NMS.
    """
    if len(outputs) not in SCRFD_LAYOUTS or not SCRFD_LAYOUTS[len(outputs)][2]:
        raise ValueError(f"SCRFD model has {len(outputs)} outputs; obscrowd needs a keypoint model (9 or 15 outputs)")
    strides, anchors, _ = SCRFD_LAYOUTS[len(outputs)]
    k = len(strides)
    outs = [o[0] if o.ndim == 3 else o for o in outputs]
    boxes, scores, kps = [], [], []
    for i, s in enumerate(strides):
        h, w = input_hw[0] // s, input_hw[1] // s
        score, dist, off = outs[i].reshape(-1), outs[i + k].reshape(-1, 4) * s, outs[i + 2 * k].reshape(-1, 5, 2) * s
        if score.shape[0] != h * w * anchors:
            raise ValueError(f"SCRFD stride {s}: {score.shape[0]} scores for a {h}x{w} map with {anchors} anchors")
        ys, xs = np.mgrid[:h, :w]
        centres = np.repeat(np.stack([xs.reshape(-1), ys.reshape(-1)], 1).astype(np.float32) * s, anchors, axis=0)
        keep = score >= score_threshold
        c = centres[keep]
        boxes.append(np.concatenate([c - dist[keep, :2], c + dist[keep, 2:]], 1))
        scores.append(score[keep])
        kps.append(c[:, None, :] + off[keep])
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(kps)


class ScrfdDetector:
    """insightface SCRFD face detector run with onnxruntime; ``detect(image)`` -> list of :class:`Face`.

    The photo is resized keeping its aspect ratio into the top-left of a ``det_size`` canvas (the
    graph's own input size when fixed), fed RGB ``(x − 127.5) / 128``, decoded with
    :func:`decode_scrfd` and reduced with NMS at ``nms_threshold`` (insightface's defaults).
    """

    def __init__(self, path: str | Path, det_size: int = 640, nms_threshold: float = 0.4, device: Any = "cpu"):
        import onnxruntime as ort

        self.path = Path(path)
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=providers)
        except Exception as e:
            raise ValueError(f"{self.path}: onnxruntime cannot load it ({e})") from e
        outputs = self.session.get_outputs()
        if len(outputs) not in SCRFD_LAYOUTS or not SCRFD_LAYOUTS[len(outputs)][2]:
            raise ValueError(f"{self.path}: {len(outputs)} outputs; expected an SCRFD model with keypoints (9 or 15)")
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_names = [o.name for o in outputs]
        h, w = inp.shape[2:4]
        fixed = isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0
        self.input_hw = (h, w) if fixed else (det_size, det_size)
        self.nms_threshold = nms_threshold

    def detect(self, image: np.ndarray, score_threshold: float = 0.5) -> list[Face]:
        """Faces in ``image`` (H, W, 3) uint8 RGB, best score first, in the photo's pixel coordinates."""
        import cv2
        import torchvision

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"SCRFD detect expects an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        ih, iw = self.input_hw
        scale = min(ih / image.shape[0], iw / image.shape[1])
        nh, nw = int(image.shape[0] * scale), int(image.shape[1] * scale)
        canvas = np.zeros((ih, iw, 3), np.uint8)
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh))
        blob = ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outputs = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(blob)})
        boxes, scores, kps = decode_scrfd(outputs, (ih, iw), score_threshold)
        if len(scores) == 0:
            return []
        sx, sy = image.shape[1] / nw, image.shape[0] / nh  # undo the resize (exact per axis)
        boxes, kps = boxes * [sx, sy, sx, sy], kps * [sx, sy]
        keep = torchvision.ops.nms(torch.from_numpy(boxes).float(), torch.from_numpy(scores).float(),
                                   self.nms_threshold).numpy()
        return [Face(box=tuple(float(v) for v in boxes[i]), landmarks=kps[i].astype(np.float64), score=float(scores[i]))
                for i in keep]


def load_insightface_scrfd(device: Any = "cpu", path: str | None = None, det_size: int = 640,
                           nms_threshold: float = 0.4) -> ScrfdDetector:
    """A user's insightface SCRFD ONNX (e.g. ``buffalo_l/det_10g.onnx``; zoo entry ``insightface-scrfd``).

    ``path`` defaults to the registered local path; raises :class:`obscrowd_lib.zoo.ModelNotAvailable`
    when none is given or the file is missing. Not a torch module (detection needs no gradients).
    SCRFD's five keypoints are already in obscrowd's landmark order.
    """
    return ScrfdDetector(_local_file("insightface-scrfd", path), det_size=det_size, nms_threshold=nms_threshold,
                         device=device)
