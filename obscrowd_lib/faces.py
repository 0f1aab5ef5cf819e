"""Face detection: every face of a group photo, with box, 5 landmarks and score.

Landmark order everywhere in obscrowd (MTCNN's): left eye, right eye, nose, mouth left, mouth
right, where "left" means image left.

Two detectors, from different families, so that evaluation can use one the protection never saw:

* ``mtcnn`` (default): facenet-pytorch's MTCNN with its P/R/O-Net weights loaded from the
  verified registry copy. Gives the 5 landmarks directly.
* ``dlib-cnn`` / ``dlib-hog``: dlib's CNN (mmod) or HOG detector plus its 5-point shape
  predictor. dlib's 5 points are the two corners of each eye and the bottom of the nose; eye
  centres are the corner means, the nose is dlib's point, and the two mouth corners (which dlib's
  5-point model does not give) are placed from the eye line with the median MTCNN face geometry:
  the mouth line lies 1.07 inter-ocular distances (IOD) below the eye midpoint, but at least
  0.2 IOD below dlib's nose point (keeps the mouth under the nose on turned faces), with the
  corners 0.49 IOD either side of the face's centre line. The constants are medians over 54
  faces found by both MTCNN and dlib (sample photos + dlib's example group photos); the mouth
  corners then lie a median 0.13 IOD (90th percentile 0.28 IOD) from MTCNN's. Re-measure with
  ``benchmarks/detection.py`` (``landmarks`` section). dlib's nose point (bottom of the nose)
  sits about 0.14 IOD lower than MTCNN's nose tip.

Large photos are **downscaled** for detection so that the long side is at most ``max_side``
pixels (default 1600 for MTCNN, 1000 for dlib CNN, which costs ~6 s per 1200 px image), and
boxes/landmarks are scaled back to the original pixel grid. Faces smaller than ``min_size`` pixels
(in the original photo; default 12) are dropped. Results are sorted left to right.

dlib's detectors find faces down to about 80 px; each upsampling of the image (dlib's
``upsample_num_times``) halves that. The number of upsamplings is the smaller of (a) what
``min_size`` (scaled like the photo) needs and (b) a cost cap from the detection image's long side
(2 below 700 px, 1 below 1000 px, else 0). With the default ``min_size`` the cap decides; a larger
``min_size`` (e.g. 80) skips upsampling and is much faster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DETECTORS = ("mtcnn", "dlib-cnn", "dlib-hog")

# Mouth corners from the eye line for dlib's 5-point model (see the module docstring).
_MOUTH_DOWN = 1.07  # mouth line below the eye midpoint, in inter-ocular distances
_MOUTH_BELOW_NOSE = 0.2  # ...and at least this far below dlib's nose point, in inter-ocular distances
_MOUTH_HALF_WIDTH = 0.49  # half the mouth width, in inter-ocular distances
_DLIB_MIN_FACE_PX = 80.0  # smallest face dlib's CNN and HOG detectors find without upsampling (40 px faces need 1)


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

    @property
    def size(self) -> float:
        """Face size in pixels: the mean of box width and height."""
        x0, y0, x1, y1 = self.box
        return 0.5 * ((x1 - x0) + (y1 - y0))


def load_mtcnn(device: Any = "cpu", min_size: int = 20):
    """facenet-pytorch's MTCNN (keep_all) with P/R/O-Net weights from the verified registry copy."""
    import torch
    from facenet_pytorch import MTCNN

    from . import zoo

    mtcnn = MTCNN(keep_all=True, device=device, min_face_size=min_size, post_process=False)
    files = {p.stem: p for p in zoo.entry_files("mtcnn")}  # onet, pnet, rnet
    for name in ("pnet", "rnet", "onet"):
        getattr(mtcnn, name).load_state_dict(torch.load(files[name], map_location="cpu", weights_only=True))
    return mtcnn.eval()


def load_dlib_detector(device: Any = "cpu", method: str = "cnn"):
    """dlib's CNN (``method="cnn"``) or HOG (``"hog"``) detector and its 5-point shape predictor.

    Returns ``(detector, predictor)``; dlib runs on the CPU whatever ``device`` says.
    """
    import dlib

    from . import zoo

    files = {p.name: str(p) for p in zoo.entry_files("dlib-cnn" if method == "cnn" else "dlib-hog")}
    predictor = dlib.shape_predictor(files["shape_predictor_5_face_landmarks.dat"])
    if method == "cnn":
        return dlib.cnn_face_detection_model_v1(files["mmod_human_face_detector.dat"]), predictor
    if method == "hog":
        return dlib.get_frontal_face_detector(), predictor
    raise ValueError(f"dlib detector method must be 'cnn' or 'hog', got {method!r}")


def dlib5_to_mtcnn(points: np.ndarray) -> np.ndarray:
    """dlib 5-point shape (5, 2) → obscrowd's 5 landmarks (5, 2) (see the module docstring).

    dlib's order: 0-1 corners of the eye on the image right, 2-3 corners of the eye on the image
    left, 4 bottom of the nose.
    """
    p = np.asarray(points, dtype=np.float64)
    right_eye = p[0:2].mean(0)
    left_eye = p[2:4].mean(0)
    nose = p[4]
    d = right_eye - left_eye
    iod = float(np.hypot(*d)) or 1.0
    ex = d / iod  # unit vector along the eye line (image left → right)
    ey = np.array([-ex[1], ex[0]])  # perpendicular, pointing down the face
    eye_mid = 0.5 * (left_eye + right_eye)
    down = max(_MOUTH_DOWN, float((nose - eye_mid) @ ey) / iod + _MOUTH_BELOW_NOSE)
    mid = eye_mid + down * iod * ey
    return np.stack([left_eye, right_eye, nose, mid - _MOUTH_HALF_WIDTH * iod * ex,
                     mid + _MOUTH_HALF_WIDTH * iod * ex])


def _as_uint8_rgb(image) -> np.ndarray:
    from .io import load_image, to_uint8

    if isinstance(image, (str, Path)):
        return load_image(image)
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"detect_faces expects (H, W, 3) uint8, got {image.shape} {image.dtype}")
        return image
    return to_uint8(image)  # a (1, 3, H, W) tensor in [0, 1]


class FaceDetector:
    """A loaded detector: ``FaceDetector("mtcnn").detect(image) -> list[Face]``.

    ``image``: a path, an (H, W, 3) uint8 RGB array, or a (1, 3, H, W) float tensor in [0, 1].
    """

    def __init__(self, name: str = "mtcnn", *, device: Any = "cpu", min_size: int = 12,
                 score_threshold: float | None = None, max_side: int | None = None):
        if name not in DETECTORS:
            raise ValueError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
        self.name = name
        self.min_size = min_size
        self.score_threshold = (0.9 if name == "mtcnn" else 0.0) if score_threshold is None else score_threshold
        self.max_side = max_side or (1600 if name == "mtcnn" else 1000)
        if name == "mtcnn":
            self._model = load_mtcnn(device, min_size=max(12, min_size))
        else:
            self._model = load_dlib_detector(device, method=name.split("-")[1])

    def detect(self, image) -> list[Face]:
        """All faces in ``image`` (may be empty), sorted left to right, in the image's pixel coordinates."""
        from PIL import Image

        img = _as_uint8_rgb(image)
        h, w = img.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        small = img if s == 1.0 else np.asarray(
            Image.fromarray(img).resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR))
        faces = self._detect_mtcnn(small) if self.name == "mtcnn" else self._detect_dlib(small, self.min_size * s)
        out = []
        for box, lm, score in faces:
            box = tuple(float(v) / s for v in box)
            f = Face(box, np.asarray(lm, dtype=np.float64) / s, float(score))
            if f.size >= self.min_size and f.score >= self.score_threshold:
                out.append(f)
        return sorted(out, key=lambda f: (f.box[0], f.box[1]))

    def _detect_mtcnn(self, img: np.ndarray):
        import torch

        with torch.no_grad():
            boxes, probs, lms = self._model.detect(img, landmarks=True)
        if boxes is None or len(boxes) == 0 or boxes[0] is None:  # facenet-pytorch's "no face" under numpy 2
            return []
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        probs = np.asarray(probs, dtype=np.float64).reshape(-1)
        lms = np.asarray(lms, dtype=np.float64).reshape(-1, 5, 2)
        return list(zip(boxes, lms, probs))

    def _detect_dlib(self, img: np.ndarray, min_px: float):
        detector, predictor = self._model
        side = max(img.shape[:2])
        cap = 2 if side < 700 else 1 if side < 1000 else 0  # cost cap: upsampled side stays under ~2800 px
        needed = max(0, math.ceil(math.log2(_DLIB_MIN_FACE_PX / max(min_px, 1.0))))
        upsample = min(cap, needed)  # dlib finds faces >= ~80 / 2**upsample px
        if self.name == "dlib-cnn":
            dets = [(d.rect, float(d.confidence)) for d in detector(img, upsample)]
        else:
            rects, scores, _ = detector.run(img, upsample, 0.0)
            dets = list(zip(rects, (float(v) for v in scores)))
        out = []
        for rect, score in sorted(dets, key=lambda d: -d[1]):
            box = (rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1)
            if any(_iou(box, kept) > 0.4 for kept, _, _ in out):
                continue  # dlib's CNN can report one face twice at different scales: keep the stronger
            shape = predictor(img, rect)
            pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64)
            out.append((box, dlib5_to_mtcnn(pts), score))
        return out


def _iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detect_faces(image, *, detector: str | FaceDetector = "mtcnn", min_size: int = 12,
                 score_threshold: float | None = None, max_side: int | None = None, device: Any = "cpu") -> list[Face]:
    """Detect every face in ``image`` (path, (H, W, 3) uint8, or (1, 3, H, W) tensor in [0, 1]).

    No face → ``[]`` (the caller decides what that means). Pass a loaded :class:`FaceDetector` to
    avoid reloading the model for each photo.
    """
    if isinstance(detector, FaceDetector):
        return detector.detect(image)
    return FaceDetector(detector, device=device, min_size=min_size, score_threshold=score_threshold,
                        max_side=max_side).detect(image)
