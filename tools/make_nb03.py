"""Generator of notebooks/03_student_distillation.ipynb (edit here, then run: python tools/make_nb03.py)."""
from nb import write_notebook

write_notebook("notebooks/03_student_distillation.ipynb", [
("md", """
# 03 · The student: distilling the teacher into one forward pass

The teacher (notebook 02) protects a photo by optimising its perturbation for minutes. Obscrowd's
**student** is a small generator that predicts that perturbation in **one forward pass**; refinement
(notebook 04) then sharpens the guess in a few steps. This notebook:

1. builds the **training set**: sample photos, face-centred crops at random scale, flips and controlled
   multi-portrait composites, each with the **teacher's δ**, cached by config hash
   (`obscrowd_lib.distill_data.build_targets`; a second run reuses it, a stopped run resumes);
2. **distils** a compact U-Net with Hugging Face `accelerate` (`obscrowd_lib.student.train_student`):
   imitation of the teacher's δ + the teacher's own identity objective through the FR ensemble and the
   differentiable attacks + a fidelity term;
3. applies the student to **held-out** portraits and compares it with the teacher and with random noise
   at the same budget, per face and per model;
4. times the forward pass against the photo size.

The generator outputs δ = (ε·tanh(g(x, m)))·m, so the budget and the mask hold exactly at any size.

**On a GPU, with your own data** (CelebA-HQ, FFHQ, group photos), the same code runs from the command
line, sharing the teacher runs and the training between processes:

```bash
accelerate launch --multi_gpu --num_processes 8 scripts/train_student.py --output-dir runs/student \\
    --target-size 256 --target-crops-per-photo 50 --teacher-steps 100 --steps 20000 --batch-size 16
```
"""),
("code", """
import json
import time
from pathlib import Path

import numpy as np
import torch
import matplotlib.pyplot as plt

from obscrowd_lib import data, viz
from obscrowd_lib import distill_data as dd
from obscrowd_lib import student as st
from obscrowd_lib.config import config_dict
from obscrowd_lib.faces import detect_faces
from obscrowd_lib.io import load_image, to_tensor
from obscrowd_lib.masks import face_masks
from obscrowd_lib.runner import write_json
from obscrowd_lib.teacher import load_teacher_models, protect_teacher
"""),
("params", """
run_dir: str = "../papermill_runs/interactive/03_student_distillation"  # where the student, figures and metrics go
samples: str = ""  # comma-separated sample photos for training; empty means every sample but the held-out ones
holdout: str = "obama3.jpg,grace_hopper.jpg"  # comma-separated portraits kept out of training, shown side by side
target_size: int = 128  # side in pixels of the square training images
crops_per_photo: int = 2  # random face-centred crops per sample photo
composites: int = 3  # controlled two-portrait composites in the training set
teacher_steps: int = 15  # sign-PGD steps of each teacher run
teacher_ensemble: str = "mobileface,dlib-faceapi,faceres"  # comma-separated recognizers; empty means the default
teacher_attacks: str = "identity,jpeg-diff,resize-diff,blur-diff"  # comma-separated attacks of the expectation
eps_255: float = 8.0  # L-inf budget in /255 units
base_channels: int = 12  # student U-Net width at full resolution
depth: int = 4  # student U-Net levels
steps: int = 200  # student training steps
batch_size: int = 4  # photos per training step
lr: float = 0.002  # Adam learning rate
identity_weight: float = 0.5  # weight of the teacher objective on the student output
identity_every: int = 4  # compute the identity term every this many steps
eval_tile: int = 128  # tile size of the held-out composite
sizes: str = "256,512"  # comma-separated square sizes for the forward-time curve
targets_root: str = ""  # cache folder of the teacher targets; empty means the default in OBSCROWD_HOME
install: bool = False  # copy the trained student to the default location used by obscrowd protect
seed: int = 0  # seeds the crops, the student weights and the batch draws
threads: int = 0  # torch CPU threads, 0 keeps the default, 1 is fastest on a CPU shared with other jobs
"""),
("code", """
out = Path(run_dir)
out.mkdir(parents=True, exist_ok=True)
if threads:
    torch.set_num_threads(threads)
split = lambda s: tuple(v.strip() for v in s.split(",") if v.strip())
held = split(holdout)
train_samples = split(samples) or tuple(n for n in data.SAMPLES if n not in held)
target_config = dd.TargetConfig(samples=train_samples, size=target_size, crops_per_photo=crops_per_photo,
                                composites=composites, seed=seed)
teacher_config = dd.target_teacher_config(eps_255=eps_255, steps=teacher_steps, ensemble=split(teacher_ensemble),
                                         attacks=split(teacher_attacks), seed=seed)
student_config = st.StudentConfig(eps_255=eps_255, base_channels=base_channels, depth=depth, steps=steps,
                                  batch_size=batch_size, lr=lr, identity_weight=identity_weight,
                                  identity_every=identity_every, checkpoint_every=max(1, steps // 4), seed=seed)
print("training photos:", ", ".join(train_samples), "| held out:", ", ".join(held))
print(f"student: {st.count_parameters(st.StudentNet(student_config)):,} parameters")
"""),
("md", """
## 1 · The training set: photos with the teacher's perturbations

`build_targets` plans the images (crops, flips, whole photos, composites), detects the faces of each,
builds the union soft mask and runs the teacher. Results are cached under a folder named by the hashes
of the two configs: run this cell twice and the second run only reads. The teacher starts from δ = 0
here: a random start would leave noise in δ that no generator can predict from the photo.
"""),
("code", """
t0 = time.perf_counter()
targets = dd.build_targets(target_config, teacher_config, root=targets_root or None, progress=False)
build_seconds = time.perf_counter() - t0
summary = dd.summarize(targets)
print(f"targets: {targets} ({build_seconds:.1f} s)")
print(json.dumps(summary, indent=1))
ds = dd.TargetDataset(targets)
show = list(range(min(6, len(ds))))
tiles, titles = [], []
for i in show:
    it = ds[i]
    tiles.append((it["photo"].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    heat = (it["delta"].abs().amax(0) / (eps_255 / 255)).clamp(0, 1).numpy()
    tiles.append((plt.cm.magma(heat)[..., :3] * 255).astype(np.uint8))
    titles += [f"item {i}: {len(it['landmarks'])} face(s)", "teacher |delta| / eps"]
fig = viz.image_grid(tiles, titles, columns=4, tile=160)
viz.save_figure(fig, out / "training_set.jpg")
"""),
("md", """
## 2 · Distillation with accelerate

`train_student` wraps the model and optimiser with `accelerate.Accelerator`: the same call trains on
this CPU, on a GPU with mixed precision, or across processes under `accelerate launch`. Each step's
batch is a function of (seed, step), and the checkpoint (`checkpoint.pt`: model, optimiser, step,
config) is written atomically, so an interrupted run resumes exactly. `student.pt` is the small file
to ship.
"""),
("code", """
t0 = time.perf_counter()
result = st.train_student(targets, out, config=student_config, cpu=True, progress=False)
train_seconds = time.perf_counter() - t0
print(f"{result.steps} steps in {train_seconds:.1f} s on {result.num_processes} process(es); "
      f"student file {result.student.stat().st_size / 1e6:.2f} MB")
hist = result.history
fig, axes = plt.subplots(1, 3, figsize=(11, 3), dpi=80)
for ax, key in zip(axes, ["imitation", "identity", "fidelity"]):
    xs = [h["step"] for h in hist if np.isfinite(h[key])]
    ax.plot(xs, [h[key] for h in hist if np.isfinite(h[key])])
    ax.set_title(key); ax.set_xlabel("step")
fig.tight_layout()
viz.save_figure(fig, out / "loss_curves.jpg")
"""),
("md", """
## 3 · The student on held-out portraits

A composite of portraits that were **not** in the training set. The same ensemble measures three
perturbations at the same budget and mask: random ±ε noise (a floor), the student's single forward
pass, and the teacher's optimisation. Each bar is the cosine between a clean face and the same face in
the protected photo; the dashed line is the model's threshold.
"""),
("code", """
image = dd.portrait_composite(held, tile=eval_tile).image  # each portrait cut to a square around its face
faces = detect_faces(image)
mask = torch.as_tensor(face_masks(image.shape[:2], faces).union, dtype=torch.float32)
x = to_tensor(image)
model = st.load_student(result.student)
stu = st.protect_student(x, faces, model=model, mask=mask)
models = load_teacher_models(teacher_config)
tea = protect_teacher(x, faces, config=teacher_config, mask=mask, models=models, progress=False)
g = torch.Generator().manual_seed(seed)
noise = (x + mask * (2 * torch.randint(0, 2, x.shape, generator=g).float() - 1) * eps_255 / 255).clamp(0, 1)
protected = {"noise": noise, "student": stu.protected, "teacher": tea.protected}
with torch.no_grad():
    sims = {k: {n: [float(v) for v in s] for n, s in models.ensemble.similarities(x, p, faces).items()}
            for k, p in protected.items()}
thr = models.thresholds
psr = {k: float(np.mean([all(s[n][i] < thr[n] for n in s) for i in range(len(faces))])) for k, s in sims.items()}
mse = {k: float(((p - x) ** 2).mean()) for k, p in protected.items()}
psnr = {k: round(10 * np.log10(1 / v), 2) if v > 0 else None for k, v in mse.items()}
print(f"{len(faces)} face(s); student {stu.seconds * 1000:.0f} ms, teacher {tea.seconds:.1f} s ({tea.steps} steps)")
print("share of faces below threshold on every model:", psr, "| PSNR dB:", psnr)
names = list(models.names)
fig, axes = plt.subplots(1, len(names), figsize=(2.8 * len(names), 2.8), dpi=80, squeeze=False)
for ax, n in zip(axes[0], names):
    for j, k in enumerate(protected):
        ax.bar(np.arange(len(faces)) + (j - 1) * 0.27, sims[k][n], width=0.27, label=k)
    ax.axhline(thr[n], ls="--", color="k", lw=0.8)
    ax.set_title(n, fontsize=9); ax.set_xticks(range(len(faces))); ax.set_ylim(-0.2, 1.05)
axes[0][0].legend(fontsize=7); axes[0][0].set_ylabel("cosine to the clean face")
fig.tight_layout()
viz.save_figure(fig, out / "similarity_bars.jpg")
"""),
("code", """
heat = lambda d: (plt.cm.magma((d.abs().amax(1)[0] / (eps_255 / 255)).clamp(0, 1).cpu().numpy())[..., :3] * 255
                  ).astype(np.uint8)
u8 = lambda t: (t[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
labels = lambda k: [f"{max(sims[k][n][i] for n in names):.2f}" for i in range(len(faces))]
boxes = [f.box for f in faces]
fig = viz.image_grid([image, u8(stu.protected), heat(stu.delta), u8(tea.protected), heat(tea.delta)],
                     ["clean", "student", "student |delta|", "teacher", "teacher |delta|"], columns=5, tile=200,
                     boxes=[boxes, boxes, [], boxes, []], labels=[[], labels("student"), [], labels("teacher"), []])
viz.save_figure(fig, out / "before_after.jpg")
"""),
("md", """
## 4 · Speed: one forward pass against the photo size

The student is fully convolutional, so its cost grows with the number of pixels it sees. (In
`protect_student` it only sees the faces' region, so the photo's size matters less than its faces'.)
"""),
("code", """
timings = {}
with torch.no_grad():
    for s in [int(v) for v in split(sizes)]:
        xs, ms = torch.rand(1, 3, s, s), torch.ones(1, 1, s, s)
        model(xs, ms)
        ts = []
        for _ in range(3):
            t = time.perf_counter(); model(xs, ms); ts.append(time.perf_counter() - t)
        timings[s] = round(min(ts), 4)
print("seconds per forward pass:", timings)
"""),
("code", """
if install:
    print("installed:", st.install_student(result.student))
write_json(out / "config.json", {"student": config_dict(student_config), "targets": config_dict(target_config),
                                 "teacher": config_dict(teacher_config), "targets_folder": str(targets)})
metrics = {
    "parameters": result.parameters,
    "student_file_mb": round(result.student.stat().st_size / 1e6, 3),
    "training_items": len(ds),
    "training_faces": summary["faces"],
    "targets_seconds": round(build_seconds, 2),
    "train_seconds": round(train_seconds, 2),
    "train_steps": result.steps,
    "final_imitation": round(float(np.mean([h["imitation"] for h in hist[-10:]])), 4),
    "heldout_faces": len(faces),
    "heldout_psr_training_ensemble": psr,
    "heldout_psnr_db": psnr,
    "heldout_max_similarity": {k: round(max(max(v) for v in s.values()), 4) for k, s in sims.items()},
    "student_seconds": round(stu.seconds, 4),
    "teacher_seconds": round(tea.seconds, 2),
    "forward_seconds_by_size": timings,
}
write_json(out / "metrics.json", metrics)
print(json.dumps(metrics, indent=1))
"""),
("md", """
## Summary

- The student is a ~1 M-parameter U-Net whose output is exactly within the budget and the mask at any
  size; one forward pass costs a fraction of a second where the teacher needs seconds to minutes.
- It is trained by imitating cached teacher perturbations **and** by paying the teacher's own identity
  objective (one function, `teacher.teacher_objective`) on its output, under the same attacks.
- Trained on a handful of photos for a few hundred steps on a CPU, the student's guess is weak on its
  own: compare its bars with the noise floor and with the teacher. Its job is to be a good **start**
  for refinement (notebook 04); a real student needs far more photos and steps (the GPU command above).

**Exercises.** (1) Set `identity_weight` to 0: pure imitation. How do the held-out bars change?
(2) Train twice with the same `seed` and look at `targets_seconds`: where did the time go the second
time? (3) Interrupt `train_student` (or pass `stop_at`) and call it again on the same folder: check in
`history.json` that the run continued where it stopped. (4) Raise `target_size` to 256: what happens to
the faces the training set keeps, and to the time per step?
"""),
])
