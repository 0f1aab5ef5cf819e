"""The student's training set: photos with their teacher perturbations, cached and resumable.

Obscrowd's student is distilled from the teacher (paper, *The pipeline*), so its training set is
a set of photos with the teacher's δ for each. Teacher runs are expensive (minutes per photo on a
CPU), so :func:`build_targets` caches every result in a folder named by the hashes of the two
configs that made it (:func:`obscrowd_lib.config.config_hash` of the :class:`TargetConfig` and of
the :class:`~obscrowd_lib.teacher.TeacherConfig`) and of the calibrated thresholds: a second call
reuses it, a stopped call resumes at the first missing item, and a changed config gets a new folder.

The photos are every real sample the project can reach (:data:`obscrowd_lib.data.SAMPLES`) and
every image of ``photos_dir`` (your own set: CelebA-HQ, FFHQ, group photos), plus augmentations,
each a square ``size`` x ``size`` image:

* **crops at random scale** around a randomly chosen face (the crop side is ``scale_range`` times
  the face's box side, the face off-centre by up to a quarter of the crop), so group photos give
  crops with one to several faces;
* **flips**: each crop is mirrored with probability ``flip``;
* **the whole photo** (padded square) when its faces stay at least ``min_face_px`` wide at ``size``;
* **controlled composites** (:func:`portrait_composite`, over :func:`obscrowd_lib.data.make_composite`)
  of ``composite_faces`` single portraits, each first cut to a square around its face (a plain
  centre crop cuts the face off tall portraits such as biden.jpg), tiled with random jitter:
  multi-portrait photos with one known face per tile.

Faces are detected again on every final image (:func:`obscrowd_lib.faces.detect_faces`; faces
below ``min_face_px`` are dropped), the union soft mask is :func:`obscrowd_lib.masks.face_masks`,
and the teacher (:func:`obscrowd_lib.teacher.protect_teacher`) gives δ. An image where no face is
found is recorded in ``empty/`` so that a resumed run does not try it again.

The teacher runs for targets start from δ = 0 by default (:func:`target_teacher_config`): a random
start leaves uniform noise in δ that no generator can predict from the photo, and the student would
learn to imitate its mean (zero) instead of the objective's structure.

Folder layout: ``<root>/<key>/{target_config.json, teacher_config.json, plan.json, summary.json,
items/NNNNN.pt, empty/NNNNN.pt}``; ``plan.json`` is the list of images (detection on every source
photo happens once, not on every resume); each item holds the photo (3, H, W) uint8, the mask (H, W) and
δ (3, H, W) as float16, the landmarks (N, 5, 2) and boxes (N, 4), and the teacher's summary.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

ITEM_FORMAT = "obscrowd-target/1"  # "format" field of every cached item


@dataclass(frozen=True)
class TargetConfig:
    """Which images make the student's training set (the teacher's own knobs are its TeacherConfig)."""

    samples: tuple[str, ...] = ()  # sample photos by name from data.SAMPLES; empty means all of them
    use_samples: bool = True  # include the project's sample photos; False with photos_dir: only your own
    photos_dir: str = ""  # a folder of your own photos (CelebA-HQ, FFHQ, group photos); every image is used
    size: int = 128  # side of every training image in pixels, square
    crops_per_photo: int = 3  # random face-centred crops per sample photo
    scale_range: tuple[float, float] = (1.6, 3.2)  # crop side as a multiple of the anchor face's box side
    flip: float = 0.5  # probability that a crop is mirrored left-right
    whole: bool = True  # also the whole photo, padded square, when its faces stay >= min_face_px wide
    composites: int = 2  # controlled multi-portrait composites of the single-portrait samples
    composite_faces: int = 2  # portraits per composite
    composite_scale: float = 1.4  # each portrait is cut to a square this many face-box sides wide, face centred
    min_face_px: int = 20  # faces narrower than this in the training image are dropped
    detector: str = "mtcnn"  # detector run on every training image
    seed: int = 0  # seeds the crops, flips and composites

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        problems = []
        if self.size < 16:
            problems.append(f"size must be >= 16, got {self.size}")
        if not 1 <= lo <= hi:
            problems.append(f"scale_range must be (lo, hi) with 1 <= lo <= hi, got {self.scale_range}")
        if not 0 <= self.flip <= 1:
            problems.append(f"flip is a probability, got {self.flip}")
        if self.crops_per_photo < 0 or self.composites < 0 or self.composite_faces < 1 or self.min_face_px < 1:
            problems.append("crops_per_photo and composites must be >= 0, composite_faces and min_face_px >= 1")
        if not self.composite_scale >= 1:
            problems.append(f"composite_scale must be >= 1, got {self.composite_scale}")
        if not self.use_samples and not self.photos_dir:
            problems.append("use_samples=False needs a photos_dir: there would be no photos")
        if problems:
            raise ValueError("TargetConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class ItemSpec:
    """How to make one training image (all coordinates in the source photo's pixels)."""

    index: int  # position in the plan = file name
    kind: str  # crop, whole or composite
    sources: tuple[str, ...]  # sample names used
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # crop (x0, y0, x1, y1) for kind crop
    tiles: tuple[tuple[int, int, int, int], ...] = ()  # per source, the face-centred square cut, kind composite
    flip: bool = False  # mirrored left-right
    seed: int = 0  # composite jitter seed

    def describe(self) -> str:
        extra = f" box={list(self.box)}" if self.kind == "crop" else ""
        return f"{self.kind}:{'+'.join(self.sources)}{extra}{' flipped' if self.flip else ''}"


def targets_key(config: TargetConfig, teacher_config: Any) -> str:
    """Folder name of a target set: the hashes of the two configs, of the calibrated thresholds the
    teacher aims below (a re-calibration changes the teacher's results) and of the file list of
    ``photos_dir``, so any change gets a new set."""
    import hashlib
    import json

    from .config import config_hash
    from .recognition import load_thresholds

    try:
        models = load_thresholds()["models"]
        thr = {n: c.thresholds.get(float(teacher_config.threshold_far)) for n, c in sorted(models.items())}
    except (FileNotFoundError, ValueError):
        thr = {}
    extra = {"thresholds": thr}
    if config.photos_dir:  # the folder's content, not only its name: added photos make a new set
        from . import data

        extra["photos"] = [(Path(n).name, Path(n).stat().st_size) for n in sources(config) if n not in data.SAMPLES]
    t = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{config_hash(config)[:8]}-{config_hash(teacher_config)[:8]}-{t}"


def target_teacher_config(**changes: Any) -> Any:
    """The default :class:`~obscrowd_lib.teacher.TeacherConfig` of target runs: the teacher's defaults
    with ``random_start=False`` (module docstring), updated with ``changes``."""
    from .teacher import TeacherConfig

    return TeacherConfig(**{"random_start": False, **changes})


def default_root() -> Path:
    """Where target sets are cached: ``$OBSCROWD_HOME/student_targets``."""
    from .artifacts import cache_home

    return cache_home() / "student_targets"


# ----------------------------------------------------------------------------------------------
# Planning and making the images
# ----------------------------------------------------------------------------------------------


def _square(img: np.ndarray, size: int, background: int = 235) -> np.ndarray:
    """Pad (H, W, 3) uint8 to a centred square with ``background``, then resize to ``size``."""
    from PIL import Image

    h, w = img.shape[:2]
    side = max(h, w)
    canvas = np.full((side, side, 3), background, np.uint8)
    y0, x0 = (side - h) // 2, (side - w) // 2
    canvas[y0:y0 + h, x0:x0 + w] = img
    return np.asarray(Image.fromarray(canvas).resize((size, size), Image.Resampling.LANCZOS))


def sources(config: TargetConfig) -> list[str]:
    """The source photos of ``config``: sample names, then the image paths of ``photos_dir``."""
    from . import data
    from .io import list_images

    names = list(config.samples or data.SAMPLES) if config.use_samples else []
    unknown = [n for n in names if n not in data.SAMPLES]
    if unknown:
        raise KeyError(f"unknown sample(s) {unknown}; known: {', '.join(data.SAMPLES)}")
    if config.photos_dir:
        names += [str(p.resolve()) for p in list_images(config.photos_dir)]
    return names


def _source_path(name: str) -> Path:
    """A sample's extracted file, or the path of one of the user's photos."""
    from . import data

    return data.sample_path(name) if name in data.SAMPLES else Path(name)


def plan(config: TargetConfig, detect: Any = None) -> list[ItemSpec]:
    """The deterministic list of training images of ``config`` (detects faces on every source photo).

    ``detect(image (H, W, 3) uint8) -> list[Face]`` defaults to :func:`obscrowd_lib.faces.detect_faces`
    with ``config.detector``. A source photo with exactly one face can join composites.
    """
    from .io import load_image

    detect = detect or _detector(config)
    items: list[ItemSpec] = []
    squares: dict[str, tuple[int, int, int, int]] = {}  # single portraits: face-centred square cut
    for p, name in enumerate(sources(config)):
        img = load_image(_source_path(name))
        h, w = img.shape[:2]
        faces = list(detect(img))
        if not faces:
            continue
        sides = [max(f.box[2] - f.box[0], f.box[3] - f.box[1]) for f in faces]
        if len(faces) == 1:
            squares[name] = face_square(img.shape[:2], faces[0], config.composite_scale)
        if config.whole and min(sides) * config.size / max(h, w) >= config.min_face_px:
            items.append(ItemSpec(len(items), "whole", (name,)))
        rng = np.random.default_rng([config.seed, p])
        for _ in range(config.crops_per_photo):
            k = int(rng.integers(len(faces)))
            x0, y0, x1, y1 = faces[k].box
            side = min(sides[k] * rng.uniform(*config.scale_range), h, w)
            cx = (x0 + x1) / 2 + rng.uniform(-0.25, 0.25) * side
            cy = (y0 + y1) / 2 + rng.uniform(-0.25, 0.25) * side
            left = round(min(max(cx - side / 2, 0), w - side))
            top = round(min(max(cy - side / 2, 0), h - side))
            s = round(side)
            items.append(ItemSpec(len(items), "crop", (name,), box=(left, top, left + s, top + s),
                                  flip=bool(rng.random() < config.flip)))
    singles = list(squares)
    rng = np.random.default_rng([config.seed, 10_007])
    for _ in range(config.composites if singles else 0):
        k = min(config.composite_faces, len(singles))
        pick = tuple(str(singles[i]) for i in rng.choice(len(singles), size=k, replace=False))
        items.append(ItemSpec(len(items), "composite", pick, tiles=tuple(squares[n] for n in pick),
                              seed=int(rng.integers(2**31 - 1)), flip=bool(rng.random() < config.flip)))
    return items


def face_square(shape: tuple[int, int], face: Any, scale: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) square of side ``scale`` × the face box's longer side (at most the photo's
    shorter side), centred on the face and moved inside a photo of ``shape`` (H, W)."""
    h, w = shape
    x0, y0, x1, y1 = (float(v) for v in face.box)
    side = min(scale * max(x1 - x0, y1 - y0), h, w)
    left = round(min(max((x0 + x1) / 2 - side / 2, 0), w - side))
    top = round(min(max((y0 + y1) / 2 - side / 2, 0), h - side))
    s = round(side)
    return left, top, left + s, top + s


def portrait_composite(names: Sequence[str], tile: int = 128, *, scale: float = 2.0, detect: Any = None,
                       columns: int | None = None, seed: int = 0, jitter: float = 0.0,
                       squares: Sequence[tuple[int, int, int, int]] | None = None) -> Any:
    """A controlled multi-portrait photo (:class:`obscrowd_lib.data.Composite`) of portraits (sample names or paths),
    each cut to a face-centred square (:func:`face_square`, face found by ``detect``, default MTCNN;
    or the given ``squares``) before :func:`obscrowd_lib.data.make_composite` tiles them."""
    from . import data
    from .io import load_image

    images = [load_image(_source_path(n)) for n in names]
    if squares is None:
        detect = detect or _detector(TargetConfig())
        squares = []
        for n, img in zip(names, images):
            faces = list(detect(img))
            if not faces:
                raise ValueError(f"{_source_path(n)}: no face found to centre the composite tile on")
            big = max(faces, key=lambda f: max(f.box[2] - f.box[0], f.box[3] - f.box[1]))
            squares.append(face_square(img.shape[:2], big, scale))
    cuts = [img[y0:y1, x0:x1] for img, (x0, y0, x1, y1) in zip(images, squares)]
    ids = [data.SAMPLES[n].identity if n in data.SAMPLES else Path(n).stem for n in names]
    return data.make_composite(cuts, identities=ids, tile=tile,
                               columns=columns, gap=max(2, tile // 16), seed=seed, jitter=jitter)


def make_image(spec: ItemSpec, config: TargetConfig) -> np.ndarray:
    """The (size, size, 3) uint8 training image of ``spec``."""
    from PIL import Image

    from .io import load_image

    if spec.kind == "composite":
        cols = math.ceil(math.sqrt(len(spec.sources)))
        comp = portrait_composite(spec.sources, max(16, config.size // cols), columns=cols, seed=spec.seed,
                                  jitter=0.1, squares=spec.tiles)
        img = _square(comp.image, config.size)
    else:
        src = load_image(_source_path(spec.sources[0]))
        if spec.kind == "crop":
            x0, y0, x1, y1 = spec.box
            img = np.asarray(Image.fromarray(src[y0:y1, x0:x1]).resize((config.size, config.size),
                                                                       Image.Resampling.LANCZOS))
        elif spec.kind == "whole":
            img = _square(src, config.size)
        else:
            raise ValueError(f"unknown item kind {spec.kind!r}")
    return np.array(img[:, ::-1] if spec.flip else img)  # a writable, contiguous copy


def _detector(config: TargetConfig) -> Any:
    """``detect(image) -> list[Face]`` with ``config.detector`` loaded once."""
    from .faces import FaceDetector, detect_faces

    det = FaceDetector(config.detector)
    return lambda img: detect_faces(img, detector=det)


# ----------------------------------------------------------------------------------------------
# Items on disk
# ----------------------------------------------------------------------------------------------


def write_configs(folder: str | Path, config: TargetConfig, teacher_config: Any) -> Path:
    """Write ``target_config.json`` and ``teacher_config.json`` into a target folder; returns it."""
    from .config import save_config

    folder = Path(folder)
    save_config(config, folder / "target_config.json")
    save_config(teacher_config, folder / "teacher_config.json")
    return folder


def save_target(folder: str | Path, index: int, image: np.ndarray, faces: Sequence[Any], mask: Any = None,
                delta: Any = None, meta: dict | None = None) -> Path:
    """Write one training item atomically (``items/`` when it has faces, else ``empty/``).

    Args:
        image: (H, W, 3) uint8 RGB.
        faces: :class:`~obscrowd_lib.faces.Face` records in ``image`` coordinates.
        mask: (H, W) union soft mask in [0, 1] (required with faces).
        delta: (1, 3, H, W) or (3, H, W) teacher perturbation (required with faces).
        meta: JSON-like extras (source, augmentation, teacher summary).
    """
    folder = Path(folder)
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()
    lm = torch.as_tensor(np.stack([np.asarray(f.landmarks, np.float32) for f in faces]) if faces
                         else np.zeros((0, 5, 2), np.float32))
    boxes = torch.tensor([[float(v) for v in f.box] for f in faces], dtype=torch.float32).reshape(-1, 4)
    obj = {"format": ITEM_FORMAT, "photo": img, "landmarks": lm, "boxes": boxes, "meta": dict(meta or {})}
    if faces:
        if mask is None or delta is None:
            raise ValueError("save_target: an item with faces needs its mask and teacher delta")
        obj["mask"] = torch.as_tensor(mask, dtype=torch.float32).reshape(img.shape[-2:]).half()
        obj["delta"] = torch.as_tensor(delta, dtype=torch.float32).reshape(img.shape).half()
    path = folder / ("items" if faces else "empty") / f"{index:05d}.pt"
    from .student import atomic_save

    atomic_save(obj, path)
    return path


def _done(folder: Path, index: int) -> bool:
    return any((folder / sub / f"{index:05d}.pt").is_file() for sub in ("items", "empty"))


def build_targets(config: TargetConfig = TargetConfig(), teacher_config: Any = None, *, root: str | Path | None = None,
                  device: Any = "cpu", progress: bool = True, limit: int | None = None, models: Any = None,
                  detect: Any = None, process_index: int = 0, num_processes: int = 1,
                  plan_only: bool = False) -> Path:
    """Make (or complete) the teacher-target set of ``config``; returns its folder.

    Args:
        config: which images (:class:`TargetConfig`).
        teacher_config: the :class:`~obscrowd_lib.teacher.TeacherConfig` of the teacher runs
            (default :func:`target_teacher_config`).
        root: cache root (default :func:`default_root`); the set lives in ``root/<targets_key>``.
        device: torch device of the teacher.
        progress: a progress bar over the items.
        limit: make at most this many new items in this call (for a time-boxed run; call again to resume).
        models: preloaded :class:`~obscrowd_lib.teacher.TeacherModels`.
        detect: ``detect(image) -> list[Face]`` (default :func:`obscrowd_lib.faces.detect_faces`).
        process_index, num_processes: share the items between processes (``accelerate launch``):
            this process makes the items whose index ≡ process_index (mod num_processes).
        plan_only: write ``plan.json`` (detection on every source photo) and stop; run it on one
            process before the others start, so the detection is not repeated per process.
    """
    from tqdm.auto import tqdm

    from .masks import face_masks
    from .runner import write_json
    from .teacher import load_teacher_models, protect_teacher

    teacher_config = teacher_config or target_teacher_config()
    folder = Path(root or default_root()) / targets_key(config, teacher_config)
    if process_index == 0:
        write_configs(folder, config, teacher_config)
    detect = detect or _detector(config)
    specs = load_plan(folder)
    if specs is None:
        specs = plan(config, detect)
        write_json(folder / "plan.json", [asdict(s) for s in specs])
    if plan_only:
        return folder
    todo = [s for s in specs if s.index % num_processes == process_index and not _done(folder, s.index)]
    if limit is not None:
        todo = todo[:max(0, int(limit))]
    show = progress and os.environ.get("OBSCROWD_PROGRESS", "1") != "0"
    for spec in tqdm(todo, desc="teacher targets", disable=not show):
        img = make_image(spec, config)
        faces = [f for f in detect(img) if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= config.min_face_px]
        meta = {"source": list(spec.sources), "augment": spec.describe()}
        if not faces:
            save_target(folder, spec.index, img, [], meta=meta)
            continue
        mask = torch.as_tensor(face_masks(img.shape[:2], faces).union, dtype=torch.float32)
        if models is None:
            models = load_teacher_models(teacher_config, device)
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255)
        result = protect_teacher(x, faces, config=teacher_config, mask=mask, models=models, device=device,
                                 progress=False)
        save_target(folder, spec.index, img, faces, mask=mask, delta=result.delta.cpu(),
                    meta={**meta, "teacher": result.summary()})
    if all(_done(folder, s.index) for s in specs):  # the last process to finish writes it
        write_json(folder / "summary.json", summarize(folder, planned=len(specs)))
    return folder


def load_plan(folder: str | Path) -> list[ItemSpec] | None:
    """The ``plan.json`` of a target folder as :class:`ItemSpec` records (None when absent)."""
    import json

    path = Path(folder) / "plan.json"
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text())
        return [ItemSpec(**{**r, "sources": tuple(r["sources"]), "box": tuple(r["box"]),
                            "tiles": tuple(tuple(t) for t in r["tiles"])}) for r in rows]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a plan written by build_targets ({e}); delete it to plan again") from e


def summarize(folder: str | Path, planned: int | None = None) -> dict:
    """Counts, faces per item, median face side and the teacher's protection rate of a target set."""
    folder = Path(folder)
    items = sorted((folder / "items").glob("*.pt"))
    sides, faces, protected = [], [], []
    for p in items:
        obj = torch.load(p, map_location="cpu", weights_only=True)
        b = obj["boxes"]
        sides += (torch.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])).tolist()
        faces.append(len(b))
        protected += list(obj["meta"].get("teacher", {}).get("protected_faces", []))
    return {"planned": planned, "items": len(items), "empty": len(list((folder / "empty").glob("*.pt"))),
            "faces": int(sum(faces)), "max_faces_per_item": max(faces, default=0),
            "face_px_median": float(np.median(sides)) if sides else None,
            "teacher_protected_fraction": float(np.mean(protected)) if protected else None}


# ----------------------------------------------------------------------------------------------
# Reading a target set
# ----------------------------------------------------------------------------------------------


class TargetDataset(torch.utils.data.Dataset):
    """The items of a target folder with faces: ``ds[i]`` is a dict with ``photo`` (3, H, W) float in
    [0, 1], ``mask`` (1, H, W), ``delta`` (3, H, W) (the teacher's), ``landmarks`` (N, 5, 2), ``index``.

    Items are read from disk on access (a small set stays cached in memory after the first read).
    """

    def __init__(self, folder: str | Path, cache: bool = True):
        from .config import load_config
        from .teacher import TeacherConfig

        self.folder = Path(folder)
        if not (self.folder / "teacher_config.json").is_file():
            raise FileNotFoundError(f"{self.folder}: not a teacher-target folder (no teacher_config.json); "
                                    "build one with `obscrowd train-student --targets-only`")
        self.teacher_config = load_config(TeacherConfig, self.folder / "teacher_config.json")
        self.target_config = (load_config(TargetConfig, self.folder / "target_config.json")
                              if (self.folder / "target_config.json").is_file() else None)
        self.paths = sorted((self.folder / "items").glob("*.pt"))
        if not self.paths:
            raise FileNotFoundError(f"{self.folder}: no training items with faces in items/")
        self._cache: dict[int, dict] | None = {} if cache else None

    @property
    def eps_255(self) -> float:
        return float(self.teacher_config.eps_255)

    @property
    def key(self) -> str:
        return self.folder.name

    @property
    def face_px(self) -> float | None:
        """Median face side in the training images (from summary.json), or None."""
        p = self.folder / "summary.json"
        if not p.is_file():
            return None
        import json

        return json.loads(p.read_text()).get("face_px_median")

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, i: int) -> dict:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        path = self.paths[i]
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"{path}: unreadable target item ({e}); delete it and build the targets again") from e
        if obj.get("format") != ITEM_FORMAT or "delta" not in obj:
            raise ValueError(f"{path}: not a {ITEM_FORMAT} item with a teacher delta")
        if self._cache is not None:
            self._cache[i] = obj
        return obj

    def photo(self, i: int) -> torch.Tensor:
        """(3, H, W) float in [0, 1] of item ``i``."""
        return self._load(i)["photo"].float() / 255

    def __getitem__(self, i: int) -> dict:
        obj = self._load(i)
        return {"photo": obj["photo"].float() / 255, "mask": obj["mask"].float()[None],
                "delta": obj["delta"].float(), "landmarks": obj["landmarks"].float(), "index": int(i)}


def collate(items: list[dict]) -> dict:
    """Stack photos, masks and deltas (same size required); keep landmarks and indices as lists."""
    shapes = {tuple(it["photo"].shape) for it in items}
    if len(shapes) != 1:
        raise ValueError(f"a batch needs training images of one size, got {sorted(shapes)}")
    return {"photo": torch.stack([it["photo"] for it in items]), "mask": torch.stack([it["mask"] for it in items]),
            "delta": torch.stack([it["delta"] for it in items]), "landmarks": [it["landmarks"] for it in items],
            "index": [it["index"] for it in items]}


# ----------------------------------------------------------------------------------------------
# Command line pieces (used by obscrowd_lib.student.add_train_arguments)
# ----------------------------------------------------------------------------------------------


def add_target_arguments(parser: Any) -> None:
    """Options for the target set: every TargetConfig field as ``--target-<field>`` and the teacher's."""
    for f in fields(TargetConfig):
        flag = "--target-" + f.name.replace("_", "-")
        if isinstance(f.default, tuple):
            parser.add_argument(flag, nargs="*", default=None, help=f"TargetConfig.{f.name}")
        elif isinstance(f.default, bool):
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=None,
                                help=f"TargetConfig.{f.name} (true/false)")
        else:
            parser.add_argument(flag, type=type(f.default), default=None, help=f"TargetConfig.{f.name}")
    parser.add_argument("--teacher-config", help="a TeacherConfig JSON for the teacher runs")
    parser.add_argument("--teacher-steps", type=int, help="TeacherConfig.steps of the teacher runs")
    parser.add_argument("--teacher-ensemble", nargs="*", help="TeacherConfig.ensemble of the teacher runs")
    parser.add_argument("--teacher-attacks", nargs="*", help="TeacherConfig.attacks of the teacher runs")


def target_config_from_args(args: Any) -> TargetConfig:
    over = {}
    for f in fields(TargetConfig):
        v = getattr(args, "target_" + f.name, None)
        if v is not None:
            over[f.name] = (tuple(float(x) for x in v) if f.name == "scale_range" else tuple(v)) \
                if isinstance(v, list) else v
    return replace(TargetConfig(), **over)


def teacher_config_from_args(args: Any, eps_255: float | None = None) -> Any:
    """The TeacherConfig of the target set: ``--teacher-config`` file (else :func:`target_teacher_config`),
    then the flags; the budget is the student's (``eps_255``) so that targets and student agree."""
    from .config import load_config
    from .teacher import TeacherConfig

    cfg = (load_config(TeacherConfig, args.teacher_config) if getattr(args, "teacher_config", None)
           else target_teacher_config())
    over: dict[str, Any] = {}
    if getattr(args, "teacher_steps", None) is not None:
        over["steps"] = args.teacher_steps
    if getattr(args, "teacher_ensemble", None):
        over.update(ensemble=tuple(args.teacher_ensemble), ensemble_weights=())
    if getattr(args, "teacher_attacks", None):
        over.update(attacks=tuple(args.teacher_attacks), attack_weights=())
    if eps_255 is not None:
        over["eps_255"] = float(eps_255)
    return replace(cfg, **over)


__all__ = ["TargetConfig", "ItemSpec", "TargetDataset", "build_targets", "plan", "make_image", "save_target",
           "face_square", "portrait_composite", "sources", "load_plan",
           "write_configs", "summarize", "collate", "targets_key", "default_root", "target_teacher_config",
           "add_target_arguments",
           "target_config_from_args", "teacher_config_from_args"]
