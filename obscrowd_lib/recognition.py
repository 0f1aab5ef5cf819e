"""Identity: differentiable face alignment, the face-recognition (FR) ensemble, calibrated thresholds.

This is the "FR ensemble" part of Obscrowd: every face of a group photo is cropped from the
**whole photo** by a differentiable similarity warp, embedded by each recognition network, and
compared with the same face in another photo, so one perturbation of the photo can be optimised
against all faces and all networks at once (the identity-disruption term of the teacher and the
student), and so protection can be judged per face at calibrated thresholds (evaluation).

Conventions
-----------
* Photos are (B, 3, H, W) float RGB in [0, 1]; a single photo may be (1, 3, H, W) or (3, H, W).
* Landmarks are (N, 5, 2) float pixel coordinates (x, y) in the order left eye, right eye, nose,
  mouth left, mouth right ("left" = image left), as :class:`obscrowd_lib.faces.Face` holds them.
  Pixel (row i, column j) has its centre at (x, y) = (j, i) (OpenCV's convention, the one the
  ArcFace template and MTCNN use).
* Embeddings are (N, D) L2-normalised; similarity is the cosine, in [-1, 1].

Public API
----------
:func:`similarity_transform`, :func:`align_faces` -- alignment (crop every face from the whole photo).
:class:`Recognizer`, :func:`load_recognizer`, :func:`load_dlib_native` -- one FR model, ``embed(photo, faces)``.
:class:`FREnsemble`, :func:`training_ensemble`, :func:`holdout` -- several models, per-face cosines.
:class:`Calibration`, :func:`calibrate`, :func:`calibrate_on_images`, :func:`calibrate_on_folder`,
:func:`load_thresholds`, :func:`threshold_for` -- thresholds at fixed false-accept rates.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_FARS = (1e-2, 1e-3, 1e-4)  # false-accept rates at which thresholds are calibrated
HELD_OUT = ("facenet",)  # recognizers kept out of the training ensemble by default (independent evaluators)
THRESHOLDS_PATH = Path(__file__).parent / "data" / "thresholds.json"  # shipped calibration

# ----------------------------------------------------------------------------------------------
# Alignment
# ----------------------------------------------------------------------------------------------


def _as_landmarks(faces: Any, device: Any = "cpu") -> torch.Tensor:
    """``faces`` (list of Face, (N,5,2) array/tensor, or one (5,2)) -> (N, 5, 2) float32 tensor."""
    if isinstance(faces, torch.Tensor):
        lm = faces.to(device=device, dtype=torch.float32)
    elif isinstance(faces, np.ndarray):
        lm = torch.as_tensor(faces, dtype=torch.float32, device=device)
    else:
        faces = list(faces)
        if not faces:
            return torch.zeros(0, 5, 2, device=device)
        lm = torch.as_tensor(np.stack([np.asarray(f.landmarks, dtype=np.float32) for f in faces]), device=device)
    if lm.dim() == 2:
        lm = lm[None]
    if lm.dim() != 3 or lm.shape[1:] != (5, 2):
        raise ValueError(f"landmarks must be (N, 5, 2) pixel coordinates, got shape {tuple(lm.shape)}")
    if not torch.isfinite(lm).all():
        raise ValueError("landmarks contain NaN or inf")
    return lm


def _as_photo(photo: torch.Tensor) -> torch.Tensor:
    if not isinstance(photo, torch.Tensor):
        raise TypeError(f"photo must be a torch tensor (B, 3, H, W) in [0, 1], got {type(photo).__name__}")
    if photo.dim() == 3:
        photo = photo[None]
    if photo.dim() != 4 or photo.shape[1] != 3:
        raise ValueError(f"photo must be (B, 3, H, W) RGB in [0, 1], got shape {tuple(photo.shape)}")
    return photo


def similarity_transform(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity transforms (rotation, uniform scale, translation; no reflection).

    Solves min_{s,R,t} sum_k |s R src_k + t - dst_k|^2 per face: Umeyama (1991) restricted to
    det R = +1. In 2-D every scaled rotation is [[a, -b], [b, a]], so the problem is linear in
    (a, b, tx, ty) and has the closed form used here (equal to Umeyama's SVD solution, with no SVD,
    so it is differentiable and stable even for degenerate point sets).

    Args:
        src: (N, K, 2) points (x, y), e.g. detected landmarks in photo pixels.
        dst: (K, 2) or (N, K, 2) target points, e.g. a model's template in crop pixels.
    Returns:
        (N, 2, 3) matrices M with dst ≈ M @ [x, y, 1].
    """
    src = src.to(torch.float64)
    dst = dst.to(src.device, torch.float64).expand_as(src)
    mu_s, mu_d = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    xs, ys = (src - mu_s).unbind(-1)
    xd, yd = (dst - mu_d).unbind(-1)
    var = (xs * xs + ys * ys).sum(1).clamp_min(1e-12)
    a = (xs * xd + ys * yd).sum(1) / var
    b = (xs * yd - ys * xd).sum(1) / var
    rot = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)  # (N, 2, 2)
    t = mu_d[:, 0] - (rot @ mu_s[:, 0, :, None])[..., 0]
    return torch.cat([rot, t[..., None]], -1).to(torch.float32)


def _invert_affine(m: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) -> (N, 2, 3) inverse affine maps."""
    inv = torch.linalg.inv(m[:, :, :2])
    return torch.cat([inv, -(inv @ m[:, :, 2:])], -1)


def _pyramid(photo: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Area pyramid of a (1, 3, H, W) photo: level l is a 2^l box average (odd sizes edge-padded)."""
    out = [photo]
    for _ in range(levels):
        p = out[-1]
        h, w = p.shape[-2:]
        if h < 2 or w < 2:
            break
        if h % 2 or w % 2:
            p = F.pad(p, (0, w % 2, 0, h % 2), mode="replicate")
        out.append(F.avg_pool2d(p, 2))
    return out


def align_faces(photo: torch.Tensor, landmarks: Any, template: torch.Tensor, crop_size: int,
                batch_index: torch.Tensor | Sequence[int] | None = None, *, padding_mode: str = "zeros",
                antialias: bool = True) -> torch.Tensor:
    """Crop every face from the whole photo, aligned to a recognizer's template (differentiable).

    For each face the least-squares similarity transform landmarks → template
    (:func:`similarity_transform`) defines where each crop pixel comes from in the photo; the crop is
    sampled with ``affine_grid`` + bilinear ``grid_sample`` (``align_corners=False``), so the
    gradient of anything computed on the crops flows back to the photo's pixels around each face
    (and nowhere else). This is the alignment step in front of every FR model of the ensemble.

    Coordinates: crop pixel centres are at integer (x, y) = (0..S-1); photo pixel centres likewise.
    grid_sample's normalised coordinate u relates to a pixel coordinate x by x = ((u + 1) W - 1) / 2.

    Args:
        photo: (B, 3, H, W) (or (3, H, W)) float RGB in [0, 1]; may require grad.
        landmarks: (N, 5, 2) pixel coordinates in the photo (tensor/array) or a list of N ``Face``.
        template: (5, 2) landmark positions in crop pixels (the model's ``template``).
        crop_size: S, side of the square crops.
        batch_index: (N,) index into the photo batch of the photo each face is in; may be omitted when B == 1.
        padding_mode: ``"zeros"`` (default; black outside the photo, as cv2.warpAffine in insightface's
            ``norm_crop``) or ``"border"`` (replicate the edge pixels).
        antialias: when a face is larger in the photo than in the crop, sample from a 2^l box-averaged
            level of an area pyramid (l = floor(log2(photo px per crop px))), so the crop is not aliased
            and every photo pixel under the face receives gradient (plain bilinear sampling at a stride
            of k pixels touches only about 4/k^2 of them). Like dlib's chip extraction.
    Returns:
        (N, 3, S, S) float crops in [0, 1].
    """
    photo = _as_photo(photo)
    lm = _as_landmarks(landmarks, photo.device)
    n, (bsz, _, h, w) = lm.shape[0], photo.shape
    if padding_mode not in ("zeros", "border"):
        raise ValueError(f"padding_mode must be 'zeros' or 'border', got {padding_mode!r}")
    if batch_index is None:
        if bsz != 1 and n:
            raise ValueError(f"photo batch has {bsz} images: pass batch_index (N,) telling which photo each face is in")
        bidx = torch.zeros(n, dtype=torch.long)
    else:
        bidx = torch.as_tensor(batch_index, dtype=torch.long).cpu().reshape(-1)
        if bidx.numel() != n or (n and (bidx.min() < 0 or bidx.max() >= bsz)):
            raise ValueError(f"batch_index must hold {n} indices in [0, {bsz}), got {bidx.tolist()}")
    s = int(crop_size)
    if n == 0:
        return photo.new_zeros(0, 3, s, s)
    template = torch.as_tensor(template, dtype=torch.float32, device=photo.device)
    m = similarity_transform(lm, template)  # photo px -> crop px
    inv = _invert_affine(m)  # crop px -> photo px
    scale = torch.linalg.det(m[:, :, :2]).abs().sqrt()  # crop px per photo px
    levels = torch.zeros(n, dtype=torch.long)
    if antialias:
        levels = torch.floor(torch.log2(1.0 / scale.clamp_min(1e-6))).clamp_min(0).long().cpu()
    # crop pixel grid (homogeneous), shared by all faces
    c = torch.arange(s, dtype=torch.float32, device=photo.device)
    gy, gx = torch.meshgrid(c, c, indexing="ij")
    grid_px = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(-1, 3)  # (S*S, 3)
    chunks: list[torch.Tensor] = []
    for b in bidx.unique().tolist():
        sel_b = (bidx == b).nonzero().flatten()
        pyr = _pyramid(photo[b:b + 1], int(levels[sel_b].max()))
        for lev in levels[sel_b].unique().tolist():
            lev = min(lev, len(pyr) - 1)
            sel = sel_b[levels[sel_b].clamp_max(len(pyr) - 1) == lev]
            img = pyr[lev]
            hl, wl = img.shape[-2:]
            k = 2.0 ** lev
            src = grid_px @ inv[sel.to(photo.device)].transpose(1, 2)  # (n_sel, S*S, 2) photo px
            src = (src - (k - 1) / 2) / k  # pixel coordinates at pyramid level `lev`
            u = (2 * src[..., 0] + 1) / wl - 1
            v = (2 * src[..., 1] + 1) / hl - 1
            grid = torch.stack([u, v], -1).reshape(1, len(sel) * s, s, 2)  # faces stacked along height
            crops = F.grid_sample(img, grid.to(img.dtype), mode="bilinear", padding_mode=padding_mode,
                                  align_corners=False)  # (1, 3, n_sel*S, S)
            chunks.append((sel, crops.reshape(3, len(sel), s, s).transpose(0, 1)))
    order = torch.cat([sel for sel, _ in chunks])
    stacked = torch.cat([cr for _, cr in chunks])
    return stacked[torch.argsort(order.to(stacked.device))] if len(chunks) > 1 else stacked
