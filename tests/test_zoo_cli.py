"""Model zoo registry, local-path registration, the CLI listings and their error paths."""

import json
from dataclasses import dataclass

import pytest

from obscrowd_lib import artifacts, cli, config, zoo


def test_every_entry_is_well_formed():
    kinds = {"detector", "recognizer", "metric", "regenerator", "editor"}
    for e in zoo.ENTRIES.values():
        assert e.kind in kinds, e.name
        assert ":" in e.loader
        assert e.artifact is None or e.artifact in artifacts.ARTIFACTS
        assert e.artifact is None or e.inner_paths, f"{e.name}: which files inside the artifact?"
        assert all(r in zoo.ENTRIES for r in e.requires)


def test_models_list_json(capsys):
    assert cli.main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by = {r["name"]: r for r in rows}
    assert set(by) == set(zoo.ENTRIES)
    for r in rows:
        assert set(r) >= {"name", "kind", "differentiable", "fetched", "size_mb", "weights_mb", "licence"}
    assert by["dlib-native"]["differentiable"] is False and by["facenet"]["differentiable"] is True
    # weights = the model's own files: one of the three graphs in the 145 MB human-models package
    assert 1 < by["mobileface"]["weights_mb"] < 5 < by["mobileface"]["size_mb"]
    assert by["dists"]["weights_mb"] > by["lpips-vgg"]["weights_mb"] > 50  # DISTS also loads the VGG16 backbone
    assert by["insightface-arcface"]["weights_mb"] is None and by["insightface-arcface"]["size_mb"] is None


def test_user_model_absent_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("OBSCROWD_HOME", str(tmp_path))
    monkeypatch.delenv("OBSCROWD_INSIGHTFACE_ARCFACE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # nor a pack in insightface's own folder
    with pytest.raises(zoo.ModelNotAvailable, match="obscrowd models register insightface-arcface PATH"):
        zoo.local_path("insightface-arcface")
    assert not zoo.is_available("insightface-arcface")


def test_register_local_roundtrip_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OBSCROWD_HOME", str(tmp_path / "home"))
    model = tmp_path / "w600k_r50.onnx"
    with pytest.raises(zoo.ModelNotAvailable, match="no such file"):
        zoo.register_local("insightface-arcface", str(model))
    model.write_bytes(b"onnx")
    assert cli.main(["models", "register", "insightface-arcface", str(model)]) == 0
    assert zoo.local_path("insightface-arcface") == str(model.resolve())
    assert zoo.is_available("insightface-arcface")
    (tmp_path / "home" / "local_models.json").write_text("{broken")
    assert cli.main(["models", "list"]) == 2
    assert "local_models.json: not valid JSON" in capsys.readouterr().err


def test_verify_reports_a_tampered_archive_without_deleting(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OBSCROWD_HOME", str(tmp_path))
    arch = artifacts.archive_path("dists-pytorch")
    arch.parent.mkdir(parents=True)
    arch.write_bytes(b"tampered")
    assert cli.main(["models", "verify", "dists"]) == 2
    err = capsys.readouterr().err
    assert str(arch) in err and "does not match the pin" in err
    assert arch.exists()  # verify reports; fetch replaces


def test_unknown_model_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown model"):
        zoo.get_entry("nope")


@dataclass(frozen=True)
class _Cfg:
    eps_255: float = 8.0  # budget
    names: tuple = ("a", "b")  # models


def test_config_roundtrip_and_unknown_field(tmp_path):
    p = config.save_config(_Cfg(eps_255=4.0), tmp_path / "config.json")
    assert config.load_config(_Cfg, p) == _Cfg(eps_255=4.0)
    assert len(config.config_hash(_Cfg())) == 16 and config.config_hash(_Cfg()) != config.config_hash(_Cfg(4.0))
    p.write_text(json.dumps({"eps_255": 1.0, "typo": 2}))
    with pytest.raises(ValueError, match="typo"):
        config.load_config(_Cfg, p)


def test_attacks_list_json(capsys):
    assert cli.main(["attacks", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by = {r["name"]: r for r in rows}
    assert {"jpeg", "jpeg-diff", "regen-waifu2x-photo-diff", "pix2pix", "vae"} <= set(by)
    assert by["jpeg-diff"]["differentiable"] and not by["jpeg"]["differentiable"]
    assert by["regen-waifu2x-photo"]["available"] is True
    assert by["pix2pix"]["available"] in (True, False)


def test_protect_then_evaluate_cli(tmp_path, capsys):
    from PIL import Image

    from obscrowd_lib import data

    im = Image.open(data.sample_path("obama.jpg"))
    im.thumbnail((256, 256))
    clean = tmp_path / "clean.png"
    im.save(clean)
    prot = tmp_path / "prot.png"
    assert cli.main(["protect", str(clean), "-o", str(prot), "--steps", "2", "--ensemble", "mobileface",
                     "--report", str(tmp_path / "rep.json"), "--quiet"]) == 0
    assert prot.is_file() and json.loads((tmp_path / "rep.json").read_text())["files"][0]["status"] == "protected"
    assert cli.main(["protect", str(clean), "-o", str(clean), "--quiet"]) != 0  # never overwrites its input
    out = tmp_path / "ev.json"
    assert cli.main(["evaluate", "--clean", str(clean), "--protected", str(prot), "--attacks", "jpeg75",
                     "--evaluators", "mobileface", "--json", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert {"schema_version", "imperceptibility", "faces", "summary"} <= set(doc)
    assert "mobileface" in doc["summary"]
