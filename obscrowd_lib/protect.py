"""``obscrowd protect``: protect a photo (or every photo of a folder) and write PNG copies.

The library side of the command line. One call, :func:`protect_path`, takes what a user has (a
file or a folder of photos) and writes protected copies, with these guarantees:

* **PNG only.** The output is a lossless PNG; any other suffix is refused, never silently converted
  (a FaceLock reproduction found that saving protected photos as JPEG erased the protection).
* **The input is never overwritten**: an output path that is (or links to) an input file, or an
  output folder equal to the input folder, is refused; an existing output is refused unless
  ``overwrite=True``.
* **Atomic writes** and **no metadata**: :func:`obscrowd_lib.io.save_png` writes a temporary file
  and renames it, and writes pixels only (no EXIF, GPS, ICC, text chunks): a privacy tool must not
  leak where a photo was taken.
* **Original size and orientation**: the photo is read with its EXIF orientation applied
  (:func:`obscrowd_lib.io.load_image`) and written upright at its full size, without the tag.
* **No faces**: ``no_faces="copy"`` (default) writes a metadata-free PNG copy and warns;
  ``no_faces="refuse"`` raises :class:`NoFacesError` (for a folder: that file is reported failed).
* **Huge photos, bounded memory**: faces are detected on a copy whose long side is at most
  ``max_side``; the perturbation is optimised on a *working copy* scaled so that the long side is
  at most ``max_side`` and the largest face at most ``max_face_px`` pixels (recognizers look at
  112-224 px crops: more pixels per face add cost, not protection). When the working copy is
  smaller than the photo, δ is **upsampled** (bilinear) to full resolution **only over the face
  region** (the bounding box of the faces' work region), confined by the full-resolution soft mask
  of that region and clipped to the budget again, so memory grows with the face region and the
  8-bit photo, never with N full-size float masks. The report says which scale was used.
* **Tiny faces** (box side < ``tiny_face_px``) are protected like the others and flagged in the
  report (recognizers and detectors are unreliable there).

Methods: ``teacher`` (:func:`obscrowd_lib.teacher.protect_teacher`), ``student`` (one forward pass
of the distilled generator, :mod:`obscrowd_lib.student`) and ``student+refine`` (the student's δ
refined by :func:`obscrowd_lib.refine.refine`). The report (``report=path``) lists per photo the
faces, the budget used, PSNR, per-face similarities, and the time of each stage.

Importing this module is light (no torch): ``cli.py`` may call :func:`add_arguments` at start-up.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("teacher", "student", "student+refine")  # values of protect_path(method=...)
NO_FACES = ("copy", "refuse")  # values of protect_path(no_faces=...)


class ProtectError(ValueError):
    """A protect request that cannot be carried out (message names the file and the problem)."""


class NoFacesError(ProtectError):
    """The photo has no detectable face and ``no_faces="refuse"`` was asked."""


# ----------------------------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------------------------


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_output_file(inp: Path, out: Path, overwrite: bool) -> None:
    if out.suffix.lower() != ".png":
        raise ProtectError(f"{out}: output must be a .png file (lossless); a lossy format such as JPEG would "
                           "erase the protection")
    if _same_file(inp, out):
        raise ProtectError(f"{out}: output is the input file; obscrowd never overwrites the original")
    if out.exists() and not overwrite:
        raise ProtectError(f"{out}: already exists; choose another name or pass overwrite=True (--overwrite)")
    if out.exists() and out.is_dir():
        raise ProtectError(f"{out}: is a folder")


def plan_outputs(input: str | Path, output: str | Path, *, overwrite: bool = False) -> list[tuple[Path, Path]]:
    """Pairs (input photo, output PNG) for a file or a folder, after every path check.

    A file goes to ``output`` (a ``.png`` path, or an existing folder: ``<folder>/<stem>.png``); a
    folder's photos (:func:`obscrowd_lib.io.list_images`) go to ``<output>/<stem>.png``. Raises
    :class:`FileNotFoundError` for a missing input and :class:`ProtectError` for the rest.
    """
    from .io import list_images

    inp, out = Path(input).expanduser(), Path(output).expanduser()
    if not inp.exists():
        raise FileNotFoundError(f"{inp}: no such file or folder")
    if inp.is_dir():
        if out.exists() and not out.is_dir():
            raise ProtectError(f"{out}: the input is a folder, so the output must be a folder too")
        if out.suffix.lower() == ".png" and not out.exists():
            raise ProtectError(f"{out}: the input is a folder, so the output must be a folder, not a .png file")
        if out.exists() and _same_file(inp, out):
            raise ProtectError(f"{out}: output folder is the input folder; obscrowd never writes beside the "
                               "originals it reads (choose another folder)")
        photos = list_images(inp)
        if not photos:
            raise ProtectError(f"{inp}: no photos in this folder")
        pairs = [(p, out / f"{p.stem}.png") for p in photos]
        seen: dict[Path, Path] = {}
        for p, o in pairs:
            if o in seen:
                raise ProtectError(f"{p} and {seen[o]} would both be written to {o}; rename one of them")
            seen[o] = p
    else:
        pairs = [(inp, out / f"{inp.stem}.png" if out.is_dir() else out)]
    for p, o in pairs:
        _check_output_file(p, o, overwrite)
    return pairs


# ----------------------------------------------------------------------------------------------
# Scale handling (huge photos)
# ----------------------------------------------------------------------------------------------


def _resize_uint8(img: np.ndarray, scale: float) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BOX if scale < 0.5 else
                                                  Image.Resampling.LANCZOS))


def _scale_faces(faces: list, sx: float, sy: float) -> list:
    """Faces in a photo rescaled by (sx, sy) (pixel centres at integers: p' = (p + 0.5) s - 0.5)."""
    from .faces import Face

    out = []
    for f in faces:
        x0, y0, x1, y1 = f.box
        lm = np.asarray(f.landmarks, dtype=np.float64)
        lm = (lm + 0.5) * np.array([sx, sy]) - 0.5
        out.append(Face(box=(x0 * sx, y0 * sy, x1 * sx, y1 * sy), landmarks=lm.astype(np.float32), score=f.score))
    return out


def _upsample_delta(delta_small: Any, full_hw: tuple[int, int], region: tuple[int, int, int, int]) -> Any:
    """Bilinear upsampling of δ (1, 3, h, w) tensor to the full-resolution region (top, left, bottom, right)."""
    import torch

    h, w = delta_small.shape[-2:]
    H, W = full_hw
    top, left, bottom, right = region
    ys = (torch.arange(top, bottom, dtype=torch.float32) + 0.5) * (h / H) - 0.5
    xs = (torch.arange(left, right, dtype=torch.float32) + 0.5) * (w / W) - 0.5
    gy, gx = torch.meshgrid((2 * ys + 1) / h - 1, (2 * xs + 1) / w - 1, indexing="ij")
    grid = torch.stack([gx, gy], -1)[None].to(delta_small.device)
    return torch.nn.functional.grid_sample(delta_small, grid, mode="bilinear", padding_mode="border",
                                           align_corners=False)


# ----------------------------------------------------------------------------------------------
# One photo
# ----------------------------------------------------------------------------------------------


def _student_delta(photo: Any, faces: list, mask: Any, eps_255: float, device: Any,
                   student_path: str | None) -> Any:
    """δ (1, 3, H, W) predicted by the distilled student (see :mod:`obscrowd_lib.student`)."""
    try:
        from . import student
    except ImportError as e:
        raise ProtectError("method 'student' needs obscrowd_lib.student, which is not available in this "
                           f"installation ({e})") from e
    return student.predict_delta(photo, faces, mask, eps_255=eps_255, path=student_path, device=device)


def protect_image(image: np.ndarray, *, method: str = "teacher", config: Any = None, refine_steps: int = 10,
                  faces: list | None = None, detector: Any = "mtcnn", max_side: int = 2048, max_face_px: int = 160,
                  tiny_face_px: int = 32, models: Any = None, student_path: str | None = None, device: Any = "cpu",
                  progress: bool = True) -> tuple[np.ndarray, dict]:
    """Protect one (H, W, 3) uint8 RGB photo; returns (protected (H, W, 3) uint8, report entry).

    Raises :class:`NoFacesError` when no face is found (the caller decides whether to copy). The
    report entry holds the faces (in full-resolution pixels, with a ``tiny`` flag), the working
    scale, the budget used, PSNR, per-face similarities of the working copy before 8-bit rounding,
    the method's result summary, and ``times`` (seconds per stage).
    """
    import torch

    from .faces import detect_faces
    from .masks import face_masks
    from .teacher import TeacherConfig, load_teacher_models, protect_teacher

    if method not in METHODS:
        raise ProtectError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    config = config or TeacherConfig()
    times: dict[str, float] = {}
    H, W = image.shape[:2]

    t = time.perf_counter()
    s1 = min(1.0, max_side / max(H, W))
    preview = _resize_uint8(image, s1) if s1 < 1 else image
    if faces is None:
        found = detect_faces(preview, detector=detector)
        faces_full = _scale_faces(found, W / preview.shape[1], H / preview.shape[0]) if s1 < 1 else list(found)
    else:
        faces_full = list(faces)
    times["detect"] = time.perf_counter() - t
    if not faces_full:
        raise NoFacesError("no face detected")

    largest = max(max(f.box[2] - f.box[0], f.box[3] - f.box[1]) for f in faces_full)
    scale = min(1.0, max_side / max(H, W), max_face_px / max(largest, 1.0))
    t = time.perf_counter()
    work = _resize_uint8(image, scale) if scale < 1 else image
    sx, sy = work.shape[1] / W, work.shape[0] / H
    faces_work = _scale_faces(faces_full, sx, sy) if scale < 1 else faces_full
    x = torch.tensor(work).permute(2, 0, 1)[None].float().div(255).to(device)  # a copy: PIL arrays are read-only
    mask = face_masks(tuple(x.shape[-2:]), faces_work).union
    mask = torch.as_tensor(mask, dtype=torch.float32).to(device)
    times["mask"] = time.perf_counter() - t

    if models is None:
        t = time.perf_counter()
        models = load_teacher_models(config, device)
        times["load_models"] = time.perf_counter() - t
    delta0 = None
    if method.startswith("student"):
        t = time.perf_counter()
        delta0 = _student_delta(x, faces_work, mask, config.eps_255, device, student_path)
        times["student"] = time.perf_counter() - t
    t = time.perf_counter()
    if method == "teacher":
        result = protect_teacher(x, faces_work, config=config, mask=mask, models=models, device=device,
                                 progress=progress)
        times["teacher"] = time.perf_counter() - t
    else:
        from .refine import refine

        steps = refine_steps if method == "student+refine" else 0
        result = refine(x, delta0, faces_work, config=config, steps=steps, mask=mask, models=models, device=device,
                        progress=progress)
        times["refine" if steps else "student_check"] = time.perf_counter() - t

    t = time.perf_counter()
    eps = config.eps_255 / 255
    nz = torch.nonzero(mask > 0).cpu()  # δ is 0 outside the mask's support: all work stays in its box
    top, left = int(nz[:, 0].min()), int(nz[:, 1].min())
    bottom, right = int(nz[:, 0].max()) + 1, int(nz[:, 1].max()) + 1
    region = (max(0, math.floor(top / sy) - 1), max(0, math.floor(left / sx) - 1),
              min(H, math.ceil(bottom / sy) + 1), min(W, math.ceil(right / sx) + 1))
    rt, rl, rb, rr = region
    if scale < 1:
        # δ at full resolution, only over the face region; memory ~ the region, not the photo
        d = _upsample_delta(result.delta.cpu(), (H, W), region)
        faces_region = [replace(f, box=(f.box[0] - rl, f.box[1] - rt, f.box[2] - rl, f.box[3] - rt),
                                landmarks=np.asarray(f.landmarks) - np.array([rl, rt], dtype=np.float32))
                        for f in faces_full]
        m_full = torch.as_tensor(face_masks((rb - rt, rr - rl), faces_region).union, dtype=torch.float32)
        d = torch.maximum(torch.minimum(d, eps * m_full), -eps * m_full)
        patch = image[rt:rb, rl:rr].astype(np.float32) / 255
        new = np.clip(patch + d[0].permute(1, 2, 0).numpy(), 0, 1)
        out = image.copy()
        out[rt:rb, rl:rr] = np.round(new * 255).astype(np.uint8)
    else:
        out = np.round(result.protected[0].permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
    times["compose"] = time.perf_counter() - t

    diff = np.abs(out[rt:rb, rl:rr].astype(np.int16) - image[rt:rb, rl:rr].astype(np.int16))  # 0 elsewhere
    mse = float(np.sum(diff.astype(np.float64) ** 2)) / (H * W * 3) / 255 ** 2
    entry = {
        "size": [int(W), int(H)],
        "working_scale": round(float(scale), 4),
        "strategy": ("optimised on the photo itself" if scale >= 1 else
                     f"optimised on a working copy scaled by {scale:.3f} (largest face <= {max_face_px} px, long "
                     f"side <= {max_side} px); delta upsampled bilinearly to full size over the face region, "
                     "confined by the full-resolution mask and clipped to the budget"),
        "working_size": [int(work.shape[1]), int(work.shape[0])],
        "faces": [{**f.to_json(), "tiny": bool(max(f.box[2] - f.box[0], f.box[3] - f.box[1]) < tiny_face_px),
                   "protected": bool(result.protected_faces[i]),
                   "similarity": {n: round(v[i], 4) for n, v in result.per_face_similarity.items()}}
                  for i, f in enumerate(faces_full)],
        "eps_255": config.eps_255,
        "budget_used_255": int(diff.max()),
        "psnr_db": round(10 * math.log10(1 / mse), 3) if mse > 0 else float("inf"),
        "result": result.summary(),
        "similarity_note": "per-face cosines clean vs protected on the working copy, before 8-bit rounding",
        "times": {k: round(v, 3) for k, v in times.items()},
    }
    if any(f["tiny"] for f in entry["faces"]):
        entry.setdefault("warnings", []).append(
            f"tiny face(s) (< {tiny_face_px} px): protected, but detectors and recognizers are unreliable there")
    return out, entry


# ----------------------------------------------------------------------------------------------
# Files and folders
# ----------------------------------------------------------------------------------------------


def protect_path(input: str | Path, output: str | Path, *, method: str = "teacher", eps_255: float = 8.0,
                 steps: int | None = None, report: str | Path | None = None, device: Any = "cpu",
                 ensemble: tuple[str, ...] | list[str] | None = None, config: Any = None, refine_steps: int = 10,
                 no_faces: str = "copy", overwrite: bool = False, detector: Any = "mtcnn", max_side: int = 2048,
                 max_face_px: int = 160, tiny_face_px: int = 32, student_path: str | None = None,
                 seed: int | None = None, progress: bool = True) -> dict:
    """Protect a photo or a folder of photos and write PNG copies (see the module docstring).

    Args:
        input: a photo file or a folder of photos.
        output: a ``.png`` path (or an existing folder) for a file; a folder for a folder.
        method: "teacher", "student" or "student+refine".
        eps_255: L-inf budget in /255 (overrides ``config.eps_255``).
        steps: teacher steps (overrides ``config.steps``); for "student+refine" the refinement steps.
        report: optional path of a JSON report (written atomically).
        device: torch device.
        ensemble: training recognizers by zoo name (overrides ``config.ensemble``; default: every
            differentiable one except FaceNet).
        config: a :class:`~obscrowd_lib.teacher.TeacherConfig` (default: the defaults).
        refine_steps: K for "student+refine" when ``steps`` is not given.
        no_faces: "copy" (write a metadata-free PNG copy and warn) or "refuse" (raise / mark failed).
        overwrite: allow replacing an existing output file (never the input).
        detector, max_side, max_face_px, tiny_face_px, student_path: see :func:`protect_image`.
        seed: overrides ``config.seed``.
        progress: progress bars (also off with OBSCROWD_PROGRESS=0).
    Returns:
        The report dict: ``{"method", "eps_255", "config", "files": [per-photo entries], "ok", "failed"}``.
        A single-file request raises on failure (:class:`FileNotFoundError`, :class:`ProtectError`,
        :class:`NoFacesError`, :class:`obscrowd_lib.io.ImageError`); a folder request records each
        photo's failure in its entry and carries on.
    """
    from .config import config_dict
    from .io import ImageError, load_image, save_png
    from .runner import write_json
    from .teacher import TeacherConfig, load_teacher_models

    if method not in METHODS:
        raise ProtectError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if no_faces not in NO_FACES:
        raise ProtectError(f"no_faces must be one of {NO_FACES}, got {no_faces!r}")
    cfg = config or TeacherConfig()
    over: dict[str, Any] = {"eps_255": float(eps_255)}
    if steps is not None and method == "teacher":
        over["steps"] = int(steps)
    if steps is not None and method == "student+refine":
        refine_steps = int(steps)
    if ensemble:
        over["ensemble"] = tuple(ensemble)
    if seed is not None:
        over["seed"] = int(seed)
    cfg = replace(cfg, **over)

    inp = Path(input).expanduser()
    pairs = plan_outputs(inp, output, overwrite=overwrite)
    single = not inp.is_dir()
    if not single:
        Path(output).expanduser().mkdir(parents=True, exist_ok=True)
    from .faces import FaceDetector

    models = None
    finder = FaceDetector(detector, device=device) if isinstance(detector, str) else detector
    entries = []
    for src, dst in pairs:
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"input": str(src), "output": str(dst)}
        try:
            t = time.perf_counter()
            image = load_image(src)
            t_load = time.perf_counter() - t
            try:
                if models is None:
                    models = load_teacher_models(cfg, device)
                protected, info = protect_image(image, method=method, config=cfg, refine_steps=refine_steps,
                                                detector=finder, max_side=max_side, max_face_px=max_face_px,
                                                tiny_face_px=tiny_face_px, models=models, student_path=student_path,
                                                device=device, progress=progress)
                entry.update(info, status="protected")
            except NoFacesError:
                if no_faces == "refuse":
                    raise NoFacesError(f"{src}: no face detected; nothing written (no_faces='refuse')") from None
                msg = f"{src}: no face detected; wrote an unprotected, metadata-free PNG copy"
                warnings.warn(msg, stacklevel=2)
                protected = image
                entry.update(status="copied", faces=[], warnings=[msg], size=[image.shape[1], image.shape[0]])
            t = time.perf_counter()
            save_png(protected, dst, overwrite=overwrite)
            entry.setdefault("times", {})
            entry["times"].update(load=round(t_load, 3), save=round(time.perf_counter() - t, 3))
        except (ProtectError, ImageError, OSError, ValueError) as e:
            if single:
                raise
            entry.update(status="failed", error=str(e))
        entry.setdefault("times", {})["total"] = round(time.perf_counter() - t0, 3)
        entries.append(entry)
    doc = {"method": method, "eps_255": cfg.eps_255, "refine_steps": refine_steps if method == "student+refine" else None,
           "config": config_dict(cfg), "diffusion": models.diffusion if models is not None else None,
           "files": entries, "ok": sum(e["status"] != "failed" for e in entries),
           "failed": sum(e["status"] == "failed" for e in entries)}
    if report is not None:
        write_json(Path(report).expanduser(), doc)
    return doc


# ----------------------------------------------------------------------------------------------
# Command-line glue (cli.py registers the subcommand with these two functions)
# ----------------------------------------------------------------------------------------------


def add_arguments(parser: Any) -> None:
    """Arguments of ``obscrowd protect`` on an argparse (sub)parser."""
    parser.add_argument("input", help="a photo or a folder of photos")
    parser.add_argument("-o", "--output", required=True, help="output .png (or folder for a folder input)")
    parser.add_argument("--method", choices=METHODS, default="teacher", help="how the perturbation is made")
    parser.add_argument("--eps", type=float, default=8.0, help="L-inf budget in /255 (default 8)")
    parser.add_argument("--steps", type=int, default=None, help="teacher steps, or refinement steps K")
    parser.add_argument("--report", default=None, help="write a JSON report here")
    parser.add_argument("--ensemble", default=None,
                        help="comma-separated training recognizers (default: every differentiable one but facenet)")
    parser.add_argument("--no-faces", choices=NO_FACES, default="copy",
                        help="photo without faces: write a metadata-free copy with a warning, or refuse")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output (never the input)")
    parser.add_argument("--max-side", type=int, default=2048, help="long side of the working copy of huge photos")
    parser.add_argument("--max-face-px", type=int, default=160,
                        help="the working copy is scaled so the largest face is at most this many pixels")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the config's, 0)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_from_args(args: Any) -> int:
    """Run ``obscrowd protect`` from parsed arguments; prints one line per photo; returns the exit code."""
    ensemble = tuple(n.strip() for n in args.ensemble.split(",") if n.strip()) if args.ensemble else None
    doc = protect_path(args.input, args.output, method=args.method, eps_255=args.eps, steps=args.steps,
                       report=args.report, device=args.device, ensemble=ensemble, no_faces=args.no_faces,
                       overwrite=args.overwrite, max_side=args.max_side, max_face_px=args.max_face_px, seed=args.seed,
                       progress=not args.quiet)
    for e in doc["files"]:
        if e["status"] == "protected":
            n_ok = sum(f["protected"] for f in e["faces"])
            print(f"{e['output']}: {len(e['faces'])} face(s), {n_ok} below threshold on every training model, "
                  f"budget {e['budget_used_255']}/255, PSNR {e['psnr_db']} dB")
        elif e["status"] == "copied":
            print(f"{e['output']}: no face found; unprotected copy written")
        else:
            print(f"{e['input']}: FAILED: {e['error']}")
    if args.report:
        print(f"report: {args.report}")
    return 1 if doc["failed"] else 0


__all__ = [
    "METHODS",
    "NO_FACES",
    "NoFacesError",
    "ProtectError",
    "add_arguments",
    "plan_outputs",
    "protect_image",
    "protect_path",
    "run_from_args",
]
