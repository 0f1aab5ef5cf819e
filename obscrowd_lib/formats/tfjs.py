"""TensorFlow.js models run in PyTorch: the face recognisers of ``face-api`` and ``human-models``.

Two kinds of tfjs files are read here, both as a JSON description plus ``.bin`` weight shards
(the ``weightsManifest`` lists each tensor's name, shape, dtype and optional quantisation; the
tensors lie back to back in the shards of their group, in manifest order):

* **face-api's weights manifest** (no topology): the network is face-api.js's port of dlib's
  ResNet face descriptor (``dlib_face_recognition_resnet_model_v1``), rebuilt here as
  :class:`FaceApiDlibResNet`. 109 of its 117 tensors are uint8-quantised (``q * scale + min``).
* **tfjs graph models** (``modelTopology.node`` is a frozen TF GraphDef in JSON): evaluated node
  by node by :class:`TfjsGraph`, a small interpreter of the ops Human's face models use. Tensors
  keep TensorFlow's NHWC layout between ops; each convolution works on an NCHW *view* of its input
  (``permute``, no copy: torch runs it in channels-last memory) with TF's SAME/VALID padding
  rules, so Reshape/Mean/Pad keep their TF meaning exactly.

Both become *recognizers* in the sense of :mod:`obscrowd_lib.zoo`: ``forward(crops)`` takes
(N, 3, S, S) RGB in [0, 1] aligned to ``template`` and returns (N, D) L2-normalised identity
embeddings, differentiable with respect to the crops (the paper's FR models F_k whose embedding
similarity the perturbation attacks).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .graph import dependency_order

# Element dtypes a tfjs manifest may store (after quantisation, the stored dtype is the quantised one).
_STORED_DTYPES = {"float32": "<f4", "int32": "<i4", "float16": "<f2", "uint8": "u1", "uint16": "<u2"}

# dlib's 150x150 chip (get_face_chip, padding 0.25): mean MTCNN-order landmark positions of 28 real faces.
DLIB_CHIP_TEMPLATE = ((47.92, 45.53), (101.84, 44.32), (73.28, 79.08), (52.74, 103.18), (100.95, 101.46))
# insightface's arcface_dst: five-point template of the 112x112 ArcFace crop (MTCNN order).
ARCFACE_TEMPLATE_112 = ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655),
                        (70.7299, 92.2041))


# ---------------------------------------------------------------------------------------------
# weights manifest
# ---------------------------------------------------------------------------------------------

def read_weights(manifest: list[dict[str, Any]], folder: Path) -> dict[str, np.ndarray]:
    """Decode a tfjs ``weightsManifest`` into float32 / int32 numpy arrays keyed by tensor name.

    ``manifest`` is the list of groups ``{"paths": [...], "weights": [{name, shape, dtype,
    quantization?}, ...]}``; shard paths are relative to ``folder``. Quantised tensors are
    restored as tfjs does: uint8/uint16 as ``q * scale + min``, float16 by widening to float32.
    Raises ``ValueError`` naming the shard when the manifest and the bytes disagree.
    """
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        paths = [Path(folder) / p for p in group["paths"]]
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"{p}: weight shard named in the tfjs manifest is missing")
        data = b"".join(p.read_bytes() for p in paths)
        where = ", ".join(str(p) for p in paths)
        offset = 0
        for spec in group["weights"]:
            quant = spec.get("quantization")
            stored = quant["dtype"] if quant else spec["dtype"]
            if stored not in _STORED_DTYPES:
                raise ValueError(f"{where}: tensor {spec['name']} has unsupported dtype {stored!r}")
            dtype = np.dtype(_STORED_DTYPES[stored])
            count = int(np.prod(spec["shape"], dtype=np.int64))
            if offset + count * dtype.itemsize > len(data):
                raise ValueError(f"{where}: {len(data)} bytes, too short for tensor {spec['name']} at byte {offset}")
            arr = np.frombuffer(data, dtype, count, offset).reshape(spec["shape"])
            offset += count * dtype.itemsize
            if quant and stored in ("uint8", "uint16"):
                arr = (arr.astype(np.float64) * quant["scale"] + quant["min"]).astype(np.float32)
            elif spec["dtype"] == "float32":
                arr = arr.astype(np.float32)
            elif spec["dtype"] == "int32":
                arr = arr.astype(np.int32)
            else:
                raise ValueError(f"{where}: tensor {spec['name']} has unsupported dtype {spec['dtype']!r}")
            out[spec["name"]] = arr
        if offset != len(data):
            raise ValueError(f"{where}: {len(data)} bytes but the manifest describes {offset}")
    return out


def _frozen(module: nn.Module, device: Any) -> nn.Module:
    """Eval mode, no parameter gradients, moved to ``device`` (the zoo's loader contract)."""
    module.requires_grad_(False)
    return module.eval().to(device)


def _check_crops(crops: torch.Tensor, size: int, who: str) -> None:
    if crops.ndim != 4 or tuple(crops.shape[1:]) != (3, size, size):
        raise ValueError(f"{who}: expected crops (N, 3, {size}, {size}) RGB in [0, 1], got {tuple(crops.shape)}")


# ---------------------------------------------------------------------------------------------
# face-api.js: dlib ResNet descriptor
# ---------------------------------------------------------------------------------------------

class _ConvAffine(nn.Module):
    """face-api ``convLayer``: conv (+bias) then dlib's affine (BN folded to a per-channel scale and shift).

    The affine is folded into the convolution: ``(conv(x) + b) * s + t = conv_{W s}(x) + (b s + t)``.
    Stride 2 uses VALID padding (face-api ``convDown``), stride 1 SAME (3x3 kernels: 1 pixel each side).
    """

    def __init__(self, weights: dict[str, np.ndarray], prefix: str, stride: int, relu: bool):
        super().__init__()
        w = torch.from_numpy(weights[f"{prefix}/conv/filters"]).permute(3, 2, 0, 1)  # HWIO -> OIHW
        b = torch.from_numpy(weights[f"{prefix}/conv/bias"])
        s = torch.from_numpy(weights[f"{prefix}/scale/weights"])
        t = torch.from_numpy(weights[f"{prefix}/scale/biases"])
        k = w.shape[-1]
        self.conv = nn.Conv2d(w.shape[1], w.shape[0], k, stride=stride, padding=0 if stride > 1 else k // 2)
        with torch.no_grad():
            self.conv.weight.copy_(w * s.view(-1, 1, 1, 1))
            self.conv.bias.copy_(b * s + t)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return F.relu(x) if self.relu else x


def _add_zero_extended(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib ``add_prev``: add two (N, C, H, W) tensors, zero-extending the smaller one (channels, bottom, right)."""
    shape = [max(u, v) for u, v in zip(a.shape, b.shape)]

    def grow(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, shape[3] - t.shape[3], 0, shape[2] - t.shape[2], 0, shape[1] - t.shape[1]))

    return grow(a) + grow(b)


class _Residual(nn.Module):
    """dlib ``ares`` / ``ares_down``: relu(conv2(relu(conv1(x))) + skip); the down version strides conv1
    by 2 and takes the skip through a 2x2 average pool (zero-extended to the branch's shape)."""

    def __init__(self, weights: dict[str, np.ndarray], prefix: str, down: bool):
        super().__init__()
        self.conv1 = _ConvAffine(weights, f"{prefix}/conv1", stride=2 if down else 1, relu=True)
        self.conv2 = _ConvAffine(weights, f"{prefix}/conv2", stride=1, relu=False)
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_zero_extended(out, skip))


# Residual units in forward order (face-api FaceRecognitionNet.forwardInput).
_DLIB_UNITS = ("conv32_1", "conv32_2", "conv32_3",
               "conv64_down", "conv64_1", "conv64_2", "conv64_3",
               "conv128_down", "conv128_1", "conv128_2",
               "conv256_down", "conv256_1", "conv256_2", "conv256_down_out")


class FaceApiDlibResNet(nn.Module):
    """dlib's ResNet-29 face descriptor (as ported by face-api.js), a 128-D recognizer.

    ``forward(crops)``: (N, 3, 150, 150) RGB in [0, 1], a dlib face chip (``get_face_chip``, padding
    0.25) -> (N, 128) L2-normalised descriptors. Inside: ``(255 x - mean_rgb) / 256`` as dlib's input
    layer, 7x7/2 conv, 3x3/2 max pool, 14 residual units, global average, 256->128 linear.
    """

    crop_size = 150
    embedding_dim = 128

    def __init__(self, weights: dict[str, np.ndarray]):
        super().__init__()
        self.stem = _ConvAffine(weights, "conv32_down", stride=2, relu=True)
        self.units = nn.Sequential(*[_Residual(weights, u, down="down" in u) for u in _DLIB_UNITS])
        self.register_buffer("fc", torch.from_numpy(weights["fc"]))  # (256, 128), y = x @ fc
        self.register_buffer("mean_rgb", torch.tensor([122.782, 117.001, 104.298]).view(1, 3, 1, 1))
        self.register_buffer("template", torch.tensor(DLIB_CHIP_TEMPLATE))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        _check_crops(crops, self.crop_size, type(self).__name__)
        x = (crops * 255.0 - self.mean_rgb) / 256.0
        x = F.max_pool2d(self.stem(x), 3, 2)
        x = self.units(x).mean(dim=(2, 3))
        return F.normalize(x @ self.fc, dim=1)


def load_faceapi_dlib(device: Any = "cpu") -> FaceApiDlibResNet:
    """Zoo loader ``dlib-faceapi``: face-api's uint8-quantised dlib ResNet as a frozen torch recognizer."""
    from .. import zoo

    files = zoo.entry_files("dlib-faceapi")
    manifests = [p for p in files if p.name.endswith("weights_manifest.json")]
    if len(manifests) != 1:
        raise FileNotFoundError(f"dlib-faceapi: expected one *weights_manifest.json among {files}")
    try:
        manifest = json.loads(manifests[0].read_text())
    except ValueError as e:
        raise ValueError(f"{manifests[0]}: not valid JSON ({e})") from e
    weights = read_weights(manifest, manifests[0].parent)
    try:
        model = FaceApiDlibResNet(weights)
    except KeyError as e:
        raise ValueError(f"{manifests[0]}: tensor {e} missing; not face-api's face_recognition_model") from e
    return _frozen(model, device)


# ---------------------------------------------------------------------------------------------
# tfjs graph models
# ---------------------------------------------------------------------------------------------

def _attr_ints(node: dict, key: str, default: Sequence[int]) -> list[int]:
    return [int(i) for i in node.get("attr", {}).get(key, {}).get("list", {}).get("i", default)]


def _attr_str(node: dict, key: str, default: str) -> str:
    value = node.get("attr", {}).get(key, {}).get("s")
    return base64.b64decode(value).decode() if value is not None else default


def _attr_bool(node: dict, key: str) -> bool:
    return bool(node.get("attr", {}).get(key, {}).get("b", False))


def _input_names(node: dict, where: str) -> list[str]:
    """Data inputs of a node (control inputs ``^x`` dropped); only output 0 of a node is supported."""
    names = []
    for ref in node.get("input", []):
        if ref.startswith("^"):
            continue
        name, _, index = ref.partition(":")
        if index not in ("", "0"):
            raise ValueError(f"{where}: node {node['name']} reads output {index} of {name}; only output 0 is supported")
        names.append(name)
    return names


def _tf_same_pads(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF SAME padding of one spatial axis: (before, after); the extra pixel goes after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


_UNARY = {"Relu": F.relu, "Relu6": lambda x: x.clamp(0.0, 6.0), "Sigmoid": torch.sigmoid,
          "Identity": lambda x: x, "Softmax": lambda x: torch.softmax(x, dim=-1)}
_BINARY = {"Add": torch.add, "AddV2": torch.add, "Sub": torch.sub, "Mul": torch.mul,
           "Maximum": torch.maximum, "Minimum": torch.minimum}
_CONV = ("Conv2D", "DepthwiseConv2dNative")
_TORCH_LAYOUT = "#oihw"  # suffix of the buffer key holding a conv filter in torch's layout
_CLAMPS = ("Maximum", "Minimum")  # with a scalar constant operand: run as clamp (cheaper backward than where/mask)
_STATIC_INPUTS = {"Mean": 1, "Reshape": 1, "Pad": 1}  # op -> index of its integer (shape/axes/paddings) input
SUPPORTED_OPS = frozenset(_UNARY) | frozenset(_BINARY) | frozenset(_CONV) | {"Mean", "Reshape", "Pad", "MatMul",
                                                                             "_FusedMatMul", "Const", "Placeholder"}


@dataclass(frozen=True)
class _Step:
    """One node of the graph, ready to run."""

    name: str  # node name (its value is stored under it)
    op: str  # TF op type
    inputs: tuple[str, ...]  # data input node names
    attrs: tuple[Any, ...]  # op-specific parsed attributes (see TfjsGraph._run)


class TfjsGraph(nn.Module):
    """A tfjs graph model (``model.json`` + ``.bin``) evaluated in torch, with gradients.

    Only the nodes needed for ``output`` are kept (and their weights loaded). ``forward(x)`` takes
    the graph's single placeholder as an NHWC float tensor (N, H, W, C) and returns the value of
    ``output`` in TF's layout. Ops: see :data:`SUPPORTED_OPS`; NHWC data format only.
    """

    def __init__(self, model_json: Path, output: str):
        super().__init__()
        model_json = Path(model_json)
        try:
            spec = json.loads(model_json.read_text())
            nodes = {n["name"]: n for n in spec["modelTopology"]["node"]}
            manifest = spec["weightsManifest"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{model_json}: not a tfjs graph model ({e!r})") from e
        where = str(model_json)
        if output not in nodes:
            raise ValueError(f"{where}: no node named {output!r}")
        order = self._needed(nodes, output, where)
        weights = read_weights(manifest, model_json.parent)

        placeholders = [n for n in order if nodes[n]["op"] == "Placeholder"]
        if len(placeholders) != 1:
            raise ValueError(f"{where}: expected one input placeholder before {output!r}, found {placeholders}")
        self.input_name = placeholders[0]
        self.output_name = output
        self._buffer_of: dict[str, str] = {}  # const node name -> buffer attribute name
        static: dict[str, Any] = {}  # consts read at build time: axes, shapes, paddings, clamp bounds
        steps = []
        for name in order:
            node = nodes[name]
            op = node["op"]
            if op not in SUPPORTED_OPS:
                raise ValueError(f"{where}: node {name} has op {op!r}, not supported "
                                 f"({', '.join(sorted(SUPPORTED_OPS))})")
            if op == "Const":
                if name not in weights:
                    raise ValueError(f"{where}: Const {name} has no tensor in the weights manifest")
                continue
            if op == "Placeholder":
                continue
            inputs = _input_names(node, where)
            for i, ref in enumerate(inputs):
                if nodes[ref]["op"] != "Const":
                    if op in _CONV and i == 1:
                        raise ValueError(f"{where}: node {name}: the filter {ref} must be a constant")
                    continue
                if i == _STATIC_INPUTS.get(op) or (op in _CLAMPS and weights[ref].size == 1):
                    static[ref] = weights[ref].tolist()
                elif op in _CONV and i == 1:
                    self._add_const(ref + _TORCH_LAYOUT, self._conv_weight(op, weights[ref]))
                else:
                    self._add_const(ref, torch.from_numpy(weights[ref]))
            steps.append(_Step(name, op, tuple(inputs), self._parse_attrs(node, op, static, inputs, where)))
        self._steps = tuple(steps)

    @staticmethod
    def _needed(nodes: dict[str, dict], output: str, where: str) -> list[str]:
        """Nodes ``output`` depends on, in an order where every node follows its inputs."""
        return dependency_order(output, lambda n: _input_names(nodes[n], where), lambda n: n in nodes, where)

    def _add_const(self, name: str, value: torch.Tensor) -> None:
        if name in self._buffer_of:
            return
        attr = f"const_{len(self._buffer_of)}"
        self.register_buffer(attr, value.contiguous())
        self._buffer_of[name] = attr

    @staticmethod
    def _conv_weight(op: str, w: np.ndarray) -> torch.Tensor:
        """TF filter -> torch weight: Conv2D HWIO -> OIHW; depthwise (H, W, C, M) -> (C*M, 1, H, W)."""
        t = torch.from_numpy(w)
        if op == "Conv2D":
            return t.permute(3, 2, 0, 1)
        kh, kw, c, m = t.shape
        return t.permute(2, 3, 0, 1).reshape(c * m, 1, kh, kw)

    @staticmethod
    def _parse_attrs(node: dict, op: str, static: dict[str, list], inputs: list[str], where: str) -> tuple:
        name = node["name"]
        if op in _CONV:
            if _attr_str(node, "data_format", "NHWC") != "NHWC":
                raise ValueError(f"{where}: node {name}: only NHWC data format is supported")
            padding = _attr_str(node, "padding", "VALID")
            if padding not in ("SAME", "VALID"):
                raise ValueError(f"{where}: node {name}: padding {padding!r} not supported (SAME, VALID)")
            strides = _attr_ints(node, "strides", [1, 1, 1, 1])
            dilations = _attr_ints(node, "dilations", [1, 1, 1, 1])
            return (strides[1], strides[2]), (dilations[1], dilations[2]), padding
        if op in _STATIC_INPUTS:
            ref = inputs[_STATIC_INPUTS[op]]
            if ref not in static:
                raise ValueError(f"{where}: node {name}: input {ref} must be a constant")
            value = static[ref]
            if op == "Mean":
                return (tuple(value) if isinstance(value, list) else (value,)), _attr_bool(node, "keep_dims")
            return (tuple(value),) if op == "Reshape" else (tuple(tuple(p) for p in value),)
        if op in _CLAMPS:
            scalar = [i for i, ref in enumerate(inputs) if ref in static]
            if scalar:  # (bound, index of the tensor operand)
                return float(np.reshape(static[inputs[scalar[0]]], -1)[0]), 1 - scalar[0]
            return ()
        if op in ("MatMul", "_FusedMatMul"):
            fused = tuple(base64.b64decode(s).decode() for s in node.get("attr", {}).get("fused_ops", {})
                          .get("list", {}).get("s", []))
            if op == "_FusedMatMul" and (not fused or fused[0] != "BiasAdd" or len(fused) > 2
                                         or (len(fused) == 2 and fused[1] not in _UNARY)):
                raise ValueError(f"{where}: node {name}: fused ops {fused} not supported (BiasAdd [+ activation])")
            return _attr_bool(node, "transpose_a"), _attr_bool(node, "transpose_b"), fused
        return ()

    def _value(self, name: str, env: dict[str, torch.Tensor]) -> torch.Tensor:
        return env[name] if name in env else getattr(self, self._buffer_of[name])

    def _run(self, step: _Step, env: dict[str, torch.Tensor]) -> torch.Tensor:
        op = step.op
        if op in _CLAMPS and step.attrs:
            bound, k = step.attrs
            t = self._value(step.inputs[k], env)
            return t.clamp(min=bound) if op == "Maximum" else t.clamp(max=bound)
        x = self._value(step.inputs[0], env)
        if op in _UNARY:
            return _UNARY[op](x)
        if op in _BINARY:
            return _BINARY[op](x, self._value(step.inputs[1], env))
        if op in _CONV:
            (sh, sw), (dh, dw), padding = step.attrs
            w = getattr(self, self._buffer_of[step.inputs[1] + _TORCH_LAYOUT])
            nchw = x.permute(0, 3, 1, 2)  # a view: conv runs in channels-last memory
            pad_h = pad_w = (0, 0)
            if padding == "SAME":
                pad_h = _tf_same_pads(nchw.shape[2], w.shape[2], sh, dh)
                pad_w = _tf_same_pads(nchw.shape[3], w.shape[3], sw, dw)
            groups = nchw.shape[1] if op == "DepthwiseConv2dNative" else 1
            if pad_h[0] == pad_h[1] and pad_w[0] == pad_w[1]:
                y = F.conv2d(nchw, w, None, (sh, sw), (pad_h[0], pad_w[0]), (dh, dw), groups)
            else:  # TF puts the odd extra pixel after: pad explicitly
                y = F.conv2d(F.pad(nchw, (*pad_w, *pad_h)), w, None, (sh, sw), 0, (dh, dw), groups)
            return y.permute(0, 2, 3, 1)
        if op == "Mean":
            axes, keep = step.attrs
            return x.mean(dim=axes, keepdim=keep)
        if op == "Reshape":
            return x.reshape(step.attrs[0])
        if op == "Pad":
            pads = [p for pair in reversed(step.attrs[0]) for p in pair]  # F.pad wants last axis first
            return F.pad(x, pads)
        # MatMul / _FusedMatMul
        transpose_a, transpose_b, fused = step.attrs
        b = self._value(step.inputs[1], env)
        y = (x.transpose(-1, -2) if transpose_a else x) @ (b.transpose(-1, -2) if transpose_b else b)
        if fused:
            y = y + self._value(step.inputs[2], env)
            if len(fused) == 2:
                y = _UNARY[fused[1]](y)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {self.input_name: x}
        for step in self._steps:
            env[step.name] = self._run(step, env)
        return env[self.output_name]


@dataclass(frozen=True)
class HumanGraphSpec:
    """How one of Human's tfjs face-embedding graphs is fed and read."""

    embedding_node: str  # node whose value is the identity embedding (the graph's own outputs are other heads)
    crop_size: int  # S: the graph takes (N, S, S, 3)
    bgr: bool  # channel order the graph expects: True = BGR, False = RGB
    mean: tuple[float, float, float]  # subtracted from 0..255 values, in the graph's channel order
    embedding_dim: int  # D of the embedding


HUMAN_GRAPHS: dict[str, HumanGraphSpec] = {
    # HSE faceres (MobileNet trained on VGGFace2): Keras "caffe" preprocessing.
    "faceres": HumanGraphSpec("global_pooling/Mean", 224, True, (103.939, 116.779, 123.68), 1024),
    "faceres-deep": HumanGraphSpec("global_pooling/Mean", 224, True, (103.939, 116.779, 123.68), 1024),
    # MobileFace (MXNet origin): the graph itself maps 0..255 to (x - 127.5) / 128.
    "mobileface": HumanGraphSpec("batchnorm0/add_1", 112, False, (0.0, 0.0, 0.0), 256),
}


class TfjsGraphRecognizer(nn.Module):
    """A recognizer around a :class:`TfjsGraph`: ArcFace-template crops in, unit embeddings out.

    ``forward(crops)``: (N, 3, S, S) RGB in [0, 1] aligned to ``template`` (insightface's ArcFace
    five points scaled by S / 112) -> (N, D) L2-normalised values of the spec's embedding node.
    """

    def __init__(self, graph: TfjsGraph, spec: HumanGraphSpec, name: str):
        super().__init__()
        self.graph = graph
        self.spec = spec
        self.name = name
        self.crop_size = spec.crop_size
        self.embedding_dim = spec.embedding_dim
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("template", torch.tensor(ARCFACE_TEMPLATE_112) * (spec.crop_size / 112.0))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        _check_crops(crops, self.crop_size, f"{type(self).__name__}({self.name})")
        x = crops * 255.0
        if self.spec.bgr:
            x = x.flip(1)
        x = (x - self.mean).permute(0, 2, 3, 1)  # NHWC for the graph
        return F.normalize(self.graph(x).flatten(1), dim=1)


def load_human_graph(model: str, device: Any = "cpu") -> TfjsGraphRecognizer:
    """Zoo loader for Human's tfjs face-embedding graphs: ``model`` in :data:`HUMAN_GRAPHS`."""
    from .. import zoo

    if model not in HUMAN_GRAPHS:
        raise ValueError(f"unknown human-models graph {model!r}; known: {', '.join(HUMAN_GRAPHS)}")
    files = [p for p in zoo.entry_files(model) if p.name == f"{model}.json"]
    if not files:
        raise FileNotFoundError(f"{model}: {model}.json not among the files of zoo entry {model!r}")
    spec = HUMAN_GRAPHS[model]
    return _frozen(TfjsGraphRecognizer(TfjsGraph(files[0], spec.embedding_node), spec, model), device)
