"""Generator of notebooks/00_setup_and_data.ipynb (edit here, then run: python tools/make_nb00.py)."""
from nb import write_notebook

write_notebook("notebooks/00_setup_and_data.ipynb", [
("md", """
# 00 · Set-up and data: the model zoo and the sample photos

Obscrowd protects **every face of a group photo at once** with one imperceptible perturbation, so that
face recognition (FR) can no longer link an *edited* copy of the photo back to the people in it.
Before any method, this notebook shows what we work with:

1. the **model zoo**: every pretrained detector, recognizer, perceptual metric and regeneration model,
   each taken from a pinned registry package and checked against its sha256;
2. the **sample photos**, also extracted from registry packages, and a **controlled multi-portrait
   composite** built from single portraits with known identities (how the paper evaluates under control).

Everything here is a call into `obscrowd_lib`; the notebook only tells the story.
"""),
("code", """
import json
from pathlib import Path

from obscrowd_lib import artifacts, data, viz, zoo
from obscrowd_lib.io import load_image
from obscrowd_lib.runner import write_json
"""),
("params", """
run_dir: str = "../papermill_runs/interactive/00_setup_and_data"  # where figures and metrics.json go
samples: list = []  # sample file names to show; empty means all in the catalogue
tile: int = 256  # thumbnail size in pixels (long side) for figures
composite_tile: int = 160  # tile size of the 2x2 controlled composite
"""),
("code", """
out = Path(run_dir)
out.mkdir(parents=True, exist_ok=True)
names = samples or list(data.SAMPLES)
print("cache:", artifacts.cache_home())
"""),
("md", """
## The model zoo

One registry (`obscrowd_lib.zoo.ENTRIES`) lists every model: its kind, whether gradients reach the
photo's pixels (the teacher can only optimise through differentiable models), where its weights come
from and under which licence. Models no registry package ships here (insightface packs, Stable
Diffusion editors) are registered by local path by users who have them.
"""),
("code", """
rows = [zoo.describe(n) for n in zoo.ENTRIES]
print(f"{'name':20s} {'kind':12s} {'diff':5s} {'here':5s} artifact")
for r in rows:
    print(f"{r['name']:20s} {r['kind']:12s} {'yes' if r['differentiable'] else 'no':5s} "
          f"{'yes' if r['fetched'] else 'no':5s} {r['artifact'] or 'local path (user-provided)'}")
"""),
("md", """
## The sample photos

Each photo is extracted from a pinned package and checked against its own sha256
(`obscrowd_lib.data.fetch_samples`). Group photos carry several faces; portraits give identities we
know, which is what a controlled evaluation needs.
"""),
("code", """
paths = data.fetch_samples(names)
images = [load_image(p) for p in paths]
titles = [f"{p.name}: {data.SAMPLES[p.name].faces} face(s)" for p in paths]
fig = viz.image_grid(images, titles, columns=5, tile=tile)
viz.save_figure(fig, out / "samples.jpg")
"""),
("md", """
## A controlled multi-portrait composite

`data.make_composite` pastes single portraits on one canvas: every tile holds exactly one face with a
known identity, so a per-face evaluation can check which person each detected face is.
"""),
("code", """
comp = data.default_composite(tile=composite_tile)
fig = viz.image_grid([comp.image], ["composite: " + ", ".join(comp.identities)], columns=1, tile=2 * tile,
                     boxes=[comp.tiles], labels=[comp.identities])
viz.save_figure(fig, out / "composite.jpg")
"""),
("code", """
metrics = {
    "models": len(rows),
    "models_available": sum(r["fetched"] for r in rows),
    "samples": len(paths),
    "sample_faces": sum(data.SAMPLES[p.name].faces for p in paths),
    "composite_shape": list(comp.image.shape),
}
write_json(out / "metrics.json", metrics)
print(json.dumps(metrics, indent=2))
"""),
("md", """
## Summary

- Every model and photo in this project comes from a pinned, hash-checked registry package, cached in
  `$OBSCROWD_HOME` (default `~/.cache/obscrowd`), never from a model hub at run time.
- Differentiable recognizers are the ones a protection can be optimised against; the others (native
  dlib) and one held-out differentiable model (FaceNet) serve as honest evaluators.
- Controlled composites give multi-portrait photos with known identities.

**Exercises.** (1) Run `obscrowd models list --json` and find which recognizers share weights.
(2) Build a 3×1 composite of `obama.jpg`, `obama2.jpg` and `biden.jpg` with `data.make_composite`: which
pairs of faces *should* a recognizer link? (3) Corrupt one byte of an archive in the cache and run
`obscrowd models verify`: what happens?
"""),
])
