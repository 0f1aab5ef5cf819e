"""Generative editors (diffusers) end to end with TINY randomly initialised models built from config.

No Stable Diffusion / instruct-pix2pix weights are reachable here, so every code path (the loaders
from a saved folder, the official pipelines, the differentiable pix2pix sampler, the VAE round trip,
the missing-model errors) runs on a ~1 MB model with the real architectures' classes.
"""

import json

import pytest
import torch

from obscrowd_lib import attacks as A
from obscrowd_lib import zoo


def _byte_chars() -> list[str]:
    """CLIP's byte-to-unicode alphabet (256 printable characters, one per byte)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in keep]
    return [chr(c) for c in keep] + [chr(256 + i) for i in range(len(extra))]


def build_tiny_models(root):
    """Save a tiny instruct-pix2pix pipeline, SD img2img pipeline and VAE under ``root``; return their folders."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        EulerAncestralDiscreteScheduler,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    (root / "tok").mkdir(parents=True)
    (root / "tok" / "vocab.json").write_text(json.dumps(vocab))
    (root / "tok" / "merges.txt").write_text("#version: 0.2\nt h\nth e</w>\n")
    tokenizer = CLIPTokenizer(vocab_file=str(root / "tok" / "vocab.json"), merges_file=str(root / "tok" / "merges.txt"),
                              model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
        max_position_embeddings=tokenizer.model_max_length, projection_dim=16,
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"]))
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 8, 8, 8], layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=32)  # x8 like SD's VAE

    def unet(in_channels):
        return UNet2DConditionModel(sample_size=4, in_channels=in_channels, out_channels=4, layers_per_block=1,
                                    block_out_channels=(8, 16), norm_num_groups=4, cross_attention_dim=16,
                                    attention_head_dim=2, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))

    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    parts = {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "safety_checker": None,
             "feature_extractor": None, "requires_safety_checker": False}
    StableDiffusionInstructPix2PixPipeline(unet=unet(8), scheduler=EulerAncestralDiscreteScheduler.from_config(
        sched.config), **parts).save_pretrained(root / "p2p")
    StableDiffusionImg2ImgPipeline(unet=unet(4), scheduler=sched, **parts).save_pretrained(root / "sd")
    vae.save_pretrained(root / "vae")
    return {"pix2pix": root / "p2p", "sd": root / "sd", "vae": root / "vae"}


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_models(tmp_path_factory.mktemp("tiny_diffusers"))


@pytest.fixture(scope="module")
def p2p_pipe(tiny):
    return A.load_pix2pix(path=str(tiny["pix2pix"]))


@pytest.fixture(scope="module")
def photo():
    """(2, 3, 36, 44) in [0, 1]: sizes not multiples of the VAE factor 8 (padding and crop-back path)."""
    return torch.rand(2, 3, 36, 44, generator=torch.Generator().manual_seed(0))


def _check(out, photo):
    assert out.shape == photo.shape and out.dtype == photo.dtype
    o = out.detach()
    assert torch.isfinite(o).all() and float(o.min()) >= 0 and float(o.max()) <= 1


def test_pix2pix_pipeline_end_to_end(p2p_pipe, photo):
    from diffusers import EulerAncestralDiscreteScheduler

    assert isinstance(p2p_pipe.scheduler, EulerAncestralDiscreteScheduler)  # FaceLock's scheduler
    assert not any(p.requires_grad for p in p2p_pipe.unet.parameters())
    a = A.make_attack("pix2pix", pipe=p2p_pipe, steps=3, prompt=A.prompt_set("smile")[0])
    assert (a.name, a.differentiable, a.needs) == ("pix2pix", False, ("instruct-pix2pix",))
    assert a.params["image_guidance"] == 1.5 and a.params["guidance"] == 7.5
    out = a(photo.clone().requires_grad_(True))
    _check(out, photo)
    assert not out.requires_grad
    assert torch.equal(out, a(photo))
    assert not torch.equal(out, a(photo, seed=1))
    assert torch.equal(out[1:], a(photo[1:]))  # an image's edit does not depend on its batch
    json.dumps(a.describe())


def test_pix2pix_diff_equals_pipeline_and_passes_gradients(p2p_pipe, photo):
    edit = A.make_attack("pix2pix", pipe=p2p_pipe, steps=3)
    diff = A.make_attack("pix2pix-diff", pipe=p2p_pipe, steps=3)
    assert diff.differentiable and diff.params["checkpointing"]
    x = photo.clone().requires_grad_(True)
    out = diff(x, seed=4)
    _check(out, photo)
    assert torch.allclose(out, edit(photo, seed=4), atol=1e-5)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    (out * w).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # gradient checkpointing recomputes activations; it must not change the gradient
    p2p_pipe.unet.disable_gradient_checkpointing()
    p2p_pipe.vae.disable_gradient_checkpointing()
    plain = A.make_attack("pix2pix-diff", pipe=p2p_pipe, steps=3, checkpointing=False)
    x2 = photo.clone().requires_grad_(True)
    (plain(x2, seed=4) * w).sum().backward()
    assert torch.allclose(x.grad, x2.grad, rtol=1e-4, atol=1e-9)


def test_img2img_end_to_end(tiny, photo):
    a = A.make_attack("img2img", path=str(tiny["sd"]), steps=4, strength=0.5)
    assert (a.name, a.differentiable, a.needs) == ("img2img", False, ("sd-img2img",))
    out = a(photo)
    _check(out, photo)
    assert torch.equal(out, a(photo)) and not torch.equal(out, a(photo, seed=9))
    assert (out - photo).abs().mean() > 1e-3


@pytest.mark.parametrize("folder", ["vae", "sd", "pix2pix"])
def test_vae_round_trip_from_each_folder_layout(tiny, photo, folder):
    a = A.make_attack("vae", path=str(tiny[folder]))
    assert (a.name, a.differentiable, a.needs) == ("vae", True, ("sd-vae",))
    x = photo.clone().requires_grad_(True)
    out = a(x)
    _check(out, photo)
    assert torch.equal(out.detach(), a(photo))
    with torch.no_grad():  # FaceLock's round trip, written out: mean latent, decode, clip
        z = a.vae.encode(2 * torch.nn.functional.pad(photo, (0, 4, 0, 4), mode="replicate") - 1).latent_dist.mean
        ref = (a.vae.decode(z).sample.clamp(-1, 1) + 1) / 2
    assert torch.allclose(out.detach(), ref[..., :36, :44], atol=1e-6)
    out.sum().backward()
    assert x.grad.abs().sum() > 0


def test_registered_path_is_used_and_listed(tiny, photo, tmp_path, monkeypatch):
    monkeypatch.setenv("OBSCROWD_HOME", str(tmp_path))
    monkeypatch.delenv("OBSCROWD_SD_VAE", raising=False)
    assert not {d["name"]: d for d in A.list_attacks()}["vae"]["available"]
    zoo.register_local("sd-vae", str(tiny["vae"]))
    assert {d["name"]: d for d in A.list_attacks()}["vae"]["available"]
    _check(A.make_attack("vae")(photo), photo)
    monkeypatch.setenv("OBSCROWD_SD_VAE", str(tiny["sd"]))  # the environment variable wins
    assert A.make_attack("vae").path is None and zoo.local_path("sd-vae") == str(tiny["sd"])


@pytest.mark.parametrize("name, loader", [("instruct-pix2pix", A.load_pix2pix), ("sd-img2img", A.load_img2img),
                                          ("sd-vae", A.load_vae)])
def test_missing_model_says_what_to_put_where(name, loader, tmp_path, monkeypatch):
    monkeypatch.setenv("OBSCROWD_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(f"OBSCROWD_{name.upper().replace('-', '_')}", raising=False)
    with pytest.raises(zoo.ModelNotAvailable, match=f"{name}.*(register|path=)"):
        loader()  # nothing given, nothing registered
    with pytest.raises(zoo.ModelNotAvailable, match="not a folder"):
        loader(path=str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(zoo.ModelNotAvailable, match="empty"):
        loader(path=str(tmp_path / "empty"))
    with pytest.raises(zoo.ModelNotAvailable, match=f"{name}.*hub id 'nobody/no-such-model'.*downloads nothing"):
        loader(path="nobody/no-such-model")  # local_files_only: no network access is attempted


def test_make_attack_reports_missing_editor(tmp_path, monkeypatch):
    monkeypatch.setenv("OBSCROWD_HOME", str(tmp_path))
    monkeypatch.delenv("OBSCROWD_INSTRUCT_PIX2PIX", raising=False)
    with pytest.raises(zoo.ModelNotAvailable, match="instruct-pix2pix"):
        A.make_attack("pix2pix-diff")


def test_chain_edit_then_jpeg(p2p_pipe, photo):
    edit = A.make_attack("pix2pix", pipe=p2p_pipe, steps=2)
    chain = A.Chain([edit, A.make_attack("jpeg", quality=75)])
    assert chain.name == "pix2pix+jpeg" and chain.needs == ("instruct-pix2pix",)
    out = chain(photo)
    _check(out, photo)
    assert torch.equal(out, A.make_attack("jpeg", quality=75)(edit(photo)))
