"""Calibrate every zoo recognizer's thresholds and write obscrowd_lib/data/thresholds.json.

Pairs: dlib's example chips ``johns/`` (5 people × 11 aligned 150×150 chips; shared/data, not part
of the project) plus the registry sample photos Obama ×3 and Biden ×1 (face_recognition sdist).
Each image's face is found by MTCNN (obscrowd_lib.faces.detect_faces), embedded by every recognizer
whose loader works, and all genuine / impostor pairs are scored (recognition.calibrate_on_images).

    .venv/bin/python benchmarks/calibrate_thresholds.py [--johns DIR] [--models a,b] [--out PATH]

Re-run on your own labelled set (root/<identity>/<image>) with
``recognition.calibrate_on_folder(root)`` + ``recognition.save_thresholds``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import torch

from obscrowd_lib import data, recognition
from obscrowd_lib.io import list_images

UNCERTAINTY = (
    "Few identities: {n_id} identities ({ids}), {n_img} images, {n_gen} genuine and {n_imp} impostor pairs. "
    "The pairs are far from independent (they share images, and impostor pairs come from only "
    "{n_id_pairs} pairs of identities). FAR 1e-2 is set by about {k2} impostor pairs above the threshold (rough); "
    "FAR 1e-3 by about {k3} pair(s), i.e. a single order statistic, not an estimate; FAR 1e-4 is NOT estimable "
    "from {n_imp} impostor pairs (< 1/FAR) and is a Gaussian-tail extrapolation of the impostor scores, floored at the "
    "largest impostor score (flag 'extrapolated'). 'ci95' gives identity-bootstrap 95% intervals, themselves rough with "
    "this few identities. The EER and the genuine/impostor means are the trustworthy figures here. For thresholds "
    "that mean what they say, re-run recognition.calibrate_on_folder on an LFW-sized set (thousands of identities).")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--johns", default="/work/shared/data/dlib_examples/johns", help="root/<identity>/<image> folder")
    ap.add_argument("--no-registry", action="store_true", help="do not add the Obama ×3 / Biden registry photos")
    ap.add_argument("--models", default=None, help="comma-separated recognizers (default: every zoo recognizer)")
    ap.add_argument("--detector", default="mtcnn")
    ap.add_argument("--bootstrap", type=int, default=500, help="identity-bootstrap resamples for ci95")
    ap.add_argument("--out", default=str(recognition.THRESHOLDS_PATH))
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

    johns = Path(args.johns)
    images: dict[str, list[Path]] = {}
    if johns.is_dir():
        for d in sorted(p for p in johns.iterdir() if p.is_dir()):
            images[d.name] = list_images(d)
    else:
        print(f"warning: {johns} not found; calibrating on the registry photos only", file=sys.stderr)
    if not args.no_registry:
        images["barack-obama"] = [data.sample_path(n) for n in ("obama.jpg", "obama2.jpg", "obama3.jpg")]
        images["joe-biden"] = [data.sample_path("biden.jpg")]
    from obscrowd_lib import zoo

    names = args.models.split(",") if args.models else [n for n, e in zoo.ENTRIES.items()
                                                          if e.kind == "recognizer" and e.artifact is not None]
    t0 = time.time()
    res = recognition.calibrate_on_images(images, names, detector=args.detector, bootstrap=args.bootstrap,
                                          root=johns if johns.is_dir() else None, progress=True)
    prov = res["provenance"]
    n_id = len(prov["identities"])
    cals = list(res["models"].values())
    note = UNCERTAINTY.format(
        n_id=n_id, ids=", ".join(f"{k} ×{v}" for k, v in prov["identities"].items()), n_img=prov["n_images"],
        n_gen=prov["pairs"]["genuine"], n_imp=prov["pairs"]["impostor"], n_id_pairs=n_id * (n_id - 1) // 2,
        k2=cals[0].n_beyond[1e-2] if cals else "?", k3=cals[0].n_beyond[1e-3] if cals else "?")
    sources = {"johns": "dlib examples/johns (GitHub davisking/dlib @3d40bf57; web images, 150x150 dlib chips). "
                        "The chips are tight and are detected on a mid-grey canvas (pad 0.5): models whose crop "
                        "reaches beyond the chip see its grey frame, most of all FaceNet (widest crop), whose "
                        "impostor scores this frame raises (impostor mean 0.35 with the canvas vs 0.23 without "
                        "it): its thresholds are likely biased high",
               "registry": "face_recognition==1.3.0 sdist tests/test_images/{obama,obama2,obama3,biden}.jpg"}
    out = recognition.save_thresholds(res, args.out, notes={
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/calibrate_thresholds.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "torch": torch.__version__, "sources": sources, "uncertainty": note})
    print(f"\n{len(res['models'])} recognizers calibrated in {time.time() - t0:.0f} s -> {out}")
    print(f"pairs: {prov['pairs']}, identities: {prov['identities']}, images without a face: {prov['n_failed']}\n")
    hdr = f"{'model':20s} {'gen mean':>8s} {'imp mean':>8s} {'imp max':>8s} {'EER':>6s} {'t@1e-2':>7s} {'t@1e-3':>7s} {'t@1e-4':>8s}  TAR@1e-2"
    print(hdr)
    for n, c in res["models"].items():
        t = c.thresholds
        print(f"{n:20s} {c.genuine_mean:8.3f} {c.impostor_mean:8.3f} {c.impostor_max:8.3f} {c.eer:6.3f} "
              f"{t[1e-2]:7.3f} {t[1e-3]:7.3f} {t[1e-4]:7.3f}{'*' if c.extrapolated[1e-4] else ' '}  {c.tar[1e-2]:.3f}")
    print("* extrapolated (fewer than 1/FAR impostor pairs)")
    for n, e in res["errors"].items():
        print(f"NOT calibrated: {n}: {e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
