"""Imperceptibility of a protection: how far the protected photo is from the clean one (no attack).

This is the *imperceptibility* family of the evaluation (kept apart from *protection*, which measures
face-recognition similarity after an edit): PSNR, SSIM, LPIPS (AlexNet and VGG16), DISTS and the L∞
norm of the perturbation in /255 units, each over the whole photo and inside the union of the face
masks. Images are (B, 3, H, W) float RGB in [0, 1]; masks are soft face masks in [0, 1].

How the mask is used, per metric:

* PSNR: mask-weighted MSE, ``sum(m (x - y)^2) / (3 sum(m))`` (soft weights, no threshold).
* SSIM: local means / variances / covariance from a mask-weighted Gaussian window (normalised
  convolution), then the mask-weighted mean of the SSIM map; pixels with m = 0 have no influence.
* L∞: the largest per-pixel channel difference over pixels with m > 0.5.
* LPIPS / DISTS (whole-image networks): both images are cropped to the bounding box of m > 0.5,
  grown (centred, clamped to the photo) to at least :data:`MIN_CROP` px per side so that AlexNet
  fits. Pixels outside that box are ignored; pixels inside the box but outside the mask are not.
  For a group photo the box of the *union* mask spans the gaps between faces: for per-face numbers,
  call with one face's mask at a time.
"""

from __future__ import annotations

from typing import Any

import torch

METRICS = ("psnr", "ssim", "lpips-alex", "lpips-vgg", "dists", "linf")  # every metric name imperceptibility knows
PERCEPTUAL = ("lpips-alex", "lpips-vgg", "dists")  # the learned ones (zoo metric models)
MIN_CROP = 32  # smallest side of the masked crop fed to LPIPS / DISTS (LPIPS-alex needs >= 31 px)
SSIM_WINDOW = 11  # Gaussian window (sigma 1.5) of SSIM, as in Wang et al. 2004
MASK_THRESHOLD = 0.5  # a pixel is "inside the face" for L-inf and the crop box when m > this


def _check_images(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3 or x.shape != y.shape:
        raise ValueError(f"expected two (B, 3, H, W) images of the same shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")


def as_mask(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bring a mask to (N, 1, H, W) on x's device and dtype, N in {1, B}; checks shape and [0, 1] range.

    Accepted: (H, W), (1, H, W), (1, 1, H, W) or (B, 1, H, W), float in [0, 1].
    """
    m = torch.as_tensor(mask)
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3 and m.shape[0] == 1:
        m = m[None]
    if m.ndim != 4 or m.shape[1] != 1 or m.shape[2:] != x.shape[2:] or m.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"mask of shape {tuple(torch.as_tensor(mask).shape)} does not fit images of shape "
                         f"{tuple(x.shape)}: use (H, W), (1, 1, H, W) or (B, 1, H, W)")
    m = m.to(device=x.device, dtype=x.dtype)
    if m.numel() and (m.min() < 0 or m.max() > 1):
        raise ValueError(f"mask values must lie in [0, 1], got [{m.min().item():.3g}, {m.max().item():.3g}]")
    return m


def _mask_weights(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) weights; raises if some image's mask is all zero."""
    m = as_mask(mask, x).expand(x.shape[0], 1, *x.shape[2:])
    if (m.sum((1, 2, 3)) <= 0).any():
        raise ValueError("mask is empty (all zero) for at least one image: nothing to measure inside it")
    return m


def psnr(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, peak 1: ``10 log10(1 / MSE)``; inf for identical images.

    Args:
        x, y: (B, 3, H, W) float in [0, 1].
        mask: optional soft mask (see :func:`as_mask`); MSE is then mask-weighted:
            ``sum(m (x - y)^2) / (3 sum(m))``.

    Returns:
        (B,) PSNR in dB.
    """
    _check_images(x, y)
    err = (x - y) ** 2
    if mask is None:
        mse = err.mean((1, 2, 3))
    else:
        m = _mask_weights(mask, x)
        mse = (err * m).sum((1, 2, 3)) / (x.shape[1] * m.sum((1, 2, 3)))
    return 10 * torch.log10(1.0 / mse)


def ssim(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), 11x11 Gaussian window sigma 1.5, C1 = 0.01^2, C2 = 0.03^2.

    Without a mask: mean of kornia's SSIM map (``kornia.metrics.ssim``, reflect padding).
    With a mask m: local statistics from the mask-weighted window (mu_x = G*(m x) / G*m, likewise
    E[x^2], E[y^2], E[xy]; zero outside the photo), and the m-weighted mean of the SSIM map, so pixels
    with m = 0 do not count at all. An all-ones mask differs from the unmasked value only near the
    photo border (renormalised instead of reflected window).

    Args:
        x, y: (B, 3, H, W) float in [0, 1].
        mask: optional soft mask (see :func:`as_mask`).

    Returns:
        (B,) SSIM in [-1, 1]; 1 for identical images.
    """
    import kornia

    _check_images(x, y)
    if mask is None:
        return kornia.metrics.ssim(x, y, SSIM_WINDOW, max_val=1.0).mean((1, 2, 3))
    m = _mask_weights(mask, x)
    kernel = kornia.filters.get_gaussian_kernel1d(SSIM_WINDOW, 1.5, device=x.device, dtype=x.dtype)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return kornia.filters.filter2d_separable(t, kernel, kernel, border_type="constant")

    w = blur(m).clamp_min(1e-12)
    mu_x, mu_y = blur(m * x) / w, blur(m * y) / w
    var_x = blur(m * x * x) / w - mu_x**2
    var_y = blur(m * y * y) / w - mu_y**2
    cov = blur(m * x * y) / w - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    ssim_map = torch.where(m > 0, ssim_map, torch.zeros_like(ssim_map))
    return (ssim_map * m).sum((1, 2, 3)) / (x.shape[1] * m.sum((1, 2, 3)))


def linf_255(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L∞ distance in /255 units: ``255 max |x - y|`` over channels and pixels (pixels with m > 0.5 if masked).

    Args:
        x, y: (B, 3, H, W) float in [0, 1].
        mask: optional soft mask (see :func:`as_mask`); only pixels with m > ``MASK_THRESHOLD`` count.

    Returns:
        (B,) L∞ in /255 (e.g. 8.0 for an 8/255 budget).
    """
    _check_images(x, y)
    diff = (x - y).abs().amax(1, keepdim=True)
    if mask is not None:
        inside = as_mask(mask, x).expand_as(diff) > MASK_THRESHOLD
        if not inside.flatten(1).any(1).all():
            raise ValueError(f"mask has no pixel above {MASK_THRESHOLD} for at least one image")
        diff = torch.where(inside, diff, torch.zeros_like(diff))
    return 255 * diff.amax((1, 2, 3))


def mask_box(mask: torch.Tensor, min_size: int = MIN_CROP) -> tuple[int, int, int, int]:
    """Bounding box (top, left, bottom, right; bottom/right exclusive) of ``mask > 0.5``.

    The box is grown around its centre to at least ``min_size`` px per side, clamped to the photo
    (it cannot exceed the photo's own size).

    Args:
        mask: (H, W) or (1, 1, H, W) float in [0, 1].
    """
    m = torch.as_tensor(mask)
    m = m.reshape(m.shape[-2:]) if m.ndim > 2 and m.shape[:-2].numel() == 1 else m
    if m.ndim != 2:
        raise ValueError(f"mask_box needs one (H, W) mask, got shape {tuple(torch.as_tensor(mask).shape)}")
    inside = m > MASK_THRESHOLD
    if not inside.any():
        raise ValueError(f"mask has no pixel above {MASK_THRESHOLD}: no face region to crop")
    rows = torch.nonzero(inside.any(1)).flatten()
    cols = torch.nonzero(inside.any(0)).flatten()

    def grow(lo: int, hi: int, size: int) -> tuple[int, int]:
        if hi - lo >= min_size:
            return lo, hi
        lo = max(0, lo - (min_size - (hi - lo)) // 2)
        hi = min(size, lo + min_size)
        return max(0, hi - min_size), hi

    top, bottom = grow(int(rows[0]), int(rows[-1]) + 1, m.shape[0])
    left, right = grow(int(cols[0]), int(cols[-1]) + 1, m.shape[1])
    return top, left, bottom, right


class MetricSuite:
    """The imperceptibility metrics, with the learned metric models loaded once per (name, device).

    Example::

        suite = MetricSuite()
        report = suite.imperceptibility(clean, protected, mask=face_mask)  # {"psnr": ..., "psnr_mask": ...}
    """

    def __init__(self) -> None:
        self._models: dict[tuple[str, str], torch.nn.Module] = {}

    def model(self, name: str, device: Any = "cpu") -> torch.nn.Module:
        """The zoo metric model ``name`` ("lpips-alex", "lpips-vgg" or "dists") on ``device``, loaded once."""
        if name not in PERCEPTUAL:
            raise ValueError(f"unknown perceptual metric {name!r}; use one of {PERCEPTUAL}")
        key = (name, str(torch.device(device)))
        if key not in self._models:
            from . import zoo

            self._models[key] = zoo.load_model(name, device=device)
        return self._models[key]

    def perceptual(self, name: str, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None,
                   device: Any = "cpu") -> torch.Tensor:
        """LPIPS / DISTS distance, whole image or on the crop :func:`mask_box` of each image's mask.

        Args:
            name: "lpips-alex", "lpips-vgg" or "dists".
            x, y: (B, 3, H, W) float in [0, 1].
            mask: optional soft mask (see :func:`as_mask`).

        Returns:
            (B,) distances (0 = identical), on ``device``; differentiable in x and y.
        """
        _check_images(x, y)
        net = self.model(name, device)
        x, y = x.to(device), y.to(device)
        if mask is None:
            return net(x, y)
        m = as_mask(mask, x)
        out = []
        for b in range(x.shape[0]):
            top, left, bottom, right = mask_box(m[min(b, m.shape[0] - 1), 0])
            out.append(net(x[b : b + 1, :, top:bottom, left:right], y[b : b + 1, :, top:bottom, left:right]))
        return torch.cat(out)

    def imperceptibility(self, clean: torch.Tensor, protected: torch.Tensor, mask: torch.Tensor | None = None,
                         metrics: tuple[str, ...] = METRICS, device: Any = "cpu") -> dict[str, float]:
        """Every requested metric between one clean photo and its protected copy, whole and inside the mask.

        Args:
            clean, protected: (3, H, W) or (1, 3, H, W) float in [0, 1].
            mask: optional union face mask, (H, W) or (1, 1, H, W) float in [0, 1].
            metrics: names from :data:`METRICS`.
            device: where to compute.

        Returns:
            ``{name: value}`` over the whole photo and, when a mask is given, ``{name + "_mask": value}``
            inside it. Units: PSNR in dB (inf if identical), SSIM in [-1, 1], LPIPS / DISTS distances,
            "linf" in /255.
        """
        unknown = [n for n in metrics if n not in METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {METRICS}")
        clean, protected = (t[None] if t.ndim == 3 else t for t in (clean, protected))
        if clean.shape[0] != 1:
            raise ValueError(f"imperceptibility compares one photo; got a batch of {clean.shape[0]}")
        _check_images(clean, protected)
        clean, protected = clean.to(device), protected.to(device)
        simple = {"psnr": psnr, "ssim": ssim, "linf": linf_255}
        report: dict[str, float] = {}
        with torch.no_grad():
            for name in metrics:
                for suffix, m in [("", None)] + ([("_mask", mask)] if mask is not None else []):
                    if name in simple:
                        value = simple[name](clean, protected, m)
                    else:
                        value = self.perceptual(name, clean, protected, m, device)
                    report[name + suffix] = float(value.item())
        return report


def imperceptibility(clean: torch.Tensor, protected: torch.Tensor, mask: torch.Tensor | None = None,
                     metrics: tuple[str, ...] = METRICS, device: Any = "cpu",
                     suite: MetricSuite | None = None) -> dict[str, float]:
    """Imperceptibility report of a protection (protected vs clean, no attack).

    Same arguments and result as :meth:`MetricSuite.imperceptibility`.

    Pass a :class:`MetricSuite` to reuse its loaded LPIPS / DISTS models across photos.
    """
    return (suite or MetricSuite()).imperceptibility(clean, protected, mask=mask, metrics=metrics, device=device)
