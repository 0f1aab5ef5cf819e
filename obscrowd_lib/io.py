"""Image input/output: robust loading, tensors, and atomic metadata-free PNG writing.

Photos come in every shape users have: EXIF-rotated JPEGs, grayscale, RGBA, palette, CMYK and
16-bit PNG/TIFF. :func:`load_image` turns each into an upright (H, W, 3) uint8 RGB array, or
raises :class:`ImageError` with one line naming the file and the problem. :func:`save_png`
never loses data: it writes a temporary file beside the target and renames it into place, refuses
to overwrite an existing file unless asked, writes PNG only (a lossy format would silently erase
a protection) and drops every metadata chunk (EXIF, GPS, text).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ImageError(ValueError):
    """An image file cannot be read or written (message names the file and the problem)."""


def load_image(path: str | Path) -> np.ndarray:
    """Read ``path`` as an upright (H, W, 3) uint8 RGB array.

    EXIF orientation is applied; grayscale is replicated to 3 channels; RGBA/LA/palette images with
    transparency are composited on **white**; CMYK is converted; 16-bit (I;16 / I mode) images are
    scaled to 8 bit by their full range (value / 257).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb_array(im)
    except UnidentifiedImageError as e:
        raise ImageError(f"{path}: not an image PIL can read") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: corrupt or truncated image ({e})") from e


def _to_rgb_array(im) -> np.ndarray:
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(np.round(a / hi * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        a = np.clip(np.round(a * 255.0 if a.max() <= 1.0 else a), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(arr)


def downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    """(H, W, 3) uint8 → a Lanczos-resized copy whose long side is at most ``max_side`` pixels.

    The aspect ratio is kept; an image already small enough is returned as it is (not copied).
    """
    from PIL import Image

    if max_side < 1:
        raise ValueError(f"downscale: max_side must be >= 1, got {max_side}")
    h, w = image.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s == 1.0:
        return image
    return np.asarray(Image.fromarray(image).resize((max(1, round(w * s)), max(1, round(h * s))),
                                                    Image.Resampling.LANCZOS))


def to_tensor(image: np.ndarray, device="cpu"):
    """(H, W, 3) uint8 → (1, 3, H, W) float32 tensor in [0, 1] on ``device``."""
    import torch

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"to_tensor expects (H, W, 3) uint8, got {image.shape} {image.dtype}")
    arr = np.ascontiguousarray(image)
    if not arr.flags.writeable:  # e.g. np.asarray(PIL image): torch warns on read-only memory
        arr = arr.copy()
    return torch.from_numpy(arr).to(device).permute(2, 0, 1)[None].float().div(255.0)


def to_uint8(photo) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) float tensor in [0, 1] → (H, W, 3) uint8 (rounded, clipped)."""
    t = photo.detach()
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ValueError(f"to_uint8 expects one photo, got a batch of {t.shape[0]}")
        t = t[0]
    return (t.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()).copy()


def save_png(image, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``image`` ((H, W, 3) uint8 array or a [0, 1] tensor) as a metadata-free PNG, atomically.

    Refuses a suffix other than ``.png`` and an existing file unless ``overwrite=True``. The data
    goes to a temporary file in the target folder first and is renamed into place, so an
    interrupted write never leaves a half-written image.
    """
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ImageError(f"{path}: outputs are written as PNG only (a lossy format can erase a protection); "
                         f"use a .png name")
    if path.exists() and not overwrite:
        raise ImageError(f"{path}: already exists; refusing to overwrite (choose another output name)")
    arr = image if isinstance(image, np.ndarray) else to_uint8(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ImageError(f"{path}: expected an (H, W, 3) uint8 image, got {arr.shape} {arr.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".png.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(arr, "RGB").save(f, format="PNG")  # a fresh image: no EXIF, GPS or text chunks
        publish(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise ImageError(f"{path}: cannot write ({e.strerror or e})") from e
    return path


def publish(tmp: str | Path, path: str | Path) -> Path:
    """Move a finished temporary file into place atomically, readable like any other file (0644)."""
    os.chmod(tmp, 0o644)  # mkstemp/NamedTemporaryFile create 0600 files
    os.replace(tmp, path)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically (values JSON cannot hold are written with ``str``)."""
    import json

    return write_text_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder`` (sorted; hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
