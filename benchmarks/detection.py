"""Face detector recall and precision against hand-labelled boxes (dlib's example group photos).

Ground truth: dlib's imglab XML files (``training.xml``, ``testing.xml``) in a folder of photos,
``<image file=...><box top= left= width= height= [ignore='1']/>``. In the dlib example folder these
are 9 PASCAL VOC group photos with 43 labelled faces; photos in the folder that no XML lists are
skipped. Every obscrowd detector (``mtcnn``, ``dlib-cnn``, ``dlib-hog``) runs with its library
defaults (:class:`obscrowd_lib.faces.FaceDetector`).

Matching is one-to-one (Hungarian, ``scipy.optimize.linear_sum_assignment``), maximising first the
number of matched pairs and then their total IoU. Three criteria are reported:

* ``iou0.5``: a detection matches a labelled face when IoU >= 0.5 (the usual criterion);
* ``iou0.3``: IoU >= 0.3. dlib's labels are tight squares from brows to chin, MTCNN's boxes are
  taller and include forehead and chin, so a correct MTCNN box can fall under IoU 0.5;
* ``centre``: the detection's box centre lies inside the labelled box (convention-free).

A detection left unmatched that would match an ``ignore`` box under the same criterion counts
neither as a hit nor as a false positive; ignore boxes are never misses. Every other unmatched
detection is a false positive (including faces the labeller left out, e.g. tiny background faces).
``size_ratio`` is the median of sqrt(area of the detection / area of its label) over IoU-0.3 matches.

Landmarks (``landmarks`` section): on faces that MTCNN and a dlib detector both find (eye midpoints
within 0.3 inter-ocular distances, IOD), the median distance of each of dlib's converted landmarks
(:func:`obscrowd_lib.faces.dlib5_to_mtcnn`) from MTCNN's, in IOD, and the median face geometry
behind the conversion's mouth constants (MTCNN mouth line below the dlib eye midpoint, half mouth
width, dlib nose point below the eye midpoint, all in IOD).

    .venv/bin/python benchmarks/detection.py [FOLDER] [--detectors mtcnn,dlib-cnn,dlib-hog] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from obscrowd_lib import faces as faces_mod
from obscrowd_lib.io import load_image
from obscrowd_lib.runner import write_json

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FOLDER = ROOT.parent / "shared" / "data" / "dlib_examples" / "faces"
XML_FILES = ("training.xml", "testing.xml")
CRITERIA = ("iou0.5", "iou0.3", "centre")


def read_imglab(folder: Path, xml_names=XML_FILES) -> dict[str, dict]:
    """``{file name: {"boxes": (G, 4) x0 y0 x1 y1, "ignore": (G,) bool}}`` from imglab XML files in ``folder``."""
    out: dict[str, dict] = {}
    for name in xml_names:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: imglab XML not found (expected {', '.join(xml_names)} in {folder})")
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as e:
            raise ValueError(f"{path}: not valid XML ({e})") from e
        for img in root.iter("image"):
            file = img.get("file")
            if not file:
                raise ValueError(f"{path}: an <image> element has no file attribute")
            boxes, ignore = [], []
            for b in img.iter("box"):
                try:
                    top, left, w, h = (float(b.get(k)) for k in ("top", "left", "width", "height"))
                except (TypeError, ValueError) as e:
                    raise ValueError(f"{path}: {file}: box without numeric top/left/width/height ({b.attrib})") from e
                boxes.append((left, top, left + w, top + h))
                ignore.append(b.get("ignore", "0") == "1")
            if file in out:
                raise ValueError(f"{path}: {file} is listed twice across {', '.join(xml_names)}")
            out[file] = {"boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4),
                         "ignore": np.array(ignore, dtype=bool), "xml": name}
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(D, G) IoU between boxes ``a`` (D, 4) and ``b`` (G, 4), both x0 y0 x1 y1."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def centre_inside(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(D, G) bool: centre of detection box ``a[i]`` lies inside labelled box ``b[j]``."""
    cx, cy = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
    return ((cx[:, None] >= b[None, :, 0]) & (cx[:, None] <= b[None, :, 2])
            & (cy[:, None] >= b[None, :, 1]) & (cy[:, None] <= b[None, :, 3]))


def match(det: np.ndarray, gt: np.ndarray, ignore: np.ndarray, criterion: str) -> dict:
    """One-to-one matching of detections (D, 4) to labels (G, 4): hits, misses, false positives."""
    from scipy.optimize import linear_sum_assignment

    iou = iou_matrix(det, gt) if len(det) and len(gt) else np.zeros((len(det), len(gt)))
    if criterion == "centre":
        ok = centre_inside(det, gt) if len(det) and len(gt) else np.zeros_like(iou, dtype=bool)
    else:
        ok = iou >= float(criterion.removeprefix("iou"))
    care = ~ignore
    okc, iouc = ok[:, care], iou[:, care]
    hits: list[tuple[int, int]] = []
    if okc.size:
        weight = np.where(okc, (len(det) + 1.0) + iouc, 0.0)  # count first, then IoU
        rows, cols = linear_sum_assignment(-weight)
        hits = [(int(r), int(c)) for r, c in zip(rows, cols) if okc[r, c]]
    matched = {r for r, _ in hits}
    unmatched = [i for i in range(len(det)) if i not in matched]
    on_ignore = [i for i in unmatched if ok[i, ignore].any()] if ignore.any() else []
    n_care = int(care.sum())
    gt_idx = np.nonzero(care)[0]
    return {"tp": len(hits), "fn": n_care - len(hits), "fp": len(unmatched) - len(on_ignore),
            "ignored_detections": len(on_ignore),
            "pairs": [(r, int(gt_idx[c]), round(float(iouc[r, c]), 3)) for r, c in hits]}


def summarise(rows: list[dict]) -> dict:
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    return {"tp": tp, "fp": fp, "fn": fn, "recall": round(tp / max(tp + fn, 1), 4),
            "precision": round(tp / max(tp + fp, 1), 4) if tp + fp else None}


def run(folder: Path, detectors: list[str], device: str = "cpu", progress: bool = True) -> dict:
    labels = read_imglab(folder)
    files = [f for f in labels if (folder / f).is_file()]
    missing = [f for f in labels if f not in files]
    if missing:
        raise FileNotFoundError(f"{folder}: images listed in the XML but absent: {', '.join(missing)}")
    unlisted = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                      and p.name not in labels)
    images = {f: load_image(folder / f) for f in files}
    n_faces = int(sum((~labels[f]["ignore"]).sum() for f in files))
    n_ignore = int(sum(labels[f]["ignore"].sum() for f in files))
    result: dict = {"folder": str(folder), "images": len(files), "faces": n_faces, "ignore_boxes": n_ignore,
                    "skipped_unlisted": unlisted, "detectors": {}}
    found_by: dict[str, dict[str, list]] = {name: {} for name in detectors}
    for name in detectors:
        t = time.perf_counter()
        det = faces_mod.FaceDetector(name, device=device)
        load_s = time.perf_counter() - t
        per_image, per_crit, ratios, secs = [], {c: [] for c in CRITERIA}, [], []
        for f in files:
            img, gt, ign = images[f], labels[f]["boxes"], labels[f]["ignore"]
            t = time.perf_counter()
            found = det.detect(img)
            found_by[name][f] = found
            secs.append(time.perf_counter() - t)
            boxes = np.array([fc.box for fc in found], dtype=np.float64).reshape(-1, 4)
            row = {"image": f, "size": [int(img.shape[1]), int(img.shape[0])], "labelled": int((~ign).sum()),
                   "detected": len(found), "seconds": round(secs[-1], 3)}
            for c in CRITERIA:
                m = match(boxes, gt, ign, c)
                per_crit[c].append(m)
                row[c] = {k: m[k] for k in ("tp", "fp", "fn")}
            for r, g, _ in per_crit["iou0.3"][-1]["pairs"]:
                a = (boxes[r, 2] - boxes[r, 0]) * (boxes[r, 3] - boxes[r, 1])
                b = (gt[g, 2] - gt[g, 0]) * (gt[g, 3] - gt[g, 1])
                ratios.append(float(np.sqrt(a / b)))
            per_image.append(row)
            if progress:
                print(f"  {name:9s} {f:18s} {len(found):2d} found / {row['labelled']:2d} labelled "
                      f"({secs[-1]:.1f} s)", flush=True)
        ious = [p[2] for m in per_crit["iou0.3"] for p in m["pairs"]]
        result["detectors"][name] = {
            **{c: summarise(per_crit[c]) for c in CRITERIA},
            "median_iou_of_iou0.3_matches": round(float(np.median(ious)), 3) if ious else None,
            "size_ratio": round(float(np.median(ratios)), 3) if ratios else None,
            "settings": {"min_size": det.min_size, "score_threshold": det.score_threshold, "max_side": det.max_side},
            "load_s": round(load_s, 2), "seconds_per_image": round(float(np.mean(secs)), 3),
            "per_image": per_image,
        }
    if "mtcnn" in detectors:
        result["landmarks"] = {name: landmark_agreement(found_by["mtcnn"], found_by[name])
                               for name in detectors if name.startswith("dlib")}
    return result


def landmark_agreement(mtcnn_faces: dict[str, list], dlib_faces: dict[str, list]) -> dict:
    """Median distance of dlib's converted landmarks from MTCNN's, and the geometry behind the conversion (IOD units)."""
    errs, geo = [], []
    for f, dl in dlib_faces.items():
        for d in dl:
            le, re, nose = d.landmarks[0], d.landmarks[1], d.landmarks[2]
            iod = float(np.linalg.norm(re - le))
            ex = (re - le) / iod
            ey = np.array([-ex[1], ex[0]])  # down the face
            mid = 0.5 * (le + re)
            near = [m for m in mtcnn_faces.get(f, []) if np.linalg.norm(m.landmarks[:2].mean(0) - mid) < 0.3 * iod]
            if not near:
                continue
            m = min(near, key=lambda m: np.linalg.norm(m.landmarks[:2].mean(0) - mid)).landmarks
            errs.append(np.linalg.norm(d.landmarks - m, axis=1) / iod)
            geo.append((float((0.5 * (m[3] + m[4]) - mid) @ ey) / iod, float((m[4] - m[3]) @ ex) / (2 * iod),
                        float((nose - mid) @ ey) / iod, float((m[2] - mid) @ ey) / iod))
    if not errs:
        return {"pairs": 0}
    e, g = np.array(errs), np.array(geo)
    names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
    return {"pairs": len(e),
            "median_error_iod": {n: round(float(v), 3) for n, v in zip(names, np.median(e, 0))},
            "p90_error_iod": {n: round(float(v), 3) for n, v in zip(names, np.percentile(e, 90, axis=0))},
            "median_geometry_iod": {"mtcnn_mouth_below_eyes": round(float(np.median(g[:, 0])), 3),
                                    "mtcnn_mouth_half_width": round(float(np.median(g[:, 1])), 3),
                                    "dlib_nose_below_eyes": round(float(np.median(g[:, 2])), 3),
                                    "mtcnn_nose_below_eyes": round(float(np.median(g[:, 3])), 3)}}


def table(result: dict) -> str:
    head = (f"{'detector':10s} {'R@0.5':>6s} {'P@0.5':>6s} {'R@0.3':>6s} {'P@0.3':>6s} {'R@ctr':>6s} {'P@ctr':>6s} "
            f"{'TP/FP/FN@0.5':>13s} {'medIoU':>6s} {'size':>5s} {'s/img':>6s}")
    title = (f"{result['images']} images, {result['faces']} labelled faces, {result['ignore_boxes']} ignore boxes "
             f"({result['folder']})")
    lines = [title, head, "-" * len(head)]

    def fmt(v: float | None) -> str:
        return f"{v:6.3f}" if v is not None else "   n/a"

    for name, d in result["detectors"].items():
        a, b, c = d["iou0.5"], d["iou0.3"], d["centre"]
        lines.append(f"{name:10s} {fmt(a['recall'])} {fmt(a['precision'])} {fmt(b['recall'])} {fmt(b['precision'])} "
                     f"{fmt(c['recall'])} {fmt(c['precision'])} {a['tp']:>5d}/{a['fp']:>2d}/{a['fn']:>2d}    "
                     f"{fmt(d['median_iou_of_iou0.3_matches'])} {d['size_ratio'] or 0:5.2f} {d['seconds_per_image']:6.2f}")
    lines.append("R/P = recall/precision; ctr = box centre inside the label; size = median sqrt(area ratio) "
                 "detection/label over IoU-0.3 matches")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT_FOLDER), help="folder holding the imglab XML and photos")
    ap.add_argument("--detectors", default=",".join(faces_mod.DETECTORS), help="comma-separated detector names")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "detection.json"), help="JSON output")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = ap.parse_args()
    folder = Path(args.folder).resolve()
    if not folder.is_dir():
        raise SystemExit(f"{folder}: no such folder")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    unknown = [n for n in names if n not in faces_mod.DETECTORS]
    if unknown:
        raise SystemExit(f"unknown detector(s) {unknown}; choose from {', '.join(faces_mod.DETECTORS)}")
    load0 = os.getloadavg()[0]
    result = run(folder, names, device=args.device)
    result["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "load_before": round(load0, 2),
                         "load_after": round(os.getloadavg()[0], 2),
                         "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    print(table(result))
    for name, lm in result.get("landmarks", {}).items():
        if lm["pairs"]:
            print(f"{name} landmarks vs MTCNN on {lm['pairs']} shared faces, median (p90) error in IOD: "
                  + ", ".join(f"{k} {v:.2f} ({lm['p90_error_iod'][k]:.2f})" for k, v in lm["median_error_iod"].items()))
            print(f"  geometry (IOD): {lm['median_geometry_iod']}")
    write_json(Path(args.out), result)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
