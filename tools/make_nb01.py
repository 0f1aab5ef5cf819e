"""Generator of notebooks/01_face_masking.ipynb (edit here, then run: python tools/make_nb01.py)."""
from nb import write_notebook

write_notebook("notebooks/01_face_masking.ipynb", [
("md", """
# 01 · Faces and identity: detection, alignment, soft masks, per-face similarity

Obscrowd is *multi-portrait*: one perturbation protects **every** face of a group photo. Before any
protection, this notebook shows the four pieces that make that possible, each one call into `obscrowd_lib`:

1. **detection** (`faces.FaceDetector`): every face, with a box, 5 landmarks (left eye, right eye, nose,
   mouth left, mouth right; "left" = image left) and a score, by MTCNN and by the independent dlib detectors;
2. **differentiable alignment** (`recognition.align_faces`): each face region is warped out of the *whole*
   photo onto the template of each face-recognition (FR) model, by a similarity transform and bilinear
   sampling, so gradients reach the photo's pixels. We show the crops each model actually sees;
3. **soft masks** (`masks.face_masks`): a feathered ellipse per face, and their union, which confines
   the perturbation (δ = m ⊙ δ̃). We show how `dilation` and `feather` change them;
4. **per-face identity similarity** (`recognition.FREnsemble`): the cosine between each face and the same
   face in another photo, per FR model. An unprotected JPEG copy is still linked to everyone in it; two
   *different* photos of the same person are linked too. That is what a protection has to break.
"""),
("code", """
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from obscrowd_lib import attacks, data, recognition, viz
from obscrowd_lib.config import save_config
from obscrowd_lib.faces import FaceDetector
from obscrowd_lib.io import to_tensor, to_uint8
from obscrowd_lib.masks import MaskConfig, face_masks
from obscrowd_lib.runner import write_json
"""),
("params", """
run_dir: str = "../papermill_runs/interactive/01_face_masking"  # where figures and metrics.json go
photo: str = "t1.jpg"  # a sample name from data.SAMPLES or the path of your own group photo
max_side: int = 640  # the photo is downscaled so that its long side is at most this many pixels
detectors: list = ["mtcnn", "dlib-cnn"]  # detectors compared on the photo; the first one is used afterwards
recognizers: list = []  # zoo recognizer names; empty means every recognizer whose weights are present
composite_tile: int = 160  # tile size in pixels of the controlled composites
jpeg_quality: int = 75  # quality of the JPEG copy compared with the original composite
feathers: list = [0.0, 0.15, 0.4]  # feather widths to compare, as fractions of the face size
dilations: list = [-0.1, 0.05, 0.25]  # dilations to compare, as fractions of the face size
tile: int = 256  # long side in pixels of each figure tile, at most 256
interactive: bool = False  # show ipywidgets sliders for dilation and feather
device: str = "cpu"  # torch device of the recognizers
threads: int = 0  # torch CPU threads, 0 keeps the default, 1 is fastest on a CPU shared with other jobs
"""),
("code", """
out = Path(run_dir)
out.mkdir(parents=True, exist_ok=True)
if threads:
    torch.set_num_threads(threads)
tile = min(tile, 256)
mask_config = MaskConfig()  # the library defaults; the grid below varies dilation and feather around them
names = list(recognizers) or recognition.recognizer_names()
ensemble = recognition.FREnsemble(names, device=device)
try:
    thresholds = {n: c.thresholds[1e-3] for n, c in recognition.load_thresholds()["models"].items()
                  if 1e-3 in c.thresholds}
except FileNotFoundError as e:  # the calibration has not been shipped or run yet
    thresholds = {}
    print("no calibrated thresholds:", e)

image = data.load_photo(photo, max_side=max_side)
x = to_tensor(image, device)
print(f"{photo}: {image.shape[1]}x{image.shape[0]} px | recognizers: {names} | {mask_config}")
"""),
("md", """
## 1 · Detection

Each detector returns `Face(box, landmarks, score)` sorted left to right. MTCNN gives the 5 landmarks
itself; dlib's 5-point model gives eye corners and the nose, and the library places the mouth corners
from the eye line (see `faces.dlib5_to_mtcnn`). Their boxes follow different conventions (MTCNN's are
taller), which is why evaluation matches faces by overlap at IoU 0.3 (`benchmarks/detection.py`
measures both detectors against hand-labelled boxes).
"""),
("code", """
found, seconds = {}, {}
for name in detectors:
    det = FaceDetector(name, device=device)
    t0 = time.perf_counter()
    found[name] = det.detect(image)
    seconds[name] = round(time.perf_counter() - t0, 2)
    print(f"{name:9s} {len(found[name])} faces in {seconds[name]} s, scores",
          [round(f.score, 2) for f in found[name]])
faces = found[detectors[0]]
if not faces:
    raise RuntimeError(f"{detectors[0]} found no face in {photo}: pick another photo or detector")


def draw_landmarks(fig, images, face_lists):
    # dots on the landmarks of each tile of a viz.image_grid figure
    for ax, img, fl in zip(fig.axes, images, face_lists):
        k = viz.thumbnail(img, tile).shape[1] / img.shape[1]
        for f in fl:
            ax.scatter(f.landmarks[:, 0] * k, f.landmarks[:, 1] * k, s=4, c=["red", "red", "yellow", "cyan", "cyan"])


imgs = [image] * len(detectors)
fig = viz.image_grid(imgs, [f"{n}: {len(found[n])} faces" for n in detectors], columns=len(detectors), tile=tile,
                     boxes=[[f.box for f in found[n]] for n in detectors],
                     labels=[[str(i) for i in range(len(found[n]))] for n in detectors])
draw_landmarks(fig, imgs, [found[n] for n in detectors])
viz.save_figure(fig, out / "detection.jpg")
"""),
("md", """
## 2 · What each FR model sees: aligned crops

`recognition.align_faces(photo, faces, template, crop_size)` warps each face onto a model's landmark
template (ArcFace's 112 px template, the dlib chip, FaceNet's 160 px crop...). The crops are sampled
from the whole photo, so a perturbation of the photo reaches every model through them. `dlib-native`
cuts its own chips inside dlib (not differentiable) and is not shown.
"""),
("code", """
crops, titles, shown = [], [], []
for name in names:
    rec = ensemble[name]
    if not hasattr(rec, "template"):
        print(f"{name}: cuts its own chips (not differentiable), no crop to show")
        continue
    with torch.no_grad():
        c = recognition.align_faces(x, faces, rec.template, rec.crop_size)
    shown.append(name)
    for i in range(len(faces)):
        crops.append(to_uint8(c[i]))
        titles.append(f"{name} {rec.crop_size}px" if i == 0 else f"face {i}")
crop_tile = min(tile, 112)
fig = viz.image_grid(crops, titles, columns=len(faces), tile=crop_tile)
viz.save_figure(fig, out / "aligned_crops.jpg")
"""),
("md", """
## 3 · Soft masks

`masks.face_masks(shape, faces)` gives one soft mask per face (1 on the face, a cosine falloff to 0) and
their union (pixelwise maximum). Only the union is where the perturbation may live.
"""),
("code", """
masks = face_masks(image.shape[:2], faces, config=mask_config)
per_face = masks.per_face.cpu().numpy()
union = masks.union.cpu().numpy()


def overlay(img, m, colour=(255, 40, 40), alpha=0.6):
    # tint an (H, W, 3) uint8 photo with colour where the (H, W) mask m in [0, 1] is on
    a = alpha * m[..., None]
    return (img * (1 - a) + a * np.array(colour)).astype(np.uint8)


palette = plt.get_cmap("tab10")(np.arange(len(faces)) % 10)[:, :3] * 255
coloured = np.clip(np.einsum("nhw,nc->hwc", per_face, palette), 0, 255).astype(np.uint8)
fig = viz.image_grid([image, coloured, overlay(image, union)],
                     ["photo and faces", f"{len(faces)} per-face masks", "union mask over the photo"],
                     columns=3, tile=tile, boxes=[[f.box for f in faces], [], []],
                     labels=[[str(i) for i in range(len(faces))], [], []])
viz.save_figure(fig, out / "masks.jpg")
coverage = float(union.mean())
print(f"union mask: mean {coverage:.3f}, {100 * float((union > 0).mean()):.1f} % of the pixels non-zero")
"""),
("md", """
### How `dilation` and `feather` change a mask

Top row: feather (width of the soft falloff, a fraction of the face size) at the default dilation.
Bottom row: dilation (growth of the ellipse, a fraction of the face size) at the default feather.
Shown on the largest face; the number is the share of the crop the mask covers (its mean).
"""),
("code", """
big = max(range(len(faces)), key=lambda i: faces[i].size)
f = faces[big]
cx, cy, half = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2, 1.2 * f.size
x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
x1, y1 = int(min(image.shape[1], cx + half)), int(min(image.shape[0], cy + half))
settings = [(mask_config.dilation, fe, "feather") for fe in feathers]
settings += [(di, mask_config.feather, "dilation") for di in dilations]
tiles_, titles_, mask_coverage = [], [], {}
for di, fe, varied in settings:
    m = face_masks(image.shape[:2], [f], config=mask_config, dilation=di, feather=fe).union.cpu().numpy()[y0:y1, x0:x1]
    tiles_.append(overlay(image[y0:y1, x0:x1], m))
    titles_.append(f"{varied} {fe if varied == 'feather' else di:g}: covers {m.mean():.2f}")
    mask_coverage[f"dilation={di:g},feather={fe:g}"] = round(float(m.mean()), 4)
fig = viz.image_grid(tiles_, titles_, columns=max(len(feathers), len(dilations)), tile=min(tile, 192))
viz.save_figure(fig, out / "mask_settings.jpg")
"""),
("code", """
if interactive:  # sliders: only in a live kernel, never in headless runs
    import ipywidgets as widgets

    def show(dilation=mask_config.dilation, feather=mask_config.feather):
        m = face_masks(image.shape[:2], faces, config=mask_config, dilation=dilation, feather=feather).union
        plt.figure(figsize=(6, 6 * image.shape[0] / image.shape[1]), dpi=80)
        plt.imshow(overlay(image, m.cpu().numpy()))
        plt.axis("off")
        plt.show()

    widgets.interact(show, dilation=widgets.FloatSlider(value=mask_config.dilation, min=-0.2, max=0.5, step=0.05),
                     feather=widgets.FloatSlider(value=mask_config.feather, min=0.0, max=0.6, step=0.05))
"""),
("md", """
## 4 · Per-face identity similarity between two photos

A controlled composite: four single portraits with known identities on one canvas (`data.make_composite`
takes the top square of a tall portrait, where its face is).
First, the composite against a **JPEG copy of itself**: `FREnsemble.similarities(a, b, faces)` gives, per
model, the cosine of each face with the same face in the other photo. The dashed marks are each model's
threshold at a false-accept rate of 1e-3 (`recognition.load_thresholds`), when calibrated: above it, the
model says "same person".
"""),
("code", """
def detect_composite(portraits):
    # composite of the portraits; its faces, each with the file stem of the tile holding it
    comp = data.make_composite([data.sample_path(n) for n in portraits], tile=composite_tile,
                               columns=2 if len(portraits) == 4 else len(portraits),
                               identities=[Path(n).stem for n in portraits])
    fl = FaceDetector(detectors[0], device=device).detect(comp.image)
    return comp, fl, [comp.identity_at(fc.box) or "?" for fc in fl]


portraits_a = ["obama.jpg", "biden.jpg", "astronaut.png", "grace_hopper.jpg"]
portraits_b = ["obama2.jpg", "obama3.jpg", "portrait.jpg"]
person = {Path(n).stem: data.SAMPLES[n].identity for n in portraits_a + portraits_b}  # who is in each portrait
comp_a, faces_a, who_a = detect_composite(portraits_a)
print("composite A faces:", [(w, person.get(w)) for w in who_a])
xa = to_tensor(comp_a.image, device)
xa_jpeg = attacks.make_attack("jpeg", quality=jpeg_quality)(xa)
with torch.no_grad():
    sim_jpeg = {n: v.cpu().numpy() for n, v in ensemble.similarities(xa, xa_jpeg, faces_a).items()}
for n, v in sim_jpeg.items():
    print(f"{n:20s}", " ".join(f"{w}={c:.3f}" for w, c in zip(who_a, v)))
"""),
("code", """
fig, ax = plt.subplots(figsize=(min(10.0, 1.5 + len(faces_a) * (0.5 + 0.3 * len(names))), 3), dpi=80)
width = 0.8 / len(names)
for k, n in enumerate(names):
    pos = np.arange(len(faces_a)) + (k - (len(names) - 1) / 2) * width
    ax.bar(pos, sim_jpeg[n], width=width, label=n)
    if n in thresholds:
        ax.hlines([thresholds[n]] * len(pos), pos - width / 2, pos + width / 2, colors="k", linestyles="--", lw=1)
ax.set_xticks(range(len(faces_a)), who_a)
ax.set_ylim(min(0.0, min(float(v.min()) for v in sim_jpeg.values())), 1.02)
ax.set_ylabel("cosine, original vs JPEG copy")
ax.set_title(f"per-face similarity: composite vs its JPEG {jpeg_quality} copy")
ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
fig.tight_layout()
viz.save_figure(fig, out / "similarity_jpeg.jpg")
"""),
("md", """
Second, **different photos of the same person**: composite A against composite B (two other photos of
Obama and an unrelated portrait). Each cell is the cosine between a face of A (row) and a face of B
(column), embedded separately in each photo (`FREnsemble.embed_all`). Genuine pairs (same person) are
boxed. A good FR model separates them from the rest; this is the linking a protection must break.
"""),
("code", """
comp_b, faces_b, who_b = detect_composite(portraits_b)
print("composite B faces:", [(w, person.get(w)) for w in who_b])
with torch.no_grad():
    emb_a = ensemble.embed_all(xa, faces_a)
    emb_b = ensemble.embed_all(to_tensor(comp_b.image, device), faces_b)
cross = {n: (emb_a[n].double() @ emb_b[n].double().T).cpu().numpy() for n in names}
genuine = np.array([[person.get(a, a) == person.get(b, b) for b in who_b] for a in who_a])

cols = min(4, len(names))
rows = (len(names) + cols - 1) // cols
fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.7 * rows), dpi=80, squeeze=False)
for ax in axes.flat[len(names):]:
    ax.axis("off")
for k, (ax, n) in enumerate(zip(axes.flat, names)):
    ax.imshow(cross[n], vmin=-0.2, vmax=1, cmap="viridis")
    for i in range(len(faces_a)):
        for j in range(len(faces_b)):
            ax.text(j, i, f"{cross[n][i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if cross[n][i, j] < 0.6 else "black")
            if genuine[i, j]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, color="red", lw=1.5))
    ax.set_xticks(range(len(faces_b)), who_b, rotation=45, fontsize=7)
    ax.set_yticks(range(len(faces_a)), who_a if k % cols == 0 else [], fontsize=7)
    ax.set_title(n + (f"\\nthreshold {thresholds[n]:.2f}" if n in thresholds else ""), fontsize=8)
fig.tight_layout()
viz.save_figure(fig, out / "similarity_cross.jpg")
fig = viz.image_grid([comp_a.image, comp_b.image], ["composite A", "composite B"], columns=2, tile=tile,
                     boxes=[[fc.box for fc in faces_a], [fc.box for fc in faces_b]], labels=[who_a, who_b])
viz.save_figure(fig, out / "composites.jpg")
"""),
("code", """
save_config(mask_config, out / "config.json")
gen = {n: (round(float(cross[n][genuine].mean()), 4) if genuine.any() else None) for n in names}
imp = {n: (round(float(cross[n][~genuine].mean()), 4) if (~genuine).any() else None) for n in names}
# at the FAR 1e-3 threshold: share of genuine pairs linked, share of impostor pairs wrongly accepted
linked = {n: round(float((cross[n][genuine] >= thresholds[n]).mean()), 4)
          for n in names if n in thresholds and genuine.any()}
accepted = {n: round(float((cross[n][~genuine] >= thresholds[n]).mean()), 4)
            for n in names if n in thresholds and (~genuine).any()}
metrics = {
    "photo": photo,
    "photo_size": [int(image.shape[1]), int(image.shape[0])],
    "faces": {n: len(found[n]) for n in detectors},
    "detection_seconds": seconds,
    "recognizers": names,
    "aligned_crops_shown": shown,
    "union_mask_mean": round(coverage, 4),
    "mask_settings_coverage": mask_coverage,
    "composite_faces": len(faces_a),
    "jpeg_quality": jpeg_quality,
    "jpeg_similarity_mean": {n: round(float(v.mean()), 4) for n, v in sim_jpeg.items()},
    "jpeg_similarity_min": {n: round(float(v.min()), 4) for n, v in sim_jpeg.items()},
    "cross_genuine_mean": gen,
    "cross_impostor_mean": imp,
    "cross_genuine_linked": linked,
    "cross_impostor_accepted": accepted,
    "thresholds_far_1e-3": {n: round(t, 4) for n, t in thresholds.items() if n in names},
}
write_json(out / "metrics.json", metrics)
print(json.dumps(metrics, indent=1))
"""),
("md", """
## Summary

- Detection gives every face of the photo with 5 landmarks in one fixed order; a second, independent
  detector (dlib) is what the evaluation uses as the attacker's.
- Alignment is a differentiable warp of the whole photo per model, so one perturbation reaches all faces
  and all models at once.
- The union of soft masks confines the perturbation; `dilation` grows the region, `feather` softens its edge.
- Without protection, a JPEG copy keeps every face close to cosine 1 for every model: re-compression alone
  does not unlink anyone. Different photos of the same person are linked
  wherever `cross_genuine_linked` (metrics.json) is high; read it next to `cross_impostor_accepted`, the
  share of impostor pairs a model wrongly accepts at its threshold (small faces make both worse). The
  next notebooks make the photo's faces unlinkable.

**Exercises.** (1) Run the detection cell with `dlib-hog` and find the face it misses; why does a HOG
detector miss turned faces? (2) Set `max_side` to 320: which model's crops degrade first, and what happens
to its JPEG similarity? (3) Find the smallest `dilation` at which the mask still covers the forehead
and chin of every face in `t1.jpg`. (4) Put `biden.jpg` into composite B: which model links the two
Biden faces most strongly?
"""),
])
