"""The student: a compact generator distilled from the teacher, so protection is one forward pass.

Obscrowd's second stage (paper, *The pipeline*: "a lightweight student generator is distilled from
the teacher"). The teacher (:mod:`obscrowd_lib.teacher`) optimises one perturbation per photo for
minutes on a CPU; the student predicts it in one pass, and refinement (:mod:`obscrowd_lib.refine`)
sharpens that guess in a few steps.

**Generator** (:class:`StudentNet`): a small fully-convolutional U-Net. Input: the photo x
(B, 3, H, W) in [0, 1] and the union soft mask m (B, 1, H, W) in [0, 1]
(:func:`obscrowd_lib.masks.face_masks`). Output::

    δ = (ε · tanh(g(x, m))) · m,        ε = eps_255 / 255                                   (student)

so |δ| ≤ ε·m ≤ ε and δ = 0 where m = 0 hold *exactly*, at any size: the input is padded to a
multiple of the U-Net stride and the output cropped back.

**Distillation loss** (:func:`distillation_loss`), per training photo with its teacher δ_T::

    L = λ_imit · ‖δ − δ_T‖_m / ε                     imitation (mask-weighted L1 or L2, budget units)
      + λ_id   · L_teacher(x + δ)                     the teacher objective (teacher.teacher_objective:
                                                      worst-face identity loss over the FR ensemble and
                                                      the differentiable attack sampler)
      + λ_fid  · ‖δ / ε‖²_m                            fidelity (mean energy inside the mask)

The identity term is the teacher's own function, so the loss lives in one place.

**Training** (:func:`train_student`) runs on Hugging Face ``accelerate``: the same code on a CPU,
one GPU or many (``accelerate launch``), mixed precision where available, a progress bar on the
main process, and atomic resumable checkpoints (model + optimizer + step + config, temp file then
``os.replace``). Training data: the teacher-target cache of :mod:`obscrowd_lib.distill_data`.
Batches are drawn by step number (seed, step, process), so a resumed run sees the same batches as
an uninterrupted one.

Entry points: :func:`protect_student` / :func:`predict_delta` (inference), :func:`train_student`,
:func:`load_student`, :func:`add_train_arguments` / :func:`train_from_args` (the command line,
``scripts/train_student.py``).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

CHECKPOINT_NAME = "checkpoint.pt"  # resumable training state in the output folder
STUDENT_NAME = "student.pt"  # the shippable weights-only file in the output folder
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")  # values of StudentConfig.mixed_precision
IMITATION = ("l1", "l2")  # values of StudentConfig.imitation
# Fields that may differ between a checkpoint and the config resuming it (they do not change the model or loss).
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "mixed_precision", "num_workers")


@dataclass(frozen=True)
class StudentConfig:
    """Architecture, loss weights and training knobs of the student. Saved beside every checkpoint."""

    eps_255: float = 8.0  # L-inf budget of the predicted perturbation, in /255 units (times the soft mask)
    base_channels: int = 12  # channels of the full-resolution level; doubled at every level down
    depth: int = 4  # number of stride-2 levels: the input is padded to a multiple of 2**depth
    bottleneck_blocks: int = 1  # extra 3x3 convolutions at the coarsest level, for the receptive field
    imitation: str = "l1"  # imitation distance to the teacher's delta: l1 or l2, mask-weighted, budget units
    imitation_weight: float = 1.0  # weight of the imitation term
    identity_weight: float = 0.5  # weight of the teacher objective on the student's protected photo; 0 = off
    identity_every: int = 1  # compute the identity term every this many steps, 1 = every step
    fidelity_weight: float = 0.05  # weight of the mean squared delta inside the mask, budget units
    ensemble: tuple[str, ...] = ()  # recognizers of the identity term; empty = the target teacher's ensemble
    attacks: tuple[str, ...] = ()  # attacks of the identity term; empty = the target teacher's attacks
    steps: int = 1000  # optimiser steps in total (a resumed run continues up to this number)
    batch_size: int = 8  # photos per step and per process
    lr: float = 1e-3  # Adam learning rate at the start
    final_lr_fraction: float = 0.1  # cosine decay of the learning rate to this fraction at the last step
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # clip the gradient norm to this; 0 = no clipping
    seed: int = 0  # seeds the initial weights, the batch draws and the attack draws
    mixed_precision: str = "auto"  # auto: bf16 or fp16 on a GPU, none on a CPU; or no, fp16, bf16
    checkpoint_every: int = 100  # write the resumable checkpoint every this many steps, and at the end
    num_workers: int = 0  # data loader worker processes

    def __post_init__(self) -> None:
        problems = []
        if not self.eps_255 > 0:
            problems.append(f"eps_255 must be > 0, got {self.eps_255}")
        if self.base_channels < 1 or self.depth < 0 or self.bottleneck_blocks < 0:
            problems.append("base_channels must be >= 1, depth and bottleneck_blocks >= 0")
        if self.imitation not in IMITATION:
            problems.append(f"imitation must be one of {IMITATION}, got {self.imitation!r}")
        if min(self.imitation_weight, self.identity_weight, self.fidelity_weight) < 0:
            problems.append("loss weights must be >= 0")
        if self.identity_every < 1:
            problems.append(f"identity_every must be >= 1, got {self.identity_every}")
        if self.steps < 0 or self.batch_size < 1 or self.checkpoint_every < 1 or self.num_workers < 0:
            problems.append("steps >= 0, batch_size >= 1, checkpoint_every >= 1 and num_workers >= 0 are required")
        if not self.lr > 0 or not 0 < self.final_lr_fraction <= 1:
            problems.append("lr must be > 0 and final_lr_fraction in (0, 1]")
        if self.mixed_precision not in MIXED_PRECISION:
            problems.append(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if problems:
            raise ValueError("StudentConfig: " + "; ".join(problems))

    @property
    def stride(self) -> int:
        """The U-Net's total down-sampling factor; inputs are padded to a multiple of it."""
        return 2 ** self.depth


def config_from_dict(raw: dict, source: str = "config") -> StudentConfig:
    """A :class:`StudentConfig` from :func:`obscrowd_lib.config.config_dict` output (lists become tuples)."""
    raw = {k: v for k, v in raw.items() if k != "__class__"}
    names = {f.name for f in fields(StudentConfig)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"{source}: unknown StudentConfig field(s): {', '.join(unknown)}")
    return StudentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


# ----------------------------------------------------------------------------------------------
# The generator
# ----------------------------------------------------------------------------------------------


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.LeakyReLU(0.2, inplace=True))


class StudentNet(nn.Module):
    """Compact U-Net: (photo (B, 3, H, W) in [0, 1], mask (B, 1, H, W) in [0, 1]) → δ (B, 3, H, W).

    Encoder: a 3x3 convolution pair at full resolution, then ``depth`` levels of (stride-2 3x3,
    3x3) with channels doubling from ``base_channels``; ``bottleneck_blocks`` 3x3 convolutions at
    the coarsest level. Decoder: per level a 1x1 projection at the coarse resolution, bilinear
    up-sampling, the encoder skip added, one 3x3 convolution. Head: 3x3 to 3 channels, initialised
    to zero (the untrained student outputs δ = 0). Output: δ = (ε · tanh(raw)) · m, exactly within the
    budget and the mask. Any H, W: inputs are padded (photo replicated, mask with zeros) to a
    multiple of ``config.stride`` and δ cropped back.
    """

    def __init__(self, config: StudentConfig = StudentConfig()):
        super().__init__()
        self.config = config
        self.face_px: float | None = None  # median face side of the training images, set by load_student
        c = [config.base_channels * 2 ** i for i in range(config.depth + 1)]
        self.stem = nn.Sequential(_conv(4, c[0]), _conv(c[0], c[0]))
        self.down = nn.ModuleList(nn.Sequential(_conv(c[i], c[i + 1], 2), _conv(c[i + 1], c[i + 1]))
                                  for i in range(config.depth))
        self.bottleneck = nn.Sequential(*[_conv(c[-1], c[-1]) for _ in range(config.bottleneck_blocks)])
        self.project = nn.ModuleList(nn.Conv2d(c[i + 1], c[i], 1) for i in range(config.depth))
        self.fuse = nn.ModuleList(_conv(c[i], c[i]) for i in range(config.depth))
        self.head = nn.Conv2d(c[0], 3, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def raw(self, photo: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unbounded output g(x, m) (B, 3, H', W') on inputs already padded to a multiple of the stride."""
        h = self.stem(torch.cat([2 * photo - 1, 2 * mask - 1], 1))
        skips = [h]
        for down in self.down:
            h = down(h)
            skips.append(h)
        h = self.bottleneck(h)
        for i in reversed(range(self.config.depth)):
            h = nn.functional.interpolate(self.project[i](h), size=skips[i].shape[-2:], mode="bilinear",
                                          align_corners=False)
            h = self.fuse[i](h + skips[i])
        return self.head(h)

    def forward(self, photo: torch.Tensor, mask: torch.Tensor, eps_255: float | None = None,
                scale: float = 1.0) -> torch.Tensor:
        """δ (B, 3, H, W) with |δ| ≤ (eps_255/255)·mask exactly (``eps_255`` default: the config's).

        Args:
            photo: (B, 3, H, W) float in [0, 1].
            mask: (B, 1, H, W) or (B, H, W) soft mask in [0, 1] (the union of the face masks).
            scale: run the network on the photo resized by this factor and resize its raw output back
                (bilinear) before the tanh, so faces are seen at the size the student was trained on;
                budget and mask still hold exactly at full resolution.
        """
        if photo.dim() != 4 or photo.shape[1] != 3:
            raise ValueError(f"StudentNet: photo must be (B, 3, H, W), got {tuple(photo.shape)}")
        if mask.dim() == 3:
            mask = mask[:, None]
        if mask.shape != (photo.shape[0], 1, *photo.shape[-2:]):
            raise ValueError(f"StudentNet: mask {tuple(mask.shape)} does not match photo {tuple(photo.shape)}")
        h, w = photo.shape[-2:]
        x, m = photo, mask.to(photo.dtype)
        if scale != 1.0:
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            x = nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
            m = nn.functional.interpolate(m, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
        sh, sw = x.shape[-2:]
        s = self.config.stride
        ph, pw = (-sh) % s, (-sw) % s
        if ph or pw:
            x = nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
            m = nn.functional.pad(m, (0, pw, 0, ph))
        raw = self.raw(x, m)[..., :sh, :sw].float()
        if (sh, sw) != (h, w):
            raw = nn.functional.interpolate(raw, size=(h, w), mode="bilinear", align_corners=False,
                                            antialias=sh > h)
        eps = (self.config.eps_255 if eps_255 is None else eps_255) / 255
        return (eps * torch.tanh(raw)) * mask.float()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save to a temporary file in the same folder, then os.replace (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as f:
        tmp = Path(f.name)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # the mode a plain open() would give, not tempfile's 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _read(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such student checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle / zip errors of a damaged or foreign file
        raise ValueError(f"{path}: not a readable student checkpoint ({e})") from e
    if not isinstance(obj, dict) or "model" not in obj or "config" not in obj:
        raise ValueError(f"{path}: not a student checkpoint (needs 'model' and 'config')")
    return obj


def save_student(model: nn.Module, path: str | Path, *, step: int = 0, extra: dict | None = None) -> Path:
    """Write the shippable weights-only student file (model + config + step + ``extra``), atomically."""
    from .config import config_dict

    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    return atomic_save({"format": "obscrowd-student/1", "model": state, "config": config_dict(model.config),
                        "step": int(step), "face_px": model.face_px, **(extra or {})}, Path(path))


def load_student(path: str | Path, device: Any = "cpu") -> StudentNet:
    """The :class:`StudentNet` of a student file or training checkpoint, in eval mode on ``device``."""
    obj = _read(path)
    model = StudentNet(config_from_dict(obj["config"], str(path)))
    try:
        model.load_state_dict(obj["model"])
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not match the saved StudentConfig ({e})") from e
    model.face_px = float(obj["face_px"]) if obj.get("face_px") else None
    return model.to(device).eval()


def default_checkpoint_path() -> Path:
    """Where the installed student lives: ``$OBSCROWD_HOME/student/student.pt``."""
    from .artifacts import cache_home

    return cache_home() / "student" / STUDENT_NAME


def install_student(path: str | Path, destination: str | Path | None = None) -> Path:
    """Copy a student file to ``destination`` (default :func:`default_checkpoint_path`), atomically."""
    load_student(path)  # refuse to install something unreadable
    dst = Path(destination) if destination else default_checkpoint_path()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dst.parent, delete=False, suffix=".tmp") as f:
        tmp = Path(f.name)
    shutil.copyfile(path, tmp)
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, dst)
    return dst


def find_checkpoint(path: str | Path | None = None, run_dir: str | Path | None = None) -> Path:
    """The student file to use: ``path`` if given; else the one notebook 03 wrote in the same run
    (``<run_dir>/../03_student_distillation/student.pt``); else the installed one."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such student checkpoint")
        return p
    candidates = []
    if run_dir:
        candidates.append(Path(run_dir).parent / "03_student_distillation" / STUDENT_NAME)
    candidates.append(default_checkpoint_path())
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"no student checkpoint at {' or '.join(map(str, candidates))}: train one with "
                            "`obscrowd train-student` (or notebook 03, run by `make demo`) or pass a path")


# ----------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudentResult:
    """One forward pass of the student on one photo (photo-sized tensors on the requested device)."""

    delta: torch.Tensor  # (1, 3, H, W) protected - photo; |delta| <= eps/255 * mask, 0 where the mask is 0
    protected: torch.Tensor  # (1, 3, H, W) float in [0, 1]
    mask: torch.Tensor  # (H, W) union soft mask in [0, 1] that confined delta
    faces: tuple  # the Face records protected
    region: tuple[int, int, int, int]  # (top, left, bottom, right) region the generator ran on
    scale: float  # factor the region was resized by for the generator (1 = full resolution)
    seconds: float  # wall time of the forward pass (model already loaded)
    eps_255: float  # budget used for the output, /255 units
    checkpoint: str  # file the weights came from ("" for an in-memory model)

    @property
    def budget_used_255(self) -> float:
        """Largest |delta| in /255 units."""
        return float(self.delta.abs().max()) * 255


def protect_student(photo: Any, faces: Any = None, *, checkpoint: str | Path | None = None, device: Any = "cpu",
                    mask: Any = None, eps_255: float | None = None, model: StudentNet | None = None,
                    context: float = 0.75, rescale: bool = True) -> StudentResult:
    """Obscrowd's student: one forward pass predicts the perturbation protecting every face of ``photo``.

    Args:
        photo: (1, 3, H, W) or (3, H, W) float in [0, 1], or (H, W, 3) uint8.
        faces: list of :class:`~obscrowd_lib.faces.Face`; ``None`` runs :func:`obscrowd_lib.faces.detect_faces`.
        checkpoint: student file (see :func:`find_checkpoint`; ``None``: the installed one).
        device: torch device.
        mask: (H, W) union soft mask in [0, 1]; default :func:`obscrowd_lib.masks.face_masks` of the faces.
        eps_255: budget of the output in /255 (default: the one the student was trained with); the
            tanh output is rescaled, so any budget holds exactly.
        model: an already loaded :class:`StudentNet` (then ``checkpoint`` is ignored).
        context: the generator runs on the faces' region, each face box grown by this fraction of
            its side (:func:`obscrowd_lib.teacher.work_region`): cost follows the faces, not the photo.
        rescale: when the student file records the median face side of its training images
            (``face_px``), run the generator on the region resized so the median face has that side
            (factor clamped to [1/8, 4]): the student sees faces at the scale it learned.
    Returns:
        :class:`StudentResult`; ``protected = clamp(photo + δ, 0, 1)`` and ``delta = protected - photo``.
    """
    from .teacher import as_photo, faces_and_mask, work_region

    device = torch.device(device)
    x = as_photo(photo, device)
    faces, m = faces_and_mask(x, faces, mask)
    src = ""
    if model is None:
        src = str(find_checkpoint(checkpoint))
        model = load_student(src, device)
    eps_255 = model.config.eps_255 if eps_255 is None else float(eps_255)
    t0 = time.perf_counter()
    top, left, bottom, right = work_region(m, faces, context)
    scale = 1.0
    if rescale and model.face_px:
        side = float(np.median([max(f.box[2] - f.box[0], f.box[3] - f.box[1]) for f in faces]))
        scale = min(4.0, max(0.125, model.face_px / max(side, 1.0)))
    with torch.no_grad():
        d = model(x[..., top:bottom, left:right], m[None, None, top:bottom, left:right], eps_255=eps_255,
                  scale=scale)
        delta = torch.zeros_like(x)
        delta[..., top:bottom, left:right] = d.to(x.dtype)
        protected = (x + delta).clamp(0, 1)
    seconds = time.perf_counter() - t0
    return StudentResult(delta=protected - x, protected=protected, mask=m, faces=faces,
                         region=(top, left, bottom, right), scale=scale, seconds=seconds, eps_255=eps_255,
                         checkpoint=src)


def predict_delta(photo: torch.Tensor, faces: Sequence[Any], mask: Any, *, eps_255: float | None = None,
                  path: str | Path | None = None, device: Any = "cpu") -> torch.Tensor:
    """δ (1, 3, H, W) of :func:`protect_student` (the call :mod:`obscrowd_lib.protect` makes)."""
    return protect_student(photo, faces, checkpoint=path, device=device, mask=mask, eps_255=eps_255).delta


# ----------------------------------------------------------------------------------------------
# The distillation loss
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossValue:
    """One evaluation of :func:`distillation_loss` (everything but ``loss`` detached)."""

    loss: torch.Tensor  # scalar to minimise (carries the graph)
    imitation: float  # the imitation term (budget units)
    identity: float  # the teacher objective, mean over the batch (nan when not computed this step)
    fidelity: float  # the fidelity term (budget units)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ m·v / (C·Σ m) per batch, averaged: the mean of (B, C, H, W) ``values`` inside (B, 1, H, W) ``mask``."""
    num = (values * mask).sum(dim=(1, 2, 3))
    den = mask.sum(dim=(1, 2, 3)).clamp_min(1e-6) * values.shape[1]
    return (num / den).mean()


def distillation_loss(delta: torch.Tensor, photo: torch.Tensor, mask: torch.Tensor, teacher_delta: torch.Tensor,
                      config: StudentConfig, *, landmarks: Sequence[torch.Tensor] | None = None,
                      models: Any = None, teacher_config: Any = None, references: Sequence[Any] | None = None,
                      seed: int = 0, identity: bool = True) -> LossValue:
    """The student's distillation loss (module docstring) on one batch.

    Args:
        delta: (B, 3, H, W) the student's perturbation (carries the graph).
        photo: (B, 3, H, W) clean photos in [0, 1].
        mask: (B, 1, H, W) union soft masks in [0, 1].
        teacher_delta: (B, 3, H, W) the teacher's perturbations.
        config: loss weights and budget.
        landmarks: per photo an (N_b, 5, 2) tensor of face landmarks (needed by the identity term).
        models: :class:`~obscrowd_lib.teacher.TeacherModels` of the identity term (``None``: term off).
        teacher_config: the :class:`~obscrowd_lib.teacher.TeacherConfig` of the identity term.
        references: per photo its :class:`~obscrowd_lib.teacher.Reference` (clean embeddings); made
            here when not given.
        seed: seeds this call's attack draws and input diversity (e.g. derived from the step).
        identity: compute the identity term (when its weight is > 0 and ``models`` is given).
    """
    from .attacks import AttackSampler, subseed
    from .teacher import make_reference, teacher_objective

    eps = config.eps_255 / 255
    err = (delta - teacher_delta) / eps
    err = err.abs() if config.imitation == "l1" else err.pow(2)
    imitation = _masked_mean(err, mask)
    fidelity = _masked_mean((delta / eps).pow(2), mask)
    loss = config.imitation_weight * imitation + config.fidelity_weight * fidelity
    id_value = float("nan")
    if identity and models is not None and config.identity_weight > 0:
        if landmarks is None or teacher_config is None:
            raise ValueError("distillation_loss: the identity term needs landmarks and teacher_config")
        terms = []
        for b in range(delta.shape[0]):
            lm = landmarks[b].to(photo.device)
            if lm.shape[0] == 0:
                continue
            ref = references[b] if references is not None else make_reference(photo[b:b + 1], lm, models)
            sampler = AttackSampler(list(models.attacks), models.attack_weights, seed=subseed(seed, 2 * b))
            gen = torch.Generator(device="cpu").manual_seed(subseed(seed, 2 * b + 1))
            protected = (photo[b:b + 1] + delta[b:b + 1]).clamp(0, 1)
            terms.append(teacher_objective(protected, ref, models, teacher_config, sampler=sampler,
                                           generator=gen).loss)
        if terms:
            ident = torch.stack(terms).mean()
            loss = loss + config.identity_weight * ident
            id_value = float(ident.detach())
    return LossValue(loss=loss, imitation=float(imitation.detach()), identity=id_value,
                     fidelity=float(fidelity.detach()))


def identity_models(config: StudentConfig, teacher_config: Any, device: Any = "cpu") -> tuple[Any, Any]:
    """(TeacherModels, TeacherConfig) of the identity term: the target teacher's config with the
    student config's ``ensemble`` / ``attacks`` overrides; (None, config) when the term is off."""
    from .teacher import load_teacher_models

    over = {}
    if config.ensemble:
        over.update(ensemble=tuple(config.ensemble), ensemble_weights=())
    if config.attacks:
        over.update(attacks=tuple(config.attacks), attack_weights=())
    tcfg = replace(teacher_config, **over)
    if config.identity_weight <= 0:
        return None, tcfg
    return load_teacher_models(tcfg, device), tcfg


# ----------------------------------------------------------------------------------------------
# Training with accelerate
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train_student` (on every process; files written by the main process)."""

    output_dir: Path  # folder holding checkpoint.pt, student.pt, student_config.json, history.json
    student: Path  # the shippable weights-only file
    checkpoint: Path  # the resumable training checkpoint
    steps: int  # total steps done (including those of a resumed run)
    resumed_from: int  # step the run resumed from (0 for a fresh run)
    history: tuple[dict, ...]  # one record per step: loss terms, learning rate, seconds
    seconds: float  # wall time of this call's training loop
    parameters: int  # number of generator parameters
    num_processes: int  # accelerate processes that trained


def _mixed_precision(setting: str, cpu: bool) -> str:
    if setting != "auto":
        return setting
    if cpu or not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def step_indices(n: int, batch_size: int, seed: int, step: int, process_index: int = 0,
                 num_processes: int = 1) -> list[int]:
    """Dataset indices of one process's batch at ``step``: a function of (seed, step) only, so a
    resumed run draws exactly the batches an uninterrupted one would; processes get disjoint slices
    of one permutation-based draw of ``batch_size * num_processes`` items."""
    if n < 1:
        raise ValueError("step_indices: the dataset is empty")
    from .attacks import subseed

    g = torch.Generator().manual_seed(subseed(seed, step))
    total = batch_size * num_processes
    reps = -(-total // n)
    order = torch.cat([torch.randperm(n, generator=g) for _ in range(reps)])[:total]
    return order[process_index * batch_size:(process_index + 1) * batch_size].tolist()


class _StepBatches(torch.utils.data.Sampler):
    """Batch sampler yielding :func:`step_indices` for steps ``start`` .. ``stop - 1``."""

    def __init__(self, n: int, config: StudentConfig, start: int, stop: int, process_index: int, num_processes: int):
        self.args = (n, config.batch_size, config.seed)
        self.start, self.stop, self.rank, self.world = start, stop, process_index, num_processes

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        for t in range(self.start, self.stop):
            yield step_indices(*self.args, t, self.rank, self.world)


def _check_resume(saved: StudentConfig, config: StudentConfig, path: Path) -> None:
    diff = [f.name for f in fields(StudentConfig)
            if f.name not in RESUMABLE_CHANGES and getattr(saved, f.name) != getattr(config, f.name)]
    if diff:
        raise ValueError(f"{path}: cannot resume, the checkpoint was trained with different "
                         f"{', '.join(diff)}; use another output folder or resume=False")


def _lr_lambda(config: StudentConfig) -> Callable[[int], float]:
    def f(step: int) -> float:
        frac = min(1.0, step / max(1, config.steps - 1))
        lo = config.final_lr_fraction
        return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * frac))
    return f


def _accelerator_class():
    """``accelerate.Accelerator``, or an ImportError saying how to install it (the ``scale`` extra)."""
    try:
        from accelerate import Accelerator
    except ImportError as e:
        raise ImportError("training the student needs Hugging Face accelerate: pip install 'obscrowd[scale]' "
                          "(or pip install accelerate)") from e
    return Accelerator


def train_student(targets: str | Path, output_dir: str | Path, *, config: StudentConfig = StudentConfig(),
                  resume: bool = True, cpu: bool = False, progress: bool = True,
                  callback: Callable[[dict], None] | None = None, accelerator: Any = None,
                  stop_at: int | None = None) -> TrainResult:
    """Distil the teacher into a :class:`StudentNet` with Hugging Face accelerate.

    Args:
        targets: a teacher-target folder of :func:`obscrowd_lib.distill_data.build_targets`.
        output_dir: where ``checkpoint.pt`` (resumable), ``student.pt`` (shippable), ``student_config.json``
            and ``history.json`` go.
        config: the :class:`StudentConfig`; its budget must match the targets'.
        resume: continue from ``output_dir/checkpoint.pt`` when it exists (its config must match
            except for the fields in ``RESUMABLE_CHANGES``).
        cpu: force the CPU even when a GPU is visible (``Accelerator(cpu=True)``).
        progress: progress bar on the main process (also off when OBSCROWD_PROGRESS=0).
        callback: called on the main process after every step with that step's history record.
        accelerator: an existing ``accelerate.Accelerator`` (default: one made from ``cpu`` and
            ``config.mixed_precision``).
        stop_at: stop this call after this step (checkpoint written; a later call resumes): a
            time-boxed part of a ``config.steps`` run, with the learning-rate schedule of the whole run.
    Returns:
        :class:`TrainResult`.

    Launch on several processes with ``accelerate launch scripts/train_student.py ...``: every
    process draws its own slice of each step's batch, gradients are averaged by accelerate.
    """
    Accelerator = _accelerator_class()
    from tqdm.auto import tqdm

    from .attacks import subseed
    from .config import config_dict, save_config
    from .distill_data import TargetDataset, collate
    from .runner import write_json
    from .teacher import make_reference

    output_dir = Path(output_dir)
    acc = accelerator or Accelerator(cpu=cpu, mixed_precision=_mixed_precision(config.mixed_precision, cpu))
    dataset = TargetDataset(targets)
    if abs(dataset.eps_255 - config.eps_255) > 1e-9:
        raise ValueError(f"{targets}: teacher targets were made at eps {dataset.eps_255}/255 but the student "
                         f"config says {config.eps_255}/255")
    ckpt_path = output_dir / CHECKPOINT_NAME
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, the caller's RNG left alone
        torch.manual_seed(config.seed)
        model = StudentNet(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
    start, history = 0, []
    if resume and ckpt_path.is_file():
        state = _read(ckpt_path)
        _check_resume(config_from_dict(state["config"], str(ckpt_path)), config, ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, history = int(state["step"]), list(state.get("history", []))
    resumed_from = start
    stop = config.steps if stop_at is None else max(start, min(config.steps, int(stop_at)))
    model, optimizer = acc.prepare(model, optimizer)
    models, tcfg = identity_models(config, dataset.teacher_config, acc.device)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=_StepBatches(len(dataset), config, start, stop, acc.process_index,
                                            acc.num_processes),
        collate_fn=collate, num_workers=config.num_workers)
    references: dict[int, Any] = {}

    def save(step: int) -> None:
        acc.wait_for_everyone()
        if acc.is_main_process:
            atomic_save({"format": "obscrowd-student-checkpoint/1", "model": {
                k: v.detach().float().cpu() for k, v in acc.unwrap_model(model).state_dict().items()},
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                "config": config_dict(config), "targets": str(targets), "history": history}, ckpt_path)
        acc.wait_for_everyone()

    show = progress and os.environ.get("OBSCROWD_PROGRESS", "1") != "0" and acc.is_local_main_process
    bar = tqdm(total=config.steps, initial=start, desc="student", disable=not show)
    t0 = time.perf_counter()
    step = start
    model.train()
    try:
        for batch in loader:
            photo, mask, tdelta = (batch[k].to(acc.device) for k in ("photo", "mask", "delta"))
            with acc.autocast():
                delta = model(photo, mask)
            want_id = models is not None and step % config.identity_every == 0
            refs = None
            if want_id:
                for i, lm in zip(batch["index"], batch["landmarks"]):
                    if i not in references and len(lm):
                        references[i] = make_reference(dataset.photo(i).to(acc.device)[None], lm.to(acc.device),
                                                       models)
                refs = [references.get(i) for i in batch["index"]]
            val = distillation_loss(delta, photo, mask, tdelta, config, landmarks=batch["landmarks"], models=models,
                                    teacher_config=tcfg, references=refs,
                                    seed=subseed(config.seed, 1_000_003 * step + acc.process_index),
                                    identity=want_id)
            acc.backward(val.loss)
            if config.grad_clip > 0:
                acc.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            terms = torch.tensor([float(val.loss.detach()), val.imitation, val.identity, val.fidelity],
                                 device=acc.device)
            terms = acc.reduce(terms, reduction="mean") if acc.num_processes > 1 else terms
            rec = {"step": step, "loss": float(terms[0]), "imitation": float(terms[1]),
                   "identity": float(terms[2]), "fidelity": float(terms[3]),
                   "lr": float(scheduler.get_last_lr()[0]), "seconds": round(time.perf_counter() - t0, 3)}
            history.append(rec)
            if acc.is_main_process and callback is not None:
                callback(rec)
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.4f}", imit=f"{rec['imitation']:.3f}")
            if step % config.checkpoint_every == 0 and step < stop:
                save(step)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    save(step)
    net = acc.unwrap_model(model)
    student = output_dir / STUDENT_NAME
    if acc.is_main_process:
        net.face_px = dataset.face_px
        save_student(net, student, step=step, extra={"targets": str(targets), "targets_key": dataset.key})
        save_config(config, output_dir / "student_config.json")
        write_json(output_dir / "history.json", history)
    acc.wait_for_everyone()
    return TrainResult(output_dir=output_dir, student=student, checkpoint=ckpt_path, steps=step,
                       resumed_from=resumed_from, history=tuple(history), seconds=seconds,
                       parameters=count_parameters(net), num_processes=acc.num_processes)


# ----------------------------------------------------------------------------------------------
# Command line (scripts/train_student.py and `obscrowd train-student`)
# ----------------------------------------------------------------------------------------------


def add_train_arguments(parser: Any) -> None:
    """Options of ``obscrowd train-student`` / ``scripts/train_student.py`` (StudentConfig fields
    and the target-set options of :class:`obscrowd_lib.distill_data.TargetConfig`)."""
    parser.add_argument("--output-dir", required=True, help="folder for checkpoint.pt, student.pt, student_config.json")
    parser.add_argument("--targets", help="an existing teacher-target folder (skips building one)")
    parser.add_argument("--targets-root", help="where target sets are cached (default $OBSCROWD_HOME/student_targets)")
    parser.add_argument("--targets-only", action="store_true", help="build (or resume) the teacher targets and stop")
    parser.add_argument("--config", help="a StudentConfig JSON (e.g. student_config.json of an earlier run); "
                        "flags override it")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is visible")
    parser.add_argument("--no-resume", action="store_true", help="start over even if output-dir has a checkpoint")
    parser.add_argument("--install", action="store_true", help="copy student.pt to the default student location")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for f in fields(StudentConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name in ("ensemble", "attacks"):
            parser.add_argument(flag, nargs="*", default=None, help=f"StudentConfig.{f.name}")
        else:
            parser.add_argument(flag, type=type(f.default), default=None, help=f"StudentConfig.{f.name}")
    from .distill_data import add_target_arguments

    add_target_arguments(parser)


def config_from_args(args: Any) -> StudentConfig:
    """The :class:`StudentConfig` of parsed arguments: ``--config`` file, then the per-field flags."""
    from .config import load_config

    base = load_config(StudentConfig, args.config) if getattr(args, "config", None) else StudentConfig()
    over = {}
    for f in fields(StudentConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            over[f.name] = tuple(v) if isinstance(v, list) else v
    return replace(base, **over)


def train_from_args(args: Any) -> int:
    """Run ``obscrowd train-student``: build or resume the teacher targets, then train (all processes)."""
    Accelerator = _accelerator_class()

    from .distill_data import build_targets, target_config_from_args, teacher_config_from_args

    config = config_from_args(args)
    acc = Accelerator(cpu=args.cpu, mixed_precision=_mixed_precision(config.mixed_precision, args.cpu))
    if args.targets:
        targets = Path(args.targets)
    else:
        tc, teacher = target_config_from_args(args), teacher_config_from_args(args, eps_255=config.eps_255)
        if acc.is_main_process:  # detect faces on every source photo once, then share the teacher runs
            build_targets(tc, teacher, root=args.targets_root, device=acc.device, plan_only=True)
        acc.wait_for_everyone()
        targets = build_targets(tc, teacher, root=args.targets_root, device=acc.device, progress=not args.quiet,
                                process_index=acc.process_index, num_processes=acc.num_processes)
        acc.wait_for_everyone()
    if acc.is_main_process:
        print(f"teacher targets: {targets}")
    if args.targets_only:
        return 0
    result = train_student(targets, args.output_dir, config=config, resume=not args.no_resume, cpu=args.cpu,
                           progress=not args.quiet, accelerator=acc)
    if acc.is_main_process:
        last = result.history[-1] if result.history else {}
        print(f"student: {result.student} ({result.parameters} parameters, {result.steps} steps, "
              f"{result.num_processes} process(es), last loss {last.get('loss', float('nan')):.4f})")
        if args.install:
            print(f"installed: {install_student(result.student)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/train_student.py`` (also under ``accelerate launch``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="train_student", description="Distil the Obscrowd teacher into the "
                                     "student generator (teacher targets cached by config hash, then accelerate).")
    add_train_arguments(parser)
    return train_from_args(parser.parse_args(argv))


__all__ = ["StudentConfig", "StudentNet", "StudentResult", "LossValue", "TrainResult", "protect_student",
           "predict_delta", "distillation_loss", "identity_models", "train_student", "load_student", "save_student",
           "install_student", "find_checkpoint", "atomic_save", "default_checkpoint_path", "count_parameters",
           "step_indices",
           "config_from_dict", "add_train_arguments", "config_from_args", "train_from_args", "main"]
