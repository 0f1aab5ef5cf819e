"""Soft face masks: where the one perturbation of a group photo is allowed to live.

Each face gets a feathered ellipse covering forehead to chin, oriented along the eye line:

* centre: the midpoint between the eye midpoint and the mouth midpoint, moved up by
  ``raise_frac`` face heights (so the forehead is covered);
* semi-axes: ``width`` × inter-ocular distance across, ``height`` × eye-to-mouth distance
  along the face, both grown by ``dilation`` (a fraction of the face size);
* falloff: 1 inside the ellipse, a smooth cosine ramp to 0 over ``feather`` × face size
  outside it, exactly 0 beyond.

The union mask is the pixelwise **maximum** over faces (never above 1, and equal to each face's
mask where faces do not overlap). It confines the perturbation: δ = union ⊙ δ̃ (Obscrowd's
face-localised perturbation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class MaskConfig:
    """Shape of the per-face soft masks."""

    width: float = 1.35  # ellipse semi-axis across the face, in inter-ocular distances
    height: float = 1.75  # ellipse semi-axis along the face, in eye-to-mouth distances
    raise_frac: float = 0.12  # move the centre up (towards the forehead), in eye-to-mouth distances
    dilation: float = 0.05  # grow both semi-axes by this fraction of the face size
    feather: float = 0.15  # width of the smooth 1 → 0 falloff outside the ellipse, fraction of face size


@dataclass(frozen=True)
class FaceMasks:
    """Per-face soft masks and their union (torch tensors on the requested device)."""

    per_face: Any  # (N, H, W) float in [0, 1], one mask per face, same order as the faces
    union: Any  # (H, W) float in [0, 1], pixelwise max over faces (zeros when there is no face)


def _ellipse_params(landmarks: np.ndarray, cfg: MaskConfig):
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_mid = 0.5 * (lm[0] + lm[1])
    mouth_mid = 0.5 * (lm[3] + lm[4])
    iod = max(float(np.hypot(*(lm[1] - lm[0]))), 1.0)
    down = mouth_mid - eye_mid
    em = max(float(np.hypot(*down)), 1.0)
    ey = down / em  # unit vector pointing down the face
    size = 0.5 * (iod + em) * 2.0  # rough face size in pixels
    centre = 0.5 * (eye_mid + mouth_mid) - cfg.raise_frac * em * ey
    a = cfg.width * iod + cfg.dilation * size
    b = cfg.height * em + cfg.dilation * size
    return centre, ey, a, b, cfg.feather * size


def face_masks(image_shape: Sequence[int], faces: Sequence, *, config: MaskConfig | None = None,
               dilation: float | None = None, feather: float | None = None, device: Any = "cpu") -> FaceMasks:
    """Soft masks for ``faces`` (list of :class:`~obscrowd_lib.faces.Face` or (N, 5, 2) landmarks).

    ``image_shape``: (H, W), or any shape ending in (H, W) such as a photo tensor's (1, 3, H, W). ``dilation`` and
    ``feather`` override the config's fields. Returns per-face masks (N, H, W) and their union
    (H, W), float32 in [0, 1] on ``device``.
    """
    import torch

    cfg = config or MaskConfig()
    if dilation is not None or feather is not None:
        cfg = MaskConfig(cfg.width, cfg.height, cfg.raise_frac, cfg.dilation if dilation is None else dilation,
                         cfg.feather if feather is None else feather)
    h, w = int(image_shape[-2]), int(image_shape[-1])
    lms = [np.asarray(getattr(f, "landmarks", f), dtype=np.float64) for f in faces]
    # pixel centres at integer (x, y), the convention of the landmarks and of recognition.align_faces
    ys = torch.arange(h, dtype=torch.float32, device=device).view(h, 1)
    xs = torch.arange(w, dtype=torch.float32, device=device).view(1, w)
    masks = []
    for lm in lms:
        (cx, cy), (dx, dy), a, b, fw = _ellipse_params(lm, cfg)
        # coordinates in the face frame: u across (along the eye line), v down the face
        u = (xs - cx) * dy - (ys - cy) * dx  # cross product: signed distance along the eye line
        v = (xs - cx) * dx + (ys - cy) * dy
        r = torch.sqrt((u / a) ** 2 + (v / b) ** 2)  # 1 on the ellipse
        dist = (r - 1.0) * min(a, b)  # approximate distance outside the ellipse, pixels
        t = (dist / max(fw, 1e-6)).clamp(0, 1)
        masks.append(0.5 * (1 + torch.cos(torch.pi * t)))
    per_face = torch.stack(masks) if masks else torch.zeros(0, h, w, device=device)
    union = per_face.amax(0) if masks else torch.zeros(h, w, device=device)
    return FaceMasks(per_face, union)
