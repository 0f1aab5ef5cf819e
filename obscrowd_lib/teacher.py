"""The teacher: per-photo optimisation of ONE perturbation that protects every face at once.

This is the "diffusion-guided teacher" of Obscrowd (paper, *The pipeline*): for one group photo
x (1, 3, H, W) in [0, 1] with N detected faces and their union soft mask m (H, W) in [0, 1], find

    δ = m ⊙ δ̃,   |δ̃|∞ ≤ ε,   x + δ ∈ [0, 1]                                         (constraints)

that minimises the **teacher objective** :func:`teacher_objective` (the ONE place the loss lives;
refinement, :mod:`obscrowd_lib.refine`, runs the same function from any starting δ):

    L(δ) = E_{a ~ attacks, d ~ diversity} [ τ log Σ_{m,f} (w_m / N) exp(μ_m,f / τ) ]              identity
           + λ_lpips · max(0, LPIPS(x + δ, x) − b)                                             fidelity
           − λ_diff · ‖E(x + δ) − E(x)‖² / dim                                                  diffusion guidance

* **identity** (joint, worst face first): cos_m,f is the cosine between face f of the attacked,
  diversified protected photo and the same face of the clean photo under training recognizer m
  (:class:`obscrowd_lib.recognition.FREnsemble`); t_m is m's calibrated threshold at FAR
  ``threshold_far`` (:func:`obscrowd_lib.recognition.load_thresholds`), and μ_m,f = (cos_m,f − t_m) /
  (1 − t_m) the threshold-normalised margin (:func:`margin`: 1 for the clean face, 0 at the
  threshold, < 0 once unlinked). The log-sum-exp at
  temperature τ is a soft maximum over all (model, face) margins, so the face-model pair that is
  still recognised dominates the gradient (τ → 0: the worst pair only; τ → ∞: the weighted mean).
* **expectation over transformation**: each step draws ``eot_samples`` attacks from an
  :class:`obscrowd_lib.attacks.AttackSampler` over the differentiable attacks in ``attacks``
  (identity included: the un-edited photo is one of the draws), then **input diversity**: the
  image (the batch of face tiles) is rescaled by a factor in ``resize_range`` and every landmark jittered by up to
  ``landmark_jitter_px`` pixels (the probe on these machines: the biggest lever for transfer).
  Geometric attacks (``rotate``, ``crop``) move the faces: leave them out of ``attacks``.
* **diffusion guidance** (switchable, ``diffusion_guidance``): when a Stable Diffusion VAE is
  available (zoo entry ``sd-vae``, registered by the user), the latent-disruption term pushes the
  VAE latent of the protected photo away from the clean one (the encoder attack of PhotoGuard /
  FaceLock) and the VAE round trip joins the attacks of the expectation (FaceLock's editor proxy).
  **Without SD weights (the default here), what replaces it** are the learned regeneration attacks
  in the expectation (``regen-waifu2x-photo-diff``; ``regen-realesrgan-x4plus-diff`` can be added):
  a real generative network reconstructs the photo inside the loop, so the identity loss is paid on
  a regenerated copy, as it would be on an edited one. :attr:`TeacherResult.diffusion` says which.
* **fidelity**: nothing changes outside the mask (δ = 0 exactly where m = 0), the L∞ budget ε =
  ``eps_255``/255 holds exactly, and an optional LPIPS-alex penalty above a budget b.

Optimisation: sign-PGD on δ̃ with momentum (MI-FGSM: g ← μ g + ∇/mean|∇|; δ̃ ← δ̃ − α_t sign g),
a step-size schedule α_t, random start, projection after every step. Early stop when every face's
margin is below −``stop_margin`` on every training model (i.e. cos < t − stop_margin·(1 − t)), both
on the un-attacked protected photo and on the attacked draws of the last ``stop_patience`` steps.

All the work happens on **face tiles** (:func:`face_tiles`): one equal-size tile per face holding
every recognizer's view of it, processed as one batch (attacks, diversity, recognizers), so the cost
grows with the faces, not with the photo's size or the space between faces. δ lives on the tiles
(mask pixels no recognizer looks at stay unchanged).

Entry points: :func:`protect_teacher` (random start), :func:`optimise` (any start; used by
:func:`obscrowd_lib.refine.refine`), :func:`teacher_objective`, :func:`load_teacher_models`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

DEFAULT_ATTACKS = ("identity", "jpeg-diff", "resize-diff", "blur-diff", "regen-waifu2x-photo-diff")  # EOT draws
DIFFUSION_MODES = ("auto", "on", "off")  # values of TeacherConfig.diffusion_guidance
SCHEDULES = ("constant", "linear", "cosine")  # values of TeacherConfig.schedule
ALIGN = 32  # face-tile corners snap to multiples of this (area-pyramid blocks of align_faces, JPEG blocks)


@dataclass(frozen=True)
class TeacherConfig:
    """Every knob of the teacher (and of refinement, which runs the same objective). Saved beside artifacts."""

    eps_255: float = 8.0  # L-inf budget of the perturbation, in /255 units (scaled per pixel by the soft mask)
    steps: int = 100  # largest number of sign-PGD steps
    step_size_255: float = 2.0  # first step size alpha_0, in /255 units
    schedule: str = "cosine"  # step-size schedule: constant, linear or cosine decay to final_step_fraction
    final_step_fraction: float = 0.25  # last step size as a fraction of the first
    random_start: bool = True  # teacher starts from uniform noise in the budget (refinement starts from its delta0)
    momentum: float = 0.9  # MI-FGSM decay of the accumulated normalised gradient; 0 gives plain sign-PGD
    seed: int = 0  # seeds the random start, the attack draws and the input diversity
    ensemble: tuple[str, ...] = ()  # training recognizers by zoo name; empty means recognition.training_ensemble()
    ensemble_weights: tuple[float, ...] = ()  # one weight per ensemble member; empty means equal weights
    temperature: float = 0.2  # soft-max temperature over normalised per-face per-model margins; small = worst dominates
    attacks: tuple[str, ...] = DEFAULT_ATTACKS  # differentiable attacks drawn in the expectation, identity included
    attack_weights: tuple[float, ...] = ()  # sampling weight per attack; empty means equal
    eot_samples: int = 1  # attack draws per step, each with its own input diversity
    resize_range: tuple[float, float] = (0.8, 1.2)  # input diversity: range of the random rescale of the photo
    landmark_jitter_px: float = 2.5  # input diversity: uniform jitter of every landmark coordinate, pixels
    lpips_weight: float = 0.0  # weight of the LPIPS-alex penalty; 0 switches it off
    lpips_budget: float = 0.05  # LPIPS-alex allowed for free; the penalty acts above it
    diffusion_guidance: str = "auto"  # auto: SD VAE latent term when sd-vae is registered; on: require it; off
    diffusion_weight: float = 1.0  # weight of the VAE latent-disruption term
    early_stop: bool = True  # stop once every face is below its threshold on every training model
    stop_margin: float = 0.05  # protected when the normalised margin is below minus this, i.e. cos < t - margin (1 - t)
    stop_patience: int = 1  # consecutive steps whose attacked draws must also be all protected
    min_steps: int = 0  # never stop before this many steps
    threshold_far: float = 1e-3  # false-accept rate of the calibrated thresholds used
    fallback_threshold: float = 0.3  # threshold for a recognizer with no calibrated value
    work_pad: float = 0.1  # face tiles: every recognizer's crop footprint grown by this fraction of its side

    def __post_init__(self) -> None:
        problems = []
        if not self.eps_255 > 0:
            problems.append(f"eps_255 must be > 0, got {self.eps_255}")
        if self.steps < 0 or self.min_steps < 0 or self.stop_patience < 0:
            problems.append("steps, min_steps and stop_patience must be >= 0")
        if not self.step_size_255 > 0 or not 0 < self.final_step_fraction <= 1:
            problems.append("step_size_255 must be > 0 and final_step_fraction in (0, 1]")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum must be in [0, 1), got {self.momentum}")
        if not self.temperature > 0:
            problems.append(f"temperature must be > 0, got {self.temperature}")
        if self.ensemble_weights and len(self.ensemble_weights) != len(self.ensemble):
            problems.append("ensemble_weights needs one weight per name in ensemble (and ensemble must be given)")
        if not self.attacks:
            problems.append("attacks must name at least one attack (e.g. identity)")
        if self.attack_weights and len(self.attack_weights) != len(self.attacks):
            problems.append("attack_weights needs one weight per attack")
        if self.eot_samples < 1:
            problems.append(f"eot_samples must be >= 1, got {self.eot_samples}")
        lo, hi = self.resize_range
        if not 0 < lo <= hi:
            problems.append(f"resize_range must be (lo, hi) with 0 < lo <= hi, got {self.resize_range}")
        if self.diffusion_guidance not in DIFFUSION_MODES:
            problems.append(f"diffusion_guidance must be one of {DIFFUSION_MODES}, got {self.diffusion_guidance!r}")
        if problems:
            raise ValueError("TeacherConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class TeacherModels:
    """Everything the objective needs that is loaded once and shared across photos and calls."""

    ensemble: Any  # recognition.FREnsemble of differentiable training recognizers
    names: tuple[str, ...]  # ensemble member names, in the order of the similarity tensors
    weights: torch.Tensor  # (M,) model weights, summing to 1
    thresholds: dict[str, float]  # name -> cosine threshold at config.threshold_far (or the fallback)
    threshold_source: dict[str, str]  # name -> "calibrated" or "fallback"
    attacks: tuple[Any, ...]  # attacks.Attack objects of the expectation (VAE round trip added when guided)
    attack_names: tuple[str, ...]  # config.attacks these were built from (checked against the config in use)
    attack_weights: tuple[float, ...]  # their sampling weights
    lpips: Any = None  # lpips-alex metric module when config.lpips_weight > 0
    vae: Any = None  # diffusers AutoencoderKL when diffusion guidance is active
    diffusion: str = ""  # one line: which diffusion-guidance term is active, or what replaces it


@dataclass(frozen=True)
class ObjectiveValue:
    """One evaluation of :func:`teacher_objective` (everything but ``loss`` is detached)."""

    loss: torch.Tensor  # scalar to minimise (carries the graph)
    identity: float  # the identity term
    lpips: float  # LPIPS-alex of the protected photo vs clean (nan when the penalty is off)
    latent: float  # VAE latent distance (nan when diffusion guidance is off)
    similarities: torch.Tensor  # (K, M, N) cosine per EOT draw, model, face
    attacks: tuple[str, ...]  # name of the attack of each draw


@dataclass(frozen=True)
class TeacherResult:
    """Output of the teacher or of refinement (photo-sized tensors on the requested device)."""

    delta: torch.Tensor  # (1, 3, H, W) protected - photo; |delta| <= eps/255, 0 where the union mask is 0
    protected: torch.Tensor  # (1, 3, H, W) float in [0, 1]
    mask: torch.Tensor  # (H, W) union soft mask in [0, 1] that confined delta
    faces: tuple  # the Face records protected
    history: tuple[dict, ...]  # one record per step (loss terms, step size, similarities under attack, ...)
    per_face_similarity: dict[str, list[float]]  # model -> N cosines clean vs protected (no attack)
    thresholds: dict[str, float]  # model -> threshold used for early stop and protected_faces
    protected_faces: tuple[bool, ...]  # per face: below threshold on every training model (no attack)
    steps: int  # optimisation steps taken
    stopped_early: bool  # True when the early-stop rule ended the run
    seconds: float  # wall time of the optimisation (models already loaded)
    diffusion: str  # which diffusion-guidance term was active, or what replaced it
    config: TeacherConfig  # the configuration used

    @property
    def budget_used_255(self) -> float:
        """Largest |delta| in /255 units."""
        return float(self.delta.abs().max()) * 255

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no tensors)."""
        return {"steps": self.steps, "stopped_early": self.stopped_early, "seconds": round(self.seconds, 3),
                "budget_used_255": round(self.budget_used_255, 4), "eps_255": self.config.eps_255,
                "per_face_similarity": {k: [round(v, 4) for v in vs] for k, vs in self.per_face_similarity.items()},
                "thresholds": {k: round(v, 4) for k, v in self.thresholds.items()},
                "protected_faces": list(self.protected_faces), "diffusion": self.diffusion}


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------


def _threshold(name: str, config: TeacherConfig, doc: dict | None) -> tuple[float, str]:
    if doc is not None:
        cal = doc["models"].get(name)
        if cal is not None and float(config.threshold_far) in cal.thresholds:
            return float(cal.thresholds[float(config.threshold_far)]), "calibrated"
    return float(config.fallback_threshold), "fallback"


def load_teacher_models(config: TeacherConfig, device: Any = "cpu", *, ensemble: Any = None) -> TeacherModels:
    """Load the recognizers, attacks, and optional LPIPS / VAE that ``config`` asks for.

    ``ensemble`` (an :class:`~obscrowd_lib.recognition.FREnsemble`) reuses already-loaded
    recognizers; it is narrowed to ``config.ensemble`` when that is given. Raises
    :class:`~obscrowd_lib.zoo.ModelNotAvailable` when a model's weights are missing (e.g.
    ``diffusion_guidance="on"`` without a registered ``sd-vae``).
    """
    from . import attacks as attacks_mod
    from . import recognition, zoo

    if ensemble is None:
        ensemble = (recognition.FREnsemble(config.ensemble, device=device) if config.ensemble
                    else recognition.training_ensemble(device=device))
    elif config.ensemble:
        ensemble = ensemble.select(config.ensemble)
    names = tuple(ensemble.names)
    for n in names:  # load every network now (FREnsemble loads on first use), not inside the first optimisation
        ensemble[n]
    not_diff = [n for n in names if n not in ensemble.differentiable_names()]
    if not_diff:
        raise ValueError(f"the teacher's ensemble must be differentiable; remove {not_diff}")
    w = torch.tensor(config.ensemble_weights or [1.0] * len(names), dtype=torch.float32)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"ensemble_weights must be >= 0 with a positive sum, got {config.ensemble_weights}")
    try:
        doc = recognition.load_thresholds()
    except (FileNotFoundError, ValueError):
        doc = None
    thr = {n: _threshold(n, config, doc) for n in names}

    atk = [attacks_mod.make_attack(n, device=device, seed=config.seed) for n in config.attacks]
    bad = [a.name for a in atk if not a.differentiable]
    if bad:
        raise ValueError(f"teacher attacks must be differentiable (use the -diff forms); not: {bad}")
    aw = list(config.attack_weights or [1.0] * len(atk))
    vae = None
    want = config.diffusion_guidance == "on" or (config.diffusion_guidance == "auto" and zoo.is_available("sd-vae"))
    if want:
        vae = attacks_mod.load_vae(device)
        atk.append(attacks_mod.make_attack("vae", device=device, vae=vae))
        aw.append(float(np.mean(aw)))
        diffusion = (f"SD VAE latent disruption (weight {config.diffusion_weight}) + VAE round trip in the "
                     "expectation")
    else:
        regen = [a.name for a in atk if a.name.startswith("regen-")]
        diffusion = ("off: no SD VAE registered; replaced by learned regeneration in the expectation ("
                     + (", ".join(regen) if regen else "none configured") + ")")
        if config.diffusion_guidance == "off":
            diffusion = "off (by config); regeneration in the expectation: " + (", ".join(regen) or "none")
    lp = zoo.load_model("lpips-alex", device=device) if config.lpips_weight > 0 else None
    return TeacherModels(ensemble=ensemble, names=names, weights=w / w.sum(),
                         thresholds={n: t for n, (t, _) in thr.items()},
                         threshold_source={n: s for n, (_, s) in thr.items()},
                         attacks=tuple(atk), attack_names=tuple(config.attacks), attack_weights=tuple(aw), lpips=lp,
                         vae=vae, diffusion=diffusion)


def check_models(models: TeacherModels, config: TeacherConfig) -> None:
    """Raise ``ValueError`` when ``models`` were not loaded for ``config`` (ensemble, attacks, LPIPS term)."""
    problems = []
    if config.ensemble and tuple(config.ensemble) != tuple(models.names):
        problems.append(f"ensemble {tuple(config.ensemble)} vs loaded {models.names}")
    if tuple(config.attacks) != tuple(models.attack_names):
        problems.append(f"attacks {tuple(config.attacks)} vs loaded {models.attack_names}")
    if config.lpips_weight > 0 and models.lpips is None:
        problems.append("lpips_weight > 0 but no LPIPS model loaded")
    if problems:
        raise ValueError("models were loaded for another config (" + "; ".join(problems)
                         + "): call load_teacher_models(config) again")


# ----------------------------------------------------------------------------------------------
# The objective (the one place the teacher's loss is computed)
# ----------------------------------------------------------------------------------------------


def margin(cos: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """Threshold-normalised margin (cos − t) / (1 − t): 1 for the clean face, 0 at the threshold, < 0 when
    the face is no longer linked. Makes models with compressed cosine scales (the dlib port: impostors
    ≈ 0.8) weigh as much as the others in the soft maximum."""
    return (cos - threshold) / (1 - threshold)


@dataclass(frozen=True)
class Reference:
    """What the objective compares against, computed once from the clean photo."""

    photo: torch.Tensor  # (B, 3, h, w) clean photo (or one tile per face) in [0, 1]
    landmarks: torch.Tensor  # (N, 5, 2) landmarks in the pixel coordinates of their image of the batch
    embeddings: dict[str, torch.Tensor]  # model -> (N, D) clean unit embeddings
    latent: torch.Tensor | None = None  # clean VAE latent mean, when diffusion guidance is on
    batch_index: torch.Tensor | None = None  # (N,) image of the batch holding each face; None when B == 1


def vae_latent(vae: Any, x: torch.Tensor) -> torch.Tensor:
    """Mean of the SD VAE posterior of (B, 3, h, w) in [0, 1] (h, w replicate-padded to a multiple of 8)."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    h, w = x.shape[-2:]
    x = torch.nn.functional.pad(x, (0, (-w) % factor, 0, (-h) % factor), mode="replicate")
    return vae.encode(2 * x.to(device=vae.device, dtype=vae.dtype) - 1).latent_dist.mean


def make_reference(clean: torch.Tensor, landmarks: torch.Tensor, models: TeacherModels,
                   batch_index: torch.Tensor | None = None) -> Reference:
    """Embed the clean faces (and VAE latent) once.

    Args:
        clean: (B, 3, h, w) in [0, 1]: one photo, or one tile per face (:func:`face_tiles`).
        landmarks: (N, 5, 2) pixel coordinates in their image of the batch.
        batch_index: (N,) image of each face (needed when B > 1).
    """
    with torch.no_grad():
        emb = {n: e.detach() for n, e in models.ensemble.embed_all(clean, landmarks, batch_index).items()}
        lat = vae_latent(models.vae, clean).detach() if models.vae is not None else None
    return Reference(photo=clean, landmarks=landmarks, embeddings=emb, latent=lat, batch_index=batch_index)


def input_diversity(photo: torch.Tensor, landmarks: torch.Tensor, config: TeacherConfig,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rescale of the whole photo and landmark jitter (DI-FGSM-style input diversity).

    Args:
        photo: (B, 3, h, w) float in [0, 1] (one photo, or one tile per face).
        landmarks: (N, 5, 2) pixel coordinates in their image of ``photo``.
    Returns:
        (rescaled photo (B, 3, h', w'), landmarks (N, 5, 2) in its coordinates, jittered).
    """
    lo, hi = config.resize_range
    s = lo + (hi - lo) * float(torch.rand((), generator=generator))
    lm = landmarks
    if abs(s - 1.0) > 1e-6:
        h, w = photo.shape[-2:]
        size = (max(8, round(h * s)), max(8, round(w * s)))
        photo = torch.nn.functional.interpolate(photo, size=size, mode="bilinear", align_corners=False,
                                                antialias=s < 1).clamp(0, 1)
        sy, sx = size[0] / h, size[1] / w
        scale = torch.tensor([sx, sy], dtype=lm.dtype, device=lm.device)
        lm = (lm + 0.5) * scale - 0.5  # pixel centres at integers (OpenCV convention)
    if config.landmark_jitter_px > 0:
        noise = torch.rand(lm.shape, generator=generator, dtype=lm.dtype).to(lm.device)
        lm = lm + (2 * noise - 1) * config.landmark_jitter_px
    return photo, lm


def teacher_objective(protected: torch.Tensor, reference: Reference, models: TeacherModels,
                      config: TeacherConfig, *, sampler: Any, generator: torch.Generator) -> ObjectiveValue:
    """The teacher objective L(δ) (module docstring), to MINIMISE; used by the teacher and by refinement.

    Args:
        protected: (B, 3, h, w) float in [0, 1], the clean photo plus δ (carries δ's graph); one photo,
            or one tile per face (:func:`face_tiles`).
        reference: the clean embeddings etc. (:func:`make_reference`), made on the same images as ``protected``.
        models: loaded models (:func:`load_teacher_models`).
        config: weights and diversity settings.
        sampler: :class:`~obscrowd_lib.attacks.AttackSampler` drawing the expectation's attacks.
        generator: CPU generator of the input diversity.
    Returns:
        :class:`ObjectiveValue` with the scalar loss and the (K, M, N) similarities under attack.
    """
    names = models.names
    thr = torch.tensor([models.thresholds[n] for n in names], device=protected.device)[:, None]  # (M, 1)
    n_faces = reference.landmarks.shape[0]
    log_w = (models.weights.to(protected.device) / n_faces).log()[:, None]  # (M, 1)
    tau = config.temperature
    id_terms, sims, drawn = [], [], []
    for _ in range(config.eot_samples):
        edited = sampler(protected)
        drawn.append(sampler.last[0] if sampler.last else "?")
        x, lm = input_diversity(edited, reference.landmarks, config, generator)
        s = models.ensemble.similarities_to(reference.embeddings, x, lm, reference.batch_index)
        c = torch.stack([s[n].to(protected.device) for n in names])  # (M, N)
        id_terms.append(tau * torch.logsumexp(margin(c, thr) / tau + log_w, dim=(0, 1)))
        sims.append(c.detach())
    identity = torch.stack(id_terms).mean()
    loss = identity
    lp_value = lat_value = float("nan")
    if models.lpips is not None and config.lpips_weight > 0:
        lp = models.lpips(protected, reference.photo).mean()  # mean over the images of the batch
        loss = loss + config.lpips_weight * torch.relu(lp - config.lpips_budget)
        lp_value = float(lp.detach())
    if models.vae is not None and reference.latent is not None and config.diffusion_weight > 0:
        lat = (vae_latent(models.vae, protected) - reference.latent).pow(2).mean()
        loss = loss - config.diffusion_weight * lat.to(loss.device)
        lat_value = float(lat.detach())
    return ObjectiveValue(loss=loss, identity=float(identity.detach()), lpips=lp_value, latent=lat_value,
                          similarities=torch.stack(sims), attacks=tuple(drawn))


# ----------------------------------------------------------------------------------------------
# Constraints, schedule, region
# ----------------------------------------------------------------------------------------------


def project(delta_tilde: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor, eps: float) -> torch.Tensor:
    """Project δ̃ so that δ = m ⊙ δ̃ satisfies |δ|∞ ≤ m·ε ≤ ε, clean + δ ∈ [0, 1], and δ̃ = 0 where m = 0.

    Args:
        delta_tilde: (1, 3, h, w) unconstrained perturbation.
        clean: (1, 3, h, w) float in [0, 1].
        mask: (1, 1, h, w) soft mask in [0, 1].
        eps: budget in [0, 1] units.
    """
    d = delta_tilde.clamp(-eps, eps)
    m = mask.clamp_min(1e-12)
    d = torch.minimum(torch.maximum(d, -clean / m), (1 - clean) / m)
    return torch.where(mask > 0, d, torch.zeros_like(d))


def step_size(step: int, steps: int, config: TeacherConfig) -> float:
    """Step size α_t in [0, 1] units at step ``step`` of ``steps`` (the config's schedule)."""
    a0 = config.step_size_255 / 255
    a1 = a0 * config.final_step_fraction
    frac = step / max(1, steps - 1)
    if config.schedule == "constant":
        return a0
    if config.schedule == "linear":
        return a0 + (a1 - a0) * frac
    return a1 + (a0 - a1) * 0.5 * (1 + math.cos(math.pi * frac))


def face_tiles(image_hw: tuple[int, int], landmarks: torch.Tensor, models: TeacherModels, pad: float
               ) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Where the objective needs pixels: one equal-size tile per face, holding every recognizer's view of it.

    For every face and every training recognizer, the recognizer's aligned crop is mapped back into
    the photo (inverse of the landmark → template similarity) and grown by ``pad`` × its side (room for
    landmark jitter); a face's tile is the bounding box of its crops, its top-left corner snapped to a
    multiple of :data:`ALIGN` (so the alignment's area pyramid and the JPEG grid see the same blocks as
    on the whole photo), and all tiles are grown to the largest tile's size (clamped to the photo) so
    the faces are processed as **one batch**. The cost then grows with the faces, not with the photo
    or the empty space between faces.

    Args:
        image_hw: (H, W) of the photo.
        landmarks: (N, 5, 2) pixel coordinates.
    Returns:
        ([(top, left) of each face's tile], (tile height, tile width)).
    """
    from .recognition import similarity_transform

    h, w = image_hw
    lm = torch.as_tensor(landmarks, dtype=torch.float32).cpu()
    lo = torch.full((lm.shape[0], 2), math.inf, dtype=torch.float64)
    hi = torch.full((lm.shape[0], 2), -math.inf, dtype=torch.float64)
    for n in models.names:
        rec = models.ensemble[n]
        s = float(rec.crop_size)
        m = similarity_transform(lm, torch.as_tensor(rec.template, dtype=torch.float32)).double()  # photo -> crop
        corners = torch.tensor([[0, 0], [s, 0], [0, s], [s, s]], dtype=torch.float64).T  # (2, 4) crop px
        pts = torch.linalg.solve(m[:, :, :2], corners[None] - m[:, :, 2:])  # (N, 2, 4) photo px
        g = pad * (pts.amax(-1) - pts.amin(-1))
        lo, hi = torch.minimum(lo, pts.amin(-1) - g), torch.maximum(hi, pts.amax(-1) + g)
    x0 = (lo[:, 0].floor().clamp(0, w - 1).long() // ALIGN * ALIGN).tolist()
    y0 = (lo[:, 1].floor().clamp(0, h - 1).long() // ALIGN * ALIGN).tolist()
    x1 = hi[:, 0].ceil().clamp(1, w).long().tolist()
    y1 = hi[:, 1].ceil().clamp(1, h).long().tolist()
    th = min(h, max(max(b - t for t, b in zip(y0, y1)), 8))
    tw = min(w, max(max(r - l for l, r in zip(x0, x1)), 8))
    corners = [(min(t, h - th), min(l, w - tw)) for t, l in zip(y0, x0)]
    return corners, (th, tw)


def work_region(mask: torch.Tensor, faces: Sequence[Any], grow: float) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) box (exclusive ends) holding the mask's support and every face box grown
    by ``grow`` × its side on each side, clamped to the photo. A recognizer-free region (the student's);
    the teacher uses the exact per-face :func:`face_tiles`."""
    h, w = mask.shape[-2:]
    boxes = []
    for f in faces:
        x0, y0, x1, y1 = (float(v) for v in f.box)
        g = grow * max(x1 - x0, y1 - y0)
        boxes.append((y0 - g, x0 - g, y1 + g, x1 + g))
    nz = torch.nonzero(mask.reshape(h, w) > 0)
    if len(nz):
        boxes.append((float(nz[:, 0].min()), float(nz[:, 1].min()), float(nz[:, 0].max()) + 1,
                      float(nz[:, 1].max()) + 1))
    top = max(0, math.floor(min(b[0] for b in boxes)))
    left = max(0, math.floor(min(b[1] for b in boxes)))
    bottom = min(h, math.ceil(max(b[2] for b in boxes)))
    right = min(w, math.ceil(max(b[3] for b in boxes)))
    if bottom - top < 8 or right - left < 8:
        raise ValueError(f"work region {(top, left, bottom, right)} is too small: check the face boxes")
    return top, left, bottom, right


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def as_photo(photo: Any, device: Any) -> torch.Tensor:
    """(1, 3, H, W) float32 in [0, 1] on ``device`` from a tensor (3, H, W)/(1, 3, H, W) or an (H, W, 3) uint8 array."""
    if isinstance(photo, np.ndarray):
        from .io import to_tensor

        photo = to_tensor(photo)
    if not isinstance(photo, torch.Tensor):
        raise TypeError(f"photo must be a (1, 3, H, W) tensor in [0, 1] or an (H, W, 3) uint8 array, "
                        f"got {type(photo).__name__}")
    if photo.dim() == 3:
        photo = photo[None]
    if photo.dim() != 4 or photo.shape[:2] != (1, 3):
        raise ValueError(f"photo must be (1, 3, H, W) float in [0, 1], got shape {tuple(photo.shape)}")
    photo = photo.detach().to(device=device, dtype=torch.float32)
    if photo.min() < 0 or photo.max() > 1:
        raise ValueError(f"photo values must lie in [0, 1], got [{float(photo.min()):.3g}, {float(photo.max()):.3g}]")
    return photo


def faces_and_mask(photo: torch.Tensor, faces: Any, mask: Any) -> tuple[tuple, torch.Tensor]:
    """The faces to protect and their (H, W) soft mask in [0, 1] for a (1, 3, H, W) photo.

    ``faces=None`` runs the default detector; ``mask=None`` builds the union of the faces' soft masks
    (:func:`obscrowd_lib.masks.face_masks`). Raises ValueError when there is no face or the mask does not fit.
    """
    if faces is None:
        from .faces import detect_faces

        img = (photo[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
        faces = detect_faces(img)
    faces = tuple(faces)
    if not faces:
        raise ValueError("no faces to protect: the detector found none (or an empty face list was given)")
    if mask is None:
        from .masks import face_masks

        mask = face_masks(tuple(photo.shape[-2:]), list(faces)).union
    mask = torch.as_tensor(mask, dtype=torch.float32).to(photo.device)
    mask = mask.reshape(mask.shape[-2:]) if mask.dim() > 2 else mask
    if tuple(mask.shape) != tuple(photo.shape[-2:]):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the photo {tuple(photo.shape[-2:])}")
    if mask.min() < 0 or mask.max() > 1:
        raise ValueError("mask values must lie in [0, 1]")
    return faces, mask


def _progress_enabled(progress: bool) -> bool:
    return bool(progress) and os.environ.get("OBSCROWD_PROGRESS", "1") != "0"


# ----------------------------------------------------------------------------------------------
# The optimisation loop (teacher and refinement)
# ----------------------------------------------------------------------------------------------


def optimise(photo: Any, faces: Any = None, *, config: TeacherConfig, delta0: torch.Tensor | None = None,
             steps: int | None = None, random_start: bool | None = None, mask: Any = None,
             models: TeacherModels | None = None, device: Any = "cpu", progress: bool = True,
             callback: Callable[[dict], None] | None = None) -> TeacherResult:
    """Minimise :func:`teacher_objective` by momentum sign-PGD from ``delta0`` (or zero / random start).

    Args:
        photo: (1, 3, H, W) or (3, H, W) float in [0, 1], or (H, W, 3) uint8.
        faces: list of :class:`~obscrowd_lib.faces.Face`; ``None`` runs :func:`obscrowd_lib.faces.detect_faces`.
        config: the :class:`TeacherConfig`.
        delta0: optional (1, 3, H, W) starting perturbation (e.g. a student's); it is confined to the mask
            and projected first (δ̃0 = δ0 / m where m > 0).
        steps: number of steps (default ``config.steps``).
        random_start: add uniform noise in the budget to the start (default ``config.random_start``
            when no ``delta0`` is given, else False).
        mask: (H, W) union soft mask in [0, 1]; default :func:`obscrowd_lib.masks.face_masks` of the faces.
        models: preloaded :class:`TeacherModels` (default: loaded from ``config``).
        device: torch device for everything.
        progress: show a progress bar (also off when the environment sets OBSCROWD_PROGRESS=0).
        callback: called after every step with that step's history record (for live loss curves).
    Returns:
        :class:`TeacherResult`.
    """
    device = torch.device(device)
    photo = as_photo(photo, device)
    faces, mask_full = faces_and_mask(photo, faces, mask)
    models = models or load_teacher_models(config, device)
    check_models(models, config)
    steps = config.steps if steps is None else int(steps)
    if random_start is None:
        random_start = config.random_start and delta0 is None
    eps = config.eps_255 / 255

    t0 = time.perf_counter()
    lm = torch.as_tensor(np.stack([np.asarray(f.landmarks, dtype=np.float32) for f in faces]), device=device)
    corners, (th, tw) = face_tiles(tuple(photo.shape[-2:]), lm, models, config.work_pad)
    # δ̃ lives on the bounding box of the tiles; the objective sees one tile per face, as a batch
    top, left = min(c[0] for c in corners), min(c[1] for c in corners)
    bottom, right = max(c[0] for c in corners) + th, max(c[1] for c in corners) + tw
    rel = [(t - top, l - left) for t, l in corners]
    clean = photo[..., top:bottom, left:right]
    cover = torch.zeros(bottom - top, right - left, device=device)
    for t, l in rel:
        cover[t:t + th, l:l + tw] = 1
    m = (mask_full[top:bottom, left:right] * cover)[None, None]  # no recognizer looks outside the tiles

    def tiles(img: torch.Tensor) -> torch.Tensor:
        """(1, 3, h, w) region -> (N, 3, th, tw): face i's tile at index i."""
        return torch.cat([img[..., t:t + th, l:l + tw] for t, l in rel])

    lm = lm - torch.tensor([[left + l, top + t] for t, l in rel], dtype=torch.float32, device=device)[:, None]
    ref = make_reference(tiles(clean), lm, models, batch_index=torch.arange(len(faces)))

    from .attacks import AttackSampler, subseed

    gen = torch.Generator(device="cpu").manual_seed(int(config.seed))
    sampler = AttackSampler(list(models.attacks), models.attack_weights, seed=subseed(config.seed, 1))
    if delta0 is not None:
        d0 = torch.as_tensor(delta0, dtype=torch.float32).to(device)
        try:
            d0 = torch.broadcast_to(d0, photo.shape)[..., top:bottom, left:right]
        except RuntimeError as e:
            raise ValueError(f"delta0 of shape {tuple(d0.shape)} does not fit the photo {tuple(photo.shape)}") from e
        dt = torch.where(m > 0, d0 / m.clamp_min(1e-12), torch.zeros_like(d0))
    else:
        dt = torch.zeros_like(clean)
    if random_start:
        dt = dt + (2 * torch.rand(clean.shape, generator=gen) - 1).to(device) * eps
    dt = project(dt, clean, m, eps)

    thr = torch.tensor([models.thresholds[n] for n in models.names], device=device)[:, None]
    g = torch.zeros_like(dt)
    history: list[dict] = []
    streak, stopped, taken = 0, False, 0
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc="teacher", disable=not _progress_enabled(progress), leave=False)
    try:
        for t in range(steps):
            dt.requires_grad_(True)
            val = teacher_objective(tiles(clean + m * dt), ref, models, config, sampler=sampler, generator=gen)
            below = bool((margin(val.similarities, thr[None]) < -config.stop_margin).all())
            streak = streak + 1 if below else 0
            if (config.early_stop and t >= config.min_steps and streak >= max(1, config.stop_patience)
                    and _all_protected(tiles(clean + m * dt.detach()), ref, models, thr, config.stop_margin)):
                stopped = True
                break
            (grad,) = torch.autograd.grad(val.loss, dt)
            alpha = step_size(t, steps, config)
            with torch.no_grad():
                g = config.momentum * g + grad / grad.abs().mean().clamp_min(1e-20)
                dt = project(dt.detach() - alpha * g.sign(), clean, m, eps)
            taken += 1
            rec = {"step": t, "loss": float(val.loss.detach()), "identity": val.identity, "lpips": val.lpips,
                   "latent": val.latent, "step_size_255": alpha * 255, "attacks": list(val.attacks),
                   "similarity": val.similarities.mean(0).tolist(),  # (M, N) mean over the EOT draws
                   "worst_margin": float(margin(val.similarities, thr[None]).max()),  # normalised, see margin()
                   "seconds": round(time.perf_counter() - t0, 3)}
            history.append(rec)
            if callback is not None:
                callback(rec)
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", worst=f"{rec['worst_margin']:+.3f}")
    finally:
        bar.close()
    seconds = time.perf_counter() - t0

    with torch.no_grad():
        delta = torch.zeros_like(photo)
        delta[..., top:bottom, left:right] = m * dt.detach()
        protected = (photo + delta).clamp(0, 1)
        delta = protected - photo
        # the recognizers see only the tiles, so the clean references made there are reused
        sims = models.ensemble.similarities_to(ref.embeddings, tiles(protected[..., top:bottom, left:right]),
                                               ref.landmarks, ref.batch_index)
    per_face = {n: [float(v) for v in sims[n].cpu()] for n in models.names}
    prot = tuple(all(per_face[n][i] < models.thresholds[n] for n in models.names) for i in range(len(faces)))
    return TeacherResult(delta=delta, protected=protected, mask=mask_full, faces=faces, history=tuple(history),
                         per_face_similarity=per_face, thresholds=dict(models.thresholds), protected_faces=prot,
                         steps=taken, stopped_early=stopped, seconds=seconds, diffusion=models.diffusion,
                         config=config)


def _all_protected(protected: torch.Tensor, ref: Reference, models: TeacherModels, thr: torch.Tensor,
                   stop_margin: float) -> bool:
    """True when every face of ``protected`` (no attack) has margin < -stop_margin on every model (thr: (M, 1))."""
    with torch.no_grad():
        s = models.ensemble.similarities_to(ref.embeddings, protected, ref.landmarks, ref.batch_index)
        c = torch.stack([s[n].to(thr.device) for n in models.names])
    return bool((margin(c, thr) < -stop_margin).all())


def protect_teacher(photo: Any, faces: Any = None, *, config: TeacherConfig | None = None, device: Any = "cpu",
                    progress: bool = True, callback: Callable[[dict], None] | None = None, mask: Any = None,
                    models: TeacherModels | None = None) -> TeacherResult:
    """Obscrowd's teacher: one perturbation protecting every face of ``photo`` jointly.

    Runs :func:`optimise` from a random start (``config.random_start``) for up to ``config.steps``
    steps; ``config`` defaults to ``TeacherConfig()``. Arguments as :func:`optimise`. Example::

        result = protect_teacher(photo, config=TeacherConfig(eps_255=8, steps=100))
        save_png(result.protected, "protected.png")
    """
    return optimise(photo, faces, config=config or TeacherConfig(), mask=mask, models=models, device=device,
                    progress=progress, callback=callback)


__all__ = [
    "DEFAULT_ATTACKS",
    "ObjectiveValue",
    "Reference",
    "TeacherConfig",
    "TeacherModels",
    "TeacherResult",
    "as_photo",
    "check_models",
    "face_tiles",
    "faces_and_mask",
    "input_diversity",
    "load_teacher_models",
    "make_reference",
    "margin",
    "optimise",
    "project",
    "protect_teacher",
    "step_size",
    "teacher_objective",
    "vae_latent",
    "work_region",
]
