"""Imperceptibility metrics (obscrowd_lib.metrics) and the LPIPS / DISTS ports (obscrowd_lib.formats.lpips_jax)."""

from __future__ import annotations

import math
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from obscrowd_lib import metrics
from obscrowd_lib.formats import lpips_jax

FIXTURES = Path(__file__).parent / "fixtures" / "metric_reference"


def _image(name: str) -> torch.Tensor:
    from PIL import Image

    arr = np.array(Image.open(FIXTURES / name).convert("RGB"))
    return torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255


def _grey(size: int = 64) -> torch.Tensor:
    return torch.full((1, 3, size, size), 0.5)


def _box_mask(size: int, top: int, left: int, bottom: int, right: int) -> torch.Tensor:
    m = torch.zeros(size, size)
    m[top:bottom, left:right] = 1
    return m


# ---------------------------------------------------------------- pixel metrics (no weights)


def test_psnr_of_known_gaussian_noise():
    gen = torch.Generator().manual_seed(0)
    x = _grey(128)
    y = (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    # MSE = sigma^2 = 0.0025 -> 10 log10(400) = 26.02 dB
    assert metrics.psnr(x, y).item() == pytest.approx(26.02, abs=0.1)
    # a soft mask of constant weight is the same average
    assert metrics.psnr(x, y, torch.full((128, 128), 0.3)).item() == pytest.approx(metrics.psnr(x, y).item(), abs=1e-4)


def test_identical_images():
    x = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(40, 48)
    mask[5:30, 10:40] = 1
    assert torch.isinf(metrics.psnr(x, x)).all() and torch.isinf(metrics.psnr(x, x, mask)).all()
    assert torch.allclose(metrics.ssim(x, x), torch.ones(2), atol=1e-5)
    assert torch.allclose(metrics.ssim(x, x, mask), torch.ones(2), atol=1e-5)
    assert (metrics.linf_255(x, x) == 0).all() and (metrics.linf_255(x, x, mask) == 0).all()


def test_masked_metrics_ignore_pixels_outside_the_mask():
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 64, 64, generator=gen)
    mask = _box_mask(64, 16, 20, 48, 52)
    inside_noise = 0.03 * torch.randn(x.shape, generator=gen) * mask
    y1 = (x + inside_noise).clamp(0, 1)
    y2 = torch.where(mask.bool(), y1, 1 - x)  # wildly different outside the mask
    for fn in (metrics.psnr, metrics.ssim, metrics.linf_255):
        assert fn(x, y1, mask).item() == pytest.approx(fn(x, y2, mask).item(), rel=1e-5), fn.__name__
        assert fn(x, y1).item() != pytest.approx(fn(x, y2).item(), rel=1e-2), fn.__name__
    # and only outside the mask: masked metrics see identical images
    y3 = torch.where(mask.bool(), x, 1 - x)
    assert math.isinf(metrics.psnr(x, y3, mask).item())
    assert metrics.ssim(x, y3, mask).item() == pytest.approx(1.0, abs=1e-5)
    assert metrics.linf_255(x, y3, mask).item() == 0


def test_linf_is_in_255_units():
    x = torch.zeros(1, 3, 16, 16)
    y = x.clone()
    y[0, 1, 2, 3] = 1.0  # a full-scale step: exactly 255
    y[0, 0, 10, 10] = 3 / 255
    assert metrics.linf_255(x, y).item() == 255.0
    mask = _box_mask(16, 8, 8, 16, 16)  # contains (10, 10) only
    assert metrics.linf_255(x, y, mask).item() == pytest.approx(3.0, abs=1e-4)


def test_mask_box_grows_to_min_size_and_stays_inside():
    m = _box_mask(100, 10, 40, 20, 50)  # 10x10 face
    top, left, bottom, right = metrics.mask_box(m, min_size=32)
    assert (bottom - top, right - left) == (32, 32)
    assert top <= 10 and bottom >= 20 and left <= 40 and right >= 50
    edge = _box_mask(100, 0, 95, 5, 100)  # at the corner: clamped, still 32 px
    assert metrics.mask_box(edge[None, None], min_size=32) == (0, 68, 32, 100)
    big = _box_mask(100, 10, 20, 70, 90)
    assert metrics.mask_box(big) == (10, 20, 70, 90)


def test_bad_inputs_raise_clear_errors():
    x = _grey(32)
    with pytest.raises(ValueError, match="empty"):
        metrics.psnr(x, x, torch.zeros(32, 32))
    with pytest.raises(ValueError, match="does not fit"):
        metrics.ssim(x, x, torch.ones(16, 16))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.psnr(x, x, torch.full((32, 32), 2.0))
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(x, _grey(16))
    with pytest.raises(ValueError, match="unknown metrics"):
        metrics.imperceptibility(x, x, metrics=("psnr", "fid"))


def test_array_unpickler_accepts_arrays_and_refuses_other_globals(tmp_path):
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"Net_0": {"Conv_0": {"kernel": np.ones((1, 1, 2, 3), np.float32)}}}))
    arrays = lpips_jax.load_arrays(good)
    assert list(arrays) == ["Net_0/Conv_0/kernel"] and arrays["Net_0/Conv_0/kernel"].shape == (1, 1, 2, 3)
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"a": Path("/etc/passwd")}))  # needs the pathlib global
    with pytest.raises(ValueError, match="evil.ckpt.*not allowed"):
        lpips_jax.load_arrays(evil)
    wrong = tmp_path / "float64.ckpt"
    wrong.write_bytes(pickle.dumps({"a": np.ones(3)}))
    with pytest.raises(ValueError, match="float64"):
        lpips_jax.load_arrays(wrong)


# ---------------------------------------------------------------- learned metrics (fetched weights)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """A MetricSuite with LPIPS-alex/vgg and DISTS loaded while every network access raises."""

    def no_network(*args, **kwargs):
        raise RuntimeError("a metric loader tried to use the network")

    torch_home = tmp_path_factory.mktemp("torch_home")
    s = metrics.MetricSuite()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(torch_home))
        mp.setattr(socket.socket, "connect", no_network)
        mp.setattr(socket, "create_connection", no_network)
        mp.setattr(torch.hub, "load_state_dict_from_url", no_network)
        mp.setattr(torch.hub, "download_url_to_file", no_network)
        for name in metrics.PERCEPTUAL:
            s.model(name)
    s.torch_home = torch_home
    return s


@pytest.mark.slow
def test_loaders_download_nothing(suite):
    assert list(suite.torch_home.iterdir()) == []  # nothing cached by torchvision / torch.hub
    assert suite.model("lpips-alex") is suite.model("lpips-alex", device="cpu")  # cached per (name, device)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "expected"), [("lpips-alex", (0.722, 0.138)), ("lpips-vgg", (0.569, 0.422))])
def test_lpips_reference_values(suite, name, expected):
    ref, p0, p1 = _image("imgs_ex_ref.png"), _image("imgs_ex_p0.png"), _image("imgs_ex_p1.png")
    with torch.no_grad():
        d = suite.model(name)(torch.cat([ref, ref]), torch.cat([p0, p1]))
    assert d.shape == (2,)
    assert d.tolist() == pytest.approx(expected, abs=0.002)


@pytest.mark.slow
def test_dists_reference_value(suite):
    with torch.no_grad():
        d = suite.model("dists")(_image("dists_r0.png"), _image("dists_r1.png"))
    assert d.shape == (1,)
    assert d.item() == pytest.approx(0.3347, abs=0.002)


@pytest.mark.slow
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_jax_heads_equal_the_lpips_package_heads(net):
    import lpips

    from obscrowd_lib import zoo

    (path,) = zoo.entry_files(f"lpips-{net}")
    heads = lpips_jax.lpips_heads(lpips_jax.load_arrays(path), path)
    pth = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    official = torch.load(pth, map_location="cpu", weights_only=True)
    for k, head in enumerate(heads):
        assert torch.equal(head, official[f"lin{k}.model.1.weight"]), f"head {k}"


@pytest.mark.slow
def test_learned_metrics_are_zero_for_identical_images_and_differentiable(suite):
    x = _image("imgs_ex_ref.png")
    for name in metrics.PERCEPTUAL:
        assert suite.perceptual(name, x, x).item() == pytest.approx(0.0, abs=1e-5), name
        y = _image("imgs_ex_p1.png").requires_grad_(True)
        suite.perceptual(name, x, y).sum().backward()
        assert y.grad is not None and y.grad.abs().sum() > 0, name


@pytest.mark.slow
def test_imperceptibility_report(suite):
    clean, protected = _image("imgs_ex_ref.png"), _image("imgs_ex_p1.png")
    mask = _box_mask(64, 8, 12, 48, 52)
    report = metrics.imperceptibility(clean[0], protected[0], mask=mask, suite=suite)
    assert set(report) == {n + s for n in metrics.METRICS for s in ("", "_mask")}
    assert report["lpips-alex"] == pytest.approx(0.138, abs=0.002)
    assert report["lpips-vgg"] == pytest.approx(0.422, abs=0.002)
    assert report["psnr"] == pytest.approx(metrics.psnr(clean, protected).item())
    # changing pixels outside the mask's box moves the whole-photo figures, not the masked ones
    tampered = protected.clone()
    tampered[..., :6, :] = 1 - tampered[..., :6, :]
    again = metrics.imperceptibility(clean, tampered, mask=mask[None, None], suite=suite)
    for name in metrics.METRICS:
        assert again[name + "_mask"] == pytest.approx(report[name + "_mask"], rel=1e-4, abs=1e-6), name
        assert again[name] != pytest.approx(report[name], rel=1e-3), name
    same = metrics.imperceptibility(clean, clean, mask=mask, metrics=("psnr", "ssim", "lpips-alex"), suite=suite)
    assert math.isinf(same["psnr"]) and same["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert same["lpips-alex"] == pytest.approx(0.0, abs=1e-6)
