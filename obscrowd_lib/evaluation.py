"""Evaluation: per-face, controlled measurement of a protection, the way the field measures it.

Two families of numbers are kept apart (``../shared/RESEARCH.md``, *How results are judged*):

* **imperceptibility** of the protection itself: protected vs clean photo, no attack
  (:func:`obscrowd_lib.metrics.imperceptibility`: PSNR, SSIM, LPIPS-alex/vgg, DISTS over the whole
  photo and inside the union face mask, and the L∞ norm in /255);
* **protection**: face-recognition (FR) similarity between each clean face and the same face after
  protection **and** an attack (JPEG, resize, blur, noise, rotation, learned regeneration, the
  diffusers editors when present).

The per-face protocol (:class:`Evaluator`, :func:`evaluate`), for one clean photo and its protected copy:

1. detect the faces of the **clean** photo with the reference detector (MTCNN): the reference
   identities; embed each with every evaluator (FR model) → clean embeddings;
2. for every attack a (and every seed when the attack is random): apply a to the protected photo
   **and** to the clean photo (both rounded to 8 bits, as a shared file would be);
3. detect faces again in each attacked photo with the **independent** detector (dlib CNN: the
   attacker's own detector) and match them to the clean faces by box overlap: Hungarian assignment
   (``scipy.optimize.linear_sum_assignment``) on IoU, a pair kept when IoU ≥ :data:`MIN_IOU`. For
   geometric attacks (rotation, crop) the clean boxes are first carried through the same transform
   (:func:`expected_boxes`);
4. per face and evaluator: cosine between the clean face and its match in attack(clean)
   ("unprotected") and in attack(protected) ("protected"). A clean face with no match in an attacked
   photo is a **detection failure**: reported separately and **never** counted as protected.

Summary (per evaluator per attack, :func:`summarize`): mean and worst (largest) protected similarity
over the detected faces, **protection success rate** (PSR) = share of all faces whose protected
similarity is below the evaluator's calibrated threshold at FAR 1e-3 (also 1e-2, 1e-4; thresholds
from :func:`obscrowd_lib.recognition.load_thresholds`, decision "same person when cos ≥ t"), the
detection failures, the unprotected mean for the same faces, 95 % bootstrap intervals over faces
(seeds of one face resampled together), and a ``worst-case`` row: per face the worst attack.

Formal unlinkability (:func:`dsys`): the global D↔sys of Gomez-Barrero et al., IEEE TIFS 13(6) 2018,
from the **mated** scores (clean face vs its protected-and-attacked copy) and **non-mated** scores
(clean face vs another person's protected-and-attacked face of the same photo), per evaluator.
0 = fully unlinkable, 1 = fully linkable.

Output: :class:`EvaluationResult` (one photo) and :class:`FolderEvaluation` (pairs of a clean and a
protected folder, :func:`evaluate_folder`), each with ``to_json()`` in the versioned schema documented
in ``docs/evaluation_schema.md`` (top-level ``schema_version``, ``imperceptibility``, ``faces``,
``summary``, ``unlinkability``), CSV tables, a labelled figure and an HTML report.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

SCHEMA_VERSION = "1.0"  # version of the JSON written by to_json(); bump on any incompatible change
MIN_IOU = 0.3  # a detection matches a clean face when their boxes overlap at least this much (IoU)
FARS = (1e-2, 1e-3, 1e-4)  # false-accept rates at which PSR is reported
PSR_FAR = 1e-3  # the headline FAR: "psr" and "threshold" of the summary refer to it
BOOTSTRAP = 1000  # bootstrap resamples for the 95 % intervals
WORST_CASE = "worst-case"  # summary key: per face, the attack that left it most recognisable
NO_ATTACK = "none"  # attack key of the un-attacked protected photo
REGION_MARGIN = 0.6  # re-detection region: expected face box grown by this fraction of its side on every side
REGION_FACE_PX = 128  # each region is resized so that the expected (reference detector's) face box is this wide
REGION_MIN_FACE = 80  # min_size of the re-detector in regions: dlib finds faces >= 80 px without upsampling
# (dlib's boxes are ~0.75-0.9 of MTCNN's: 96-115 px on the sample photos at 128 px)
NMS_IOU = 0.5  # detections of overlapping regions overlapping more than this are one face (highest score kept)


@dataclass(frozen=True)
class AttackEntry:
    """One attack of the evaluation suite: a registry attack of :mod:`obscrowd_lib.attacks` with fixed parameters."""

    registry: str  # name in attacks.ATTACKS
    params: dict = field(default_factory=dict)  # parameters overriding the registry defaults
    optional: bool = False  # skipped (and reported as skipped) when its weights are absent
    description: str = ""  # one line for tables


#: The evaluation suite: real (non-differentiable) processing, learned regeneration, and the diffusers
#: editors (optional: they need weights the user provides; skipped with a note when absent).
EVAL_ATTACKS: dict[str, AttackEntry] = {
    NO_ATTACK: AttackEntry("identity", {}, description="protected photo as shared, no attack"),
    "jpeg95": AttackEntry("jpeg", {"quality": 95}, description="JPEG quality 95 (PIL)"),
    "jpeg75": AttackEntry("jpeg", {"quality": 75}, description="JPEG quality 75 (PIL)"),
    "jpeg50": AttackEntry("jpeg", {"quality": 50}, description="JPEG quality 50 (PIL)"),
    "resize0.5": AttackEntry("resize", {"scale": 0.5}, description="resize to 1/2 and back, bicubic"),
    "blur": AttackEntry("blur", {"kernel": 5, "sigma": 1.5}, description="Gaussian blur 5x5, sigma 1.5 (OpenCV)"),
    "noise0.05": AttackEntry("noise", {"sigma": 0.05}, description="Gaussian noise sigma 0.05"),
    "rotate10": AttackEntry("rotate", {"max_degrees": 10.0}, description="rotation uniform in +-10 degrees"),
    "waifu2x": AttackEntry("regen-waifu2x-photo", {}, description="downscale 1/2, waifu2x photo x2"),
    "realesrgan": AttackEntry("regen-realesrgan-x4plus", {}, description="downscale 1/4, Real-ESRGAN x4plus"),
    "pix2pix-smile": AttackEntry("pix2pix", {"prompt": "Make the person smile"}, optional=True,
                                 description="InstructPix2Pix 'Make the person smile', 50 steps"),
    "pix2pix-facelock": AttackEntry("pix2pix", {}, optional=True,
                                    description="InstructPix2Pix, FaceLock's first prompt, 50 steps"),
    "img2img": AttackEntry("img2img", {"prompt": "a photo of people"}, optional=True,
                           description="SD img2img, strength 0.5"),
}
DEFAULT_ATTACKS: tuple[str, ...] = tuple(EVAL_ATTACKS)  # the whole suite (optional editors skipped when absent)
SMOKE_ATTACKS: tuple[str, ...] = (NO_ATTACK, "jpeg75")  # a tiny suite for smoke runs and tests
DEFAULT_EVALUATORS: tuple[str, ...] | None = None  # None: every zoo recognizer whose weights are present
HOLDOUT = "facenet"  # the default held-out evaluator (left out of the default training ensemble)


# ----------------------------------------------------------------------------------------------
# Small pure functions: boxes, matching, unlinkability, bootstrap
# ----------------------------------------------------------------------------------------------


def box_iou(a: Any, b: Any) -> np.ndarray:
    """Intersection over union of every pair of boxes.

    Args:
        a: (N, 4) boxes (x0, y0, x1, y1) in pixels.
        b: (M, 4) boxes.
    Returns:
        (N, M) float64 IoU in [0, 1] (0 for degenerate boxes).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_boxes(reference: Any, detected: Any, min_iou: float = MIN_IOU) -> tuple[np.ndarray, np.ndarray]:
    """Match detected boxes to reference boxes: Hungarian assignment maximising the total IoU.

    Args:
        reference: (N, 4) boxes (x0, y0, x1, y1) of the clean faces (or where they are expected).
        detected: (M, 4) boxes found in the attacked photo.
        min_iou: pairs overlapping less than this are not matches.
    Returns:
        ``(index, iou)``: (N,) int index into ``detected`` of each reference face's match, -1 when it has
        none (a detection failure), and (N,) float IoU of the match (0 when none).
    """
    from scipy.optimize import linear_sum_assignment

    iou = box_iou(reference, detected)
    n = iou.shape[0]
    index, best = np.full(n, -1, dtype=np.int64), np.zeros(n)
    if iou.size == 0:
        return index, best
    rows, cols = linear_sum_assignment(-iou)
    for r, c in zip(rows, cols, strict=True):
        if iou[r, c] >= min_iou:
            index[r], best[r] = c, iou[r, c]
    return index, best


def _nms(faces: Sequence) -> list:
    """Greedy non-maximum suppression of Face records (highest score first, IoU > :data:`NMS_IOU` dropped)."""
    order = sorted(faces, key=lambda f: -float(f.score))
    kept: list = []
    for f in order:
        if not kept or box_iou([f.box], [k.box for k in kept]).max() <= NMS_IOU:
            kept.append(f)
    return kept


def dsys(mated: Any, nonmated: Any, *, omega: float = 1.0, bins: int | None = None) -> float:
    """Global unlinkability measure D↔sys of Gomez-Barrero et al. (IEEE TIFS 13(6), 2018), in [0, 1].

    Local measure, for a score s with likelihood ratio LR(s) = p(s | mated) / p(s | non-mated) and
    prior ratio ω: D↔(s) = 2 ω LR(s) / (1 + ω LR(s)) − 1 where ω LR(s) > 1, else 0 (and 1 where only
    mated scores occur). Global: D↔sys = ∫ p(s | mated) D↔(s) ds. The densities are histograms on
    a common grid over the range of all scores, ``bins`` bins (default min(100, max(5, n_mated // 10)),
    the reference implementation's rule with a floor of 5); the integral is the exact sum over the
    bins of (share of mated scores in the bin) × D↔ (the reference code's trapezoid over bin centres
    loses half a bin at each end). Identical distributions give 0, disjoint ones 1 -- in either
    direction: mated scores pushed consistently *below* the non-mated ones are as linkable as scores
    above them (an attacker reads the likelihood ratio of a score, not its sign), so a protection that
    sends every face to cosine −1 is not unlinkable.

    Args:
        mated: (P,) similarity scores of mated pairs (same person).
        nonmated: (Q,) scores of non-mated pairs (different people).
        omega: prior ratio P(mated) / P(non-mated).
        bins: histogram bins.
    Returns:
        D↔sys; NaN when either score set is empty.
    """
    m = np.asarray(mated, dtype=np.float64).ravel()
    nm = np.asarray(nonmated, dtype=np.float64).ravel()
    m, nm = m[np.isfinite(m)], nm[np.isfinite(nm)]
    if len(m) == 0 or len(nm) == 0:
        return float("nan")
    bins = int(bins) if bins is not None else min(100, max(5, len(m) // 10))
    lo, hi = float(min(m.min(), nm.min())), float(max(m.max(), nm.max()))
    if hi <= lo:
        hi = lo + 1e-9
    edges = np.linspace(lo, hi, bins + 1)
    p_m = np.histogram(m, bins=edges)[0] / len(m)
    p_nm = np.histogram(nm, bins=edges)[0] / len(nm)
    lr = np.divide(p_m, p_nm, out=np.ones_like(p_m), where=p_nm > 0)
    local = np.where(omega * lr > 1, 2 * omega * lr / (1 + omega * lr) - 1, 0.0)
    local[(p_nm == 0) & (p_m > 0)] = 1.0
    return float(np.clip((p_m * local).sum(), 0.0, 1.0))


def _finite(x: Any) -> float | None:
    """A float for JSON: None for NaN / inf / None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _r(x: Any, nd: int = 4) -> float | None:
    v = _finite(x)
    return None if v is None else round(v, nd) + 0.0  # + 0.0: no "-0.0" in reports


def far_key(far: float) -> str:
    """JSON key of a false-accept rate (as in thresholds.json): 0.001 → "0.001"."""
    return f"{float(far):g}"


# ----------------------------------------------------------------------------------------------
# The attack suite
# ----------------------------------------------------------------------------------------------


def parse_attack(spec: str) -> tuple[str, AttackEntry]:
    """An attack from its suite name (:data:`EVAL_ATTACKS`) or ``registry[:key=value,...]``.

    Examples: ``"jpeg75"``, ``"jpeg:quality=60"``, ``"noise:sigma=0.1"``, ``"regen-waifu2x-photo"``.
    Values are parsed as int, float, bool or kept as strings.
    """
    from . import attacks

    if spec in EVAL_ATTACKS:
        return spec, EVAL_ATTACKS[spec]
    name, _, rest = spec.partition(":")
    if name not in attacks.ATTACKS:
        raise KeyError(f"unknown attack {spec!r}: use a suite name ({', '.join(EVAL_ATTACKS)}) or a registry "
                       f"name ({', '.join(attacks.ATTACKS)}) with optional ':key=value,...'")
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"attack {spec!r}: expected key=value, got {item!r}")
        params[key.strip()] = _literal(value.strip())
    return spec, AttackEntry(name, params)


def _literal(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _is_random(attack: Any) -> bool:
    """Whether the attack's output depends on its seed (deterministic ones are applied once)."""
    from . import attacks as A

    return not isinstance(attack, (A.Identity, A.Jpeg, A.Resize, A.Blur, A.Regenerate, A.VaeRoundTrip))


def expected_boxes(attack: Any, boxes: Any, shape: tuple[int, int], seed: int) -> np.ndarray:
    """Where the clean face boxes are after ``attack``: unchanged, except for geometric attacks.

    For :class:`~obscrowd_lib.attacks.Rotate` and :class:`~obscrowd_lib.attacks.Crop` each box is drawn
    as a binary image, passed through the same attack with the same seed (three boxes per call, one
    per colour channel: one angle or crop per call), and replaced by the bounding box of the warped
    region (> 0.5). Other attacks keep the faces where they were.

    Args:
        attack: an :class:`~obscrowd_lib.attacks.Attack`.
        boxes: (N, 4) boxes (x0, y0, x1, y1) in the photo's pixels.
        shape: (H, W) of the photo.
        seed: the seed the attack is called with.
    Returns:
        (N, 4) float boxes; a box that leaves the photo entirely becomes (0, 0, 0, 0) (IoU 0 with anything).
    """
    from . import attacks as A

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not isinstance(attack, (A.Rotate, A.Crop)) or len(boxes) == 0:
        return boxes.copy()
    h, w = shape
    out = np.zeros_like(boxes)
    for start in range(0, len(boxes), 3):
        chunk = boxes[start:start + 3]
        img = torch.zeros(1, 3, h, w)
        for c, (x0, y0, x1, y1) in enumerate(chunk):
            img[0, c, max(0, int(round(y0))):max(0, int(round(y1))), max(0, int(round(x0))):max(0, int(round(x1)))] = 1
        warped = attack(img, seed)[0] > 0.5
        for c in range(len(chunk)):
            ys, xs = torch.nonzero(warped[c], as_tuple=True)
            if len(ys):
                out[start + c] = [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]
    return out


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Branch:
    """One attacked photo (clean or protected branch, one attack, one seed): matches and similarities."""

    match: np.ndarray  # (N,) index of the detection matched to each clean face, -1 = detection failure
    iou: np.ndarray  # (N,) IoU of that match (0 when none)
    boxes: np.ndarray  # (N, 4) box of the matched detection (NaN when none), attacked photo's pixels
    n_detections: int  # faces the independent detector found in the attacked photo
    similarity: dict  # evaluator -> (N, N) cosine, [i, j] = clean face i vs attacked face matched to j (NaN if none)
    seconds: float  # wall time of attack + detection + embedding


@dataclass(frozen=True)
class EvaluationResult:
    """The evaluation of one protected photo (see the module docstring for the protocol).

    ``records()`` is the long table (one row per face, attack, seed and evaluator); ``summary()``,
    ``unlinkability()`` and ``to_json()`` are computed from it.
    """

    name: str  # photo name (file stem in folder mode)
    size: tuple[int, int]  # (H, W) of the photo
    faces: tuple  # reference faces (faces.Face) detected on the clean photo
    attacks: dict  # attack key -> {"registry", "params", "random", "description"}
    skipped: dict  # attack key -> why it was skipped (optional editors without weights)
    evaluators: tuple[str, ...]  # FR models used, in order
    holdout: str | None  # evaluator reported as held out
    seeds: tuple[int, ...]  # seeds of the random attacks
    thresholds: dict  # evaluator -> {far: threshold} (empty dict when not calibrated)
    imperceptibility: dict  # metric -> value (protected vs clean), see metrics.imperceptibility
    branches: dict  # (attack, seed, "clean" | "protected") -> Branch
    protocol: dict  # detectors, min IoU, FARs, quantisation
    seconds: float  # wall time of the whole evaluation
    images: dict = field(default_factory=dict, repr=False)  # "clean" and attack key -> (H, W, 3) uint8 (first seed)

    def records(self) -> list[dict]:
        """Long table: one dict per (face, attack, seed, evaluator) with ``unprotected``, ``protected``
        (cosine, NaN when not detected), ``detected`` (protected branch), ``detected_unprotected``."""
        rows = []
        for (attack, seed, branch), b in self.branches.items():
            if branch != "protected":
                continue
            c = self.branches[(attack, seed, "clean")]
            for ev in self.evaluators:
                p, u = np.diag(b.similarity[ev]), np.diag(c.similarity[ev])
                for i in range(len(self.faces)):
                    rows.append({"photo": self.name, "face": i, "attack": attack, "seed": seed, "evaluator": ev,
                                 "unprotected": float(u[i]), "protected": float(p[i]),
                                 "detected": bool(b.match[i] >= 0), "detected_unprotected": bool(c.match[i] >= 0)})
        return rows

    def nonmated(self) -> list[dict]:
        """Non-mated scores: clean face i vs the attacked face matched to another clean face j of this photo."""
        out = []
        n = len(self.faces)
        off = ~np.eye(n, dtype=bool)
        for (attack, _seed, branch), b in self.branches.items():
            for ev in self.evaluators:
                s = b.similarity[ev][off]
                out.extend({"attack": attack, "branch": branch, "evaluator": ev, "score": float(v)}
                           for v in s[np.isfinite(s)])
        return out

    def summary(self, *, bootstrap: int = BOOTSTRAP, seed: int = 0) -> dict:
        """Per evaluator per attack summary (see :func:`summarize`)."""
        return summarize(self.records(), self.thresholds, self.evaluators, list(self.attacks), bootstrap=bootstrap,
                         seed=seed)

    def unlinkability(self) -> dict:
        """Per evaluator D↔sys (see :func:`unlinkability_report`)."""
        return unlinkability_report(self.records(), self.nonmated(), self.evaluators, list(self.attacks))

    def to_json(self, *, bootstrap: int = BOOTSTRAP) -> dict:
        """The versioned JSON document (schema: ``docs/evaluation_schema.md``)."""
        return {"schema_version": SCHEMA_VERSION, "kind": "photo",
                "photos": [{"name": self.name, "size": list(self.size), "faces": len(self.faces),
                            "seconds": round(self.seconds, 2)}],
                "protocol": self._protocol_json(),
                "imperceptibility": {k: _r(v, 5) for k, v in self.imperceptibility.items()},
                "faces": self.faces_json(),
                "summary": self.summary(bootstrap=bootstrap),
                "unlinkability": self.unlinkability()}

    def _protocol_json(self) -> dict:
        return {**self.protocol, "evaluators": list(self.evaluators), "holdout": self.holdout,
                "seeds": list(self.seeds), "attacks": self.attacks, "skipped_attacks": self.skipped,
                "thresholds": {ev: {far_key(f): _r(t) for f, t in thr.items()} for ev, thr in self.thresholds.items()}}

    def faces_json(self) -> list[dict]:
        """The ``faces`` list of the JSON: per face its box and per evaluator per attack the scores."""
        out = []
        for i, f in enumerate(self.faces):
            scores: dict = {}
            for ev in self.evaluators:
                scores[ev] = {}
                for attack in self.attacks:
                    per_seed = []
                    for s in self.seeds:
                        if (attack, s, "protected") not in self.branches:
                            continue
                        b, c = self.branches[(attack, s, "protected")], self.branches[(attack, s, "clean")]
                        per_seed.append({"seed": s, "unprotected": _r(c.similarity[ev][i, i]),
                                         "protected": _r(b.similarity[ev][i, i]), "detected": bool(b.match[i] >= 0),
                                         "detected_unprotected": bool(c.match[i] >= 0),
                                         "iou": _r(b.iou[i], 3)})
                    prot = [p["protected"] for p in per_seed if p["protected"] is not None]
                    unprot = [p["unprotected"] for p in per_seed if p["unprotected"] is not None]
                    scores[ev][attack] = {
                        "unprotected": _r(np.mean(unprot)) if unprot else None,
                        "protected": _r(np.mean(prot)) if prot else None,
                        "detected": all(p["detected"] for p in per_seed),
                        "detected_unprotected": all(p["detected_unprotected"] for p in per_seed),
                        "per_seed": per_seed}
            out.append({"photo": self.name, "index": i, "box": [round(float(v), 1) for v in f.box],
                        "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in np.asarray(f.landmarks)],
                        "score": _r(f.score), "scores": scores})
        return out

    def figure(self, evaluator: str | None = None, attacks: Sequence[str] | None = None, *, tile: int = 256,
               columns: int = 3):
        """The photo grid with each face labelled by its similarities (matplotlib figure).

        Tiles: the clean photo (face indices), then for each attack (default: all kept) the attacked
        protected photo with the matched detection boxes labelled ``#i u→p``: the unprotected and the
        protected cosine of ``evaluator`` (default: the held-out one, else the first); "missed" marks a
        detection failure. Needs the images kept by the evaluation (``keep_images=True``).
        """
        from . import viz

        if not self.images:
            raise ValueError(f"{self.name}: no images kept; evaluate with keep_images=True to draw the figure")
        ev = evaluator or (self.holdout if self.holdout in self.evaluators else self.evaluators[0])
        seed = self.seeds[0]
        imgs, titles, boxes, labels = [self.images["clean"]], [f"{self.name}: clean"], [], []
        boxes.append([tuple(f.box) for f in self.faces])
        labels.append([f"#{i}" for i in range(len(self.faces))])
        for attack in attacks or list(self.attacks):
            if attack not in self.images or (attack, seed, "protected") not in self.branches:
                continue
            b, c = self.branches[(attack, seed, "protected")], self.branches[(attack, seed, "clean")]
            bx, lb = [], []
            for i, f in enumerate(self.faces):
                u = f"{c.similarity[ev][i, i]:.2f}" if c.match[i] >= 0 else "missed"
                if b.match[i] >= 0:
                    bx.append(tuple(b.boxes[i]))
                    lb.append(f"#{i} {u}→{b.similarity[ev][i, i]:.2f}")
                else:
                    bx.append(tuple(f.box))
                    lb.append(f"#{i} {u}→missed")
            imgs.append(self.images[attack])
            titles.append(f"{'protected' if attack == NO_ATTACK else attack}: {ev} cosine u→p")
            boxes.append(bx)
            labels.append(lb)
        return viz.image_grid(imgs, titles, columns=columns, tile=tile, boxes=boxes, labels=labels)


def summarize(records: Sequence[Mapping], thresholds: Mapping[str, Mapping[float, float]], evaluators: Sequence[str],
              attacks: Sequence[str], *, fars: Sequence[float] = FARS, psr_far: float = PSR_FAR,
              bootstrap: int = BOOTSTRAP, seed: int = 0) -> dict:
    """Per evaluator, per attack (plus ``worst-case``) summary of the long table.

    For the rows of one evaluator and attack (faces × seeds; several photos in folder mode):

    * ``mean`` / ``worst``: mean / largest protected cosine over the detected rows (worst = the
      worst-protected face); ``unprotected_mean`` / ``unprotected_worst`` likewise for the clean branch;
    * ``psr``: {far: share of **all** rows detected **and** below the threshold at that FAR} (a
      detection failure is not a success); ``psr_detected``: the same share among detected rows;
      ``unprotected_psr``: share of clean-branch rows below the threshold at ``psr_far`` (what the
      attack alone already achieves);
    * ``threshold`` (at ``psr_far``) and ``thresholds``; ``detection_failures`` (count, protected branch),
      ``detection_failure_rate``, ``unprotected_detection_failures``; ``n`` rows, ``n_faces`` faces;
    * ``ci95``: 2.5 / 97.5 % bootstrap percentiles of ``mean`` and ``psr`` (at ``psr_far``), resampling
      faces with replacement (all seeds of a face together).

    ``worst-case``: one row per face: its largest protected cosine over every attack except ``none``
    and every seed (detected rows only), and success only when the face is detected and below the
    threshold under **every** attack and seed (the per-image worst case the field reports).

    Values are None when undefined (no detected face, no threshold for the evaluator).
    """
    if not records:
        return {}
    ev_col = np.array([r["evaluator"] for r in records])
    at_col = np.array([r["attack"] for r in records])
    face_col = np.array([f"{r['photo']}\x00{r['face']}" for r in records])
    prot = np.array([r["protected"] for r in records], dtype=np.float64)
    unprot = np.array([r["unprotected"] for r in records], dtype=np.float64)
    det = np.array([r["detected"] for r in records], dtype=bool)
    det_u = np.array([r["detected_unprotected"] for r in records], dtype=bool)
    rng = np.random.default_rng(seed)
    out: dict = {}
    for ev in evaluators:
        thr = {float(f): float(t) for f, t in (thresholds.get(ev) or {}).items()}
        out[ev] = {}
        sel_ev = ev_col == ev
        for attack in attacks:
            sel = sel_ev & (at_col == attack)
            if sel.any():
                out[ev][attack] = _summary_block(prot[sel], unprot[sel], det[sel], det_u[sel], face_col[sel], thr,
                                                 fars, psr_far, bootstrap, rng)
        # worst case over the attacks (excluding the un-attacked photo): one row per face
        sel = sel_ev & (at_col != NO_ATTACK)
        if sel.any():
            faces_u, inv = np.unique(face_col[sel], return_inverse=True)
            k = len(faces_u)
            p_s, u_s, d_s, du_s = prot[sel], unprot[sel], det[sel], det_u[sel]
            wp, wu = np.full(k, np.nan), np.full(k, np.nan)
            np.fmax.at(wp, inv, np.where(d_s, p_s, np.nan))
            np.fmax.at(wu, inv, np.where(du_s, u_s, np.nan))
            all_det = np.ones(k, dtype=bool)
            np.logical_and.at(all_det, inv, d_s)
            all_det_u = np.ones(k, dtype=bool)
            np.logical_and.at(all_det_u, inv, du_s)
            out[ev][WORST_CASE] = _summary_block(wp, wu, all_det, all_det_u, faces_u, thr, fars, psr_far,
                                                 bootstrap, rng)
    return out


def _summary_block(p: np.ndarray, u: np.ndarray, d: np.ndarray, du: np.ndarray, clusters: np.ndarray,
                   thr: Mapping[float, float], fars: Sequence[float], psr_far: float, bootstrap: int,
                   rng: np.random.Generator) -> dict:
    n = len(p)
    pd_, ud = p[d & np.isfinite(p)], u[du & np.isfinite(u)]
    block: dict[str, Any] = {
        "n": int(n), "n_faces": int(len(np.unique(clusters))),
        "mean": _r(pd_.mean()) if len(pd_) else None, "worst": _r(pd_.max()) if len(pd_) else None,
        "psr": {}, "psr_detected": {},
        "threshold": _r(thr.get(float(psr_far))), "thresholds": {far_key(f): _r(thr.get(float(f))) for f in fars},
        "detection_failures": int((~d).sum()), "detection_failure_rate": _r((~d).mean()),
        "unprotected_mean": _r(ud.mean()) if len(ud) else None, "unprotected_worst": _r(ud.max()) if len(ud) else None,
        "unprotected_detection_failures": int((~du).sum()), "unprotected_psr": None,
    }
    for f in fars:
        t = thr.get(float(f))
        if t is None:
            block["psr"][far_key(f)] = block["psr_detected"][far_key(f)] = None
            continue
        ok = d & (p < t)
        block["psr"][far_key(f)] = _r(ok.mean())
        block["psr_detected"][far_key(f)] = _r(ok[d].mean()) if d.any() else None
    t = thr.get(float(psr_far))
    if t is not None:
        block["unprotected_psr"] = _r((du & (u < t)).mean())
    block["ci95"] = _bootstrap(p, d, clusters, t, bootstrap, rng)
    return block


def _bootstrap(p: np.ndarray, d: np.ndarray, clusters: np.ndarray, thr: float | None, n_boot: int,
               rng: np.random.Generator) -> dict:
    """95 % percentile intervals of the mean protected cosine and of PSR, resampling clusters (faces)."""
    _, inv = np.unique(clusters, return_inverse=True)
    k = inv.max() + 1 if len(inv) else 0
    if k < 2 or n_boot <= 0:
        return {"mean": None, "psr": None}
    valid = d & np.isfinite(p)
    sum_p = np.bincount(inv, weights=np.where(valid, p, 0.0), minlength=k)
    n_det = np.bincount(inv, weights=valid.astype(float), minlength=k)
    n_all = np.bincount(inv, minlength=k).astype(float)
    w = rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot).astype(float)  # (B, K) cluster multiplicities
    out: dict[str, Any] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (w @ sum_p) / (w @ n_det)
        means = means[np.isfinite(means)]
        out["mean"] = [_r(np.percentile(means, 2.5)), _r(np.percentile(means, 97.5))] if len(means) else None
        if thr is None:
            out["psr"] = None
        else:
            succ = np.bincount(inv, weights=(valid & (p < thr)).astype(float), minlength=k)
            psr = (w @ succ) / (w @ n_all)
            out["psr"] = [_r(np.percentile(psr, 2.5)), _r(np.percentile(psr, 97.5))]
    return out


def unlinkability_report(records: Sequence[Mapping], nonmated: Sequence[Mapping], evaluators: Sequence[str],
                         attacks: Sequence[str], *, omega: float = 1.0) -> dict:
    """Per evaluator D↔sys (:func:`dsys`) pooled over the attacks, and per attack.

    Mated scores: the clean face vs its protected-and-attacked copy (detected rows of the long table);
    non-mated: a clean face vs another face of the same photo after protection and the same attack.
    ``dsys_unprotected`` uses the clean branch (clean face vs its attacked clean copy): the linkability
    the attack alone leaves. None when a score set is empty (e.g. one face per photo).
    """
    out: dict = {}
    for ev in evaluators:
        rows = [r for r in records if r["evaluator"] == ev]
        nm = [r for r in nonmated if r["evaluator"] == ev]

        def block(sel_attacks: set[str], rows: list = rows, nm: list = nm) -> dict:
            mp = [r["protected"] for r in rows if r["attack"] in sel_attacks and r["detected"]]
            mu = [r["unprotected"] for r in rows if r["attack"] in sel_attacks and r["detected_unprotected"]]
            np_ = [r["score"] for r in nm if r["attack"] in sel_attacks and r["branch"] == "protected"]
            nu = [r["score"] for r in nm if r["attack"] in sel_attacks and r["branch"] == "clean"]
            return {"dsys": _r(dsys(mp, np_, omega=omega)), "dsys_unprotected": _r(dsys(mu, nu, omega=omega)),
                    "n_mated": len(mp), "n_nonmated": len(np_)}

        out[ev] = {**block(set(attacks)), "per_attack": {a: block({a}) for a in attacks}}
    return out


# ----------------------------------------------------------------------------------------------
# The evaluator
# ----------------------------------------------------------------------------------------------


def _progress_enabled(progress: bool) -> bool:
    return bool(progress) and os.environ.get("OBSCROWD_PROGRESS", "1") != "0"


def _as_uint8(image: Any, what: str) -> np.ndarray:
    """(H, W, 3) uint8 from a path, an (H, W, 3) uint8 array or a (3, H, W) / (1, 3, H, W) tensor in [0, 1]."""
    if isinstance(image, (str, Path)):
        from .io import load_image

        return load_image(image)
    if isinstance(image, torch.Tensor):
        t = image.detach()
        t = t[0] if t.dim() == 4 and t.shape[0] == 1 else t
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"{what}: expected a (1, 3, H, W) or (3, H, W) tensor in [0, 1], got {tuple(image.shape)}")
        if float(t.min()) < -1e-4 or float(t.max()) > 1 + 1e-4:
            raise ValueError(f"{what}: tensor values must lie in [0, 1], "
                             f"got [{float(t.min()):.3g}, {float(t.max()):.3g}]")
        return (t.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"{what}: expected an (H, W, 3) uint8 RGB array, got shape {a.shape} dtype {a.dtype}")
    return a


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float() / 255


class Evaluator:
    """The evaluation protocol with its models loaded once (detectors, evaluators, attacks, metric models).

    Reuse one Evaluator for many photos: the clean photo's reference faces, embeddings and the whole
    clean ("unprotected") branch are cached per clean photo, so comparing several protections of the
    same photo pays for the clean branch once.

    Args:
        attacks: attack keys (:data:`EVAL_ATTACKS` names or ``registry:key=value`` specs, see
            :func:`parse_attack`) or :class:`~obscrowd_lib.attacks.Attack` objects. Optional suite
            attacks whose weights are absent are skipped (listed in ``skipped``); others raise.
        evaluators: zoo recognizer names; None = every recognizer with weights present.
        holdout: the evaluator reported as held out (None for none); must be among ``evaluators``.
        detector: the independent detector that re-detects faces in attacked photos.
        reference_detector: the detector that finds the reference faces on the clean photo.
        seeds: seeds of the random attacks (noise, rotation, editors); deterministic ones run once.
        metrics: imperceptibility metrics (names of :data:`obscrowd_lib.metrics.METRICS`).
        thresholds: path of a thresholds JSON, or {evaluator: {far: threshold}}; default: the shipped file.
        min_iou: IoU needed for a detection to match a clean face.
        detect_regions: re-detect faces in attacked photos inside a region around each expected face
            (box grown by :data:`REGION_MARGIN` × its side), resized so the face is :data:`REGION_FACE_PX`
            px (detections of overlapping regions merged by NMS) and searched for faces of at least
            :data:`REGION_MIN_FACE` px: the independent detector at a scale where it works without
            upsampling (dlib CNN finds faces from ~80 px), at a fraction of the cost of the whole photo
            (dlib CNN upsamples a 512 px photo twice: 10-40 s on the shared 2 cores, vs ~0.8 s per face
            region). A detection outside every region could not match a clean face anyway. False: whole
            photo, downscaled to ``detect_max_side``.
        detect_max_side: the reference detector (and the whole-photo mode) sees photos downscaled to at
            most this long side (boxes and landmarks mapped back); None keeps the full size.
        keep_images: keep the clean, protected and attacked (seed 0) photos for :meth:`EvaluationResult.figure`.
        device: torch device of the models.
        progress: progress bar (also off when OBSCROWD_PROGRESS=0).
        recognizers: already loaded recognizers to reuse, an
            :class:`~obscrowd_lib.recognition.FREnsemble` (e.g. the teacher's) or {name: recognizer};
            evaluators it does not hold are loaded from the zoo.
    """

    def __init__(self, *, attacks: Iterable[Any] = DEFAULT_ATTACKS,
                 evaluators: Iterable[str] | None = DEFAULT_EVALUATORS, holdout: str | None = HOLDOUT,
                 detector: str = "dlib-cnn", reference_detector: str = "mtcnn", seeds: Sequence[int] = (0,),
                 metrics: Sequence[str] | None = None, thresholds: str | Path | Mapping | None = None,
                 min_iou: float = MIN_IOU, detect_regions: bool = True, detect_max_side: int | None = 1024,
                 keep_images: bool = True, device: Any = "cpu", progress: bool = True,
                 recognizers: Any = None):
        from . import metrics as metrics_mod
        from . import recognition, zoo

        self.device = torch.device(device)
        self.progress = progress
        self.min_iou = float(min_iou)
        self.seeds = tuple(int(s) for s in seeds)
        if not self.seeds:
            raise ValueError("seeds must hold at least one seed")
        self.keep_images = keep_images
        self.detect_max_side = detect_max_side
        self.detect_regions = bool(detect_regions)
        self.metrics = tuple(metrics) if metrics is not None else metrics_mod.METRICS
        # evaluators
        names = list(evaluators) if evaluators is not None else recognition.recognizer_names()
        if not names:
            raise ValueError("no evaluator: fetch the zoo models (obscrowd models fetch) or pass evaluators=[...]")
        for n in names:
            e = zoo.get_entry(n)
            if e.kind != "recognizer":
                raise ValueError(f"evaluator {n!r} is a {e.kind}, not a recognizer")
        self.evaluators = tuple(names)
        if holdout is not None and holdout not in self.evaluators:
            holdout = None if evaluators is None else holdout
            if holdout is not None:
                raise ValueError(f"holdout {holdout!r} is not among the evaluators {list(self.evaluators)}")
        self.holdout = holdout
        shared = set(recognizers.names if isinstance(recognizers, recognition.FREnsemble) else recognizers or ())
        self.ensemble = recognition.FREnsemble([recognizers[n] if n in shared else n for n in self.evaluators],
                                               device=self.device)
        self.thresholds = self._load_thresholds(thresholds)
        # attacks
        self.attacks: dict[str, Any] = {}
        self.attack_info: dict[str, dict] = {}
        self.skipped: dict[str, str] = {}
        for spec in attacks:
            self._add_attack(spec)
        if not self.attacks:
            raise ValueError(f"no attack left to run (skipped: {self.skipped})")
        # detectors and metric models, loaded lazily
        self.detector_name, self.reference_detector_name = detector, reference_detector
        self._detectors: dict[str, Any] = {}
        self.suite = metrics_mod.MetricSuite()
        self._cache: dict[tuple, Any] = {}

    # -- set-up helpers
    def _load_thresholds(self, thresholds: Any) -> dict[str, dict[float, float]]:
        from . import recognition

        if isinstance(thresholds, Mapping):
            return {ev: {float(f): float(t) for f, t in thr.items()} for ev, thr in thresholds.items()
                    if ev in self.evaluators}
        try:
            doc = recognition.load_thresholds(thresholds)
        except FileNotFoundError:
            if thresholds is not None:
                raise
            return {}
        return {ev: {float(f): float(t) for f, t in doc["models"][ev].thresholds.items()}
                for ev in self.evaluators if ev in doc["models"]}

    def _add_attack(self, spec: Any) -> None:
        from . import attacks as A
        from . import zoo

        if isinstance(spec, A.Attack):
            key = spec.name
            if key in self.attacks:  # e.g. two JPEG qualities: tell them apart by their parameters
                key += ":" + ",".join(f"{k}={v}" for k, v in spec.params.items())
            self.attacks[key] = spec
            self.attack_info[key] = {"registry": spec.name, "params": _jsonable(spec.params),
                                     "random": _is_random(spec), "description": ""}
            return
        key, entry = parse_attack(str(spec))
        reg = A.ATTACKS[entry.registry]
        missing = [n for n in reg.needs if not zoo.is_available(n)]
        if missing and entry.optional:
            self.skipped[key] = (f"weights absent: {', '.join(missing)} "
                                 "(register them: obscrowd models register NAME PATH)")
            return
        atk = A.make_attack(entry.registry, device=self.device, **entry.params)
        if atk.differentiable and entry.registry.endswith("-diff"):
            raise ValueError(f"attack {key!r}: evaluation applies the real attacks, not the differentiable twins")
        self.attacks[key] = atk
        self.attack_info[key] = {"registry": entry.registry, "params": _jsonable(atk.params), "random": _is_random(atk),
                                 "description": entry.description}

    def detector(self, name: str, min_size: int | None = None) -> Any:
        """The face detector ``name`` (loaded once per ``min_size``; None: the detector's default)."""
        key = (name, min_size)
        if key not in self._detectors:
            from .faces import FaceDetector

            kw = {} if min_size is None else {"min_size": int(min_size)}
            self._detectors[key] = FaceDetector(name, device=self.device, **kw)
        return self._detectors[key]

    def detect(self, image: np.ndarray, name: str) -> list:
        """Faces of an (H, W, 3) uint8 photo, detected on a copy downscaled to ``detect_max_side`` if larger."""
        h, w = image.shape[:2]
        s = 1.0
        if self.detect_max_side and max(h, w) > self.detect_max_side:
            s = self.detect_max_side / max(h, w)
        return self._detect_scaled(image, name, s)

    def _detect_scaled(self, image: np.ndarray, name: str, s: float, offset: tuple[float, float] = (0.0, 0.0),
                       min_size: int | None = None) -> list:
        """Detect on ``image`` resized by ``s``; faces mapped back to the coordinates of ``image`` + ``offset``."""
        from .faces import Face

        h, w = image.shape[:2]
        if abs(s - 1.0) > 1e-6:
            from PIL import Image

            resample = Image.Resampling.BILINEAR if s < 1 else Image.Resampling.BICUBIC
            image = np.asarray(Image.fromarray(image).resize((max(1, round(w * s)), max(1, round(h * s))), resample))
        found = list(self.detector(name, min_size).detect(np.ascontiguousarray(image)))
        sx, sy = w / image.shape[1], h / image.shape[0]
        ox, oy = offset
        return [Face(box=(f.box[0] * sx + ox, f.box[1] * sy + oy, f.box[2] * sx + ox, f.box[3] * sy + oy),
                     landmarks=np.asarray(f.landmarks, dtype=np.float64) * [sx, sy] + [ox, oy], score=float(f.score))
                for f in found]

    def detect_around(self, image: np.ndarray, boxes: np.ndarray, name: str) -> list:
        """Faces of an (H, W, 3) uint8 photo found in regions around ``boxes`` (N, 4): see ``detect_regions``."""
        h, w = image.shape[:2]
        found: list = []
        for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
            side = max(x1 - x0, y1 - y0)
            if not side > 1:
                continue
            g = REGION_MARGIN * side
            rx0, ry0 = max(0, int(math.floor(x0 - g))), max(0, int(math.floor(y0 - g)))
            rx1, ry1 = min(w, int(math.ceil(x1 + g))), min(h, int(math.ceil(y1 + g)))
            if rx1 - rx0 < 4 or ry1 - ry0 < 4:
                continue
            found += self._detect_scaled(image[ry0:ry1, rx0:rx1], name, REGION_FACE_PX / side, (rx0, ry0),
                                         min_size=REGION_MIN_FACE)
        return _nms(found)

    # -- the protocol
    def reference_faces(self, clean: Any) -> tuple:
        """The reference faces of a clean photo (path, uint8 array or tensor): the reference detector's, cached."""
        return self._reference(_as_uint8(clean, "clean"), None)["faces"]

    def _reference(self, clean: np.ndarray, faces: Sequence | None) -> dict:
        key = ("reference", hashlib.sha256(clean.tobytes()).hexdigest(), clean.shape,
               None if faces is None else tuple(tuple(f.box) for f in faces))
        if key not in self._cache:
            ref_faces = tuple(faces) if faces is not None else tuple(self.detect(clean, self.reference_detector_name))
            photo = _to_tensor(clean).to(self.device)
            with torch.no_grad():
                emb = ({n: e.detach().float().cpu() for n, e in self.ensemble.embed_all(photo, list(ref_faces)).items()}
                       if ref_faces else {n: None for n in self.evaluators})
            self._cache[key] = {"faces": ref_faces, "embeddings": emb, "key": key}
        return self._cache[key]

    def _branch(self, image: np.ndarray, attack_key: str, seed: int, ref: dict) -> tuple[Branch, np.ndarray]:
        t0 = time.perf_counter()
        attack = self.attacks[attack_key]
        photo = _to_tensor(image).to(self.device)
        with torch.no_grad():
            attacked = attack(photo, seed)
        attacked_img = (attacked[0].detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        faces = ref["faces"]
        n = len(faces)
        exp = expected_boxes(attack, [f.box for f in faces], image.shape[:2], seed)
        found = (self.detect_around(attacked_img, exp, self.detector_name) if self.detect_regions
                 else self.detect(attacked_img, self.detector_name))
        match, iou = match_boxes(exp, [f.box for f in found], self.min_iou)
        boxes = np.full((n, 4), np.nan)
        sims = {ev: np.full((n, n), np.nan) for ev in self.evaluators}
        hit = np.nonzero(match >= 0)[0]
        if len(hit):
            det_faces = [found[match[i]] for i in hit]
            boxes[hit] = [f.box for f in det_faces]
            x = _to_tensor(attacked_img).to(self.device)
            with torch.no_grad():
                emb = self.ensemble.embed_all(x, det_faces)
            for ev in self.evaluators:
                s = ref["embeddings"][ev].double() @ emb[ev].detach().double().cpu().T  # (N, n_hit)
                sims[ev][:, hit] = s.numpy()
        return Branch(match=match, iou=iou, boxes=boxes, n_detections=len(found), similarity=sims,
                      seconds=time.perf_counter() - t0), attacked_img

    def evaluate(self, clean: Any, protected: Any, *, name: str = "photo", faces: Sequence | None = None,
                 mask: Any = None) -> EvaluationResult:
        """Evaluate one protected photo against its clean original.

        Args:
            clean: the original photo: a path, an (H, W, 3) uint8 array or a (1, 3, H, W) tensor in [0, 1].
            protected: the protected photo, same forms and size. Tensors are rounded to 8 bits first (as
                the saved PNG would be): a float perturbation finer than 1/255 is not credited.
            name: photo name in reports.
            faces: reference faces (default: detected on ``clean`` with the reference detector).
            mask: (H, W) union face mask in [0, 1] for the masked imperceptibility metrics; default
                :func:`obscrowd_lib.masks.face_masks` of the reference faces.
        Returns:
            :class:`EvaluationResult`.
        """
        t0 = time.perf_counter()
        clean_img, prot_img = _as_uint8(clean, f"{name}: clean"), _as_uint8(protected, f"{name}: protected")
        if clean_img.shape != prot_img.shape:
            raise ValueError(f"{name}: clean {clean_img.shape[:2]} and protected {prot_img.shape[:2]} photos differ "
                             "in size (H, W); a protection must keep the photo's size")
        ref = self._reference(clean_img, faces)
        ref_faces = ref["faces"]
        identical = bool(np.array_equal(clean_img, prot_img))
        imperc = self._imperceptibility(clean_img, prot_img, ref_faces, mask)
        branches: dict[tuple, Branch] = {}
        images = {"clean": clean_img} if self.keep_images else {}
        jobs = [(a, s) for a in self.attacks for s in (self.seeds if self.attack_info[a]["random"] else self.seeds[:1])]
        from tqdm.auto import tqdm

        bar = tqdm(jobs, desc=f"evaluate {name}", disable=not _progress_enabled(self.progress), leave=False)
        for attack_key, seed in bar:
            if not ref_faces:
                break
            ckey = ("clean", ref["key"], attack_key, seed)
            if ckey not in self._cache:
                self._cache[ckey], img = self._branch(clean_img, attack_key, seed, ref)
                if self.keep_images and seed == self.seeds[0]:
                    self._cache[ckey + ("image",)] = img
            branches[(attack_key, seed, "clean")] = self._cache[ckey]
            if identical:  # no defence: the protected branch is the clean one
                branches[(attack_key, seed, "protected")] = self._cache[ckey]
                attacked = self._cache.get(ckey + ("image",))
            else:
                branches[(attack_key, seed, "protected")], attacked = self._branch(prot_img, attack_key, seed, ref)
            if self.keep_images and seed == self.seeds[0] and attacked is not None:
                images[attack_key] = attacked
        protocol = {"reference_detector": self.reference_detector_name, "detector": self.detector_name,
                    "min_iou": self.min_iou, "fars": list(FARS), "psr_far": PSR_FAR,
                    "detect_max_side": self.detect_max_side, "quantised_to_8_bits": True,
                    "detect_regions": ({"margin": REGION_MARGIN, "face_px": REGION_FACE_PX,
                                        "min_face_px": REGION_MIN_FACE} if self.detect_regions else None),
                    "decision_rule": "same person when cosine >= threshold"}
        return EvaluationResult(name=name, size=tuple(clean_img.shape[:2]), faces=tuple(ref_faces),
                                attacks=dict(self.attack_info), skipped=dict(self.skipped), evaluators=self.evaluators,
                                holdout=self.holdout, seeds=self.seeds, thresholds=self.thresholds,
                                imperceptibility=imperc, branches=branches, protocol=protocol,
                                seconds=time.perf_counter() - t0, images=images)

    def _imperceptibility(self, clean: np.ndarray, prot: np.ndarray, faces: Sequence, mask: Any) -> dict:
        if not self.metrics:
            return {}
        x, y = _to_tensor(clean), _to_tensor(prot)
        if mask is None and faces:
            from .masks import face_masks

            mask = face_masks(tuple(clean.shape[:2]), list(faces)).union
        if mask is not None:
            mask = torch.as_tensor(mask, dtype=torch.float32)
            mask = mask.reshape(mask.shape[-2:])
            if not bool((mask > 0.5).any()):
                mask = None
        return self.suite.imperceptibility(x, y, mask=mask, metrics=self.metrics, device=self.device)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, int, str)) or obj is None:
        return obj
    if isinstance(obj, float):
        return _finite(obj)
    return str(obj)


def evaluate(clean: Any, protected: Any, *, attacks: Iterable[Any] = DEFAULT_ATTACKS,
             evaluators: Iterable[str] | None = DEFAULT_EVALUATORS, holdout: str | None = HOLDOUT,
             detector: str = "dlib-cnn", reference_detector: str = "mtcnn", seeds: Sequence[int] = (0,),
             device: Any = "cpu", progress: bool = True, name: str = "photo", faces: Sequence | None = None,
             mask: Any = None, **options: Any) -> EvaluationResult:
    """Evaluate one protected photo with the per-face protocol (module docstring). One call, models loaded here.

    ``clean`` / ``protected``: paths, (H, W, 3) uint8 arrays or (1, 3, H, W) tensors in [0, 1].
    Other keyword arguments go to :class:`Evaluator` (``metrics``, ``thresholds``, ``min_iou``,
    ``detect_max_side``, ``keep_images``). Use an :class:`Evaluator` directly to evaluate many photos.

    Example::

        res = evaluate("clean.png", "protected.png", attacks=["jpeg75", "waifu2x"])
        res.summary()["facenet"]["jpeg75"]["psr"]["0.001"]
        write_json(res.to_json(), "report.json")
    """
    ev = Evaluator(attacks=attacks, evaluators=evaluators, holdout=holdout, detector=detector,
                   reference_detector=reference_detector, seeds=seeds, device=device, progress=progress, **options)
    return ev.evaluate(clean, protected, name=name, faces=faces, mask=mask)


# ----------------------------------------------------------------------------------------------
# Comparing methods at matched budgets
# ----------------------------------------------------------------------------------------------


def compare_methods(photo: Any, methods: Sequence[str], *, evaluator: Evaluator, eps_255: float = 8.0,
                    steps: int | None = None, seed: int = 0, name: str = "photo", faces: Sequence | None = None,
                    teacher_config: Any = None, models: Any = None, vae: Any = None,
                    progress: bool = True) -> dict[str, dict]:
    """Protect one photo with every method at the same L∞ budget and evaluate each in the same harness.

    Args:
        photo: path, (H, W, 3) uint8 array or (1, 3, H, W) tensor in [0, 1].
        methods: names of :data:`obscrowd_lib.baselines.METHODS` (baselines and ``"teacher"``).
        evaluator: the :class:`Evaluator` (its clean branch is computed once for all methods).
        eps_255, steps, seed: budget in /255, iterations (None: each method's default) and seed.
        faces: faces to protect (default: the evaluator's reference faces of the clean photo).
        teacher_config, models, vae: passed to :func:`obscrowd_lib.baselines.protect_method` (load ``models``
            once with :func:`obscrowd_lib.baselines.load_baseline_models`).
    Returns:
        ``{method: {"evaluation": EvaluationResult, "protection": BaselineResult}}`` in the order given.
    """
    from .baselines import protect_method

    clean = _as_uint8(photo, name)
    faces = tuple(faces) if faces is not None else evaluator.reference_faces(clean)
    if not faces:
        raise ValueError(f"{name}: no faces found on the clean photo; nothing to protect")
    x = _to_tensor(clean).to(evaluator.device)
    out: dict[str, dict] = {}
    for m in methods:
        prot = protect_method(m, x, faces, eps_255=eps_255, steps=steps, device=evaluator.device, seed=seed,
                              teacher_config=teacher_config, models=models, vae=vae, progress=progress)
        out[m] = {"protection": prot,
                  "evaluation": evaluator.evaluate(clean, prot.protected, name=f"{name}:{m}", faces=faces)}
    return out


def budget_curves(sweep: Mapping[float, Mapping[str, Mapping]], evaluator: str, attack: str = WORST_CASE,
                  key: str = "mean") -> dict[str, dict[float, float | None]]:
    """``{eps: compare_methods(...)}`` → ``{method: {eps: summary[evaluator][attack][key]}}`` for
    :func:`budget_curve_figure` (``key``: "mean", "worst", or "psr" for PSR at FAR 1e-3)."""
    curves: dict[str, dict[float, float | None]] = {}
    for eps, per_method in sweep.items():
        for m, r in per_method.items():
            b = r["evaluation"].summary(bootstrap=0).get(evaluator, {}).get(attack)
            v = None if b is None else (b["psr"].get(far_key(PSR_FAR)) if key == "psr" else b[key])
            curves.setdefault(m, {})[float(eps)] = v
    return curves


# ----------------------------------------------------------------------------------------------
# Folders
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderEvaluation:
    """Evaluations of many photo pairs, pooled: summaries and intervals over every face of every photo."""

    results: tuple[EvaluationResult, ...]  # one per pair, in file-name order
    unpaired: dict  # file name -> why it was not evaluated (no partner, unreadable, size mismatch)
    seconds: float  # wall time

    def records(self) -> list[dict]:
        return [r for res in self.results for r in res.records()]

    def summary(self, *, bootstrap: int = BOOTSTRAP, seed: int = 0) -> dict:
        if not self.results:
            return {}
        first = self.results[0]
        return summarize(self.records(), first.thresholds, first.evaluators, self._attacks(), bootstrap=bootstrap,
                         seed=seed)

    def _attacks(self) -> list[str]:
        return list(dict.fromkeys(a for res in self.results for a in res.attacks))

    def unlinkability(self) -> dict:
        if not self.results:
            return {}
        nonmated = [n for res in self.results for n in res.nonmated()]
        return unlinkability_report(self.records(), nonmated, self.results[0].evaluators, self._attacks())

    def imperceptibility(self) -> dict:
        """Mean of each imperceptibility metric over the photos (finite values only)."""
        keys = list(dict.fromkeys(k for res in self.results for k in res.imperceptibility))
        out = {}
        for k in keys:
            v = [res.imperceptibility[k] for res in self.results
                 if k in res.imperceptibility and math.isfinite(res.imperceptibility[k])]
            out[k] = float(np.mean(v)) if v else None
        return out

    def to_json(self, *, bootstrap: int = BOOTSTRAP) -> dict:
        protocol = self.results[0]._protocol_json() if self.results else {}
        return {"schema_version": SCHEMA_VERSION, "kind": "folder",
                "photos": [{"name": r.name, "size": list(r.size), "faces": len(r.faces), "seconds": round(r.seconds, 2),
                            "imperceptibility": {k: _r(v, 5) for k, v in r.imperceptibility.items()}}
                           for r in self.results],
                "unpaired": self.unpaired, "protocol": protocol,
                "imperceptibility": {k: _r(v, 5) for k, v in self.imperceptibility().items()},
                "faces": [f for r in self.results for f in r.faces_json()],
                "summary": self.summary(bootstrap=bootstrap), "unlinkability": self.unlinkability()}


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")  # files evaluate_folder pairs


def pair_folders(clean_dir: str | Path, protected_dir: str | Path) -> tuple[list[tuple[Path, Path]], dict]:
    """Pair the images of two folders by file stem (``a.jpg`` ↔ ``a.png``). Returns (pairs, unpaired)."""
    clean_dir, protected_dir = Path(clean_dir), Path(protected_dir)
    for d in (clean_dir, protected_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: no such folder")

    def index(d: Path) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for p in sorted(d.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                if p.stem in out:
                    raise ValueError(f"{d}: two images share the stem {p.stem!r} ({out[p.stem].name}, {p.name})")
                out[p.stem] = p
        return out

    c, p = index(clean_dir), index(protected_dir)
    pairs = [(c[s], p[s]) for s in sorted(set(c) & set(p))]
    unpaired = {str(c[s]): "no protected image with this stem" for s in sorted(set(c) - set(p))}
    unpaired |= {str(p[s]): "no clean image with this stem" for s in sorted(set(p) - set(c))}
    if not pairs:
        raise ValueError(f"{clean_dir} and {protected_dir}: no image pairs with matching file stems")
    return pairs, unpaired


def evaluate_folder(clean_dir: str | Path, protected_dir: str | Path, *, out_dir: str | Path | None = None,
                    evaluator: Evaluator | None = None, progress: bool = True, **options: Any) -> FolderEvaluation:
    """Evaluate every pair of photos of two folders (paired by file stem), pooled over all faces.

    Args:
        clean_dir, protected_dir: folders of originals and of their protected copies.
        out_dir: when given, writes ``evaluation.json`` (the versioned schema), ``summary.csv`` and
            ``faces.csv`` there (:func:`write_reports`).
        evaluator: a ready :class:`Evaluator`; else one is built from ``options`` (keyword arguments of
            :class:`Evaluator`; images are not kept unless ``keep_images=True``).
        progress: a progress bar over the pairs.
    Returns:
        :class:`FolderEvaluation`; pairs whose photos cannot be read or differ in size are listed in
        ``unpaired`` with the reason, the others are evaluated.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    pairs, unpaired = pair_folders(clean_dir, protected_dir)
    if evaluator is None:
        options.setdefault("keep_images", False)
        evaluator = Evaluator(progress=False, **options)
    results = []
    for c, p in tqdm(pairs, desc="photos", disable=not _progress_enabled(progress)):
        try:
            results.append(evaluator.evaluate(c, p, name=c.stem))
        except ValueError as e:  # unreadable image or size mismatch: report, go on
            unpaired[str(p)] = str(e)
    res = FolderEvaluation(results=tuple(results), unpaired=unpaired, seconds=time.perf_counter() - t0)
    if out_dir is not None:
        write_reports(res, out_dir)
    return res


def evaluate_paths(clean: str | Path, protected: str | Path, *, json_out: str | Path | None = None,
                   html_out: str | Path | None = None, csv_dir: str | Path | None = None, progress: bool = True,
                   evaluator: Evaluator | None = None, **options: Any) -> EvaluationResult | FolderEvaluation:
    """What ``obscrowd evaluate`` does: one photo pair, or two folders paired by file stem.

    Args:
        clean, protected: two image files, or two folders.
        json_out: where to write the JSON report (versioned schema, ``docs/evaluation_schema.md``).
        html_out: where to write the HTML report (labelled photo grid for a single pair).
        csv_dir: where to write ``summary.csv`` and ``faces.csv`` (and the JSON again as ``evaluation.json``).
        evaluator: a ready :class:`Evaluator`; else one is built from ``options`` (keyword arguments of
            :class:`Evaluator`: ``attacks``, ``evaluators``, ``holdout``, ``seeds``, ``device``, ...).
    """
    clean, protected = Path(clean), Path(protected)
    for p in (clean, protected):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
    if clean.is_dir() != protected.is_dir():
        raise ValueError(f"{clean} and {protected}: give two image files or two folders")
    if clean.is_dir():
        res: EvaluationResult | FolderEvaluation = evaluate_folder(clean, protected, evaluator=evaluator,
                                                                   progress=progress, **options)
    elif evaluator is not None:
        res = evaluator.evaluate(clean, protected, name=clean.stem)
    else:
        res = evaluate(clean, protected, name=clean.stem, progress=progress, **options)
    write_outputs(res, json_out=json_out, html_out=html_out, csv_dir=csv_dir)
    return res


def write_outputs(res: "EvaluationResult | FolderEvaluation", *, json_out: str | Path | None = None,
                  html_out: str | Path | None = None, csv_dir: str | Path | None = None,
                  doc: Mapping | None = None) -> Mapping | None:
    """Write the JSON / HTML / CSV reports of one result (each only when its path is given).

    ``doc`` is ``res.to_json()`` when the caller already has it (the bootstrap behind the summary is the
    slow part); it is computed once here otherwise. Returns the document, or None when nothing needed it.
    """
    if doc is None and (json_out is not None or html_out is not None):
        doc = res.to_json()
    if json_out is not None:
        write_json(doc, json_out)
    if html_out is not None:
        write_html(res, html_out, doc=doc)
    if csv_dir is not None:
        write_reports(res, csv_dir)
    return doc


# ----------------------------------------------------------------------------------------------
# Reports: JSON, CSV, HTML, comparison tables, figures
# ----------------------------------------------------------------------------------------------


def write_json(doc: Mapping, path: str | Path) -> Path:
    """Write a report atomically as strict JSON (to_json() output holds None, never NaN / inf)."""
    import json

    from .io import write_text_atomic

    return write_text_atomic(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")


SUMMARY_COLUMNS = ("evaluator", "attack", "held_out", "n_faces", "n", "mean", "worst", "psr", "psr_0.01", "psr_0.0001",
                   "threshold", "detection_failures", "detection_failure_rate", "unprotected_mean", "unprotected_psr",
                   "mean_ci_lo", "mean_ci_hi", "psr_ci_lo", "psr_ci_hi")  # columns of summary_rows / summary.csv


def summary_rows(summary: Mapping, holdout: str | None = None) -> list[dict]:
    """Flatten a summary (evaluator → attack → block) into rows with :data:`SUMMARY_COLUMNS`."""
    rows = []
    for ev, per_attack in summary.items():
        for attack, b in per_attack.items():
            ci = b.get("ci95") or {}
            rows.append({"evaluator": ev, "attack": attack, "held_out": ev == holdout, "n_faces": b["n_faces"],
                         "n": b["n"], "mean": b["mean"], "worst": b["worst"], "psr": b["psr"].get(far_key(PSR_FAR)),
                         "psr_0.01": b["psr"].get(far_key(1e-2)), "psr_0.0001": b["psr"].get(far_key(1e-4)),
                         "threshold": b["threshold"], "detection_failures": b["detection_failures"],
                         "detection_failure_rate": b["detection_failure_rate"],
                         "unprotected_mean": b["unprotected_mean"], "unprotected_psr": b["unprotected_psr"],
                         "mean_ci_lo": (ci.get("mean") or [None, None])[0],
                         "mean_ci_hi": (ci.get("mean") or [None, None])[1],
                         "psr_ci_lo": (ci.get("psr") or [None, None])[0],
                         "psr_ci_hi": (ci.get("psr") or [None, None])[1]})
    return rows


def write_csv(rows: Sequence[Mapping], path: str | Path, columns: Sequence[str] | None = None) -> Path:
    """Write rows (dicts) as CSV, atomically; empty cells for None."""
    from .io import write_text_atomic

    columns = list(columns or (list(rows[0]) if rows else []))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return write_text_atomic(path, buf.getvalue())


def write_reports(result: EvaluationResult | FolderEvaluation, out_dir: str | Path, *, html: bool = False) -> dict:
    """Write ``evaluation.json``, ``summary.csv`` (one row per evaluator and attack) and ``faces.csv``
    (the long table) into ``out_dir``; with ``html`` also ``report.html``. Returns {kind: path}."""
    out = Path(out_dir)
    doc = result.to_json()
    paths = {"json": write_json(doc, out / "evaluation.json")}
    holdout = doc["protocol"].get("holdout") if doc["protocol"] else None
    paths["summary_csv"] = write_csv(summary_rows(doc["summary"], holdout), out / "summary.csv", SUMMARY_COLUMNS)
    cols = ("photo", "face", "attack", "seed", "evaluator", "unprotected", "protected", "detected",
            "detected_unprotected")
    paths["faces_csv"] = write_csv([{k: (_r(v) if isinstance(v, float) else v) for k, v in r.items()}
                                    for r in result.records()], out / "faces.csv", cols)
    if html:
        paths["html"] = write_html(result, out / "report.html", doc=doc)
    return paths


def write_html(result: EvaluationResult | FolderEvaluation, path: str | Path, *, doc: Mapping | None = None,
               evaluator: str | None = None) -> Path:
    """A self-contained HTML report: the labelled photo grid (single photo), imperceptibility, the summary
    table per evaluator, and D↔sys."""
    import html as _html

    doc = doc or result.to_json()
    parts = ["<!doctype html><meta charset='utf-8'><title>obscrowd evaluation</title>",
             ("<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;margin:0.5em 0 1.5em}"
              "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}</style>"),
             (f"<h1>obscrowd evaluation</h1><p>schema {SCHEMA_VERSION}; photos: "
              f"{_html.escape(', '.join(p['name'] for p in doc['photos']))}; "
              f"held out: {doc['protocol'].get('holdout')}</p>")]
    if isinstance(result, EvaluationResult) and result.images:
        import matplotlib.pyplot as plt

        fig = result.figure(evaluator)
        buf = io.BytesIO()
        fig.savefig(buf, format="jpeg", bbox_inches="tight", pil_kwargs={"quality": 85})
        plt.close(fig)
        parts.append(f"<img alt='faces labelled u=unprotected p=protected cosine' "
                     f"src='data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}'>")
    parts.append("<h2>Imperceptibility (protected vs clean)</h2>" + _html_table(
        [{"metric": k, "value": v} for k, v in doc["imperceptibility"].items()], ["metric", "value"]))
    holdout = doc["protocol"].get("holdout")
    for ev, per_attack in doc["summary"].items():
        rows = summary_rows({ev: per_attack}, holdout)
        parts.append(f"<h2>{_html.escape(ev)}{' (held out)' if ev == holdout else ''}</h2>"
                     + _html_table(rows, ["attack", "n_faces", "mean", "worst", "psr", "psr_ci_lo", "psr_ci_hi",
                                          "threshold", "detection_failures", "unprotected_mean", "unprotected_psr"]))
    parts.append("<h2>Unlinkability D&harr;sys (0 unlinkable, 1 linkable)</h2>" + _html_table(
        [{"evaluator": ev, **{k: v for k, v in u.items() if k != "per_attack"}}
         for ev, u in doc["unlinkability"].items()],
        ["evaluator", "dsys", "dsys_unprotected", "n_mated", "n_nonmated"]))
    from .io import write_text_atomic

    return write_text_atomic(path, "\n".join(parts) + "\n")


def _html_table(rows: Sequence[Mapping], columns: Sequence[str]) -> str:
    import html as _html

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return _html.escape(str(v))

    head = "".join(f"<th>{_html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def comparison_table(results: Mapping[str, Any], evaluator: str, *, attacks: Sequence[str] | None = None,
                     far: float = PSR_FAR, imperceptibility: Sequence[str] = ("psnr", "ssim", "lpips-alex")
                     ) -> list[dict]:
    """FaceLock-Table-1-shaped comparison: one row per method, columns per attack.

    Args:
        results: method name → :class:`EvaluationResult`, :class:`FolderEvaluation` or a ``to_json()`` dict.
        evaluator: whose similarities and PSR are shown (e.g. the held-out one).
        attacks: attack columns (default: those of the first result, plus ``worst-case``).
        far: FAR of the PSR columns.
        imperceptibility: metric columns (protected vs clean).
    Returns:
        Rows ``{"method", "sim:<attack>", "psr:<attack>", ..., "missed", "<metric>"...}`` (None where
        undefined); ``missed`` = share of faces the detector lost under at least one attack (worst case).
    """
    rows = []
    for method, res in results.items():
        doc = res if isinstance(res, Mapping) else res.to_json(bootstrap=0)
        summ = doc["summary"].get(evaluator)
        if summ is None:
            raise KeyError(f"{method}: evaluator {evaluator!r} not in the evaluation ({list(doc['summary'])})")
        cols = list(attacks) if attacks is not None else list(summ)
        row: dict[str, Any] = {"method": method}
        for a in cols:
            b = summ.get(a)
            row[f"sim:{a}"] = b["mean"] if b else None
            row[f"psr:{a}"] = b["psr"].get(far_key(far)) if b else None
        worst = summ.get(WORST_CASE)
        row["missed"] = worst["detection_failure_rate"] if worst else None
        for m in imperceptibility:
            row[m] = doc["imperceptibility"].get(m)
        rows.append(row)
    return rows


def format_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None, *, digits: int = 3) -> str:
    """Rows as a Markdown table (numbers rounded to ``digits``; empty for None)."""
    if not rows:
        return ""
    columns = list(columns or rows[0])

    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def budget_curve_figure(curves: Mapping[str, Mapping[float, float | None]], *, ylabel: str = "protected cosine",
                        title: str = "", threshold: float | None = None, unprotected: float | None = None):
    """Similarity-vs-budget curves: ``curves[method][eps_255] = value``; a dashed line at ``threshold`` and a
    dotted one at the ``unprotected`` value (no defence, same faces and attacks)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=100)
    for method, pts in curves.items():
        xs = sorted(e for e, v in pts.items() if v is not None)
        if xs:
            ax.plot(xs, [pts[e] for e in xs], marker="o", label=method)
    if threshold is not None:
        ax.axhline(threshold, color="k", ls="--", lw=1, label="threshold (FAR 1e-3)")
    if unprotected is not None:
        ax.axhline(unprotected, color="grey", ls=":", lw=1.5, label="no defence")
    ax.set_xlabel("L-inf budget (/255)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


__all__ = ["SCHEMA_VERSION", "MIN_IOU", "FARS", "PSR_FAR", "EVAL_ATTACKS", "DEFAULT_ATTACKS", "SMOKE_ATTACKS",
           "DEFAULT_EVALUATORS", "HOLDOUT", "AttackEntry", "Branch", "EvaluationResult", "FolderEvaluation",
           "Evaluator",
           "box_iou", "match_boxes", "dsys", "expected_boxes", "parse_attack", "summarize", "unlinkability_report",
           "evaluate", "evaluate_folder", "evaluate_paths", "pair_folders", "write_json", "write_csv",
           "write_reports", "write_html", "summary_rows", "comparison_table", "compare_methods", "budget_curves",
           "format_table", "budget_curve_figure", "far_key"]
