"""ncnn parser and torch port of the regeneration models, checked against ncnn's own CPU output.

The references in tests/fixtures/ncnn_*.npz were computed once with the real ``ncnn`` package by
tests/fixtures/ncnn_make_fixtures.py (ncnn is not a dependency of the project).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from obscrowd_lib import zoo
from obscrowd_lib.formats import ncnn

FIX = Path(__file__).parent / "fixtures"
LAYERS_PARAM = FIX / "ncnn_layers.param"
LAYERS_BIN = FIX / "ncnn_layers.bin"
ATOL = 2e-5  # ncnn vs torch fp32: measured up to 5.7e-6 on Real-ESRGAN, 1.4e-6 on waifu2x


def _u8_to_batch(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32) / 255.0)[None]


# ------------------------------------------------------------------ parser


def test_parse_param_reads_layers_and_array_params():
    g = ncnn.parse_param(LAYERS_PARAM)
    assert len(g.layers) == 30 and g.blob_count == 40
    by_name = {layer.name: layer for layer in g.layers}
    c1 = by_name["c1"]
    assert (c1.type, c1.inputs, c1.outputs) == ("Convolution", ("data",), ("c1",))
    assert c1.params[0] == 8 and isinstance(c1.params[0], int)
    assert c1.params[10] == pytest.approx((0.1,))  # -23310=1,0.1 -> array param id 10
    assert by_name["sum1"].params[1] == pytest.approx((0.5, -1.0))
    assert by_name["rsubs"].params[2] == pytest.approx(0.7) and isinstance(by_name["rsubs"].params[2], float)
    assert by_name["sp1"].outputs == ("a", "b", "c", "d", "e")


@pytest.mark.parametrize("text, message", [
    ("7767518\n1 1\nInput in 0 1 data\n", "magic"),
    ("7767517\n2 1\nInput in 0 1 data\n", "header says 2 layers"),
    ("7767517\n2 2\nInput in 0 1 data\nReLU r 1 1 nothing out\n", "before any layer writes it"),
    ("7767517\n1 1\nInput in 0 1 data 0=abc\n", "cannot read parameter value"),
    ("7767517\n1 1\nInput in 0 1 data -23310=3,1.0,2.0\n", "declares 3 values"),
])
def test_parse_param_rejects_bad_files_naming_them(tmp_path, text, message):
    p = tmp_path / "bad.param"
    p.write_text(text)
    with pytest.raises(ncnn.NcnnFormatError, match=message) as e:
        ncnn.parse_param(p)
    assert str(p) in str(e.value)


def _reader(tmp_path, data: bytes) -> ncnn._BinReader:
    p = tmp_path / "w.bin"
    p.write_bytes(data)
    return ncnn._BinReader(p)


def test_bin_weight_encodings(tmp_path):
    w = np.array([0.5, -1.25, 3.0], np.float32)
    fp16 = struct.pack("<I", 0x01306B47) + w.astype("<f2").tobytes() + b"\0\0"  # 6 bytes padded to 8
    fp32 = struct.pack("<I", 0) + w.tobytes()
    fp32s = struct.pack("<I", 0x0002C056) + w.tobytes()
    table = np.arange(256, dtype="<f4") / 4
    quant = bytes([1, 0, 0, 0]) + table.tobytes() + bytes([2, 5, 255, 0])
    bias = w.tobytes()
    rd = _reader(tmp_path, fp16 + fp32 + fp32s + quant + bias)
    np.testing.assert_array_equal(rd.tagged(3, "a"), w)
    np.testing.assert_array_equal(rd.tagged(3, "b"), w)
    np.testing.assert_array_equal(rd.tagged(3, "c"), w)
    np.testing.assert_array_equal(rd.tagged(3, "d"), [0.5, 1.25, 63.75])
    np.testing.assert_array_equal(rd.raw(3, "bias"), w)
    rd.check_consumed()


def test_bin_int8_truncated_and_leftover_are_errors(tmp_path):
    with pytest.raises(ncnn.NcnnFormatError, match="int8"):
        _reader(tmp_path, struct.pack("<I", 0x000D4B38) + bytes(4)).tagged(4, "w")
    with pytest.raises(ncnn.NcnnFormatError, match="do not match"):
        _reader(tmp_path, struct.pack("<I", 0) + bytes(8)).tagged(3, "w")
    rd = _reader(tmp_path, bytes(16))
    rd.raw(3, "w")
    with pytest.raises(ncnn.NcnnFormatError, match="4 bytes left"):
        rd.check_consumed()


def test_unsupported_layer_type_is_named(tmp_path):
    p = tmp_path / "pool.param"
    p.write_text("7767517\n2 2\nInput in 0 1 data\nPooling pool1 1 1 data out 0=1 4=1\n")
    (tmp_path / "pool.bin").write_bytes(b"")
    with pytest.raises(ncnn.NcnnFormatError, match="pool1 has type Pooling"):
        ncnn.load_ncnn(p, tmp_path / "pool.bin")


def test_bin_that_does_not_match_param_is_an_error(tmp_path):
    short = tmp_path / "short.bin"
    short.write_bytes(LAYERS_BIN.read_bytes()[:-8])
    with pytest.raises(ncnn.NcnnFormatError, match="do not match"):
        ncnn.load_ncnn(LAYERS_PARAM, short)


# ------------------------------------------------------------------ every op against ncnn

LAYER_REF = np.load(FIX / "ncnn_layers.npz")
LAYER_BLOBS = [k for k in LAYER_REF.files if k not in ("x", "ncnn_version")]


@pytest.mark.parametrize("blob", LAYER_BLOBS)
def test_synthetic_graph_matches_ncnn(blob):
    net = ncnn.load_ncnn(LAYERS_PARAM, LAYERS_BIN, output_blob=blob)
    with torch.no_grad():
        y = net(torch.from_numpy(LAYER_REF["x"])[None])[0].numpy()
    ref = LAYER_REF[blob]
    assert y.shape == ref.shape
    assert np.abs(y - ref).max() < ATOL, f"{blob}: max diff {np.abs(y - ref).max():.2e}"


def test_synthetic_graph_gradients_are_correct():
    net = ncnn.load_ncnn(LAYERS_PARAM, LAYERS_BIN, output_blob="n").double()
    x = torch.from_numpy(LAYER_REF["x"]).double()[None].requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: net(t).sum(dim=(2, 3)), (x,), eps=1e-6, atol=1e-5, fast_mode=True)


# ------------------------------------------------------------------ the zoo's regenerators

WAIFU_REF = np.load(FIX / "ncnn_waifu2x_photo.npz")
ESRGAN_REF = np.load(FIX / "ncnn_realesrgan_x4plus.npz")


@pytest.fixture(scope="module")
def realesrgan():
    return ncnn.load_realesrgan()


@pytest.mark.slow
@pytest.mark.parametrize("noise", [-1, 0, 1, 2, 3])
def test_waifu2x_matches_ncnn(noise):
    model = ncnn.load_waifu2x(noise=noise)
    with torch.no_grad():
        y = model(_u8_to_batch(WAIFU_REF["x"]))
    ref = np.clip(WAIFU_REF[f"noise{noise}"], 0, 1)
    assert tuple(y.shape) == (1, 3, 48, 48)
    assert np.abs(y[0].numpy() - ref).max() < ATOL


@pytest.mark.slow
def test_waifu2x_shapes_batch_and_gradient():
    model = ncnn.load_waifu2x(noise=1)
    x = torch.rand(2, 3, 13, 17, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    y = model(x)
    assert tuple(y.shape) == (2, 3, 26, 34) and model.scale == 2
    assert 0.0 <= float(y.detach().min()) and float(y.detach().max()) <= 1.0
    with torch.no_grad():
        single = model(x[1:2])
    assert torch.allclose(y[1:2], single, atol=1e-5)
    y.mean().backward()
    g = x.grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert g[:, :, 0, 0].abs().sum() > 0 and g[:, :, -1, -1].abs().sum() > 0  # corners reach through the padding
    assert g[0].abs().sum() > 0 and g[1].abs().sum() > 0


@pytest.mark.slow
def test_realesrgan_matches_ncnn(realesrgan):
    with torch.no_grad():
        y = realesrgan(_u8_to_batch(ESRGAN_REF["x"]))
    assert tuple(y.shape) == (1, 3, 96, 96)
    assert np.abs(y[0].numpy() - np.clip(ESRGAN_REF["y"], 0, 1)).max() < ATOL


@pytest.mark.slow
def test_realesrgan_gradient_reaches_input(realesrgan):
    # the raw network on an 8x8 input keeps this cheap; the pad/crop/clamp wrapper's gradient is
    # checked on waifu2x (same NcnnRegenerator class)
    x = _u8_to_batch(ESRGAN_REF["x"][:, :8, :8]).requires_grad_(True)
    y = realesrgan.net(x)
    assert tuple(y.shape) == (1, 3, 32, 32) and realesrgan.scale == 4
    y.mean().backward()
    assert torch.isfinite(x.grad).all() and (x.grad.abs() > 0).float().mean() > 0.9
    with pytest.raises(ValueError, match="too small"):
        realesrgan(torch.rand(1, 3, 10, 40))


@pytest.mark.slow
def test_zoo_loader_contract():
    model = zoo.load_model("waifu2x-photo")
    assert model.scale == 2 and not model.training
    assert all(not p.requires_grad for p in model.parameters())
    assert "DENOISE0X" in model.name  # the zoo entry's default noise level 0
    with pytest.raises(ValueError, match="noise level"):
        ncnn.load_waifu2x(noise=4)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(3, 8, 8))
