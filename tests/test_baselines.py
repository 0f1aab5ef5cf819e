"""Baselines (obscrowd_lib.baselines): each stays within its budget and does what its objective says,
on a small real two-face photo; the SD-VAE baselines run with a tiny randomly initialised VAE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from obscrowd_lib import baselines as B

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

EPS = 8.0
ENSEMBLE = ("faceres-deep", "mobileface", "arcface-faceplugin")


@pytest.fixture(scope="module")
def photo_and_faces():
    from obscrowd_lib import data
    from obscrowd_lib.faces import detect_faces
    from obscrowd_lib.io import load_image

    obama, biden = load_image(data.sample_path("obama.jpg")), load_image(data.sample_path("biden.jpg"))
    # square crops around the heads of the two portraits, side by side: a two-face photo
    comp = data.make_composite([obama[0:700, 140:840], biden[0:850, 120:970]], tile=128, gap=16)
    faces = detect_faces(comp.image)
    assert len(faces) == 2
    x = torch.from_numpy(comp.image).permute(2, 0, 1)[None].float() / 255
    return x, faces


@pytest.fixture(scope="module")
def models():
    from obscrowd_lib.teacher import TeacherConfig, load_teacher_models

    # the three cheapest differentiable recognizers keep the file fast (the method does not depend on which)
    return load_teacher_models(TeacherConfig(ensemble=ENSEMBLE, attacks=("identity",), diffusion_guidance="off"))


@pytest.fixture(scope="module")
def tiny_vae():
    from diffusers import AutoencoderKL

    with torch.random.fork_rng():
        torch.manual_seed(0)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                            block_out_channels=(8, 16), norm_num_groups=4,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    return vae.eval().requires_grad_(False)


def _white_box(models, x, prot, faces) -> float:
    """Mean cosine clean vs protected over the training ensemble and the faces (no attack)."""
    with torch.no_grad():
        s = models.ensemble.similarities(x, prot, list(faces))
    return float(torch.stack([s[n] for n in models.names]).mean())


def _random_noise(x, eps_255: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (x + (2 * torch.rand(x.shape, generator=g) - 1) * eps_255 / 255).clamp(0, 1)


def test_none_and_bad_arguments(photo_and_faces):
    x, faces = photo_and_faces
    r = B.protect_baseline("none", x, faces)
    assert torch.equal(r.protected, x) and r.budget_used_255 == 0 and r.eps_255 == 0
    with pytest.raises(KeyError, match="unknown baseline"):
        B.protect_baseline("nope", x, faces)
    with pytest.raises(ValueError, match="eps_255"):
        B.protect_baseline("facelock", x, faces, eps_255=0)


@pytest.mark.parametrize("name", ["blur", "pixelate"])
def test_classical_anonymisation_changes_only_the_faces_and_breaks_recognition(photo_and_faces, models, name):
    x, faces = photo_and_faces
    r = B.protect_baseline(name, x, faces)
    assert r.eps_255 is None  # not budget-bound
    inside = torch.zeros(x.shape[-2:], dtype=torch.bool)
    for f in faces:
        x0, y0, x1, y1 = B._grown_box(f, B.BaselineConfig().box_margin, *x.shape[-2:])
        inside[y0:y1, x0:x1] = True
    assert (r.delta[..., ~inside] == 0).all() and r.delta[..., inside].abs().max() > 0.1
    assert _white_box(models, x, r.protected, faces) < _white_box(models, x, _random_noise(x, EPS), faces) - 0.2


def test_facelock_stays_in_budget_and_beats_random_noise(photo_and_faces, models):
    x, faces = photo_and_faces
    r = B.protect_baseline("facelock", x, faces, eps_255=EPS, steps=6, models=models, progress=False)
    assert r.budget_used_255 <= EPS + 1e-3 and 0 <= r.protected.min() and r.protected.max() <= 1
    assert "waifu2x" in r.notes and len(r.history) == 6
    assert [h["cos"] for h in r.history][-1] < r.history[0]["cos"]  # the FR term (on from step 3) bites
    assert _white_box(models, x, r.protected, faces) < _white_box(models, x, _random_noise(x, EPS), faces) - 0.02


def test_per_face_stays_in_budget_and_protects_each_face(photo_and_faces, models):
    from obscrowd_lib.teacher import TeacherConfig

    x, faces = photo_and_faces
    cfg = TeacherConfig(steps=3, ensemble=ENSEMBLE, attacks=("identity",), early_stop=False,
                        diffusion_guidance="off")
    r = B.protect_baseline("per-face", x, faces, eps_255=EPS, models=models, teacher_config=cfg, progress=False)
    assert r.budget_used_255 <= EPS + 1e-3
    assert r.extra["per_face_steps"] == [3, 3] and len(r.extra["per_face_seconds"]) == 2
    with torch.no_grad():
        s = models.ensemble.similarities(x, r.protected, list(faces))
        noise = models.ensemble.similarities(x, _random_noise(x, EPS), list(faces))
    per_face = torch.stack([s[n] for n in models.names]).mean(0)
    per_face_noise = torch.stack([noise[n] for n in models.names]).mean(0)
    assert (per_face < per_face_noise - 0.02).all()


def _latent_norm(vae, x):
    from obscrowd_lib.teacher import vae_latent

    with torch.no_grad():
        return float(vae_latent(vae, x).norm())


@pytest.mark.parametrize("name", B.NEEDS_VAE)
def test_vae_baselines_with_a_tiny_vae(photo_and_faces, tiny_vae, name):
    x, faces = photo_and_faces
    x = x[..., :64, :96]  # the VAE baselines attack the whole photo: keep it tiny
    r = B.protect_baseline(name, x, faces, eps_255=EPS, steps=5, vae=tiny_vae, progress=False)
    assert r.budget_used_255 <= EPS + 1e-3 and r.budget_used_255 > 0.5
    if name == "photoguard":  # latent pulled towards zero
        assert _latent_norm(tiny_vae, r.protected) < _latent_norm(tiny_vae, _random_noise(x, EPS))
    elif name == "cw-l2":  # Adam descends ||x'-x||^2 + c ||E(x')||
        assert r.history[-1]["objective"] < r.history[0]["objective"]
    else:  # sign-PGD ascends its objective
        assert r.history[-1]["objective"] > r.history[0]["objective"]


def test_facelock_uses_the_vae_when_given(photo_and_faces, tiny_vae, models):
    x, faces = photo_and_faces
    x, faces = x[..., :112, :128], faces[:1]  # the first face only, on a small crop
    r = B.protect_baseline("facelock", x, faces, eps_255=4.0, steps=2, vae=tiny_vae, models=models, progress=False)
    assert "SD VAE" in r.notes and r.budget_used_255 <= 4.0 + 1e-3
    assert np.isfinite([h["latent"] for h in r.history]).all()


def test_vae_baselines_say_what_is_missing(photo_and_faces):
    from obscrowd_lib import zoo

    if zoo.is_available("sd-vae"):
        pytest.skip("an SD VAE is registered on this machine")
    x, faces = photo_and_faces
    assert "photoguard" not in B.available_baselines() and "facelock" in B.available_baselines()
    with pytest.raises(zoo.ModelNotAvailable, match="sd-vae"):
        B.protect_baseline("photoguard", x, faces, steps=1, progress=False)
