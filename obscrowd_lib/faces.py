"""Face detection: every face of a group photo, with box, 5 landmarks and score.

Landmark order everywhere in obscrowd (MTCNN's): left eye, right eye, nose, mouth left, mouth
right, where "left" means image left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Face:
    """One detected face, in pixel coordinates of the photo it was found in."""

    box: tuple[float, float, float, float]  # (x0, y0, x1, y1), pixels, x right, y down
    landmarks: np.ndarray  # (5, 2) float (x, y): left eye, right eye, nose, mouth left, mouth right
    score: float  # detector confidence (MTCNN probability; dlib CNN detection confidence)

    def to_json(self) -> dict:
        return {"box": [round(float(v), 2) for v in self.box],
                "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in np.asarray(self.landmarks)],
                "score": round(float(self.score), 5)}
