"""The teacher and refinement (obscrowd_lib.teacher, obscrowd_lib.refine) on a small real 2-face photo.

A composite of obama.jpg and biden.jpg at 128 px tiles, two fast recognizers (mobileface,
dlib-faceapi), cheap attacks, a few steps: constraints exact, determinism by seed, early stop,
joint loss lowers every face's similarity, refinement's start and stop.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from obscrowd_lib import data
from obscrowd_lib.refine import refine
from obscrowd_lib.teacher import (
    TeacherConfig,
    load_teacher_models,
    margin,
    project,
    protect_teacher,
    step_size,
    teacher_objective,
)

ENSEMBLE = ("mobileface", "dlib-faceapi")  # two fast recognizers of different families
FAST = ("mobileface",)  # the fastest one, for the tests about mechanics


@pytest.fixture(scope="module")
def scene():
    from obscrowd_lib.faces import detect_faces
    from obscrowd_lib.io import to_tensor
    from obscrowd_lib.masks import face_masks

    torch.set_num_threads(2)
    comp = data.make_composite([data.sample_path("obama.jpg"), data.sample_path("biden.jpg")], tile=128)
    faces = detect_faces(comp.image)
    assert len(faces) == 2, f"expected the 2 faces of the composite, found {len(faces)}"
    mask = torch.as_tensor(face_masks(comp.image.shape[:2], faces).union, dtype=torch.float32)
    config = TeacherConfig(steps=4, ensemble=ENSEMBLE, attacks=("identity", "blur-diff"), step_size_255=2.0,
                           early_stop=False, seed=0)
    models = load_teacher_models(config)
    fast_config = replace(config, ensemble=FAST)
    fast = load_teacher_models(fast_config, ensemble=models.ensemble)  # shares the loaded networks
    return {"x": to_tensor(comp.image), "faces": faces, "mask": mask, "config": config, "models": models,
            "fast_config": fast_config, "fast": fast}


def _run(scene, models="fast", **changes):
    cfg = replace(scene["config" if models == "models" else "fast_config"], **changes)
    return protect_teacher(scene["x"], scene["faces"], config=cfg, mask=scene["mask"], models=scene[models],
                           progress=False)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="eps_255"):
        TeacherConfig(eps_255=0)
    with pytest.raises(ValueError, match="schedule"):
        TeacherConfig(schedule="exp")
    with pytest.raises(ValueError, match="ensemble_weights"):
        TeacherConfig(ensemble_weights=(1.0,))


def test_models_must_match_the_config(scene):
    other = replace(scene["fast_config"], attacks=("identity",))
    with pytest.raises(ValueError, match="another config"):
        protect_teacher(scene["x"], scene["faces"], config=other, mask=scene["mask"], models=scene["fast"],
                        progress=False)


def test_projection_enforces_budget_mask_and_range():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 3, 20, 30, generator=g)
    clean[..., :5, :5] = 1.0  # saturated pixels: only negative changes allowed
    mask = torch.rand(1, 1, 20, 30, generator=g)
    mask[..., 10:, :] = 0
    eps = 8 / 255
    d = project(torch.randn(1, 3, 20, 30, generator=g), clean, mask, eps)
    delta = mask * d
    assert delta.abs().max() <= eps + 1e-7
    assert (delta.abs() <= mask * eps + 1e-7).all()
    assert (delta[..., 10:, :] == 0).all()
    assert ((clean + delta) >= -1e-7).all() and ((clean + delta) <= 1 + 1e-7).all()


def test_step_size_schedules():
    cfg = TeacherConfig(step_size_255=2.0, final_step_fraction=0.25)
    for sched in ("constant", "linear", "cosine"):
        c = replace(cfg, schedule=sched)
        assert step_size(0, 10, c) == pytest.approx(2 / 255)
        assert step_size(9, 10, c) == pytest.approx(2 / 255 * (1 if sched == "constant" else 0.25))


def test_budget_and_mask_hold_exactly(scene):
    r = _run(scene, eps_255=4.0)
    eps = 4.0 / 255
    assert r.delta.abs().max() <= eps + 1e-6
    outside = scene["mask"] == 0
    assert outside.any()
    assert (r.delta[0][:, outside] == 0).all()
    assert (r.delta.abs() <= scene["mask"] * eps + 1e-6).all()
    assert r.protected.min() >= 0 and r.protected.max() <= 1
    assert torch.allclose(r.protected, scene["x"] + r.delta, atol=1e-6)
    assert r.budget_used_255 > 3.0  # the budget is actually used
    assert len(r.history) == r.steps == 4
    with torch.no_grad():  # similarities reported from the work region equal those on the whole photo
        full = scene["fast"].ensemble.similarities(scene["x"], r.protected, scene["faces"])
    assert np.allclose(r.per_face_similarity["mobileface"], full["mobileface"].numpy(), atol=2e-3)


def test_deterministic_by_seed(scene):
    a, b = _run(scene, steps=2), _run(scene, steps=2)
    assert torch.equal(a.delta, b.delta)
    c = _run(scene, steps=2, seed=1)
    assert not torch.equal(a.delta, c.delta)


def test_joint_loss_lowers_every_face_below_random_noise(scene):
    """After a few steps every face, on every model, is further from its clean self than with random noise."""
    r = _run(scene, models="models", steps=5)
    g = torch.Generator().manual_seed(3)
    eps = r.config.eps_255 / 255
    noise = scene["mask"] * (2 * torch.randint(0, 2, scene["x"].shape, generator=g).float() - 1) * eps
    noisy = (scene["x"] + noise).clamp(0, 1)
    with torch.no_grad():
        base = scene["models"].ensemble.similarities(scene["x"], noisy, scene["faces"])
    for name in ENSEMBLE:
        after = r.per_face_similarity[name]
        assert len(after) == 2
        for i in range(2):
            assert after[i] < float(base[name][i]) - 0.01, (name, i, after[i], float(base[name][i]))
    losses = [h["loss"] for h in r.history]
    assert losses[-1] < losses[0]


def test_early_stop_triggers_when_every_face_is_protected(scene):
    # thresholds just under the clean similarity (1.0): reachable in a few steps, then the run must stop
    models = replace(scene["fast"], thresholds={n: 0.97 for n in FAST})
    cfg = replace(scene["fast_config"], steps=30, early_stop=True, stop_margin=0.0, stop_patience=1)
    seen = []
    r = protect_teacher(scene["x"], scene["faces"], config=cfg, mask=scene["mask"], models=models, progress=False,
                        callback=seen.append)
    assert r.stopped_early and r.steps < 30
    assert len(seen) == r.steps
    assert all(r.protected_faces)
    assert all(v < 0.97 for vs in r.per_face_similarity.values() for v in vs)


def test_objective_is_the_worst_face_soft_max(scene):
    """Lowering the temperature moves the identity term toward the largest (model, face) margin."""
    from obscrowd_lib.attacks import AttackSampler, make_attack
    from obscrowd_lib.teacher import make_reference

    models = scene["models"]  # two models x two faces: four margins
    x, faces = scene["x"], scene["faces"]
    lm = torch.as_tensor(np.stack([f.landmarks for f in faces]), dtype=torch.float32)
    ref = make_reference(x, lm, models)
    protected = (x + 0.02 * scene["mask"]).clamp(0, 1)
    values = {}
    for tau in (1.0, 0.001):
        cfg = replace(scene["config"], temperature=tau, resize_range=(1.0, 1.0), landmark_jitter_px=0.0)
        sampler = AttackSampler([make_attack("identity")])
        with torch.no_grad():
            v = teacher_objective(protected, ref, models, cfg, sampler=sampler, generator=torch.Generator())
        values[tau] = v
    thr = torch.tensor([models.thresholds[n] for n in models.names])[:, None]
    assert values[0.001].identity == pytest.approx(float(margin(values[0.001].similarities[0], thr).max()), abs=0.01)
    margins = margin(values[1.0].similarities[0], thr)
    # weights 1/(M N) sum to 1: the soft maximum lies between the mean margin and the largest one
    assert float(margins.mean()) - 1e-5 <= values[1.0].identity <= float(margins.max()) + 1e-5


def test_refine_stops_at_once_when_already_protected_and_improves_from_zero(scene):
    start = _run(scene, steps=1).delta
    loose = replace(scene["fast"], thresholds={n: 0.999 for n in FAST})  # every perturbed face counts as protected
    r0 = refine(scene["x"], start, scene["faces"], config=scene["fast_config"], steps=5, mask=scene["mask"],
                models=loose, progress=False)
    assert r0.steps == 0 and r0.stopped_early
    assert torch.allclose(r0.delta, start, atol=1e-6)

    rz = refine(scene["x"], None, scene["faces"], config=scene["fast_config"], steps=3, mask=scene["mask"],
                models=scene["fast"], progress=False)
    assert rz.steps == 3
    assert rz.delta.abs().max() <= scene["fast_config"].eps_255 / 255 + 1e-6
    assert (rz.delta[0][:, scene["mask"] == 0] == 0).all()
    assert max(rz.per_face_similarity["mobileface"]) < 0.99


def test_refine_confines_a_foreign_start_to_mask_and_budget(scene):
    big = torch.full_like(scene["x"], 0.5)  # far outside the budget and the mask
    r = refine(scene["x"], big, scene["faces"], config=scene["fast_config"], steps=0, mask=scene["mask"],
               models=scene["fast"], progress=False)
    eps = scene["fast_config"].eps_255 / 255
    assert r.delta.abs().max() <= eps + 1e-6
    assert (r.delta[0][:, scene["mask"] == 0] == 0).all()
