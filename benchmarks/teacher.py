"""The teacher on the sample photos: per-face similarity before/after, PSNR, LPIPS-alex, time; joint vs per-face.

For each photo (t1.jpg with 6 faces, a 4-face 2x2 composite of obama, biden, astronaut, grace_hopper; obama.jpg),
``obscrowd_lib.protect.protect_image`` runs the teacher with the default ensemble at ε = 8/255 (the
working copy is scaled so the largest face is at most ``--max-face-px``; δ is upsampled to full
size) and the **8-bit** protected photo is measured at full resolution:

* per face, per training model: cosine between the clean face and the same face in the protected
  photo (white-box: the models the teacher optimised against), and on the held-out models
  (``facenet``; ``dlib-native``, the same network as the ``dlib-faceapi`` port, so not independent
  of the ensemble): "before" is the clean photo against itself (1.0 by construction);
* PSNR over the photo and LPIPS-alex (whole photo and inside the union mask);
* the time of each stage.

Then **time vs number of faces** on t1.jpg: the joint teacher on the first n faces for each n in
``--n-faces``, against protecting the faces one at a time (one teacher run per face, own mask,
the perturbations summed); both with the same config and early stop, with the fraction of faces
below threshold on every training model reported beside the time (the "equal PSR" condition).

No edit is applied here: protection after attacks is measured by the evaluation (``obscrowd
evaluate``). Prints tables and writes JSON.

    .venv/bin/python benchmarks/teacher.py [--steps N] [--photos t1.jpg,composite,obama.jpg]
        [--n-faces 1,3,6] [--no-joint-vs-per-face] [--out benchmarks/results/teacher.json] [--threads N]

The machine is shared: the JSON records the load average before and after, and CPU (process) time
beside wall time; compare runs by CPU time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from obscrowd_lib import data, metrics, recognition
from obscrowd_lib.config import config_dict
from obscrowd_lib.faces import Face, detect_faces
from obscrowd_lib.io import load_image, to_tensor
from obscrowd_lib.masks import face_masks
from obscrowd_lib.protect import protect_image
from obscrowd_lib.teacher import TeacherConfig, load_teacher_models, protect_teacher

HELD_OUT = ("facenet", "dlib-native")  # evaluators the teacher does not optimise against


COMPOSITE = ("obama.jpg", "biden.jpg", "astronaut.png", "grace_hopper.jpg")  # the 4-face composite, 2x2


def load_photo(name: str) -> np.ndarray:
    """A sample photo, or "composite": the four portraits on a 2x2 grid of 160 px tiles."""
    if name == "composite":
        return data.make_composite([data.sample_path(n) for n in COMPOSITE], tile=160, columns=2).image
    return load_image(data.sample_path(name))


def faces_from_entry(entry: dict) -> list[Face]:
    return [Face(box=tuple(f["box"]), landmarks=np.asarray(f["landmarks"], dtype=np.float32), score=f["score"])
            for f in entry["faces"]]


def measure(image: np.ndarray, protected: np.ndarray, faces: list[Face], ensemble, held_out: dict) -> dict:
    """Per-face cosines (training + held-out models), PSNR, LPIPS-alex of the 8-bit protected photo."""
    x, y = to_tensor(image), to_tensor(protected)
    with torch.no_grad():
        sims = {n: [round(float(v), 4) for v in s] for n, s in ensemble.similarities(x, y, faces).items()}
        for n, r in held_out.items():
            a, b = r.embed(x, faces), r.embed(y, faces)
            sims[n] = [round(float(v), 4) for v in (a * b).sum(-1)]
    mask = torch.as_tensor(face_masks(image.shape[:2], faces).union, dtype=torch.float32)
    q = metrics.imperceptibility(x, y, mask=mask, metrics=("psnr", "lpips-alex", "linf"))
    return {"similarity_after": sims, "similarity_before": 1.0, **{k: round(v, 4) for k, v in q.items()}}


def run_photo(name: str, config: TeacherConfig, models, held_out: dict, max_face_px: int) -> dict:
    image = load_photo(name)
    t, c = time.perf_counter(), time.process_time()
    protected, entry = protect_image(image, method="teacher", config=config, models=models, max_face_px=max_face_px,
                                     progress=False)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    faces = faces_from_entry(entry)
    m = measure(image, protected, faces, models.ensemble, held_out)
    thr = models.thresholds
    below = [all(m["similarity_after"][n][i] < thr[n] for n in models.names) for i in range(len(faces))]
    return {"photo": name, "size": entry["size"], "faces": len(faces), "working_scale": entry["working_scale"],
            "steps": entry["result"]["steps"], "stopped_early": entry["result"]["stopped_early"],
            "seconds_total": round(wall, 2), "cpu_seconds_total": round(cpu, 2), "times": entry["times"], "faces_below_threshold": int(sum(below)),
            **m}


def joint_vs_per_face(name: str, config: TeacherConfig, models, n_list: list[int], max_side: int) -> dict:
    """Joint teacher on the first n faces vs one teacher run per face (perturbations summed)."""
    image = load_photo(name)
    s = min(1.0, max_side / max(image.shape[:2]))
    if s < 1:
        from PIL import Image

        image = np.asarray(Image.fromarray(image).resize((round(image.shape[1] * s), round(image.shape[0] * s)),
                                                         Image.Resampling.LANCZOS))
    x = to_tensor(image)
    faces = sorted(detect_faces(image), key=lambda f: f.box[0])
    fm = face_masks(image.shape[:2], faces)
    per_face_masks = torch.as_tensor(np.asarray(fm.per_face), dtype=torch.float32)
    thr = models.thresholds

    def psr(protected: torch.Tensor, sub: list[Face]) -> float:
        with torch.no_grad():
            sims = models.ensemble.similarities(x, protected, sub)
        return float(np.mean([all(float(sims[n][i]) < thr[n] for n in models.names) for i in range(len(sub))]))

    def run(sub: list[Face], mask: torch.Tensor):
        c = time.process_time()
        r = protect_teacher(x, sub, config=config, mask=mask, models=models, progress=False)
        return r, time.process_time() - c

    single = []
    for i, f in enumerate(faces[:max(n_list)]):
        r, cpu = run([f], per_face_masks[i])
        single.append((r.seconds, r.steps, r.delta, cpu))
    rows = []
    for n in n_list:
        if n > len(faces):
            continue
        sub = faces[:n]
        union = per_face_masks[:n].amax(0)
        r, cpu = run(sub, union)
        d = sum(s[2] for s in single[:n])
        eps = config.eps_255 / 255
        per_face_protected = (x + d.clamp(-eps, eps)).clamp(0, 1)
        t_single = sum(s[0] for s in single[:n])
        cpu_single = sum(s[3] for s in single[:n])
        rows.append({"n_faces": n, "joint_seconds": round(r.seconds, 2), "joint_cpu_seconds": round(cpu, 2),
                     "joint_steps": r.steps, "joint_psr": round(psr(r.protected, sub), 3),
                     "per_face_seconds": round(t_single, 2), "per_face_cpu_seconds": round(cpu_single, 2),
                     "per_face_steps": [s[1] for s in single[:n]],
                     "per_face_psr": round(psr(per_face_protected, sub), 3),
                     "joint_over_per_face_cpu": round(cpu / cpu_single, 3) if cpu_single else None})
    return {"photo": name, "size": list(image.shape[:2][::-1]), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", default="t1.jpg,composite,obama.jpg")
    ap.add_argument("--steps", type=int, default=30, help="largest number of teacher steps per photo")
    ap.add_argument("--eps", type=float, default=8.0)
    ap.add_argument("--max-face-px", type=int, default=160, help="working copy: largest face side in pixels")
    ap.add_argument("--n-faces", default="1,3,6", help="face counts of the joint vs per-face timing (t1.jpg)")
    ap.add_argument("--no-joint-vs-per-face", action="store_true")
    ap.add_argument("--joint-max-side", type=int, default=640, help="t1.jpg long side in the joint vs per-face runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "teacher.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OBSCROWD_PROGRESS", "0")

    config = TeacherConfig(eps_255=args.eps, steps=args.steps)
    load0 = os.getloadavg()
    models = load_teacher_models(config)
    held_out = {n: recognition.load_recognizer(n) for n in HELD_OUT}
    print(f"ensemble {models.names}; thresholds "
          f"{ {n: (round(t, 3), models.threshold_source[n]) for n, t in models.thresholds.items()} }")
    print(f"diffusion guidance: {models.diffusion}")
    photos = []
    for name in [p for p in args.photos.split(",") if p]:
        r = run_photo(name, config, models, held_out, args.max_face_px)
        photos.append(r)
        print(f"\n{name}: {r['faces']} faces, {r['size'][0]}x{r['size'][1]}, working scale {r['working_scale']}, "
              f"{r['steps']} steps, {r['seconds_total']} s wall, {r['cpu_seconds_total']} s CPU; PSNR {r['psnr']} dB, LPIPS-alex {r['lpips-alex']} "
              f"(mask {r['lpips-alex_mask']}), Linf {r['linf']}/255; faces below threshold on every training "
              f"model: {r['faces_below_threshold']}/{r['faces']}")
        print(f"  {'model':20s} " + " ".join(f"face{i:<3d}" for i in range(r["faces"])) + "  (cosine clean vs protected; before = 1)")
        for n, v in r["similarity_after"].items():
            tag = "" if n in models.names else "  held out"
            thr = f" t={models.thresholds[n]:.3f}" if n in models.thresholds else ""
            print(f"  {n:20s} " + " ".join(f"{s:7.3f}" for s in v) + thr + tag)
    jv = None
    if not args.no_joint_vs_per_face:
        n_list = [int(v) for v in args.n_faces.split(",")]
        jv = joint_vs_per_face("t1.jpg", config, models, n_list, args.joint_max_side)
        print(f"\njoint vs per-face on t1.jpg at {jv['size'][0]}x{jv['size'][1]}")
        print("  CPU seconds (process time, all threads: robust to other jobs on the machine), wall in brackets")
        print(f"  {'n':>3s} {'joint CPU s':>18s} {'steps':>5s} {'PSR':>5s} {'per-face CPU s':>18s} {'steps':>5s} {'PSR':>5s} "
              f"{'ratio':>6s}")
        for row in jv["rows"]:
            joint = f"{row['joint_cpu_seconds']:.1f} ({row['joint_seconds']:.1f})"
            single = f"{row['per_face_cpu_seconds']:.1f} ({row['per_face_seconds']:.1f})"
            print(f"  {row['n_faces']:3d} {joint:>18s} {row['joint_steps']:5d} {row['joint_psr']:5.2f} {single:>18s} "
                  f"{sum(row['per_face_steps']):5d} {row['per_face_psr']:5.2f} {row['joint_over_per_face_cpu']:6.2f}")
    doc = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "threads": args.threads,
           "loadavg_before": load0, "loadavg_after": os.getloadavg(), "config": config_dict(config),
           "ensemble": list(models.names), "thresholds": models.thresholds,
           "threshold_source": models.threshold_source, "diffusion": models.diffusion,
           "max_face_px": args.max_face_px, "photos": photos, "joint_vs_per_face": jv}
    Path(args.out).write_text(json.dumps(doc, indent=1, default=float) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
