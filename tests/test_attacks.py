"""Attacks: processing and learned regeneration (shape, range, size, determinism, gradients, real vs
differentiable twins), chains, the expectation-over-transformation sampler and the registry.

The diffusers editors are tested in tests/test_editors.py with tiny random models.
"""

import json

import numpy as np
import pytest
import torch

from obscrowd_lib import artifacts, zoo
from obscrowd_lib import attacks as A

NON_EDITORS = [n for n, s in A.ATTACKS.items() if s.kind != "editor"]
RANDOM = {"noise", "rotate", "crop", "color-jitter"}
# regenerators load fetched weights: marked slow (deselect with -m "not slow")
CASES = [pytest.param(n, marks=pytest.mark.slow) if A.ATTACKS[n].needs else n for n in NON_EDITORS]


@pytest.fixture(scope="module")
def photo():
    """(2, 3, 50, 66) in [0, 1], 8-bit exact: two crops of skimage's astronaut (sizes not multiples of 4)."""
    from PIL import Image

    path = artifacts.fetch("scikit-image") / "skimage" / "data" / "astronaut.png"
    im = Image.open(path).convert("RGB")
    crops = [im.crop((150, 20, 350, 170)).resize((66, 50), Image.BICUBIC), im.crop((0, 300, 264, 500)).resize((66, 50))]
    return A.from_uint8([np.asarray(c) for c in crops], torch.zeros(1))


@pytest.fixture(scope="module")
def big():
    """(1, 3, 256, 256) astronaut, 8-bit exact: for the real-vs-differentiable comparisons."""
    from PIL import Image

    im = Image.open(artifacts.fetch("scikit-image") / "skimage" / "data" / "astronaut.png").convert("RGB")
    return A.from_uint8([np.asarray(im.resize((256, 256), Image.BICUBIC))], torch.zeros(1))


@pytest.fixture(scope="module")
def built():
    """Registry attacks built once, on first use (regenerators load their real weights)."""

    class Built(dict):
        def __missing__(self, name):
            self[name] = A.make_attack(name)
            return self[name]

    return Built()


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def _batch(name, photo):
    """Real-ESRGAN is the costly one (~1.5 s per 50x66 image on one core): one image is enough for it."""
    return photo[:1] if "realesrgan" in name else photo


@pytest.mark.parametrize("name", CASES)
def test_shape_range_size_and_gradient_flag(name, built, photo):
    a, spec, photo = built[name], A.ATTACKS[name], _batch(name, photo)
    assert (a.name, a.differentiable, tuple(a.needs)) == (name, spec.differentiable, spec.needs)
    x = photo.clone().requires_grad_(True)
    out = a(x)
    assert out.shape == photo.shape and out.dtype == photo.dtype
    o = out.detach()
    assert float(o.min()) >= 0 and float(o.max()) <= 1 and torch.isfinite(o).all()
    if name != "identity":
        assert (o - photo).abs().mean() > 1e-3  # it does edit
    json.dumps(a.describe())
    if not a.differentiable:  # evaluation attacks: no gradient pretends to flow
        assert not out.requires_grad
        return
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    (out * w).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().mean() > 1e-4


@pytest.mark.parametrize("name", CASES)
def test_rebuild_from_description(name, built):
    a = built[name]
    kw = {"net": a.net} if isinstance(a, A.Regenerate) else {}  # share the loaded network
    b = A.make_attack(a.name, seed=a.seed, **a.params, **kw)
    assert b.describe() == a.describe()


@pytest.mark.parametrize("name", CASES)
def test_same_seed_same_output(name, built, photo):
    a, photo = built[name], _batch(name, photo)
    assert torch.equal(a(photo), a(photo))
    if name in RANDOM:
        assert torch.equal(a(photo, seed=7), A.make_attack(name, seed=7)(photo))
        assert not torch.equal(a(photo, seed=1), a(photo, seed=2))
        # images of a batch draw their own randomness
        twins = photo[:1].expand(2, -1, -1, -1)
        out = a(twins)
        assert not torch.equal(out[0], out[1])


def _mad(a, b):
    return float((a - b).abs().mean())


@pytest.mark.parametrize("base, bound", [("jpeg", 0.0075), ("resize", 0.0025), ("blur", 0.002),
                                         pytest.param("regen-waifu2x-photo", 0.004, marks=pytest.mark.slow)])
def test_differentiable_twin_matches_real(base, bound, big, record_property):
    """Mean absolute difference between a differentiable attack and its real (evaluation) twin on a
    256 px photo; the real attack's own change of the photo is printed for scale."""
    real, diff = A.make_attack(base), A.make_attack(base + "-diff")
    r, d = real(big), diff(big)
    gap, effect = _mad(d, r), _mad(r, big)
    record_property(f"{base}_mad_diff_vs_real", gap)
    print(f"\n{base}: MAD(diff, real) = {gap:.5f}; MAD(real, photo) = {effect:.5f}")
    assert gap < bound and gap < 0.5 * effect


@pytest.mark.slow
def test_realesrgan_twin_matches_real(photo, built):
    """Real-ESRGAN at the small test size (a 256 px comparison costs ~30 s on one core)."""
    x = photo[:1]
    gap = _mad(built["regen-realesrgan-x4plus"](x), built["regen-realesrgan-x4plus-diff"](x))
    print(f"\nregen-realesrgan-x4plus: MAD(diff, real) = {gap:.5f} at 50x66")
    assert gap < 0.006


def test_neutral_parameters_leave_the_photo(photo):
    assert torch.allclose(A.make_attack("rotate", max_degrees=0.0)(photo), photo, atol=1e-5)
    assert torch.equal(A.make_attack("crop", keep=1.0)(photo), photo)
    assert torch.equal(A.make_attack("noise", sigma=0.0)(photo), photo)
    assert torch.allclose(A.make_attack("color-jitter", brightness=0, contrast=0, saturation=0, hue=0)(photo),
                          photo, atol=1e-4)
    assert torch.equal(A.make_attack("resize", scale=1.0)(photo), photo)


def test_rotation_hides_the_corners():
    """A photo black at its border rotated by +-10 degrees: the zoom must keep every border pixel out."""
    x = torch.zeros(4, 3, 60, 90)
    x[..., 1:-1, 1:-1] = 1.0
    out = A.make_attack("rotate", max_degrees=10.0)(x)
    inner = out[..., 3:-3, 3:-3]
    assert float(inner.min()) > 0.99


def test_chain_applies_in_order_and_composes_flags(photo):
    noise, jpeg = A.make_attack("noise", seed=3), A.make_attack("jpeg", quality=50)
    chain = A.Chain([noise, jpeg])
    assert chain.name == "noise+jpeg" and not chain.differentiable
    assert torch.equal(chain(photo), jpeg(noise(photo)))
    assert torch.equal(chain(photo, seed=5), chain(photo, seed=5))
    assert torch.equal(chain(photo, seed=5), jpeg(noise(photo, seed=A.subseed(5, 0))))
    assert A.Chain([noise, A.make_attack("blur-diff")]).differentiable
    json.dumps(chain.describe())


def test_sampler_is_reproducible_and_follows_weights(photo):
    pool = [A.make_attack(n) for n in ("identity", "noise", "jpeg-diff")]
    s1, s2 = A.AttackSampler(pool, [1, 2, 1], seed=11), A.AttackSampler(pool, [1, 2, 1], seed=11)
    outs1, outs2 = [], []
    for _ in range(4):
        outs1.append((s1(photo), s1.last))
        outs2.append((s2(photo), s2.last))
    assert [o[1] for o in outs1] == [o[1] for o in outs2]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(outs1, outs2))
    assert s1.differentiable
    s1.reset()
    assert (s1(photo), s1.last)[1] == outs1[0][1]
    counts = {"identity": 0, "noise": 0, "jpeg-diff": 0}
    for _ in range(800):
        counts[s1.sample()[0].name] += 1
    assert abs(counts["noise"] / 800 - 0.5) < 0.06 and abs(counts["identity"] / 800 - 0.25) < 0.06
    only = A.AttackSampler(pool, [0, 0, 1], seed=0)
    assert {only.sample()[0].name for _ in range(20)} == {"jpeg-diff"}
    for bad in ([1, 1], [-1, 1, 1], [0, 0, 0], [float("nan"), 1, 1]):
        with pytest.raises(ValueError):
            A.AttackSampler(pool, bad)


def test_straight_through_forward_real_backward_identity(photo):
    real = A.make_attack("jpeg", quality=50)
    ste = A.StraightThrough(real)
    x = photo.clone().requires_grad_(True)
    out = ste(x)
    assert ste.name == "jpeg-ste" and ste.differentiable
    assert torch.allclose(out, real(photo), atol=1e-6)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * w).sum().backward()
    assert torch.equal(x.grad, w)


def test_bad_photo_is_named():
    a = A.make_attack("blur")
    for bad, what in [(torch.rand(3, 8, 8), "shape"), (torch.rand(1, 1, 8, 8), "shape"),
                      (torch.rand(1, 3, 8, 8) * 255, r"\[0, 1\]"),
                      (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "float"),
                      (np.zeros((1, 3, 8, 8)), "torch.Tensor")]:
        with pytest.raises(ValueError, match=what):
            a(bad)
    with pytest.raises(ValueError, match="blur"):
        a(torch.rand(2, 3, 8))


def test_registry_errors_and_listing(tmp_path, monkeypatch):
    with pytest.raises(KeyError, match="unknown attack"):
        A.make_attack("jpg")
    with pytest.raises(TypeError, match="quality"):
        A.make_attack("blur", quality=3)
    with pytest.raises(TypeError):
        A.make_attack("jpeg", differentiable=True)  # the twin has its own name
    with pytest.raises(TypeError, match="fixed by the name"):
        A.make_attack("regen-waifu2x-photo", model="realesrgan-x4plus")
    with pytest.raises(ValueError, match="quality"):
        A.make_attack("jpeg", quality=0)
    monkeypatch.setenv("OBSCROWD_HOME", str(tmp_path))
    for n in ("INSTRUCT_PIX2PIX", "SD_IMG2IMG", "SD_VAE"):
        monkeypatch.delenv(f"OBSCROWD_{n}", raising=False)
    listing = A.list_attacks()
    json.dumps(listing)
    assert [d["name"] for d in listing] == list(A.ATTACKS)
    by = {d["name"]: d for d in listing}
    assert by["jpeg"]["params"] == {"quality": 75} and not by["jpeg"]["differentiable"]
    assert by["jpeg-diff"]["differentiable"] and by["noise"]["available"]
    assert not by["pix2pix"]["available"] and by["pix2pix"]["needs"] == ["instruct-pix2pix"]
    assert by["regen-waifu2x-photo"]["needs"] == ["waifu2x-photo"]


def test_prompt_sets():
    assert len(A.prompt_set("facelock")) == 25
    assert [len(A.prompt_set(f"facelock-{g}")) for g in ("face", "accessories", "background")] == [10, 8, 7]
    assert A.prompt_set("facelock")[13] == "Let the person wear sunglasses"
    assert all("smile" in p or "laugh" in p for p in A.prompt_set("smile"))
    with pytest.raises(KeyError):
        A.prompt_set("nope")


def test_regenerator_name_must_be_a_regenerator():
    with pytest.raises(ValueError, match="not a zoo regenerator"):
        A.Regenerate(model="lpips-alex")
    assert zoo.get_entry("waifu2x-photo").kind == "regenerator"
