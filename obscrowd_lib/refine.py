"""Inference-time refinement: a few bounded steps of the teacher's objective from any starting δ.

Obscrowd's third stage (paper, *The pipeline*: "an inference-time refinement stage sharpens the
perturbation within a bounded budget"). Given a photo, its faces and an initial perturbation δ0 (zero,
the teacher's, or the student's fast guess), run at most K steps of momentum sign-PGD on the SAME
objective as the teacher (:func:`obscrowd_lib.teacher.teacher_objective`: joint worst-face identity
loss over the training ensemble, expectation over differentiable attacks, input diversity, optional
LPIPS and diffusion terms), inside the same mask and L∞ budget, and stop as soon as every face is
protected (below its calibrated threshold minus ``config.stop_margin`` on every training model,
checked on the un-attacked photo and on the current attacked draw) -- possibly before the first
step, when δ0 already protects everyone.

There is no second loss here on purpose: refinement is :func:`obscrowd_lib.teacher.optimise` with
no random start, a starting δ and a small step budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from .teacher import TeacherConfig, TeacherModels, TeacherResult, optimise

DEFAULT_REFINE_STEPS = 10  # K when neither the call nor the config says otherwise


def refine(photo: Any, delta0: torch.Tensor | None, faces: Any = None, *, config: TeacherConfig | None = None,
           steps: int = DEFAULT_REFINE_STEPS, device: Any = "cpu", mask: Any = None,
           models: TeacherModels | None = None, progress: bool = True,
           callback: Callable[[dict], None] | None = None) -> TeacherResult:
    """Refine ``delta0`` by at most ``steps`` (K) steps of the teacher objective; early stop always on.

    Args:
        photo: (1, 3, H, W) or (3, H, W) float in [0, 1], or (H, W, 3) uint8.
        delta0: (1, 3, H, W) initial perturbation (zero, the teacher's, a student's); ``None`` means zero.
            It is confined to the union mask and projected to the budget before the first step.
        faces: list of :class:`~obscrowd_lib.faces.Face` (``None``: detected).
        config: the teacher's :class:`~obscrowd_lib.teacher.TeacherConfig` (default ``TeacherConfig()``: budget, step size,
            ensemble, attacks, ...); ``random_start`` is ignored, early stop is forced on and ``min_steps`` set to 0.
        steps: K, the largest number of steps.
        device, mask, models, progress, callback: as :func:`obscrowd_lib.teacher.optimise`.
    Returns:
        :class:`~obscrowd_lib.teacher.TeacherResult`; ``steps`` is how many were needed
        (0 when ``delta0`` already protected every face).
    """
    if steps < 0:
        raise ValueError(f"refine: steps must be >= 0, got {steps}")
    cfg = replace(config or TeacherConfig(), early_stop=True, min_steps=0)
    if delta0 is None:
        delta0 = torch.zeros(())  # broadcast below to the photo's shape inside optimise
    return optimise(photo, faces, config=cfg, delta0=delta0, steps=steps, random_start=False, mask=mask,
                    models=models, device=device, progress=progress, callback=callback)


__all__ = ["DEFAULT_REFINE_STEPS", "refine"]
