"""Generator of notebooks/05_evaluation.ipynb (edit here, then run: python tools/make_nb05.py)."""
from nb import write_notebook

write_notebook("notebooks/05_evaluation.ipynb", [
("md", """
# 05 · Evaluation: Obscrowd against the baselines, per face, in one harness

A protection is only as good as the way it is measured. This notebook runs **every method through the
same harness at the same L∞ budget** (`obscrowd_lib.evaluation`), the way the field measures:

1. **imperceptibility** of the protection itself: protected vs clean photo, no attack (PSNR, SSIM,
   LPIPS, DISTS; over the whole photo and inside the face masks; L∞ in /255);
2. **protection, per face**: each attack (JPEG, resize, blur, noise, rotation, learned regeneration,
   the diffusers editors when you have their weights) is applied to the protected photo *and* to the
   clean one; faces are detected again with an **independent** detector (dlib CNN) and matched to the
   clean faces by box overlap (Hungarian assignment); each evaluator (FR model) scores the cosine to the
   clean face. A face the detector loses is a **detection failure**, never counted as protected.
   The **protection success rate** (PSR) is the share of faces below the evaluator's threshold
   calibrated at a false-accept rate of 1e-3; FaceNet is **held out** (no method trains on it).

Methods: no defence; blur and pixelation of the face boxes (classical anonymisation); FaceLock
(with our FR ensemble, and the waifu2x regeneration in place of the SD VAE it needs); a **per-face**
protection (Obscrowd's teacher run on each face alone: the Fawkes-style design Obscrowd argues
against); Obscrowd's **teacher** (one joint perturbation for all faces). The SD-VAE baselines
(PhotoGuard, EditShield-like encoder attack, CW-L2, VAE attack) join automatically when a Stable
Diffusion VAE is registered (`obscrowd models register sd-vae FOLDER`).

The same report for your own photos: `obscrowd evaluate --clean CLEAN --protected PROTECTED --json OUT.json`.
"""),
("code", """
import json
from dataclasses import replace
from pathlib import Path

from IPython.display import Markdown, display

from obscrowd_lib import baselines, data, evaluation, viz
from obscrowd_lib.attacks import to_uint8
from obscrowd_lib.runner import write_json
from obscrowd_lib.teacher import TeacherConfig
"""),
("params", """
run_dir: str = "../papermill_runs/interactive/05_evaluation"  # where figures, tables and metrics.json go
sample: str = "t1.jpg"  # a sample name from obscrowd_lib.data.SAMPLES, an image path, composite, or composite:A,B
max_side: int = 512  # the photo is downscaled so that its long side is at most this many pixels
methods: list = ["none", "blur", "pixelate", "facelock", "per-face", "teacher"]  # rows of the comparison table
add_vae_baselines: bool = True  # add PhotoGuard, EditShield-like, CW-L2 and VAE attack when an SD VAE is registered
attacks: list = []  # evaluation attacks by suite name; empty means the default suite
evaluators: list = []  # FR models that judge; empty means every recognizer in the zoo
holdout: str = "facenet"  # the evaluator reported as held out
eps_255: float = 8.0  # L-inf budget of the comparison table, in /255
budgets: list = [4.0, 8.0, 16.0]  # budgets of the similarity-vs-budget curves, in /255
budget_methods: list = ["facelock", "teacher"]  # methods of the curves
steps: int = 40  # optimisation steps of FaceLock, per-face and the teacher; 0 means each method's default
teacher_attacks: list = []  # differentiable attacks of the teacher's expectation; empty means its default
teacher_ensemble: list = []  # training FR models of the teacher, per-face and FaceLock; empty means all but FaceNet
seeds: list = [0]  # seeds of the random evaluation attacks
metrics: list = []  # imperceptibility metrics; empty means all of them
device: str = "cpu"  # torch device
"""),
("code", """
out = Path(run_dir)
out.mkdir(parents=True, exist_ok=True)
n_steps = steps or None
teacher_cfg = TeacherConfig(eps_255=eps_255, **({"attacks": tuple(teacher_attacks)} if teacher_attacks else {}),
                            **({"ensemble": tuple(teacher_ensemble)} if teacher_ensemble else {}))
run_methods = list(methods) + [b for b in baselines.available_baselines() if add_vae_baselines
                               and b in baselines.NEEDS_VAE and b not in methods]
models = baselines.load_baseline_models(teacher_config=teacher_cfg, device=device)
ev = evaluation.Evaluator(attacks=attacks or evaluation.DEFAULT_ATTACKS, evaluators=evaluators or None,
                          holdout=holdout, seeds=seeds, metrics=metrics or None, device=device, progress=False,
                          recognizers=models.teacher.ensemble)  # shares the loaded FR networks
white_box = next(n for n in models.teacher.names if n in ev.evaluators)  # a training model that also judges
config = {"sample": sample, "max_side": max_side, "methods": run_methods, "attacks": list(ev.attacks),
          "skipped_attacks": ev.skipped, "evaluators": list(ev.evaluators), "holdout": ev.holdout,
          "white_box": white_box, "eps_255": eps_255, "budgets": budgets, "budget_methods": budget_methods,
          "steps": steps, "teacher": {"attacks": list(teacher_cfg.attacks), "ensemble": list(models.teacher.names)},
          "seeds": seeds, "detector": ev.detector_name, "reference_detector": ev.reference_detector_name}
write_json(out / "config.json", config)
print(json.dumps(config, indent=1))
"""),
("md", """
## The photo and its reference faces

The reference identities are the faces MTCNN finds on the **clean** photo. Every later number is about
one of these faces.
"""),
("code", """
photo = data.load_photo(sample, max_side=max_side)
faces = ev.reference_faces(photo)
fig = viz.image_grid([photo], [f"{sample}: {len(faces)} faces"], columns=1, tile=max_side,
                     boxes=[[f.box for f in faces]], labels=[[f"#{i}" for i in range(len(faces))]])
viz.save_figure(fig, out / "faces.jpg")
"""),
("md", """
## Every method at the same budget, through the same harness

`evaluation.compare_methods` protects the photo with each method at ε = `eps_255`/255 and evaluates each
protected copy; the clean ("unprotected") branch of every attack is computed once and shared.
"""),
("code", """
comparison = evaluation.compare_methods(photo, run_methods, evaluator=ev, eps_255=eps_255, steps=n_steps,
                                        faces=faces, teacher_config=teacher_cfg, models=models, progress=False)
for m, r in comparison.items():
    p = r["protection"]
    print(f"{m:20s} {p.seconds:7.1f} s  budget used {p.budget_used_255:5.2f}/255  {p.notes}")
    write_json(out / f"evaluation_{m}.json", r["evaluation"].to_json())
"""),
("md", """
## The comparison table

Rows = methods; columns = mean protected cosine (`sim`) and PSR at FAR 1e-3 (`psr`) per attack, then
the imperceptibility of the protection (PSNR in dB and SSIM: higher is more faithful; LPIPS-alex: lower
is more faithful). `worst-case` takes, per face, the attack that left it most recognisable. First the
**held-out** evaluator, then a white-box one (a model the teacher trains against).
"""),
("code", """
table_attacks = list(ev.attacks) + [evaluation.WORST_CASE]
tables = {}
for judge in [ev.holdout or white_box, white_box]:
    rows = evaluation.comparison_table({m: r["evaluation"] for m, r in comparison.items()}, judge,
                                       attacks=table_attacks)
    for row in rows:
        row["seconds"] = round(comparison[row["method"]]["protection"].seconds, 1)
    tables[judge] = rows
    evaluation.write_csv(rows, out / f"comparison_{judge}.csv")
    display(Markdown(f"**{judge}**{' (held out)' if judge == ev.holdout else ' (white box)'}\\n\\n"
                     + evaluation.format_table(rows)))
"""),
("md", """
## What the attacker's detector sees

The held-out evaluator's cosine per face after each attack on Obscrowd's protected photo, written
`u→p`: `u` = unprotected (the attack on the clean photo), `p` = protected. "missed" marks a detection
failure.
"""),
("code", """
shown = "teacher" if "teacher" in comparison else run_methods[-1]
fig = comparison[shown]["evaluation"].figure(ev.holdout or white_box)
viz.save_figure(fig, out / "faces_labelled.jpg")
fig = viz.image_grid([photo] + [viz.thumbnail(to_uint8(r["protection"].protected)[0], 256)
                                for m, r in comparison.items()],
                     ["clean"] + list(comparison), columns=4, tile=256)
viz.save_figure(fig, out / "methods.jpg")
"""),
("md", """
## Similarity against budget

The worst-case protected cosine (per face, the attack that left it most recognisable; mean over
faces) for ε ∈ `budgets`. A protection that works moves the curve below the threshold (dashed).
"""),
("code", """
reuse = float(eps_255) in map(float, budgets) and all(m in comparison for m in budget_methods)
sweep = {eps: ({m: comparison[m] for m in budget_methods} if reuse and float(eps) == float(eps_255) else
               evaluation.compare_methods(photo, budget_methods, evaluator=ev, eps_255=eps, steps=n_steps, faces=faces,
                                          teacher_config=teacher_cfg, models=models, progress=False))
         for eps in budgets}  # the table's budget is not recomputed
curves = {}
for judge in dict.fromkeys([ev.holdout or white_box, white_box]):
    curves[judge] = evaluation.budget_curves(sweep, judge)
    thr = ev.thresholds.get(judge, {}).get(evaluation.PSR_FAR)
    ref = next(iter(sweep[budgets[0]].values()))["evaluation"].summary(bootstrap=0)[judge][evaluation.WORST_CASE]
    fig = evaluation.budget_curve_figure(curves[judge], title=f"{judge}: worst-case cosine vs budget", threshold=thr,
                                         unprotected=ref["unprotected_mean"])
    viz.save_figure(fig, out / f"budget_curve_{judge}.png")
"""),
("code", """
metrics = {
    "photo": sample, "faces": len(faces), "eps_255": eps_255, "holdout": ev.holdout, "white_box": white_box,
    "table": tables, "budget_curves": {j: {m: {str(e): v for e, v in c.items()} for m, c in cs.items()}
                                       for j, cs in curves.items()},
    "unlinkability": {m: r["evaluation"].unlinkability().get(ev.holdout or white_box, {}).get("dsys")
                      for m, r in comparison.items()},
    "seconds": {m: round(r["protection"].seconds, 2) for m, r in comparison.items()},
}
write_json(out / "metrics.json", metrics)
print(json.dumps({k: metrics[k] for k in ("unlinkability", "seconds")}, indent=1))
"""),
("md", """
## Summary

- Every method is measured per face, after real attacks, by a detector and evaluators the method did
  not optimise against; a face the attacker's detector loses is reported, not credited.
- Blur and pixelation "protect" perfectly and destroy the photo (PSNR, SSIM): the imperceptibility
  columns are half of every comparison.
- The held-out FaceNet column is the honest one: white-box numbers (models the teacher trains on) say
  little about an unknown attacker.
- Per-face protection costs one optimisation per face; Obscrowd's teacher optimises one perturbation for
  all faces (compare the `seconds` column).

**Exercises.** (1) Re-run with `holdout="dlib-native"` and a teacher ensemble without `dlib-faceapi`
(`TeacherConfig(ensemble=...)`): does native dlib still match the faces? (2) Add `"jpeg:quality=30"` to
`attacks`: which method survives? (3) Evaluate your own protected photos with
`obscrowd evaluate --clean CLEAN --protected PROTECTED --json report.json --html report.html` and read
`docs/evaluation_schema.md`: which faces are the worst protected, and why?
"""),
])
