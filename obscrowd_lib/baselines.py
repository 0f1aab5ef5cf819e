"""Baselines: the protections Obscrowd is compared with, run through the same harness at matched L∞ budgets.

One entry point, :func:`protect_baseline` (name, photo, faces) → :class:`BaselineResult`. Photos are
(1, 3, H, W) float RGB in [0, 1]; budgets are in /255 units; every budgeted baseline ends with
|protected − photo| ≤ ε exactly (and protected ∈ [0, 1]).

=======================  ==========================================================================
name                     what it does (source: ``../shared/RESEARCH.md``, *Baselines, as their code runs*)
=======================  ==========================================================================
``none``                 no defence (protected = photo)
``blur``                 classical anonymisation: Gaussian blur of every face box (no budget)
``pixelate``             classical anonymisation: pixelation of every face box (no budget)
``facelock``             FaceLock (Wang et al., CVPR 2025): L∞ sign-PGD through a reconstruction R
                         (SD VAE encode → decode; **without an SD VAE: the waifu2x regeneration**),
                         ascending −cos(FR(R(x+δ)), FR(x)) (on after 35 % of the steps)
                         + 0.2 ‖E(x+δ) − E(x)‖² (VAE only) + LPIPS-vgg(R(x+δ), x) (on after 25 %);
                         our FR ensemble (mean cosine over models and faces) replaces the gated CVLFace model
``photoguard``           PhotoGuard encoder attack: sign-PGD pulling the SD VAE latent E(x+δ) to a
                         target (zero, FaceLock's default; or a mid-grey image's latent) — needs an SD VAE
``untargeted-encoder``   EditShield-like untargeted encoder attack: sign-PGD maximising
                         ‖E(x+δ) − E(x)‖² — needs an SD VAE
``cw-l2``                Carlini–Wagner L2 on the encoder: x' = (tanh w + 1)/2, Adam (lr 0.03) on
                         ‖x' − x‖² + c ‖E(x')‖ (c 0.03), then δ clipped to the budget — needs an SD VAE
``vae-attack``           VAE attack: sign-PGD minimising the norm of the VAE output D(E(x+δ)) — needs an SD VAE
``per-face``             per-face independent protection (Fawkes-style design): Obscrowd's teacher run on
                         each face alone with that face's soft mask, patches pasted together
                         (each pixel from the face whose mask is largest there)
=======================  ==========================================================================

The four VAE baselines need Stable Diffusion's VAE, which no package reachable here ships: register
one (``obscrowd models register sd-vae FOLDER``) to run them; the tests run them with a tiny randomly
initialised ``diffusers.AutoencoderKL``. Their PGD settings follow FaceLock's ``methods.py`` (which
holds these baselines too): random uniform start, step ε/3 decaying linearly to 1/100 of itself,
100 iterations. Inputs of the VAE are mapped to [−1, 1] (FaceLock's CW script feeds [0, 1] images to
the encoder; we do not copy that slip). CW starts, as FaceLock's script does, from a grey image (w = 0),
so with few iterations x' is still far from x and the clipped δ sits at ±ε almost everywhere.

The teacher's building blocks are reused where the baseline does the same thing: the FR ensemble and
clean references (:func:`obscrowd_lib.teacher.load_teacher_models`, :func:`~obscrowd_lib.teacher.make_reference`),
the projection onto the budget (:func:`~obscrowd_lib.teacher.project`), the VAE latent
(:func:`~obscrowd_lib.teacher.vae_latent`) and, for ``per-face``, the teacher itself.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch

BASELINES = ("none", "blur", "pixelate", "facelock", "photoguard", "untargeted-encoder", "cw-l2", "vae-attack",
             "per-face")  # every baseline name protect_baseline knows
NEEDS_VAE = ("photoguard", "untargeted-encoder", "cw-l2", "vae-attack")  # baselines that need an SD VAE
UNBUDGETED = ("blur", "pixelate")  # classical anonymisation: no L-inf budget
DEFAULT_STEPS = {"facelock": 100, "photoguard": 100, "untargeted-encoder": 100, "cw-l2": 100,
                 "vae-attack": 100}  # FaceLock's iterations; per-face uses the teacher config's steps


@dataclass(frozen=True)
class BaselineConfig:
    """Settings of the baselines (defaults: FaceLock's ``methods.py`` / ``defend.py`` where it has one)."""

    step_fraction: float = 1 / 3  # first sign-PGD step as a fraction of eps (FaceLock: 0.01 for eps 0.03)
    final_step_fraction: float = 0.01  # step decays linearly to this fraction of the first (FaceLock: /100)
    random_start: bool = True  # start uniformly inside the budget (FaceLock's code)
    facelock_fr_after: float = 0.35  # FaceLock: FR term switched on after this fraction of the steps
    facelock_lpips_after: float = 0.25  # FaceLock: LPIPS-vgg term switched on after this fraction
    facelock_latent_weight: float = 0.2  # FaceLock: weight of the latent MSE term (VAE reconstruction only)
    facelock_regenerator: str = "regen-waifu2x-photo-diff"  # FaceLock's reconstruction when no SD VAE is present
    ensemble: tuple[str, ...] = ()  # FR models of FaceLock's FR term; empty = the teacher's training ensemble
    encoder_target: str = "zero"  # PhotoGuard target: "zero" latent (FaceLock's default) or "grey" image latent
    cw_c: float = 0.03  # CW-L2: weight c of the encoder term (FaceLock's defend.py)
    cw_lr: float = 0.03  # CW-L2: Adam learning rate (FaceLock's defend.py)
    box_margin: float = 0.1  # blur / pixelate: face box grown by this fraction of its side on each side
    blur_sigma_fraction: float = 0.1  # blur: Gaussian sigma as a fraction of the grown box side
    pixel_blocks: int = 8  # pixelate: blocks across the grown face box (its long side)

    def __post_init__(self) -> None:
        if not 0 < self.step_fraction <= 1 or not 0 < self.final_step_fraction <= 1:
            raise ValueError("BaselineConfig: step_fraction and final_step_fraction must be in (0, 1]")
        if self.encoder_target not in ("zero", "grey"):
            raise ValueError(f"BaselineConfig: encoder_target must be 'zero' or 'grey', got {self.encoder_target!r}")
        if self.pixel_blocks < 1 or self.blur_sigma_fraction <= 0 or self.box_margin < 0:
            raise ValueError("BaselineConfig: pixel_blocks >= 1, blur_sigma_fraction > 0, box_margin >= 0")


@dataclass(frozen=True)
class BaselineResult:
    """A baseline's protected photo (tensors on the requested device)."""

    name: str  # baseline name (see BASELINES)
    protected: torch.Tensor  # (1, 3, H, W) float in [0, 1]
    delta: torch.Tensor  # (1, 3, H, W) protected - photo
    eps_255: float | None  # L-inf budget in /255 (None: not budget-bound, blur / pixelate)
    steps: int  # optimisation steps taken (0 for the non-iterative ones)
    seconds: float  # wall time (models already loaded)
    history: tuple[dict, ...] = ()  # per step: objective terms
    notes: str = ""  # what was run in place of what (e.g. waifu2x instead of the SD VAE)
    extra: dict = field(default_factory=dict)  # baseline-specific figures (per-face times, ...)

    @property
    def budget_used_255(self) -> float:
        """Largest |delta| in /255 units."""
        return float(self.delta.abs().max()) * 255

    def summary(self) -> dict:
        """JSON-ready summary (no tensors)."""
        return {"name": self.name, "eps_255": self.eps_255, "budget_used_255": round(self.budget_used_255, 4),
                "steps": self.steps, "seconds": round(self.seconds, 3), "notes": self.notes,
                **{k: v for k, v in self.extra.items() if isinstance(v, (int, float, str, list, dict))}}


@dataclass(frozen=True)
class BaselineModels:
    """Models the baselines load, loaded once (:func:`load_baseline_models`) and shared across photos and calls."""

    teacher: Any  # teacher.TeacherModels: the FR ensemble and thresholds (FaceLock's FR term, per-face, teacher)
    lpips_vgg: Any = None  # LPIPS-vgg metric module (FaceLock's perceptual term)
    regenerator: Any = None  # FaceLock's reconstruction when no SD VAE is present (config.facelock_regenerator)
    vae: Any = None  # SD VAE (diffusers AutoencoderKL) when given or registered


def load_baseline_models(config: BaselineConfig = BaselineConfig(), *, teacher_config: Any = None,
                         teacher_models: Any = None, vae: Any = None, device: Any = "cpu") -> BaselineModels:
    """Load what :func:`protect_method` needs for every method: the teacher's models (``teacher_models`` if
    given, else loaded for ``teacher_config``, default a :class:`~obscrowd_lib.teacher.TeacherConfig` with
    ``config.ensemble``), LPIPS-vgg, FaceLock's regenerator and the SD VAE when one is given or registered."""
    from . import attacks, zoo
    from .teacher import TeacherConfig, load_teacher_models

    if teacher_models is None:
        tcfg = teacher_config or TeacherConfig(**({"ensemble": config.ensemble} if config.ensemble else {}))
        teacher_models = load_teacher_models(tcfg, device)
    vae = _vae(vae, device, False, "facelock")
    return BaselineModels(teacher=teacher_models, lpips_vgg=zoo.load_model("lpips-vgg", device=device),
                          regenerator=None if vae is not None else attacks.make_attack(config.facelock_regenerator,
                                                                                       device=device),
                          vae=vae)


def _split_models(models: Any) -> tuple[Any, BaselineModels | None]:
    """(teacher models or None, BaselineModels or None) from what a caller passed as ``models``."""
    if isinstance(models, BaselineModels):
        return models.teacher, models
    return models, None


# ----------------------------------------------------------------------------------------------
# Inputs and shared loops
# ----------------------------------------------------------------------------------------------


def _photo(photo: Any, device: Any) -> torch.Tensor:
    """(1, 3, H, W) float32 in [0, 1] on ``device`` from a tensor (3, H, W)/(1, 3, H, W) or an (H, W, 3) uint8 array."""
    from .attacks import check_photo

    if isinstance(photo, np.ndarray):
        if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
            raise ValueError(f"photo array must be (H, W, 3) uint8 RGB, got shape {photo.shape} dtype {photo.dtype}")
        photo = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1).float() / 255
    if isinstance(photo, torch.Tensor) and photo.dim() == 3:
        photo = photo[None]
    photo = check_photo(photo, "baseline")
    if photo.shape[0] != 1:
        raise ValueError(f"baseline: one photo at a time, got a batch of {photo.shape[0]}")
    return photo.detach().to(device=device, dtype=torch.float32).clamp(0, 1)


def _faces(photo: torch.Tensor, faces: Any) -> tuple:
    if faces is None:
        from .faces import detect_faces

        faces = detect_faces((photo[0].permute(1, 2, 0) * 255).round().byte().cpu().numpy())
    faces = tuple(faces)
    if not faces:
        raise ValueError("baseline: no faces to protect (the detector found none, or an empty list was given)")
    return faces


def _progress_enabled(progress: bool) -> bool:
    return bool(progress) and os.environ.get("OBSCROWD_PROGRESS", "1") != "0"


def _step(t: int, steps: int, eps: float, config: BaselineConfig) -> float:
    """FaceLock's schedule: α_t = α_0 − (α_0 − α_0 · final) t / T, α_0 = step_fraction · ε."""
    a0 = config.step_fraction * eps
    return a0 - (a0 - a0 * config.final_step_fraction) * t / max(1, steps)


def pgd_linf(clean: torch.Tensor, objective: Callable[[torch.Tensor, int], tuple[torch.Tensor, dict]], *,
             eps_255: float, steps: int, config: BaselineConfig, seed: int = 0, progress: bool = True,
             desc: str = "baseline") -> tuple[torch.Tensor, list[dict]]:
    """L∞ sign-gradient ASCENT of ``objective`` (FaceLock's loop, shared by the PGD baselines).

    x_0 = x + U(−ε, ε) (when ``config.random_start``); x_{t+1} = Π(x_t + α_t sign ∇ objective(x_t, t)),
    Π = projection onto |x' − x|∞ ≤ ε and [0, 1] (:func:`obscrowd_lib.teacher.project` with a mask of
    ones); α_t from :func:`_step`.

    Args:
        clean: (1, 3, H, W) float in [0, 1].
        objective: ``(x_adv, t) -> (scalar to ascend, {term: float})``.
    Returns:
        (protected (1, 3, H, W) in [0, 1] with |protected − clean| ≤ ε, history).
    """
    from tqdm.auto import tqdm

    from .teacher import project

    eps = eps_255 / 255
    ones = torch.ones_like(clean[:, :1])
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    delta = torch.zeros_like(clean)
    if config.random_start:
        delta = ((2 * torch.rand(clean.shape, generator=gen) - 1) * eps).to(clean.device)
    delta = project(delta, clean, ones, eps)
    history = []
    for t in tqdm(range(steps), desc=desc, disable=not _progress_enabled(progress), leave=False):
        delta.requires_grad_(True)
        value, info = objective(clean + delta, t)
        (grad,) = torch.autograd.grad(value, delta)
        with torch.no_grad():
            delta = project(delta.detach() + _step(t, steps, eps, config) * grad.sign(), clean, ones, eps)
        history.append({"step": t, "objective": float(value.detach()), **info})
    return (clean + delta).detach().clamp(0, 1), history


def _vae_decode(vae: Any, z: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """SD VAE decoder: latent → (1, 3, h, w) in [−1, 1] (clipped), cropped to ``size``."""
    y = vae.decode(z).sample.clamp(-1, 1)
    return y[..., :size[0], :size[1]].float()


def _vae(vae: Any, device: Any, required: bool, name: str) -> Any:
    """The SD VAE to use: ``vae`` if given, else the registered ``sd-vae`` when present, else None
    (or :class:`~obscrowd_lib.zoo.ModelNotAvailable` when ``required``)."""
    from . import attacks, zoo

    if vae is not None:
        return vae
    if zoo.is_available("sd-vae") or required:
        try:
            return attacks.load_vae(device)
        except zoo.ModelNotAvailable as e:
            raise zoo.ModelNotAvailable(f"baseline {name!r} needs a Stable Diffusion VAE: {e}") from e
    return None


def _teacher_models(config: BaselineConfig, device: Any, models: Any) -> Any:
    """The teacher's loaded FR ensemble (and thresholds): ``models`` if given, else loaded for ``config.ensemble``."""
    if models is not None:
        return models
    from .teacher import TeacherConfig, load_teacher_models

    return load_teacher_models(TeacherConfig(ensemble=config.ensemble, attacks=("identity",),
                                             diffusion_guidance="off"), device)


def _landmarks(faces: Sequence, device: Any) -> torch.Tensor:
    return torch.as_tensor(np.stack([np.asarray(f.landmarks, dtype=np.float32) for f in faces]), device=device)


# ----------------------------------------------------------------------------------------------
# The baselines
# ----------------------------------------------------------------------------------------------


def _grown_box(face: Any, margin: float, h: int, w: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (float(v) for v in face.box)
    g = margin * max(x1 - x0, y1 - y0)
    return (max(0, int(math.floor(x0 - g))), max(0, int(math.floor(y0 - g))),
            min(w, int(math.ceil(x1 + g))), min(h, int(math.ceil(y1 + g))))


def anonymise_boxes(photo: torch.Tensor, faces: Sequence, mode: str, config: BaselineConfig = BaselineConfig()
                    ) -> torch.Tensor:
    """Classical anonymisation of every face box (grown by ``config.box_margin``): ``"blur"`` (Gaussian, σ =
    ``blur_sigma_fraction`` × box side, OpenCV, mirrored border) or ``"pixelate"`` (area-average into
    ``pixel_blocks`` blocks across the box, nearest-neighbour back). (1, 3, H, W) in [0, 1] → same."""
    import cv2

    if mode not in ("blur", "pixelate"):
        raise ValueError(f"anonymise_boxes: mode must be 'blur' or 'pixelate', got {mode!r}")
    img = photo[0].permute(1, 2, 0).detach().cpu().numpy().astype(np.float32)
    out = img.copy()
    h, w = img.shape[:2]
    for f in faces:
        x0, y0, x1, y1 = _grown_box(f, config.box_margin, h, w)
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        side = max(x1 - x0, y1 - y0)
        if mode == "blur":
            sigma = config.blur_sigma_fraction * side
            out[y0:y1, x0:x1] = cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)[y0:y1, x0:x1]
        else:
            block = side / config.pixel_blocks
            bw, bh = max(1, round((x1 - x0) / block)), max(1, round((y1 - y0) / block))
            small = cv2.resize(img[y0:y1, x0:x1], (bw, bh), interpolation=cv2.INTER_AREA)
            out[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    return torch.from_numpy(out).permute(2, 0, 1)[None].to(photo.device).clamp(0, 1)


def facelock(photo: torch.Tensor, faces: Sequence, *, eps_255: float, steps: int, config: BaselineConfig,
             device: Any, seed: int, vae: Any = None, models: Any = None, progress: bool = True
             ) -> tuple[torch.Tensor, list[dict], str]:
    """FaceLock (see the module table). Returns (protected, history, notes).

    Reconstruction R: SD VAE encode → decode when a VAE is given or registered, else
    ``config.facelock_regenerator`` (waifu2x photo ×2 after a ½ downscale, differentiable), whose
    output has no latent, so the latent term is dropped. FR term: mean over the ensemble's models and
    over all faces of cos(FR(R(x+δ)), FR(x)) (FaceLock aligns one face; we score every face)."""
    from . import attacks, zoo
    from .teacher import vae_latent, make_reference

    models, loaded = _split_models(models)
    vae = _vae(vae if vae is not None else (loaded.vae if loaded else None), device, False, "facelock")
    models = _teacher_models(config, device, models)
    ref = make_reference(photo, _landmarks(faces, device), models)
    lpips_vgg = loaded.lpips_vgg if loaded and loaded.lpips_vgg is not None else zoo.load_model("lpips-vgg",
                                                                                              device=device)
    h, w = photo.shape[-2:]
    if vae is not None:
        with torch.no_grad():
            z_clean = vae_latent(vae, photo).detach()
        notes = "reconstruction: SD VAE encode-decode"
    else:
        regen = (loaded.regenerator if loaded and loaded.regenerator is not None
                 else attacks.make_attack(config.facelock_regenerator, device=device))
        notes = (f"reconstruction: {config.facelock_regenerator} (no SD VAE present); latent term dropped; "
                 f"FR ensemble {list(models.names)} in place of CVLFace")

    def objective(x: torch.Tensor, t: int) -> tuple[torch.Tensor, dict]:
        if vae is not None:
            z = vae_latent(vae, x)
            recon = (_vae_decode(vae, z, (h, w)) + 1) / 2
            lat = (z.float() - z_clean.float()).pow(2).mean()
        else:
            recon, lat = regen(x), torch.zeros((), device=x.device)
        sims = models.ensemble.similarities_to(ref.embeddings, recon, ref.landmarks)
        cos = torch.stack([sims[n].to(x.device) for n in models.names]).mean()
        lp = lpips_vgg(recon, photo).mean()
        fr_on = float(t >= steps * config.facelock_fr_after)
        lp_on = float(t > steps * config.facelock_lpips_after)
        value = -cos * fr_on + config.facelock_latent_weight * lat + lp * lp_on
        return value, {"cos": float(cos.detach()), "latent": float(lat.detach()), "lpips_vgg": float(lp.detach())}

    prot, hist = pgd_linf(photo, objective, eps_255=eps_255, steps=steps, config=config, seed=seed, progress=progress,
                          desc="facelock")
    return prot, hist, notes


def encoder_attack(photo: torch.Tensor, *, eps_255: float, steps: int, config: BaselineConfig, seed: int, vae: Any,
                   targeted: bool, progress: bool = True) -> tuple[torch.Tensor, list[dict]]:
    """PhotoGuard's encoder attack (``targeted``: pull E(x+δ) to the target latent, ascending −‖E − z_t‖)
    or the untargeted, EditShield-like one (ascending ‖E(x+δ) − E(x)‖² / dim). Needs an SD VAE."""
    from .teacher import vae_latent

    with torch.no_grad():
        if config.encoder_target == "grey":
            target = vae_latent(vae, torch.full_like(photo, 0.5)).float()
        else:
            target = torch.zeros_like(vae_latent(vae, photo).float())
        clean_latent = vae_latent(vae, photo).float()

    def objective(x: torch.Tensor, t: int) -> tuple[torch.Tensor, dict]:
        z = vae_latent(vae, x).float()
        if targeted:
            dist = (z - target).norm()
            return -dist, {"latent_to_target": float(dist.detach())}
        mse = (z - clean_latent).pow(2).mean()
        return mse, {"latent_mse": float(mse.detach())}

    return pgd_linf(photo, objective, eps_255=eps_255, steps=steps, config=config, seed=seed, progress=progress,
                    desc="photoguard" if targeted else "untargeted-encoder")


def vae_attack(photo: torch.Tensor, *, eps_255: float, steps: int, config: BaselineConfig, seed: int, vae: Any,
               progress: bool = True) -> tuple[torch.Tensor, list[dict]]:
    """VAE attack: ascend −‖D(E(x+δ))‖ (output in [−1, 1]), i.e. push the VAE's reconstruction to grey.
    Needs an SD VAE."""
    from .teacher import vae_latent

    h, w = photo.shape[-2:]

    def objective(x: torch.Tensor, t: int) -> tuple[torch.Tensor, dict]:
        norm = _vae_decode(vae, vae_latent(vae, x), (h, w)).norm()
        return -norm, {"output_norm": float(norm.detach())}

    return pgd_linf(photo, objective, eps_255=eps_255, steps=steps, config=config, seed=seed, progress=progress,
                    desc="vae-attack")


def cw_l2(photo: torch.Tensor, *, eps_255: float, steps: int, config: BaselineConfig, vae: Any,
          progress: bool = True) -> tuple[torch.Tensor, list[dict]]:
    """Carlini–Wagner L2 on the SD VAE encoder (FaceLock's ``cw_l2_attack``, targeted form):
    x' = (tanh w + 1) / 2, Adam(lr) minimising Σ (x' − x)² + c ‖E(x')‖ from w = 0 (a grey image, as
    FaceLock's script); then δ = clip(x' − x, ±ε) (FaceLock's ``process_cw_attack``). Needs an SD VAE."""
    from tqdm.auto import tqdm

    from .teacher import vae_latent

    w = torch.zeros_like(photo, requires_grad=True)
    opt = torch.optim.Adam([w], lr=config.cw_lr)
    history = []
    for t in tqdm(range(steps), desc="cw-l2", disable=not _progress_enabled(progress), leave=False):
        x = (torch.tanh(w) + 1) / 2
        l2 = (x - photo).pow(2).sum()
        enc = vae_latent(vae, x).float().norm()
        cost = l2 + config.cw_c * enc
        opt.zero_grad()
        cost.backward()
        opt.step()
        history.append({"step": t, "objective": float(cost.detach()), "l2": float(l2.detach()),
                        "latent_norm": float(enc.detach())})
    eps = eps_255 / 255
    with torch.no_grad():
        x = (torch.tanh(w) + 1) / 2
        prot = (photo + (x - photo).clamp(-eps, eps)).clamp(0, 1)
    return prot, history


def per_face(photo: torch.Tensor, faces: Sequence, *, eps_255: float, steps: int | None, device: Any, seed: int,
             teacher_config: Any = None, models: Any = None, progress: bool = True
             ) -> tuple[torch.Tensor, list[dict], dict]:
    """Per-face independent protection: Obscrowd's teacher on each face alone (that face's soft mask and
    landmarks only), then each pixel takes the perturbation of the face whose mask is largest there.

    Returns (protected, history, extra) with ``extra["per_face_seconds"]`` (the teacher's wall time per
    face) and ``extra["per_face_steps"]``: the cost to compare with one joint teacher run."""
    from .masks import face_masks
    from .teacher import TeacherConfig, load_teacher_models, protect_teacher

    cfg = replace(teacher_config or TeacherConfig(), eps_255=float(eps_255), seed=int(seed),
                  **({"steps": int(steps)} if steps is not None else {}))
    models = _split_models(models)[0] or load_teacher_models(cfg, device)
    fm = face_masks(tuple(photo.shape[-2:]), list(faces))
    per = torch.as_tensor(fm.per_face, dtype=torch.float32).to(device)
    per = per.reshape(len(faces), *photo.shape[-2:])
    deltas, secs, steps_taken, history = [], [], [], []
    for i, f in enumerate(faces):
        r = protect_teacher(photo, [f], config=cfg, mask=per[i], models=models, device=device, progress=progress)
        deltas.append(r.delta)
        secs.append(round(r.seconds, 3))
        steps_taken.append(r.steps)
        history.extend({"face": i, **h} for h in r.history)
    owner = per.argmax(0)  # (H, W) index of the face whose mask is largest
    stacked = torch.cat(deltas)  # (N, 3, H, W)
    delta = torch.gather(stacked, 0, owner[None, None].expand(1, 3, *owner.shape))
    prot = (photo + delta).clamp(0, 1)
    return prot, history, {"per_face_seconds": secs, "per_face_steps": steps_taken}


def protect_baseline(name: str, photo: Any, faces: Sequence | None = None, *, eps_255: float = 8.0,
                     steps: int | None = None, device: Any = "cpu", seed: int = 0,
                     config: BaselineConfig = BaselineConfig(), vae: Any = None, models: Any = None,
                     teacher_config: Any = None, progress: bool = True) -> BaselineResult:
    """Protect ``photo`` with baseline ``name`` (see the module table) at L∞ budget ``eps_255``/255.

    Args:
        name: one of :data:`BASELINES`.
        photo: (1, 3, H, W) or (3, H, W) float in [0, 1], or an (H, W, 3) uint8 array.
        faces: list of :class:`~obscrowd_lib.faces.Face` (None: detected with MTCNN).
        eps_255: L∞ budget in /255 (ignored by ``none``, ``blur``, ``pixelate``).
        steps: iterations (default :data:`DEFAULT_STEPS`; ``per-face``: the teacher config's).
        device: torch device.
        seed: random start (and the teacher's seed for ``per-face``).
        config: :class:`BaselineConfig`.
        vae: a loaded ``diffusers.AutoencoderKL`` (SD VAE) for ``facelock`` and the VAE baselines; default
            the registered ``sd-vae`` when present. The VAE baselines raise
            :class:`~obscrowd_lib.zoo.ModelNotAvailable` without one.
        models: loaded :class:`BaselineModels` (:func:`load_baseline_models`) or
            :class:`~obscrowd_lib.teacher.TeacherModels` to share across calls.
        teacher_config: :class:`~obscrowd_lib.teacher.TeacherConfig` of ``per-face`` (eps, steps and seed
            are overridden by the arguments here).
        progress: progress bar (also off when OBSCROWD_PROGRESS=0).
    Returns:
        :class:`BaselineResult`; for budgeted baselines |delta| ≤ eps_255/255 holds exactly.
    """
    if name not in BASELINES:
        raise KeyError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    if not eps_255 > 0:
        raise ValueError(f"eps_255 must be > 0, got {eps_255}")
    device = torch.device(device)
    x = _photo(photo, device)
    n_steps = int(steps) if steps is not None else DEFAULT_STEPS.get(name, 0)
    if n_steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    t0 = time.perf_counter()
    history: list[dict] = []
    notes, extra = "", {}
    budget: float | None = float(eps_255)
    if name == "none":
        prot, n_steps, budget = x.clone(), 0, 0.0
    elif name in UNBUDGETED:
        prot, n_steps, budget = anonymise_boxes(x, _faces(x, faces), name, config), 0, None
    elif name == "facelock":
        prot, history, notes = facelock(x, _faces(x, faces), eps_255=eps_255, steps=n_steps, config=config,
                                        device=device, seed=seed, vae=vae, models=models, progress=progress)
    elif name == "per-face":
        prot, history, extra = per_face(x, _faces(x, faces), eps_255=eps_255, steps=steps, device=device, seed=seed,
                                        teacher_config=teacher_config, models=models, progress=progress)
        n_steps = int(sum(extra["per_face_steps"]))
        notes = "teacher run on each face alone; patches pasted by the largest per-face mask"
    else:
        loaded = _split_models(models)[1]
        v = _vae(vae if vae is not None else (loaded.vae if loaded else None), device, True, name)
        if name in ("photoguard", "untargeted-encoder"):
            prot, history = encoder_attack(x, eps_255=eps_255, steps=n_steps, config=config, seed=seed, vae=v,
                                           targeted=name == "photoguard", progress=progress)
        elif name == "vae-attack":
            prot, history = vae_attack(x, eps_255=eps_255, steps=n_steps, config=config, seed=seed, vae=v,
                                       progress=progress)
        else:
            prot, history = cw_l2(x, eps_255=eps_255, steps=n_steps, config=config, vae=v, progress=progress)
    prot = prot.detach().clamp(0, 1)
    return BaselineResult(name=name, protected=prot, delta=prot - x, eps_255=budget, steps=n_steps,
                          seconds=time.perf_counter() - t0, history=tuple(history), notes=notes, extra=extra)


METHODS = BASELINES + ("teacher",)  # what protect_method runs: the baselines and Obscrowd's teacher


def protect_method(method: str, photo: Any, faces: Sequence | None = None, *, eps_255: float = 8.0,
                   steps: int | None = None, device: Any = "cpu", seed: int = 0, teacher_config: Any = None,
                   models: Any = None, vae: Any = None, config: BaselineConfig = BaselineConfig(),
                   progress: bool = True) -> BaselineResult:
    """One call for every method of a comparison: a baseline (:func:`protect_baseline`) or ``"teacher"``
    (Obscrowd's teacher, :func:`obscrowd_lib.teacher.protect_teacher`, with ``teacher_config`` whose
    ``eps_255``, ``seed`` and, when given, ``steps`` are overridden here), returned in the same
    :class:`BaselineResult` form (``extra`` holds the teacher's summary)."""
    if method != "teacher":
        return protect_baseline(method, photo, faces, eps_255=eps_255, steps=steps, device=device, seed=seed,
                                config=config, vae=vae, models=models, teacher_config=teacher_config,
                                progress=progress)
    from .teacher import TeacherConfig, protect_teacher

    cfg = replace(teacher_config or TeacherConfig(), eps_255=float(eps_255), seed=int(seed),
                  **({"steps": int(steps)} if steps is not None else {}))
    x = _photo(photo, device)
    t0 = time.perf_counter()
    r = protect_teacher(x, _faces(x, faces), config=cfg, models=_split_models(models)[0], device=device,
                        progress=progress)
    return BaselineResult(name="teacher", protected=r.protected, delta=r.delta, eps_255=float(eps_255),
                          steps=r.steps, seconds=time.perf_counter() - t0, history=r.history, notes=r.diffusion,
                          extra=r.summary())


def available_baselines(vae: Any = None) -> list[str]:
    """Baselines that can run here: all but the VAE ones unless an SD VAE is given or registered."""
    from . import zoo

    has_vae = vae is not None or zoo.is_available("sd-vae")
    return [b for b in BASELINES if has_vae or b not in NEEDS_VAE]


__all__ = ["BASELINES", "METHODS", "NEEDS_VAE", "UNBUDGETED", "DEFAULT_STEPS", "BaselineConfig", "BaselineModels",
           "BaselineResult", "load_baseline_models", "protect_baseline", "protect_method", "available_baselines",
           "pgd_linf", "anonymise_boxes", "facelock", "encoder_attack", "vae_attack", "cw_l2", "per_face"]
