"""Generator of notebooks/01b_attacks.ipynb (edit here, then run: python tools/make_nb01b.py)."""
from nb import write_notebook

write_notebook("notebooks/01b_attacks.ipynb", [
("md", """
# 01b · Editing attacks on an unprotected photo: which ones already break recognition?

A protected photo will be re-compressed, resized, restored by a learned upscaler or edited by a
diffusion model after it is shared. `obscrowd_lib.attacks` gives every such step one interface,
`attack(photo, seed) -> edited photo`, with an evaluation form (real codecs, 8-bit images, the real
networks) and, for training, a differentiable twin (`*-diff`).

Before protecting anything, this notebook applies each **evaluation attack** of `attacks.ATTACKS` to an
**unprotected** photo and measures, per face, how similar the attacked face still is to the original
for one or two face-recognition (FR) models, using the evaluation protocol (`evaluation.Evaluator`):
faces of the clean photo found by MTCNN; faces of the attacked photo found again by the attacker's
detector and matched by overlap; cosine per face; a face the detector no longer finds is a *detection
failure*, not a success. An attack that already drops a face below the model's threshold "protects" on
its own; one that keeps everyone linked is one the protection must survive.
"""),
("code", """
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from obscrowd_lib import attacks, data, viz, zoo
from obscrowd_lib.evaluation import Evaluator
from obscrowd_lib.runner import write_json
"""),
("params", """
run_dir: str = "../papermill_runs/interactive/01b_attacks"  # where figures and metrics.json go
photo: str = "composite"  # a sample name such as t1.jpg, an image path, composite for four portraits, or composite:A,B
max_side: int = 512  # the photo is downscaled so that its long side is at most this many pixels
composite_tile: int = 160  # tile size in pixels of the composite
attack_names: list = []  # registry attack names; empty means every evaluation attack of attacks.ATTACKS
recognizers: list = ["arcface-faceplugin", "facenet"]  # one or two zoo recognizers that score each face
detector: str = "dlib-cnn"  # the attacker's detector, which finds the faces again in each attacked photo
seed: int = 0  # seed of the random attacks such as noise and rotation
tile: int = 192  # long side in pixels of each figure tile, at most 256
device: str = "cpu"  # torch device of the models
threads: int = 0  # torch CPU threads, 0 keeps the default, 1 is fastest on a CPU shared with other jobs
"""),
("code", """
out = Path(run_dir)
out.mkdir(parents=True, exist_ok=True)
if threads:
    torch.set_num_threads(threads)
tile = min(tile, 256)
# evaluation attacks: the registry minus the differentiable training twins and the no-op
names = list(attack_names) or [n for n in attacks.ATTACKS if n != "identity" and not n.endswith("-diff")]
unknown = [n for n in names if n not in attacks.ATTACKS]
if unknown:
    raise ValueError(f"unknown attack(s) {unknown}; known: {', '.join(attacks.ATTACKS)}")
skipped = {}
for n in names:
    missing = [m for m in attacks.ATTACKS[n].needs if not zoo.is_available(m)]
    if missing:
        skipped[n] = f"weights absent: {', '.join(missing)} (register them: obscrowd models register NAME PATH)"
kept = ["identity"] + [n for n in names if n not in skipped]
for n, why in skipped.items():
    print(f"skipped {n}: {why}")

image = data.load_photo(photo, max_side=max_side, tile=composite_tile)  # "composite": Obama, Biden, the astronaut, Grace Hopper
print(f"{photo}: {image.shape[1]}x{image.shape[0]} px | attacks: {kept} | recognizers: {recognizers}")
"""),
("md", """
## The attacks

Each one described by the registry (`attacks.list_attacks()`), in the form the evaluation applies.
"""),
("code", """
info = {a["name"]: a for a in attacks.list_attacks()}
for n in kept:
    a = info[n]
    print(f"{n:24s} {a['kind']:12s} {a['description']}  {a['params'] or ''}")
"""),
("md", """
## Apply every attack and score every face

One call: the evaluator attacks the photo, re-detects and matches its faces, and embeds them with each
recognizer. We pass the photo as both "clean" and "protected": everything below is the **unprotected**
branch. `identity` (no attack) is the baseline: it is below 1 when the attacker's detector places the
landmarks differently from MTCNN.
"""),
("code", """
evaluator = Evaluator(attacks=[attacks.make_attack(n, device=device, seed=seed) for n in kept],
                      evaluators=recognizers, holdout=None, detector=detector, seeds=(seed,), metrics=(),
                      keep_images=True, device=device, progress=False)
result = evaluator.evaluate(image, image, name=photo)
faces = result.faces
thresholds = {n: result.thresholds.get(n, {}).get(1e-3) for n in recognizers}
print(f"{len(faces)} reference faces; evaluated in {result.seconds:.1f} s; thresholds at FAR 1e-3: {thresholds}")

sim = {}  # attack -> recognizer -> (N,) cosine to the original face, NaN when the face was not found again
found = {}  # attack -> (N,) bool
for a in kept:
    b = result.branches[(a, seed, "clean")]
    found[a] = b.match >= 0
    sim[a] = {r: np.diag(b.similarity[r]) for r in recognizers}
    cells = "  ".join(f"{r}: " + " ".join("miss" if np.isnan(v) else f"{v:.2f}" for v in sim[a][r])
                      for r in recognizers)
    print(f"{a:24s} {cells}")
"""),
("md", """
## The attacked photos

Each tile is the attacked photo with every face labelled by its cosine to the original face (first
recognizer / second recognizer); "missed" means the attacker's detector did not find that face again.
"""),
("code", """
imgs, titles, boxes, labels = [], [], [], []
for a in kept:
    b = result.branches[(a, seed, "clean")]
    imgs.append(image if a == "identity" else result.images[a])
    means = [np.nanmean(sim[a][r]) if found[a].any() else float("nan") for r in recognizers]
    titles.append(f"{'no attack' if a == 'identity' else a}: " + "/".join(f"{m:.2f}" for m in means))
    boxes.append([tuple(b.boxes[i]) if found[a][i] else tuple(f.box) for i, f in enumerate(faces)])
    labels.append(["/".join(f"{sim[a][r][i]:.2f}" for r in recognizers) if found[a][i] else "missed"
                   for i in range(len(faces))])
fig = viz.image_grid(imgs, titles, columns=4, tile=tile, boxes=boxes, labels=labels)
viz.save_figure(fig, out / "attacks_grid.jpg")
"""),
("md", """
## Mean similarity per attack

Bars: mean cosine over the faces found again; dashed line: the recognizer's threshold at a false-accept
rate of 1e-3 (when calibrated). Bars above the line: the attack leaves people linkable. The count on the
right is the faces the attacker's detector lost.
"""),
("code", """
fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(kept) + 1.2), dpi=80)
h = 0.8 / len(recognizers)
colours = plt.get_cmap("tab10")(np.arange(len(recognizers)))
for k, r in enumerate(recognizers):
    means = [np.nanmean(sim[a][r]) if found[a].any() else 0.0 for a in kept]
    pos = np.arange(len(kept)) + (k - (len(recognizers) - 1) / 2) * h
    ax.barh(pos, means, height=h, color=colours[k], label=r)
    if thresholds[r] is not None:
        ax.axvline(thresholds[r], color=colours[k], ls="--", lw=1, label=f"{r} threshold")
for i, a in enumerate(kept):
    lost = int((~found[a]).sum())
    if lost:
        ax.text(1.01, i, f"{lost} missed", va="center", fontsize=7, transform=ax.get_yaxis_transform())
ax.set_yticks(range(len(kept)), ["no attack" if a == "identity" else a for a in kept], fontsize=8)
ax.invert_yaxis()
ax.set_xlim(min(0.0, min(float(np.nanmin(v)) for a in kept for v in sim[a].values() if found[a].any())), 1.0)
ax.set_xlabel("mean cosine of attacked face to original (unprotected)")
ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
fig.tight_layout()
viz.save_figure(fig, out / "attacks_bars.jpg")
"""),
("code", """
def share_linked(a, r):
    # share of all faces still linked at FAR 1e-3; a missed face counts as not linked
    if thresholds[r] is None:
        return None
    v = np.where(found[a], np.nan_to_num(sim[a][r], nan=-1.0), -1.0)
    return round(float((v >= thresholds[r]).mean()), 4)


per_attack = {a: {"mean_similarity": {r: (round(float(np.nanmean(sim[a][r])), 4) if found[a].any() else None)
                                      for r in recognizers},
                  "faces_found": int(found[a].sum()),
                  "share_linked_far_1e-3": {r: share_linked(a, r) for r in recognizers}}
              for a in kept}
metrics = {
    "photo": photo,
    "photo_size": [int(image.shape[1]), int(image.shape[0])],
    "faces": len(faces),
    "recognizers": list(recognizers),
    "detector": detector,
    "seed": seed,
    "thresholds_far_1e-3": thresholds,
    "mean_similarity": {a: v["mean_similarity"] for a, v in per_attack.items()},
    "attacks": per_attack,
    "skipped": skipped,
    "seconds": round(result.seconds, 2),
}
write_json(out / "metrics.json", metrics)
write_json(out / "config.json", {"attacks": {a: result.attacks[a] for a in kept}, "protocol": result.protocol,
                                 "recognizers": list(recognizers), "seed": seed})
print(json.dumps(metrics["mean_similarity"], indent=1))
"""),
("code", """
# which attacks already unlink faces of the unprotected photo, per recognizer (missed faces count as unlinked)
for r in recognizers:
    if thresholds[r] is None:
        print(f"{r}: not calibrated, no threshold")
        continue
    keep = [a for a in kept if a != "identity" and per_attack[a]["share_linked_far_1e-3"][r] == 1.0]
    some = [f"{a} ({1 - per_attack[a]['share_linked_far_1e-3'][r]:.0%} unlinked)" for a in kept
            if a != "identity" and per_attack[a]["share_linked_far_1e-3"][r] < 1.0]
    print(f"{r}: every face still linked after {', '.join(keep) or 'no attack'}")
    print(f"{' ' * len(r)}  some faces unlinked after {', '.join(some) or 'no attack'}")
"""),
("md", """
## Summary

- Every attack has the same interface and is applied here in its evaluation form; editors whose weights
  are absent are skipped and listed, never silently dropped.
- The last cell sorts the attacks into those after which **every face is still linked** (the attacks a
  protection must survive: there, an unprotected copy is as linkable as the original) and those that
  already unlink some faces on their own. The split depends on face size: detail-removing attacks
  (blur, down-and-up resizing, and above all the x4 Real-ESRGAN regeneration, which first shrinks the photo
  to a quarter) cost small faces much more similarity than large ones, while rotation, crops and colour
  changes barely move FR.
- This unprotected similarity is the baseline a protected photo is compared with in notebook 05: a
  protection is only credited where it lowers similarity *below* what the attack alone does.

**Exercises.** (1) Build an `Evaluator(attacks=["jpeg:quality=90", "jpeg:quality=50", "jpeg:quality=20"])`
and evaluate the photo against itself: at which quality does the first face fall below threshold?
(2) Set `detector` to `mtcnn`: how does the `no attack` baseline change, and why?
(3) Set `composite_tile` to 256 (larger faces): which attacks now keep every face linked?
(4) Compare `regen-waifu2x-photo` with `resize`: the regenerator first downscales by the same factor;
does the learned upscaling give identity back or take it away?
"""),
])
