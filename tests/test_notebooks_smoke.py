"""Every notebook runs headlessly with the smoke profile and writes its expected artifacts."""

import json

from obscrowd_lib import runner

# Files each notebook must leave in its run_dir (besides metrics.json).
EXPECTED = {
    "00_setup_and_data": ["samples.jpg", "composite.jpg"],
    "02_teacher_optimisation": ["photo_and_mask.jpg", "loss_curves.jpg", "similarity_bars.jpg", "budget_heatmap.jpg",
                                "before_after.jpg", "config.json"],
    "03_student_distillation": ["training_set.jpg", "loss_curves.jpg", "similarity_bars.jpg", "before_after.jpg",
                                "student.pt", "checkpoint.pt"],
    "04_inference_refinement": ["similarity_vs_k.jpg", "per_face_at_kmax.jpg", "refined.jpg", "config.json"],
    "05_evaluation": ["faces.jpg", "faces_labelled.jpg", "methods.jpg", "config.json", "evaluation_teacher.json"],
}


def test_smoke_profile_runs_every_notebook(smoke_run):
    run = smoke_run
    summary = json.loads((run / "summary.json").read_text())
    names = [n["notebook"] for n in summary["notebooks"]]
    assert names == list(runner.load_profile("smoke")["notebooks"])
    for entry in summary["notebooks"]:
        stem = entry["notebook"].removesuffix(".ipynb")
        assert entry["status"] == "ok", entry
        assert (run / entry["notebook"]).is_file()
        assert (run / stem / "metrics.json").is_file(), f"{stem}: no metrics.json"
        for f in EXPECTED.get(stem, []):
            assert (run / stem / f).is_file(), f"{stem}: expected artifact {f} missing"
