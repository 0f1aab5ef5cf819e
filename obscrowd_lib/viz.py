"""Small figures for the notebooks: photo grids, thumbnails, face boxes with labels.

Tiles are at most 256 px on their long side and figures are saved as JPEG, so executed
notebooks stay small.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def thumbnail(image: np.ndarray, max_side: int = 256) -> np.ndarray:
    """(H, W, 3) uint8 → a copy whose long side is at most ``max_side`` pixels (aspect kept)."""
    from .io import downscale

    return downscale(image, max_side)


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, *, columns: int = 4,
               tile: int = 256, boxes: Sequence[Sequence[tuple]] | None = None,
               labels: Sequence[Sequence[str]] | None = None, dpi: int = 80):
    """A matplotlib figure showing ``images`` (each (H, W, 3) uint8) in a grid of thumbnails.

    ``boxes[i]`` (optional) are (x0, y0, x1, y1) boxes in the pixel coordinates of image ``i``,
    drawn with ``labels[i]`` (e.g. per-face similarities).
    """
    import matplotlib.pyplot as plt

    n = len(images)
    columns = min(columns, n)
    rows = (n + columns - 1) // columns
    thumbs = [thumbnail(img, tile) for img in images]
    # rows as tall as the tallest thumbnail, columns as wide as the widest: landscape photos get no blank band
    row_h = max(th.shape[0] for th in thumbs) / dpi + (0.35 if titles else 0.1)
    col_w = max(th.shape[1] for th in thumbs) / dpi
    fig, axes = plt.subplots(rows, columns, figsize=(columns * col_w, rows * row_h), dpi=dpi, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, img in enumerate(images):
        ax = axes.flat[i]
        th = thumbs[i]
        scale = th.shape[1] / img.shape[1]
        ax.imshow(th)
        if titles:
            ax.set_title(titles[i], fontsize=9)
        for j, b in enumerate((boxes[i] if boxes else []) or []):
            x0, y0, x1, y1 = (v * scale for v in b[:4])
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="lime", lw=1.2))
            if labels and labels[i] and j < len(labels[i]):
                ax.text(x0, y0 - 2, labels[i][j], color="black", fontsize=7,
                        bbox={"facecolor": "lime", "alpha": 0.7, "pad": 1, "lw": 0})
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path, *, quality: int = 85) -> Path:
    """Save a figure atomically (JPEG for photos unless the suffix says .png); returns the path."""
    from .io import publish

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "png" if path.suffix.lower() == ".png" else "jpeg"
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=path.suffix) as f:
        tmp = f.name
    kwargs = {"pil_kwargs": {"quality": quality}} if fmt == "jpeg" else {}
    fig.savefig(tmp, format=fmt, bbox_inches="tight", **kwargs)
    return publish(tmp, path)
