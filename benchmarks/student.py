"""The student: forward time per photo vs resolution, then student / student+K-refine / teacher side by side.

1. **Forward time vs resolution**: one forward pass of the student generator (the checkpoint's
   architecture, else the default :class:`~obscrowd_lib.student.StudentConfig`) on a random
   (1, 3, S, S) photo with a full mask, S in ``--sizes`` (best of ``--repeats``); the issue's target is
   ≤ 0.5 s per 512 x 512 photo on this 2-core CPU. Timing does not depend on the weights.
2. **Side by side** (needs a trained student: ``--checkpoint``, else the installed one; skipped with a
   note when there is none): for each photo of ``--photos``, :func:`obscrowd_lib.protect.protect_image`
   with ``student``, ``student+refine`` (K = ``--refine-steps``) and ``teacher`` (``--teacher-steps``),
   all with the same :class:`~obscrowd_lib.teacher.TeacherConfig` (budget, ensemble ``--ensemble``,
   attacks), on the same working copy (largest face ≤ ``--max-face-px``). The **8-bit** protected photo
   is measured with the training ensemble: the protection success rate (PSR) = share of faces below
   their calibrated threshold (FAR 1e-3) on **every** training model (white-box, no attack), the mean
   per-face cosine on the held-out ``facenet``, PSNR, and the method's own time (model loading,
   detection and masks excluded: they are shared by the three). ``--attacks`` adds the per-face
   evaluation protocol (:class:`obscrowd_lib.evaluation.Evaluator`) after those attacks: PSR per
   evaluator on the worst attack per face.

    .venv/bin/python benchmarks/student.py [--sizes 256,512,1024] [--threads 1] [--checkpoint PATH]
        [--photos heldout,t1.jpg] [--refine-steps 10] [--teacher-steps 30] [--ensemble a,b]
        [--attacks jpeg75,blur,resize0.5] [--out PATH]

"heldout" is the composite of obama3.jpg and grace_hopper.jpg, the portraits notebook 03 keeps out of
training. The machine is shared: the JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from obscrowd_lib import data, recognition
from obscrowd_lib import student as st
from obscrowd_lib.config import config_dict
from obscrowd_lib.distill_data import portrait_composite
from obscrowd_lib.faces import Face
from obscrowd_lib.io import load_image, to_tensor
from obscrowd_lib.protect import protect_image
from obscrowd_lib.teacher import TeacherConfig, load_teacher_models

HELD_OUT = "facenet"  # evaluator the teacher and the student never optimise against
METHODS = ("student", "student+refine", "teacher")
HELDOUT_PORTRAITS = ("obama3.jpg", "grace_hopper.jpg")  # kept out of notebook 03's training set


def forward_times(model: st.StudentNet, sizes: list[int], repeats: int) -> dict[int, float]:
    """Best-of-``repeats`` seconds of one forward pass per square size."""
    out = {}
    with torch.no_grad():
        for s in sizes:
            x, m = torch.rand(1, 3, s, s), torch.ones(1, 1, s, s)
            model(x, m)
            ts = []
            for _ in range(repeats):
                t = time.perf_counter()
                model(x, m)
                ts.append(time.perf_counter() - t)
            out[s] = round(min(ts), 4)
    return out


def load_photo(name: str, tile: int) -> np.ndarray:
    if name == "heldout":
        return portrait_composite(HELDOUT_PORTRAITS, tile=tile).image
    if name == "composite":
        return data.default_composite(tile=tile).image
    return load_image(data.sample_path(name))


def method_seconds(method: str, times: dict) -> float:
    keys = {"student": ("student",), "student+refine": ("student", "refine"), "teacher": ("teacher",)}[method]
    return round(sum(times.get(k, 0.0) for k in keys), 3)


def side_by_side(name: str, image: np.ndarray, config: TeacherConfig, models, facenet, checkpoint: Path, k: int,
                 max_face_px: int, evaluator) -> dict:
    rows = {}
    faces = None
    for method in METHODS:
        protected, entry = protect_image(image, method=method, config=config, refine_steps=k, faces=faces,
                                         models=models, student_path=str(checkpoint), max_face_px=max_face_px,
                                         progress=False)
        if faces is None:
            faces = [Face(box=tuple(f["box"]), landmarks=np.asarray(f["landmarks"], np.float32), score=f["score"])
                     for f in entry["faces"]]
        x, y = to_tensor(image), to_tensor(protected)
        with torch.no_grad():
            sims = {n: [float(v) for v in s] for n, s in models.ensemble.similarities(x, y, faces).items()}
            held = (facenet.embed(x, faces) * facenet.embed(y, faces)).sum(-1).tolist()
        thr = models.thresholds
        below = [all(sims[n][i] < thr[n] for n in models.names) for i in range(len(faces))]
        row = {"psr_white_box": round(float(np.mean(below)), 3), "faces": len(faces),
               "worst_training_cosine": round(max(max(v) for v in sims.values()), 4),
               f"{HELD_OUT}_mean_cosine": round(float(np.mean(held)), 4),
               "psnr_db": entry["psnr_db"], "budget_used_255": entry["budget_used_255"],
               "seconds": method_seconds(method, entry["times"]), "times": entry["times"],
               "steps": entry["result"]["steps"]}
        if evaluator is not None:
            summ = evaluator.evaluate(image, protected, name=f"{name}:{method}", faces=faces).summary()
            row["psr_worst_attack"] = {ev: (s.get("worst-case", {}).get("psr", {}) or {}).get("0.001")
                                       for ev, s in summ.items()}
        rows[method] = row
    t = rows["teacher"]
    for method in ("student", "student+refine"):
        r = rows[method]
        r["psr_vs_teacher"] = round(r["psr_white_box"] / t["psr_white_box"], 3) if t["psr_white_box"] else None
        r["time_vs_teacher"] = round(r["seconds"] / t["seconds"], 3) if t["seconds"] else None
    return {"photo": name, "size": list(image.shape[:2][::-1]), "methods": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,512,1024")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared: 1 is the fair figure)")
    ap.add_argument("--checkpoint", default=None, help="student file; default: the installed one")
    ap.add_argument("--photos", default="heldout,t1.jpg", help="comma-separated: heldout, composite or sample names")
    ap.add_argument("--tile", type=int, default=128, help="tile size of the composites")
    ap.add_argument("--eps", type=float, default=8.0)
    ap.add_argument("--refine-steps", type=int, default=10, help="K of student+refine")
    ap.add_argument("--teacher-steps", type=int, default=30)
    ap.add_argument("--ensemble", default="", help="comma-separated training recognizers; empty: the default ensemble")
    ap.add_argument("--max-face-px", type=int, default=128, help="working copy: largest face side in pixels")
    ap.add_argument("--attacks", default="", help="comma-separated evaluation attacks (e.g. jpeg75,blur); empty: none")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results") / "student.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OBSCROWD_PROGRESS", "0")
    load0 = os.getloadavg()

    try:
        checkpoint = st.find_checkpoint(args.checkpoint)
        model = st.load_student(checkpoint)
    except FileNotFoundError as e:
        checkpoint, model = None, st.StudentNet().eval()
        print(f"no trained student ({e}); timing the default architecture, skipping the side by side")
    sizes = [int(v) for v in args.sizes.split(",")]
    times = forward_times(model, sizes, args.repeats)
    print(f"student {st.count_parameters(model):,} parameters, {args.threads} thread(s): seconds per forward pass")
    for s, t in times.items():
        print(f"  {s:5d} x {s:<5d} {t:7.3f} s   ({t / (s * s) * 1e6:.2f} us per pixel)")

    photos = []
    config = None
    if checkpoint is not None:
        ens = tuple(n.strip() for n in args.ensemble.split(",") if n.strip())
        config = TeacherConfig(eps_255=args.eps, steps=args.teacher_steps, ensemble=ens)
        models = load_teacher_models(config)
        facenet = recognition.load_recognizer(HELD_OUT)
        evaluator = None
        if args.attacks:
            from obscrowd_lib.evaluation import Evaluator

            evaluator = Evaluator(attacks=["none", *args.attacks.split(",")],
                                  evaluators=[*models.names, HELD_OUT], holdout=HELD_OUT, keep_images=False,
                                  progress=False)
        print(f"\nensemble {models.names}; K = {args.refine_steps}; teacher steps {args.teacher_steps}; "
              f"eps {args.eps}/255; student {checkpoint}")
        for name in args.photos.split(","):
            r = side_by_side(name, load_photo(name, args.tile), config, models, facenet, checkpoint,
                             args.refine_steps, args.max_face_px, evaluator)
            photos.append(r)
            print(f"\n{name}: {r['methods']['teacher']['faces']} faces, {r['size'][0]}x{r['size'][1]}")
            print(f"  {'method':16s} {'PSR':>5s} {'worst cos':>9s} {HELD_OUT + ' cos':>11s} {'PSNR':>6s} "
                  f"{'steps':>5s} {'seconds':>8s} {'PSR/teacher':>11s} {'time/teacher':>12s}")
            for m, row in r["methods"].items():
                print(f"  {m:16s} {row['psr_white_box']:5.2f} {row['worst_training_cosine']:9.3f} "
                      f"{row[HELD_OUT + '_mean_cosine']:11.3f} {row['psnr_db']:6.1f} {row['steps']:5d} "
                      f"{row['seconds']:8.2f} {str(row.get('psr_vs_teacher', '')):>11s} "
                      f"{str(row.get('time_vs_teacher', '')):>12s}")
                if "psr_worst_attack" in row:
                    print(f"  {'':16s} PSR after the worst attack per face: {row['psr_worst_attack']}")
    doc = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "threads": args.threads,
           "loadavg_before": load0, "loadavg_after": os.getloadavg(),
           "student": str(checkpoint) if checkpoint else None, "parameters": st.count_parameters(model),
           "student_config": config_dict(model.config), "forward_seconds": times,
           "forward_512_target_met": (times.get(512, math.inf) <= 0.5) if 512 in times else None,
           "teacher_config": config_dict(config) if config else None, "refine_steps": args.refine_steps,
           "photos": photos}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1, default=float) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
