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
:class:`Recognizer`, :func:`load_recognizer`, :class:`DlibNativeRecognizer`, :func:`load_dlib_native`
-- one FR model behind ``embed(photo, faces) -> (N, D)``.
:class:`FREnsemble`, :func:`recognizer_names`, :func:`training_ensemble`, :func:`holdout` -- several
models, per-model per-face cosines.
:class:`Calibration`, :func:`calibrate`, :func:`calibrate_embeddings`, :func:`calibrate_on_images`,
:func:`calibrate_on_folder`, :func:`save_thresholds`, :func:`load_thresholds`, :func:`threshold_for`
-- thresholds at fixed false-accept rates, and the shipped ones.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
    sampled with an affine grid (what ``F.affine_grid`` builds, written out here so the
    pixel <-> normalised conversion is explicit) + bilinear ``grid_sample`` (``align_corners=False``), so the
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
    n, bsz = lm.shape[0], photo.shape[0]
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
    chunks: list[tuple[torch.Tensor, torch.Tensor]] = []  # (face indices, their crops)
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


# ----------------------------------------------------------------------------------------------
# One recognizer
# ----------------------------------------------------------------------------------------------


class Recognizer:
    """One FR model behind one interface: ``embed(photo, faces)`` → (N, D) unit vectors.

    Wraps a zoo recognizer network (contract in :mod:`obscrowd_lib.zoo`: ``forward(crops)`` with
    (N, 3, S, S) crops in [0, 1] → (N, D) unit vectors, attributes ``crop_size``, ``template``,
    ``embedding_dim``) and puts :func:`align_faces` in front of it, so gradients flow from the
    embedding back to the whole photo when the network is differentiable.
    """

    def __init__(self, network: torch.nn.Module, name: str = "custom", differentiable: bool = True, *,
                 padding_mode: str = "zeros", antialias: bool = True):
        for attr in ("crop_size", "template", "embedding_dim"):
            if not hasattr(network, attr):
                raise TypeError(f"recognizer network {name!r} lacks the attribute {attr!r} "
                                "(see the recognizer contract in obscrowd_lib/zoo.py)")
        template = torch.as_tensor(network.template, dtype=torch.float32)
        if template.shape != (5, 2):
            raise ValueError(f"recognizer {name!r}: template must be (5, 2), got {tuple(template.shape)}")
        self.network = network
        self.name = name  # zoo name (or "custom")
        self.differentiable = bool(differentiable)  # whether gradients reach the photo
        self.crop_size = int(network.crop_size)  # S of the aligned crops
        self.template = template  # (5, 2) landmark positions in crop pixels
        self.embedding_dim = int(network.embedding_dim)  # D
        self.padding_mode = padding_mode  # grid_sample padding outside the photo
        self.antialias = antialias  # area-pyramid sampling for faces larger than the crop

    @property
    def device(self) -> torch.device:
        for t in itertools.chain(self.network.parameters(), self.network.buffers()):
            return t.device
        return torch.device("cpu")

    def align(self, photo: torch.Tensor, faces: Any, batch_index: Any = None) -> torch.Tensor:
        """(B, 3, H, W) photo in [0, 1], N faces (list of Face or (N, 5, 2) landmarks) → (N, 3, S, S) crops."""
        photo = _as_photo(photo).to(self.device)
        return align_faces(photo, faces, self.template, self.crop_size, batch_index,
                           padding_mode=self.padding_mode, antialias=self.antialias)

    def embed(self, photo: torch.Tensor, faces: Any, batch_index: Any = None) -> torch.Tensor:
        """Identity embeddings of the N faces: (N, D) float, L2-normalised (differentiable if the model is)."""
        crops = self.align(photo, faces, batch_index)
        if crops.shape[0] == 0:
            return crops.new_zeros(0, self.embedding_dim)
        return F.normalize(self.network(crops), dim=-1)

    __call__ = embed

    def __repr__(self) -> str:
        return (f"Recognizer({self.name!r}, S={self.crop_size}, D={self.embedding_dim}, "
                f"differentiable={self.differentiable})")


def _face_boxes(faces: Any) -> np.ndarray:
    """(N, 4) boxes (x0, y0, x1, y1) from Face objects, or derived from (N, 5, 2) landmarks.

    From landmarks alone: a square of side 1.2 (eye distance + eye-to-mouth distance) centred at the
    landmark centroid shifted up by 0.1 side -- close to dlib's mmod boxes on the sample photos
    (side 141 vs 138 px on obama.jpg at 600 px).
    """
    if not isinstance(faces, (torch.Tensor, np.ndarray)):
        faces = list(faces)
        if faces and hasattr(faces[0], "box"):
            return np.array([f.box for f in faces], dtype=np.float64).reshape(-1, 4)
    lm = _as_landmarks(faces).double().cpu().numpy()
    eye_d = np.linalg.norm(lm[:, 1] - lm[:, 0], axis=-1)
    eye_mouth = np.linalg.norm((lm[:, 0] + lm[:, 1]) / 2 - (lm[:, 3] + lm[:, 4]) / 2, axis=-1)
    side = 1.2 * (eye_d + eye_mouth)
    cx, cy = lm[:, :, 0].mean(1), lm[:, :, 1].mean(1) - 0.1 * side
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], -1)


class DlibNativeRecognizer:
    """Native dlib ResNet descriptor (dlib-bin), for **evaluation only** (not differentiable).

    dlib finds its own 5 landmarks with ``shape_predictor_5_face_landmarks.dat`` inside each face's
    box and cuts its own 150×150 chip (padding 0.25, as ``dlib.get_face_chip``) from an uint8
    rounding of the photo, then runs ``dlib_face_recognition_resnet_model_v1.dat``. The raw 128-D
    descriptors (norm ≈ 1.4) are L2-normalised here, so cosines compare with the other models
    (dlib's own rule "same person when Euclidean distance < 0.6" is on the raw descriptors).

    It shares its weights with the face-api.js port ``"dlib-faceapi"`` (cosine 0.9997 between the
    two on dlib's chips): never use one as a held-out check of the other.
    """

    name = "dlib-native"
    differentiable = False
    embedding_dim = 128
    device = torch.device("cpu")

    def __init__(self, descriptor_path: str | Path, predictor_path: str | Path, *, padding: float = 0.25):
        import dlib

        for p in (descriptor_path, predictor_path):
            if not Path(p).is_file():
                raise FileNotFoundError(f"{p}: dlib model file not found")
        self._facerec = dlib.face_recognition_model_v1(str(descriptor_path))
        self._predictor = dlib.shape_predictor(str(predictor_path))
        self.padding = padding  # dlib chip padding around the face (dlib's default 0.25)

    def embed(self, photo: torch.Tensor, faces: Any, batch_index: Any = None) -> torch.Tensor:
        """(B, 3, H, W) photo in [0, 1], N faces (list of Face, or landmarks: box derived) → (N, 128) unit vectors.

        The result carries no gradient (dlib runs on an uint8 copy), and lives on the CPU.
        """
        import dlib

        photo = _as_photo(photo)
        boxes = _face_boxes(faces)
        n = len(boxes)
        bidx = np.zeros(n, dtype=np.int64) if batch_index is None else np.asarray(
            torch.as_tensor(batch_index).cpu(), dtype=np.int64).reshape(-1)
        if batch_index is None and photo.shape[0] != 1 and n:
            raise ValueError(f"photo batch has {photo.shape[0]} images: pass batch_index")
        out = np.zeros((n, 128), dtype=np.float32)
        for b in np.unique(bidx):
            img = np.ascontiguousarray((photo[b].detach().clamp(0, 1) * 255).round().byte()
                                       .permute(1, 2, 0).cpu().numpy())
            sel = np.nonzero(bidx == b)[0]
            shapes = dlib.full_object_detections()
            for i in sel:
                x0, y0, x1, y1 = (round(float(v)) for v in boxes[i])
                shapes.append(self._predictor(img, dlib.rectangle(x0, y0, x1, y1)))
            desc = self._facerec.compute_face_descriptor(img, shapes, 0, self.padding)
            out[sel] = np.array([np.asarray(d) for d in desc], dtype=np.float32)
        return F.normalize(torch.from_numpy(out), dim=-1)

    __call__ = embed

    def __repr__(self) -> str:
        return "DlibNativeRecognizer('dlib-native', D=128, differentiable=False)"


def load_dlib_native(device: Any = "cpu") -> DlibNativeRecognizer:
    """Zoo loader of ``"dlib-native"``: native dlib descriptor with its own landmarks and chips (CPU only).

    Not a torch module (the zoo's recognizer contract cannot hold: dlib cuts its own chips); it has
    the same ``embed(photo, faces)`` interface as :class:`Recognizer`. ``device`` is accepted for
    the uniform loader signature; dlib-bin runs on the CPU.
    """
    from . import zoo

    files = zoo.entry_files("dlib-native")
    desc = next((f for f in files if f.name == "dlib_face_recognition_resnet_model_v1.dat"), None)
    pred = next((f for f in files if f.name == "shape_predictor_5_face_landmarks.dat"), None)
    if desc is None or pred is None:
        raise FileNotFoundError(f"dlib-native: model files missing among {[str(f) for f in files]}")
    return DlibNativeRecognizer(desc, pred)


def load_recognizer(name: str, device: Any = "cpu", **kwargs: Any) -> Recognizer | DlibNativeRecognizer:
    """Load zoo recognizer ``name`` (``zoo.load_model``) and wrap it as a :class:`Recognizer`."""
    from . import zoo

    entry = zoo.get_entry(name)
    if entry.kind != "recognizer":
        raise ValueError(f"{name!r} is a {entry.kind}, not a recognizer")
    model = zoo.load_model(name, device=device, **kwargs)
    if hasattr(model, "embed"):  # dlib-native: already has the interface
        return model
    return Recognizer(model, name=name, differentiable=entry.differentiable)


# ----------------------------------------------------------------------------------------------
# Ensemble
# ----------------------------------------------------------------------------------------------


def recognizer_names(differentiable: bool | None = None, available_only: bool = True) -> list[str]:
    """Zoo recognizers, optionally only the (non-)differentiable ones and those with weights on disk."""
    from . import zoo

    out = []
    for name, e in zoo.ENTRIES.items():
        if e.kind != "recognizer" or (differentiable is not None and e.differentiable != differentiable):
            continue
        if available_only and not zoo.is_available(name):
            continue
        out.append(name)
    return out


class FREnsemble:
    """Several recognizers scoring the same faces: per-model, per-face cosine similarities.

    ``members`` are zoo names (loaded on first use and cached in this object) or already built
    recognizers (anything with ``name``, ``differentiable`` and ``embed(photo, faces, batch_index)``).
    The training ensemble of Obscrowd's identity loss is :func:`training_ensemble` (every
    differentiable zoo recognizer except the held-out FaceNet); evaluation uses :func:`holdout` and
    the non-differentiable ``dlib-native``.
    """

    def __init__(self, members: Iterable[str | Any], device: Any = "cpu"):
        self.device = torch.device(device)
        self._names: list[str] = []  # members, in order
        self._cache: dict[str, Any] = {}  # loaded recognizers (shared with sub-ensembles from select())
        for m in members:
            name = m if isinstance(m, str) else m.name
            if name in self._names:
                raise ValueError(f"recognizer {name!r} given twice")
            self._names.append(name)
            if not isinstance(m, str):
                self._cache[name] = m
        if not self._names:
            raise ValueError("an FR ensemble needs at least one recognizer")

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, name: str) -> Any:
        """The recognizer ``name`` (loading it on first access)."""
        if name not in self._names:
            raise KeyError(f"{name!r} is not in this ensemble ({', '.join(self._names)})")
        if name not in self._cache:
            self._cache[name] = load_recognizer(name, device=self.device)
        return self._cache[name]

    def select(self, names: Iterable[str]) -> FREnsemble:
        """A sub-ensemble of these members sharing this one's cache of loaded networks."""
        names = list(names)
        missing = [n for n in names if n not in self._names]
        if missing:
            raise KeyError(f"{missing} not in this ensemble ({', '.join(self._names)})")
        sub = FREnsemble(names, device=self.device)
        sub._cache = self._cache
        return sub

    def differentiable_names(self) -> list[str]:
        """Members whose gradients reach the photo (from the loaded recognizer, else the zoo entry)."""
        from . import zoo

        return [n for n in self._names
                if (self._cache[n].differentiable if n in self._cache else zoo.get_entry(n).differentiable)]

    def embed_all(self, photo: torch.Tensor, faces: Any, batch_index: Any = None) -> dict[str, torch.Tensor]:
        """{name: (N, D_name) unit embeddings} of the N faces in ``photo`` (B, 3, H, W) in [0, 1]."""
        return {n: self[n].embed(photo, faces, batch_index) for n in self._names}

    def similarities_to(self, reference: Mapping[str, torch.Tensor], photo: torch.Tensor, faces: Any,
                        batch_index: Any = None) -> dict[str, torch.Tensor]:
        """{name: (N,) cosine} between precomputed ``reference`` embeddings and the faces of ``photo``.

        Use this inside an optimisation loop: embed the clean photo once with :meth:`embed_all`.
        """
        emb = self.embed_all(photo, faces, batch_index)
        out = {}
        for n, e in emb.items():
            ref = reference[n].to(e.device)
            if ref.shape != e.shape:
                raise ValueError(f"{n}: reference embeddings {tuple(ref.shape)} vs photo faces {tuple(e.shape)}")
            out[n] = (ref * e).sum(-1)
        return out

    def similarities(self, photo_a: torch.Tensor, photo_b: torch.Tensor, faces: Any,
                     batch_index: Any = None) -> dict[str, torch.Tensor]:
        """{name: (N,) cosine} between each face in ``photo_a`` and the same face in ``photo_b``.

        The same face list (same landmarks) is used in both photos, as when ``photo_b`` is a
        protected or edited copy of ``photo_a``. Differentiable w.r.t. both photos for the
        differentiable members (detach ``photo_a`` if it is the fixed reference).
        """
        return self.similarities_to(self.embed_all(photo_a, faces, batch_index), photo_b, faces, batch_index)

    def __repr__(self) -> str:
        return f"FREnsemble({self.names})"


def training_ensemble(exclude: Iterable[str] = HELD_OUT, device: Any = "cpu") -> FREnsemble:
    """Every differentiable zoo recognizer with weights on disk, minus ``exclude`` (default: FaceNet, held out).

    Note ``dlib-faceapi`` (in this ensemble) is the same network as ``dlib-native``: a protection
    trained on it is not "unseen" by dlib-native.
    """
    exclude = set(exclude)
    names = [n for n in recognizer_names(differentiable=True) if n not in exclude]
    if not names:
        raise RuntimeError("no differentiable recognizer available: fetch the zoo artifacts first (obscrowd models fetch)")
    return FREnsemble(names, device=device)


def holdout(names: Iterable[str] = HELD_OUT, device: Any = "cpu") -> FREnsemble:
    """The held-out evaluators (default FaceNet: a different architecture and training set)."""
    return FREnsemble(list(names), device=device)


# ----------------------------------------------------------------------------------------------
# Thresholds at fixed false-accept rates
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Decision thresholds of one recognizer, from genuine (same person) and impostor cosine scores.

    Decision rule everywhere: "same person" when cos >= threshold.
    """

    thresholds: dict[float, float]  # far -> threshold t with (impostor scores >= t) / n_impostor <= far
    extrapolated: dict[float, bool]  # far -> True when n_impostor * far < 1: t from a Gaussian tail fit (see calibrate)
    n_beyond: dict[float, int]  # far -> impostor pairs at or above t on the calibration set (few = noisy estimate)
    tar: dict[float, float]  # far -> true-accept rate: fraction of genuine scores >= t
    eer: float  # equal error rate (FAR = FRR), linearly interpolated between scanned thresholds
    eer_threshold: float  # cosine at which FAR = FRR
    genuine_mean: float  # mean genuine cosine
    genuine_std: float  # standard deviation of genuine cosines
    impostor_mean: float  # mean impostor cosine
    impostor_std: float  # standard deviation of impostor cosines
    impostor_max: float  # largest impostor cosine
    n_genuine: int  # number of genuine pairs
    n_impostor: int  # number of impostor pairs
    notes: str  # how the figures were obtained and how far to trust them
    ci95: dict[str, list[float]] = field(default_factory=dict)  # identity-bootstrap 95 % intervals (optional)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("thresholds", "extrapolated", "n_beyond", "tar"):
            d[k] = {_far_key(f): v for f, v in d[k].items()}
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Calibration:
        d = dict(d)
        for k in ("thresholds", "extrapolated", "n_beyond", "tar"):
            d[k] = {float(f): v for f, v in d[k].items()}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def _far_key(far: float) -> str:
    return f"{far:g}"


def _threshold_at(imp_sorted: np.ndarray, far: float) -> tuple[float, bool, int]:
    """Smallest-FAR-respecting threshold from sorted impostor scores: (t, extrapolated, n_beyond)."""
    n = len(imp_sorted)
    k = math.floor(far * n + 1e-9)  # false accepts allowed on this set
    uniq = np.unique(imp_sorted)
    count_ge = n - np.searchsorted(imp_sorted, uniq, side="left")  # impostors >= each distinct value
    ok = np.nonzero(count_ge <= k)[0]
    if k >= 1 and len(ok):
        j = int(ok[0])
        t = float(uniq[j]) if j == 0 else float((uniq[j - 1] + uniq[j]) / 2)  # between the two distinct values
        return t, False, int(count_ge[j])
    # fewer than 1/far impostor pairs: no empirical estimate. Gaussian tail of the impostor scores,
    # never below the largest impostor score (the data already show FAR > far there).
    from statistics import NormalDist

    mu, sd = float(imp_sorted.mean()), float(imp_sorted.std(ddof=1)) if n > 1 else 0.0
    gauss = mu + sd * NormalDist().inv_cdf(1.0 - far)
    t = max(gauss, float(np.nextafter(imp_sorted[-1], np.inf)))
    return min(t, 1.0), True, 0


def _eer(gen_sorted: np.ndarray, imp_sorted: np.ndarray) -> tuple[float, float]:
    """Equal error rate by scanning every observed score as a threshold: (eer, threshold)."""
    cand = np.unique(np.concatenate([gen_sorted, imp_sorted]))
    far = (len(imp_sorted) - np.searchsorted(imp_sorted, cand, side="left")) / len(imp_sorted)
    frr = np.searchsorted(gen_sorted, cand, side="left") / len(gen_sorted)
    d = far - frr  # decreasing from > 0 to < 0
    i = int(np.argmax(d <= 0)) if (d <= 0).any() else len(cand) - 1
    if d[i] == 0 or i == 0:
        return float(max(far[i], frr[i])), float(cand[i])
    lam = d[i - 1] / (d[i - 1] - d[i])
    eer = far[i - 1] + lam * (far[i] - far[i - 1])
    return float(eer), float(cand[i - 1] + lam * (cand[i] - cand[i - 1]))


def calibrate(genuine_scores: Any, impostor_scores: Any, fars: Sequence[float] = DEFAULT_FARS, *,
              notes: str = "") -> Calibration:
    """Thresholds at fixed false-accept rates, and the EER, from genuine and impostor cosines.

    Threshold at FAR f: the smallest t such that the fraction of impostor scores >= t is <= f, placed
    halfway between the two neighbouring distinct impostor scores (so ">=" and ">" agree).
    When n_impostor * f < 1 no impostor may be accepted and the data cannot locate t: it is then
    **extrapolated** as max(mean + std * z_{1-f} of a Gaussian fitted to the impostor cosines, the
    largest impostor score), capped at 1, and flagged ``extrapolated``. A Gaussian underestimates a
    heavy upper tail; treat such thresholds as optimistic guesses. Also when ``n_beyond`` is small
    (e.g. 1) the empirical threshold is just one order statistic: very noisy.

    Args:
        genuine_scores: (G,) cosines of same-person pairs.
        impostor_scores: (I,) cosines of different-person pairs.
        fars: false-accept rates in (0, 1).
        notes: text stored with the result (provenance, caveats).
    """
    gen = np.sort(np.asarray(torch.as_tensor(genuine_scores).detach().cpu(), dtype=np.float64).ravel())
    imp = np.sort(np.asarray(torch.as_tensor(impostor_scores).detach().cpu(), dtype=np.float64).ravel())
    if len(gen) < 1 or len(imp) < 2:
        raise ValueError(f"calibration needs >= 1 genuine and >= 2 impostor scores, got {len(gen)} and {len(imp)}")
    if not (np.isfinite(gen).all() and np.isfinite(imp).all()):
        raise ValueError("calibration scores contain NaN or inf")
    thr, ext, beyond, tar = {}, {}, {}, {}
    for f in fars:
        if not 0 < f < 1:
            raise ValueError(f"false-accept rate must be in (0, 1), got {f}")
        t, e, nb = _threshold_at(imp, float(f))
        thr[float(f)], ext[float(f)], beyond[float(f)] = t, e, nb
        tar[float(f)] = float((len(gen) - np.searchsorted(gen, t, side="left")) / len(gen))
    eer, eer_t = _eer(gen, imp)
    auto = [f"FAR {_far_key(f)}: extrapolated (Gaussian impostor tail; only {len(imp)} impostor pairs < 1/FAR)"
            for f in fars if ext[float(f)]]
    auto += [f"FAR {_far_key(f)}: set by only {beyond[float(f)]} impostor pair(s) above it (noisy)"
             for f in fars if not ext[float(f)] and beyond[float(f)] < 10]
    return Calibration(
        thresholds=thr, extrapolated=ext, n_beyond=beyond, tar=tar, eer=eer, eer_threshold=eer_t,
        genuine_mean=float(gen.mean()), genuine_std=float(gen.std(ddof=1)) if len(gen) > 1 else 0.0,
        impostor_mean=float(imp.mean()), impostor_std=float(imp.std(ddof=1)), impostor_max=float(imp[-1]),
        n_genuine=len(gen), n_impostor=len(imp), notes="; ".join([n for n in [notes, *auto] if n]))


def _pairs(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of same-label (genuine) and different-label (impostor) items: two (P, 2) arrays."""
    lab = np.asarray(labels)
    i, j = np.triu_indices(len(lab), k=1)
    same = lab[i] == lab[j]
    return np.stack([i[same], j[same]], 1), np.stack([i[~same], j[~same]], 1)


def calibrate_embeddings(embeddings: Any, labels: Sequence[str], fars: Sequence[float] = DEFAULT_FARS, *,
                         bootstrap: int = 200, seed: int = 0, notes: str = "") -> Calibration:
    """:func:`calibrate` on all pairs of M labelled embeddings (M, D), with identity-bootstrap intervals.

    Every pair i < j is genuine when labels agree, impostor otherwise. ``ci95`` holds 2.5/97.5 %
    percentiles over ``bootstrap`` resamples of the **identities** with replacement (pairs within a
    drawn identity are genuine; pairs between two draws of different identities are impostors; two
    draws of the same identity are not paired). With few identities this interval is itself rough.
    """
    emb = torch.as_tensor(embeddings).detach().cpu().double()
    emb = F.normalize(emb, dim=-1)
    sim = (emb @ emb.T).numpy()
    gp, ip = _pairs(labels)
    cal = calibrate(sim[gp[:, 0], gp[:, 1]], sim[ip[:, 0], ip[:, 1]], fars, notes=notes)
    ids = sorted(set(labels))
    if bootstrap <= 0 or len(ids) < 3:
        return cal
    lab = np.asarray(labels)
    idx = {a: np.nonzero(lab == a)[0] for a in ids}
    within = {a: sim[np.ix_(idx[a], idx[a])][np.triu_indices(len(idx[a]), k=1)] for a in ids}
    across = {(a, b): sim[np.ix_(idx[a], idx[b])].ravel() for a in ids for b in ids if a < b}
    rng = np.random.default_rng(seed)
    stats: dict[str, list[float]] = {"eer": []} | {_far_key(f): [] for f in fars}
    for _ in range(bootstrap):
        draw = rng.choice(len(ids), size=len(ids), replace=True)
        g = np.concatenate([within[ids[d]] for d in draw])
        im = [across[tuple(sorted((ids[a], ids[b])))] for a, b in itertools.combinations(draw, 2) if a != b]
        if len(g) < 1 or not im:
            continue
        c = calibrate(g, np.concatenate(im), fars)
        stats["eer"].append(c.eer)
        for f in fars:
            stats[_far_key(f)].append(c.thresholds[float(f)])
    ci = {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in stats.items() if v}
    return Calibration(**{**asdict(cal), "ci95": ci})


def _pick_face(faces: list, shape: tuple[int, int]) -> Any:
    """The face nearest the image centre (LFW's convention: the subject is centred)."""
    h, w = shape
    return min(faces, key=lambda f: ((f.box[0] + f.box[2]) / 2 - w / 2) ** 2 + ((f.box[1] + f.box[3]) / 2 - h / 2) ** 2)


def calibrate_on_images(images: Mapping[str, Sequence[str | Path]], recognizers: Iterable[str | Any] | None = None, *,
                        detector: str = "mtcnn", detect: Any = None, pad: float = 0.5, pad_below: int = 400,
                        fars: Sequence[float] = DEFAULT_FARS, bootstrap: int = 200, device: Any = "cpu",
                        root: str | Path | None = None, batch_size: int = 16, progress: bool = False) -> dict[str, Any]:
    """Calibrate recognizers on labelled photos ``{identity: [image paths]}``, one face per image.

    Each image's face is detected (``detect(rgb uint8 (H, W, 3)) -> list[Face]`` if given, else
    :func:`obscrowd_lib.faces.detect_faces` with ``detector``) on a mid-grey canvas grown by ``pad`` ×
    its size on every side when its longer side is below ``pad_below`` px (tight face chips such as
    dlib's 150×150 ones: without room around the face MTCNN misplaces the landmarks, by up to 17 px
    on a 150 px chip), otherwise on the image itself, retried on the canvas if nothing is found.
    The face nearest the centre is kept.
    Every recognizer embeds every kept face (on the canvas where it was found); all pairs of images
    are genuine (same identity) or impostor pairs; :func:`calibrate_embeddings` gives thresholds,
    EER and identity-bootstrap intervals per recognizer.

    Returns:
        ``{"models": {name: Calibration}, "provenance": {...}, "errors": {name: message}}``; the
        provenance lists every image (identity, path, sha256, whether padded, face box) and the pair
        counts. Save it with :func:`save_thresholds`.
    """
    from .io import load_image

    detector_name = detector if detect is None else getattr(detect, "__name__", "custom")
    if detect is None:
        from .faces import FaceDetector, detect_faces

        loaded = FaceDetector(detector, device=device)

        def detect(rgb: np.ndarray) -> list:
            return detect_faces(rgb, detector=loaded)
    recognizers = list(recognizers) if recognizers is not None else recognizer_names()
    ens = FREnsemble(recognizers, device=device)
    root = Path(root) if root is not None else None
    kept: list[tuple[str, np.ndarray, Any]] = []  # (identity, canvas, face)
    records, failed = [], []
    for ident, paths in images.items():
        for p in paths:
            p = Path(p)
            rgb = load_image(p)
            h, w = rgb.shape[:2]
            canvas = np.pad(rgb, ((round(pad * h),) * 2, (round(pad * w),) * 2, (0, 0)), constant_values=128)
            padded = pad > 0 and max(h, w) < pad_below
            faces = list(detect(canvas if padded else rgb))
            if not faces and pad > 0 and not padded:
                faces, padded = list(detect(canvas)), True
            if not padded:
                canvas = rgb
            rel = str(p.relative_to(root)) if root is not None and p.is_relative_to(root) else f"{p.parent.name}/{p.name}"
            rec = {"identity": ident, "file": rel, "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                   "size": [int(rgb.shape[1]), int(rgb.shape[0])], "padded": padded, "n_faces": len(faces)}
            if not faces:
                failed.append(rec)
                continue
            face = _pick_face(faces, canvas.shape[:2])
            rec["box_on_canvas"] = [round(float(v), 1) for v in face.box]
            records.append(rec)
            kept.append((ident, canvas, face))
    labels = [k[0] for k in kept]
    if len(set(labels)) < 2:
        raise ValueError(f"calibration needs faces of >= 2 identities; found faces for {sorted(set(labels))} "
                         f"({len(failed)} images without a detected face)")
    # embed, batching canvases of equal size
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (_, canvas, _) in enumerate(kept):
        groups.setdefault(canvas.shape, []).append(i)
    models, errors = {}, {}
    for name in ens.names:
        try:
            rec_model = ens[name]
        except (ImportError, OSError, RuntimeError, ValueError, KeyError) as e:  # a port that does not load: report it
            errors[name] = f"{type(e).__name__}: {e}"
            continue
        emb = torch.zeros(len(kept), rec_model.embedding_dim, dtype=torch.float64)
        with torch.no_grad():
            for idx in groups.values():
                for c in range(0, len(idx), batch_size):
                    chunk = idx[c:c + batch_size]
                    photo = torch.from_numpy(np.stack([kept[i][1] for i in chunk])).permute(0, 3, 1, 2).float() / 255
                    faces = [kept[i][2] for i in chunk]
                    emb[chunk] = rec_model.embed(photo.to(ens.device), faces, torch.arange(len(chunk))).double().cpu()
        if progress:
            print(f"  embedded {len(kept)} faces with {name}", flush=True)
        models[name] = calibrate_embeddings(emb, labels, fars, bootstrap=bootstrap)
    gp, ip = _pairs(labels)
    ids = sorted(set(labels))
    prov = {"root": str(root) if root is not None else None, "detector": detector_name,
            "identities": {a: labels.count(a) for a in ids}, "n_images": len(kept), "n_failed": len(failed),
            "pairs": {"genuine": len(gp), "impostor": len(ip)}, "images": records, "failed": failed,
            "pad": pad, "pad_below": pad_below, "face_choice": "nearest the image centre"}
    return {"models": models, "provenance": prov, "errors": errors}


def calibrate_on_folder(root: str | Path, recognizers: Iterable[str | Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """One call on a labelled folder laid out as ``root/<identity>/<image>`` (the LFW layout).

    Reads every image :func:`obscrowd_lib.io.list_images` finds in each identity folder; keyword arguments go to :func:`calibrate_on_images`
    (``detector``, ``pad``, ``fars``, ``bootstrap``, ``device``...). Example::

        res = calibrate_on_folder("lfw/", ["arcface-faceplugin", "facenet"])
        save_thresholds(res, "my_thresholds.json")
    """
    from .io import list_images

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (expected root/<identity>/<image>)")
    images = {d.name: list_images(d) for d in sorted(root.iterdir()) if d.is_dir()}
    images = {k: v for k, v in images.items() if v}
    if len(images) < 2:
        raise ValueError(f"{root}: needs >= 2 identity folders with images, found {len(images)}")
    return calibrate_on_images(images, recognizers, root=root, **kwargs)


def save_thresholds(result: Mapping[str, Any], path: str | Path, *, notes: Mapping[str, Any] | None = None) -> Path:
    """Write a :func:`calibrate_on_images` result as the JSON :func:`load_thresholds` reads."""
    doc = {"format": 1, "decision_rule": "same person when cosine >= threshold",
           **(dict(notes) if notes else {}),
           "models": {n: c.to_json() for n, c in result["models"].items()},
           "missing": dict(result.get("errors", {})),
           "provenance": result["provenance"]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    tmp.replace(path)
    return path


def load_thresholds(path: str | Path | None = None) -> dict[str, Any]:
    """The calibration JSON (default: the shipped ``obscrowd_lib/data/thresholds.json``).

    Returns the document with ``"models": {name: Calibration}`` (threshold keys are floats), plus
    ``"provenance"``, ``"missing"`` and notes as stored.
    """
    path = Path(path) if path is not None else THRESHOLDS_PATH
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no thresholds file (run benchmarks/calibrate_thresholds.py or "
                                "recognition.calibrate_on_folder + save_thresholds)")
    try:
        doc = json.loads(path.read_text())
        doc["models"] = {n: Calibration.from_json(c) for n, c in doc["models"].items()}
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a thresholds file ({type(e).__name__}: {e})") from e
    return doc


def threshold_for(name: str, far: float = 1e-3, path: str | Path | None = None) -> float:
    """Calibrated cosine threshold of recognizer ``name`` at false-accept rate ``far``."""
    models = load_thresholds(path)["models"]
    if name not in models:
        raise KeyError(f"no calibrated thresholds for {name!r}; have {sorted(models)}")
    thr = models[name].thresholds
    if float(far) not in thr:
        raise KeyError(f"{name}: no threshold at FAR {far}; have {sorted(thr)}")
    return thr[float(far)]
