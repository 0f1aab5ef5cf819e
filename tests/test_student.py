"""The student (obscrowd_lib.student) and its teacher-target cache (obscrowd_lib.distill_data).

Budget and mask exact at any size, a distillation step lowering the loss through the real FR
models, checkpoint save/resume, the teacher-target cache resuming, and the training script under
`accelerate launch` with two CPU processes (like diffusers' example tests).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from obscrowd_lib import distill_data as dd
from obscrowd_lib import student as S
from obscrowd_lib.faces import Face
from obscrowd_lib.teacher import TeacherConfig

ROOT = Path(__file__).resolve().parent.parent
TINY = S.StudentConfig(base_channels=4, depth=2, bottleneck_blocks=0, batch_size=2, identity_weight=0.0,
                       checkpoint_every=2, lr=1e-2)


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def _random_head(net: S.StudentNet, seed: int = 0) -> S.StudentNet:
    """An untrained student outputs δ = 0 (zero head); give it a random head so the budget is used."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.head.weight.copy_(torch.randn(net.head.weight.shape, generator=g) * 3)
    return net


@pytest.fixture(scope="module")
def synthetic_targets(tmp_path_factory):
    """A 4-item teacher-target folder of 32x32 random photos with one face box each (written by the library)."""
    root = tmp_path_factory.mktemp("targets")
    g = np.random.default_rng(0)
    dd.write_configs(root, dd.TargetConfig(size=32), TeacherConfig())
    lm = np.array([[12, 12], [20, 12], [16, 16], [13, 20], [19, 20]], np.float32)
    for i in range(4):
        img = g.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        mask = np.zeros((32, 32), np.float32)
        mask[8:24, 8:24] = 1
        delta = torch.from_numpy(g.uniform(-1, 1, (3, 32, 32)).astype(np.float32) * mask) * 8 / 255
        dd.save_target(root, i, img, [Face(box=(8, 8, 24, 24), landmarks=lm + i, score=1.0)], mask=mask, delta=delta)
    return root


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="eps_255"):
        S.StudentConfig(eps_255=0)
    with pytest.raises(ValueError, match="imitation"):
        S.StudentConfig(imitation="huber")
    with pytest.raises(ValueError, match="mixed_precision"):
        S.StudentConfig(mixed_precision="fp8")


def test_default_generator_is_compact():
    n = S.count_parameters(S.StudentNet())
    assert 0.5e6 < n <= 5e6, n


@pytest.mark.parametrize("hw", [(16, 16), (37, 53), (64, 31), (5, 7), (129, 96)])
def test_generator_respects_budget_and_mask_exactly(hw):
    h, w = hw
    g = torch.Generator().manual_seed(h * 1000 + w)
    net = _random_head(S.StudentNet(S.StudentConfig(base_channels=4, depth=3))).eval()
    photo = torch.rand(2, 3, h, w, generator=g)
    mask = torch.rand(2, 1, h, w, generator=g)
    mask[..., : h // 2, :] = 0
    with torch.no_grad():
        delta = net(photo, mask)
        half = net(photo, mask, eps_255=2.0)
        scaled = net(photo, mask, scale=0.6)
    eps = 8 / 255
    assert delta.shape == (2, 3, h, w)
    assert (delta.abs() <= mask * eps).all()  # exactly, no tolerance
    assert (delta[..., : h // 2, :] == 0).all()
    assert delta.abs().max() > 0.5 * eps  # the budget is actually used
    assert (half.abs() <= mask * (2 / 255)).all()
    assert scaled.shape == delta.shape and (scaled.abs() <= mask * eps).all()


def test_untrained_student_outputs_zero():
    net = S.StudentNet(S.StudentConfig(base_channels=4, depth=2))
    assert (net(torch.rand(1, 3, 20, 24), torch.ones(1, 1, 20, 24)) == 0).all()


@pytest.fixture(scope="module")
def scene():
    """The obama + biden composite at 96 px tiles, its detected faces and mask, two fast recognizers."""
    from obscrowd_lib import data
    from obscrowd_lib.faces import detect_faces
    from obscrowd_lib.io import to_tensor
    from obscrowd_lib.masks import face_masks
    from obscrowd_lib.teacher import load_teacher_models

    comp = data.make_composite([data.sample_path("obama.jpg"), data.sample_path("biden.jpg")], tile=96)
    faces = detect_faces(comp.image)
    assert faces, "no face found on the obama + biden composite"
    mask = torch.as_tensor(face_masks(comp.image.shape[:2], faces).union, dtype=torch.float32)
    tcfg = TeacherConfig(ensemble=("mobileface", "dlib-faceapi"), attacks=("identity", "blur-diff"))
    return {"x": to_tensor(comp.image), "faces": faces, "mask": mask, "tcfg": tcfg,
            "models": load_teacher_models(tcfg)}


def test_distillation_steps_lower_the_loss_on_a_fixed_batch(scene):
    """Imitation + the teacher's identity objective through real recognizers + fidelity: a few Adam
    steps on one fixed batch (fixed attack draws) lower the total loss, and each term is live."""
    x, mask = scene["x"], scene["mask"][None, None]
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(x.shape, generator=g) * 2 - 1) * mask * 8 / 255
    lm = [torch.as_tensor(np.stack([f.landmarks for f in scene["faces"]]), dtype=torch.float32)]
    cfg = S.StudentConfig(base_channels=8, depth=3, identity_weight=1.0, fidelity_weight=0.05)
    torch.manual_seed(0)
    net = S.StudentNet(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)

    def loss():  # the same attack draws (seed 7) every call: a fixed objective
        return S.distillation_loss(net(x, mask), x, mask, target, cfg, landmarks=lm, models=scene["models"],
                                   teacher_config=scene["tcfg"], seed=7)

    first = loss()
    assert np.isfinite([first.imitation, first.identity, first.fidelity]).all()
    assert float(first.loss.detach()) == pytest.approx(first.imitation + first.identity + 0.05 * first.fidelity,
                                                       abs=1e-5)
    # the identity term alone sends a gradient back to the perturbation
    d = torch.zeros_like(x, requires_grad=True)
    ident = S.distillation_loss(d, x, mask, target, replace(cfg, imitation_weight=0.0, fidelity_weight=0.0),
                                landmarks=lm, models=scene["models"], teacher_config=scene["tcfg"], seed=7)
    (grad,) = torch.autograd.grad(ident.loss, d)
    assert grad.abs().sum() > 0
    for _ in range(4):
        opt.zero_grad()
        v = loss()
        v.loss.backward()
        opt.step()
    last = loss()
    a, b = float(first.loss.detach()), float(last.loss.detach())
    assert b < a - 1e-4, (a, b)
    off = S.distillation_loss(net(x, mask), x, mask, target, cfg, landmarks=lm, models=scene["models"],
                              teacher_config=scene["tcfg"], identity=False)
    assert np.isnan(off.identity)


def test_checkpoint_save_and_resume_round_trip(synthetic_targets, tmp_path):
    full = S.train_student(synthetic_targets, tmp_path / "full", config=replace(TINY, steps=4), cpu=True,
                           progress=False)
    half = S.train_student(synthetic_targets, tmp_path / "half", config=replace(TINY, steps=4), cpu=True,
                           progress=False, stop_at=2)  # an interrupted run
    state = torch.load(half.checkpoint, weights_only=True)
    assert state["step"] == 2 and set(state) >= {"model", "optimizer", "config", "step"}
    loaded = S.load_student(half.checkpoint)
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, state["model"][k])
    resumed = S.train_student(synthetic_targets, tmp_path / "half", config=replace(TINY, steps=4), cpu=True,
                              progress=False)
    assert resumed.resumed_from == 2 and resumed.steps == 4 and len(resumed.history) == 4
    a, b = S.load_student(full.student).state_dict(), S.load_student(resumed.student).state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # same batches, same optimizer state: the same weights
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history])
    with pytest.raises(ValueError, match="base_channels"):
        S.train_student(synthetic_targets, tmp_path / "half", config=replace(TINY, steps=6, base_channels=8),
                        cpu=True, progress=False)


def test_protect_student_from_a_file(tmp_path):
    net = _random_head(S.StudentNet(S.StudentConfig(base_channels=4, depth=2, eps_255=6.0)))
    path = S.save_student(net, tmp_path / "student.pt", step=3)
    g = torch.Generator().manual_seed(1)
    photo = torch.rand(1, 3, 61, 77, generator=g)
    mask = torch.zeros(61, 77)
    mask[10:40, 20:50] = torch.rand(30, 30, generator=g)
    faces = [Face(box=(22.0, 12.0, 48.0, 38.0), landmarks=np.zeros((5, 2), np.float32), score=1.0)]
    r = S.protect_student(photo, faces, checkpoint=path, mask=mask)
    assert r.eps_255 == 6.0 and r.checkpoint == str(path)
    assert (r.delta.abs() <= mask * 6 / 255 + 1e-7).all() and (r.delta[0][:, mask == 0] == 0).all()
    assert r.protected.min() >= 0 and r.protected.max() <= 1
    assert r.budget_used_255 > 3
    d = S.predict_delta(photo, faces, mask, eps_255=2.0, path=path)
    assert d.abs().max() <= 2 / 255 + 1e-7
    net.face_px = 13.0  # trained on faces half this size: the generator runs on the region at scale 1/2
    r2 = S.protect_student(photo, faces, model=net, mask=mask)
    assert r2.scale == pytest.approx(0.5) and (r2.delta.abs() <= mask * 6 / 255 + 1e-7).all()
    assert S.load_student(S.save_student(net, tmp_path / "s2.pt")).face_px == 13.0
    with pytest.raises(FileNotFoundError, match="no such student"):
        S.find_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        S.load_student(tmp_path / "junk.pt")


def test_teacher_targets_are_cached_and_resumed(tmp_path):
    """Real detection and a 1-step teacher on a crop of a sample and of a photo of your own folder: a
    time-boxed call makes one item, the next completes the set without redoing it, and the dataset
    serves budget-respecting targets."""
    import shutil

    from obscrowd_lib import data

    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copyfile(data.sample_path("biden.jpg"), mine / "someone.jpg")
    cfg = dd.TargetConfig(samples=("obama.jpg",), photos_dir=str(mine), size=96, crops_per_photo=1, whole=False,
                          composites=0)
    tcfg = TeacherConfig(steps=1, ensemble=("mobileface",), attacks=("identity",), eps_255=8.0)
    folder = dd.build_targets(cfg, tcfg, root=tmp_path, progress=False, limit=1)
    assert folder.name == dd.targets_key(cfg, tcfg)
    assert [s.sources[0] for s in dd.load_plan(folder)] == ["obama.jpg", str((mine / "someone.jpg").resolve())]
    first = sorted((folder / "items").glob("*.pt"))
    assert len(first) == 1 and not (folder / "summary.json").exists()
    stamp = first[0].stat().st_mtime_ns
    dd.build_targets(cfg, tcfg, root=tmp_path, progress=False)
    assert first[0].stat().st_mtime_ns == stamp
    ds = dd.TargetDataset(folder)
    assert len(ds) == 2 and ds.eps_255 == 8.0
    for i in range(len(ds)):
        it = ds[i]
        assert it["photo"].shape == (3, 96, 96) and it["landmarks"].shape[1:] == (5, 2)
        assert (it["delta"].abs() <= it["mask"] * 8 / 255 + 1e-3).all()
    assert dd.summarize(folder)["items"] == 2 and (folder / "summary.json").is_file()
    (mine / "another.jpg").write_bytes((mine / "someone.jpg").read_bytes())
    assert dd.targets_key(cfg, tcfg) != folder.name  # a changed photo folder is a new target set


def test_command_line_options_map_to_the_configs():
    import argparse

    parser = argparse.ArgumentParser()
    S.add_train_arguments(parser)
    args = parser.parse_args(["--output-dir", "x", "--steps", "7", "--lr", "0.01", "--ensemble", "mobileface",
                              "--target-size", "64", "--target-scale-range", "1.5", "2", "--target-whole", "false",
                              "--teacher-steps", "3", "--teacher-attacks", "identity"])
    cfg = S.config_from_args(args)
    assert (cfg.steps, cfg.lr, cfg.ensemble, cfg.batch_size) == (7, 0.01, ("mobileface",), 8)
    tc = dd.target_config_from_args(args)
    assert (tc.size, tc.scale_range, tc.whole) == (64, (1.5, 2.0), False)
    teacher = dd.teacher_config_from_args(args, eps_255=6.0)
    assert (teacher.steps, teacher.attacks, teacher.eps_255, teacher.random_start) == (3, ("identity",), 6.0, False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_training_script_under_accelerate_launch_two_processes(synthetic_targets, tmp_path):
    """`accelerate launch` of scripts/train_student.py, two CPU processes, two steps, tiny model.

    accelerate 1.x's `--cpu --num_processes 2` starts ONE process (multi-CPU wants MPI); with the GPUs
    hidden, `--multi_gpu --num_processes 2` plus the script's own `--cpu` starts two gloo processes
    (DistributedType.MULTI_CPU), which is what this checks."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(ROOT / "scripts" / "train_student.py"),
           "--cpu", "--targets", str(synthetic_targets), "--output-dir", str(out), "--steps", "2",
           "--base-channels", "4", "--depth", "2", "--bottleneck-blocks", "0", "--batch-size", "1",
           "--identity-weight", "0", "--quiet"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout, proc.stdout
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and len(state["history"]) == 2
    assert S.load_student(out / "student.pt").config.base_channels == 4
    assert (out / "student_config.json").is_file() and (out / "history.json").is_file()
