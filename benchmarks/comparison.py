"""The comparison table (notebook 05) at a larger scale: several sample photos, every method, the full attack suite.

Every method protects each photo at the same L∞ budget; every protected photo goes through the same
per-face harness (obscrowd_lib.evaluation); results are pooled over all faces of all photos (bootstrap
intervals over faces). Prints one Markdown table per judging evaluator (held-out first) and writes a JSON
with the tables, the per-method pooled summaries and the protection times.

    .venv/bin/python benchmarks/comparison.py [--samples t1.jpg ...] [--composite 160] [--max-side 512]
        [--methods none blur pixelate facelock per-face teacher] [--attacks none jpeg75 ...]
        [--evaluators ...] [--eps 8] [--steps 100] [--seeds 0] [--out benchmarks/results/comparison.json]

On the shared 2-core CPU keep --max-side and --steps small; the defaults below are what was run for the
closing note of the evaluation issue.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import torch

from obscrowd_lib import baselines, data, evaluation, viz
from obscrowd_lib.io import load_image
from obscrowd_lib.teacher import TeacherConfig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", nargs="*", default=["t1.jpg"], help="sample photo names (obscrowd_lib.data.SAMPLES)")
    ap.add_argument("--composite", type=int, default=160,
                    help="also the 4-portrait composite (data.default_composite) with this tile size; 0 = no")
    ap.add_argument("--max-side", type=int, default=512, help="photos downscaled to this long side")
    ap.add_argument("--methods", nargs="+", default=["none", "blur", "pixelate", "facelock", "per-face", "teacher"])
    ap.add_argument("--attacks", nargs="+", default=list(evaluation.DEFAULT_ATTACKS), help="evaluation attacks")
    ap.add_argument("--evaluators", nargs="+", default=None, help="FR models that judge (default: all in the zoo)")
    ap.add_argument("--holdout", default=evaluation.HOLDOUT)
    ap.add_argument("--eps", type=float, default=8.0, help="L-inf budget in /255")
    ap.add_argument("--steps", type=int, default=None, help="iterations of the iterative methods (default: theirs)")
    ap.add_argument("--teacher-attacks", nargs="+", default=None, help="teacher's differentiable attacks")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is several times faster than 2 on a CPU shared with other jobs")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "comparison.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))

    teacher_cfg = TeacherConfig(eps_255=args.eps, **({"attacks": tuple(args.teacher_attacks)}
                                                      if args.teacher_attacks else {}))
    models = baselines.load_baseline_models(teacher_config=teacher_cfg)
    ev = evaluation.Evaluator(attacks=args.attacks, evaluators=args.evaluators, holdout=args.holdout,
                              seeds=args.seeds, keep_images=False, progress=False,
                              recognizers=models.teacher.ensemble)
    white_box = next(n for n in models.teacher.names if n in ev.evaluators)
    per_method: dict[str, list] = {m: [] for m in args.methods}
    seconds: dict[str, list[float]] = {m: [] for m in args.methods}
    t0 = time.perf_counter()
    photos = [(Path(n).stem, viz.thumbnail(load_image(data.sample_path(n)), args.max_side)) for n in args.samples]
    if args.composite:
        photos.append(("composite", data.default_composite(tile=args.composite).image))
    for name, photo in photos:
        faces = ev.reference_faces(photo)
        if not faces:
            print(f"{name}: no face found by {ev.reference_detector_name}; skipped", file=sys.stderr)
            continue
        print(f"{name}: {photo.shape[1]}x{photo.shape[0]}, {len(faces)} faces", flush=True)
        res = evaluation.compare_methods(photo, args.methods, evaluator=ev, eps_255=args.eps, steps=args.steps,
                                         faces=faces, teacher_config=teacher_cfg, models=models, name=name,
                                         progress=False)
        for m, r in res.items():
            per_method[m].append(r["evaluation"])
            seconds[m].append(r["protection"].seconds)
            print(f"  {m:20s} protect {r['protection'].seconds:7.1f} s, evaluate {r['evaluation'].seconds:6.1f} s",
                  flush=True)
    pooled = {m: evaluation.FolderEvaluation(results=tuple(rs), unpaired={}, seconds=0.0)
              for m, rs in per_method.items() if rs}
    docs = {m: f.to_json() for m, f in pooled.items()}
    table_attacks = list(ev.attacks) + [evaluation.WORST_CASE]
    tables = {}
    for judge in dict.fromkeys([ev.holdout or white_box, white_box]):
        rows = evaluation.comparison_table(docs, judge, attacks=table_attacks)
        for row in rows:
            row["seconds"] = round(sum(seconds[row["method"]]) / len(seconds[row["method"]]), 1)
        tables[judge] = rows
        print(f"\n### {judge}{' (held out)' if judge == ev.holdout else ' (white box)'}: mean protected cosine "
              f"(sim) and PSR at FAR 1e-3 (psr); faces pooled over {len(photos)} photos, eps {args.eps}/255\n")
        print(evaluation.format_table(rows, digits=2))
    unlink = {m: {j: d["unlinkability"].get(j, {}).get("dsys") for j in tables} for m, d in docs.items()}
    print("\nD<->sys (0 unlinkable, 1 linkable):", unlink)
    out = Path(args.out)
    evaluation.write_json({"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                           "args": vars(args), "teacher_ensemble": list(models.teacher.names), "white_box": white_box,
                           "skipped_attacks": ev.skipped, "tables": tables, "unlinkability": unlink,
                           "seconds": {m: v for m, v in seconds.items()},
                           "pooled": {m: {k: v for k, v in d.items() if k != "faces"} for m, d in docs.items()},
                           "wall_seconds": round(time.perf_counter() - t0, 1)}, out)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
