"""Notebooks 01 (faces, masks, identity) and 01b (attacks) run headlessly with their smoke parameters
and leave their figures, config.json and metrics.json in their run folders."""

import json
from pathlib import Path

import pytest

from obscrowd_lib import runner

EXPECTED = {  # files each notebook must write into its run_dir (besides metrics.json)
    "01_face_masking": ["detection.jpg", "aligned_crops.jpg", "masks.jpg", "mask_settings.jpg",
                        "composites.jpg", "similarity_jpeg.jpg", "similarity_cross.jpg", "config.json"],
    "01b_attacks": ["attacks_grid.jpg", "attacks_bars.jpg", "config.json"],
}


def smoke_parameters() -> dict:
    """The smoke parameters of both notebooks, from configs/smoke.json."""
    return runner.load_profile("smoke")["notebooks"]


@pytest.fixture(scope="module")
def run(smoke_run) -> Path:
    return smoke_run


def _metrics(run: Path, stem: str) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    entry = next(e for e in summary["notebooks"] if e["notebook"] == stem + ".ipynb")
    assert entry["status"] == "ok", entry
    for f in EXPECTED[stem]:
        path = run / stem / f
        assert path.is_file(), f"{stem}: expected artifact {f} missing"
        if f.endswith(".jpg"):
            assert path.read_bytes()[:2] == b"\xff\xd8", f"{stem}/{f} is not a JPEG"
    path = run / stem / "metrics.json"
    assert path.is_file(), f"{stem}: no metrics.json"
    return json.loads(path.read_text())


def test_face_masking_notebook(run):
    m = _metrics(run, "01_face_masking")
    params = smoke_parameters()["01_face_masking.ipynb"]
    assert m["faces"][params["detectors"][0]] == 6  # t1.jpg shows 6 people
    assert m["composite_faces"] == 4
    assert set(m["jpeg_similarity_mean"]) == set(params["recognizers"])
    assert all(v > 0.9 for v in m["jpeg_similarity_mean"].values()), m["jpeg_similarity_mean"]  # JPEG 75 keeps identity
    assert 0 < m["union_mask_mean"] < 0.5
    cov = m["mask_settings_coverage"]  # wider feather covers more of the crop
    assert cov["dilation=0.05,feather=0.4"] > cov["dilation=0.05,feather=0.15"] > cov["dilation=0.05,feather=0"]


def test_attacks_notebook(run):
    m = _metrics(run, "01b_attacks")
    params = smoke_parameters()["01b_attacks.ipynb"]
    assert set(m["mean_similarity"]) == {"identity", *params["attack_names"]}
    assert m["faces"] == 4
    for attack, per_model in m["mean_similarity"].items():
        assert set(per_model) == set(params["recognizers"]), attack
        assert all(v is None or -1 <= v <= 1 for v in per_model.values()), (attack, per_model)
    assert m["mean_similarity"]["identity"]["dlib-faceapi"] > 0.9  # no attack: the same faces
