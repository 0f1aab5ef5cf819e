"""Alignment geometry and gradients, the FR ensemble, threshold calibration (obscrowd_lib.recognition)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from obscrowd_lib import recognition as rec
from obscrowd_lib.faces import Face

# insightface's ArcFace 112×112 template (MTCNN landmark order)
ARCFACE_112 = torch.tensor([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                            [41.5493, 92.3655], [70.7299, 92.2041]])


class TinyRecognizer(nn.Module):
    """A small random network meeting the zoo's recognizer contract (fast stand-in for the ports)."""

    def __init__(self, crop_size: int = 32, dim: int = 16, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.crop_size, self.embedding_dim = crop_size, dim
        self.register_buffer("template", ARCFACE_112 * crop_size / 112)
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8 * (crop_size // 2) ** 2, dim)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.3

    def forward(self, crops):
        assert crops.shape[1:] == (3, self.crop_size, self.crop_size)
        return nn.functional.normalize(self.fc(torch.tanh(self.conv(crops - 0.5)).flatten(1)), dim=-1)


def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Reference: Umeyama 1991 via SVD, no reflection."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    u, s, vt = np.linalg.svd(dc.T @ sc / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(dc.T @ sc))])
    r = u @ d @ vt
    c = (s * np.diag(d)).sum() / ((sc ** 2).sum() / len(src))
    return np.hstack([c * r, (mu_d - c * r @ mu_s)[:, None]])


def _similar(template: torch.Tensor, angle: float, scale: float, shift: tuple[float, float]) -> torch.Tensor:
    """Landmarks = template rotated by ``angle`` (rad) about its centroid, scaled, then moved by ``shift``."""
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[c, -s], [s, c]])
    mu = template.mean(0)
    return (template - mu) @ rot.T * scale + mu + torch.tensor(shift)


def test_similarity_transform_matches_umeyama_and_never_reflects():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(6, 5, 2)) * 30 + 100
    dst = ARCFACE_112.numpy().astype(np.float64)
    src[5] = dst * [-1, 1] + 7  # a mirrored face: the best fit must still be a proper rotation
    m = rec.similarity_transform(torch.tensor(src), torch.tensor(dst)).double().numpy()
    for i in range(6):
        np.testing.assert_allclose(m[i], _umeyama(src[i], dst), atol=1e-4)
        assert np.linalg.det(m[i][:, :2]) > 0
    exact = _similar(ARCFACE_112, 0.3, 2.5, (40.0, -10.0))
    back = rec.similarity_transform(exact[None], ARCFACE_112)[0]
    mapped = exact @ back[:, :2].T + back[:, 2]
    assert torch.allclose(mapped, ARCFACE_112, atol=1e-3)


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("angle,scale", [(0.0, 1.0), (0.4, 1.7), (-0.25, 3.3)])
def test_alignment_samples_the_expected_photo_pixels(angle, scale, antialias):
    """Photo = its own coordinates (x/W, y/H): each crop pixel must read the photo point the
    inverse similarity maps it to. Bilinear sampling (and box averaging) of a linear ramp is exact,
    so any half-pixel or normalisation error shows up."""
    h, w, s = 240, 320, 56
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    photo = torch.stack([xs / w, ys / h, torch.zeros_like(xs)])[None]
    template = ARCFACE_112 * s / 112
    lm = _similar(template, angle, scale, (120.0, 70.0))
    crop = rec.align_faces(photo, lm[None], template, s, antialias=antialias)[0]
    m = rec.similarity_transform(lm[None], template)[0].double()
    inv = torch.linalg.inv(torch.cat([m, torch.tensor([[0.0, 0, 1]], dtype=torch.float64)]))[:2]
    cy, cx = torch.meshgrid(torch.arange(s, dtype=torch.float64), torch.arange(s, dtype=torch.float64), indexing="ij")
    ex = inv[0, 0] * cx + inv[0, 1] * cy + inv[0, 2]
    ey = inv[1, 0] * cx + inv[1, 1] * cy + inv[1, 2]
    inside = (ex > 2 * scale) & (ex < w - 1 - 2 * scale) & (ey > 2 * scale) & (ey < h - 1 - 2 * scale)
    assert inside.float().mean() > 0.9
    err_x = (crop[0].double() * w - ex)[inside].abs().max()
    err_y = (crop[1].double() * h - ey)[inside].abs().max()
    assert err_x < 0.02 and err_y < 0.02, (err_x, err_y)
    # the crop's template points read the photo at the landmarks (the warp goes the right way)
    t = template.double()
    assert torch.allclose(t @ inv[:, :2].T + inv[:, 2], lm.double(), atol=1e-3)


def test_alignment_moves_a_bright_pixel_where_expected():
    """Pure translation by (25, 12): photo pixel (x=30, y=20) appears at crop pixel (x=5, y=8)."""
    photo = torch.zeros(1, 3, 60, 80)
    photo[0, :, 20, 30] = 1.0
    tmpl = torch.tensor([[10.0, 10], [20, 10], [15, 15], [11, 20], [19, 20]])
    crop = rec.align_faces(photo, (tmpl + torch.tensor([25.0, 12]))[None], tmpl, 32)[0, 0]
    assert crop[8, 5] == 1.0 and crop.sum() == 1.0


def test_alignment_batch_index_and_padding():
    g = torch.Generator().manual_seed(1)
    photos = torch.rand(2, 3, 90, 120, generator=g)
    tmpl = ARCFACE_112 * 40 / 112
    lm = torch.stack([_similar(tmpl, 0.1, 1.2, (20.0, 15.0)), _similar(tmpl, -0.2, 2.5, (60.0, 30.0)),
                      _similar(tmpl, 0.0, 1.0, (100.0, 70.0))])  # the last one hangs over the edge
    bidx = torch.tensor([1, 0, 1])
    both = rec.align_faces(photos, lm, tmpl, 40, bidx)
    for i in range(3):
        one = rec.align_faces(photos[bidx[i]:bidx[i] + 1], lm[i:i + 1], tmpl, 40)
        assert torch.allclose(both[i], one[0])
    edge_zero = rec.align_faces(photos[1:], lm[2:], tmpl, 40)[0]
    edge_border = rec.align_faces(photos[1:], lm[2:], tmpl, 40, padding_mode="border")[0]
    assert edge_zero[:, -1, -1].abs().sum() == 0 and edge_border[:, -1, -1].abs().sum() > 0
    with pytest.raises(ValueError, match="batch_index"):
        rec.align_faces(photos, lm, tmpl, 40)
    with pytest.raises(ValueError, match=r"\(N, 5, 2\)"):
        rec.align_faces(photos[:1], torch.zeros(3, 4, 2), tmpl, 40)
    assert rec.align_faces(photos[:1], [], tmpl, 40).shape == (0, 3, 40, 40)


def _two_face_photo():
    g = torch.Generator().manual_seed(2)
    photo = torch.rand(1, 3, 128, 320, generator=g)
    faces = []
    for x0 in (20.0, 220.0):
        lm = (ARCFACE_112 * 0.8 + torch.tensor([x0, 10.0])).numpy()
        faces.append(Face((x0, 10.0, x0 + 90, 100.0), lm, 0.99))
    return photo, faces


def _grad_of_one_face(ens: rec.FREnsemble, photo: torch.Tensor, faces: list, name: str, k: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    ref = {n: torch.nn.functional.normalize(torch.randn(len(faces), ens[n].embedding_dim, generator=g), dim=-1)
           for n in ens.names}
    x = photo.clone().requires_grad_(True)
    ens.similarities_to(ref, x, faces)[name][k].backward()
    return x.grad[0].abs().sum(0)


def _outside(grad: torch.Tensor, box, margin: float) -> torch.Tensor:
    h, w = grad.shape
    m = torch.ones(h, w, dtype=torch.bool)
    x0, y0, x1, y1 = box
    m[max(0, int(y0 - margin)):int(y1 + margin) + 1, max(0, int(x0 - margin)):int(x1 + margin) + 1] = False
    return grad[m]


def test_gradient_of_one_face_stays_around_that_face():
    photo, faces = _two_face_photo()
    ens = rec.FREnsemble([rec.Recognizer(TinyRecognizer(32), "tiny32"),
                          rec.Recognizer(TinyRecognizer(48, seed=1), "tiny48")])
    for name in ens.names:
        grad = _grad_of_one_face(ens, photo, faces, name, 0)
        assert _outside(grad, faces[0].box, 12).abs().max() == 0
        assert (grad > 0).float()[10:100, 20:110].mean() > 0.5  # area pyramid: most face pixels get gradient
        assert grad[:, 200:].sum() == 0  # nothing on the other face


def test_ensemble_shapes_differentiability_and_cache():
    photo, faces = _two_face_photo()
    tiny = rec.Recognizer(TinyRecognizer(32), "tiny")
    ens = rec.FREnsemble([tiny, rec.Recognizer(TinyRecognizer(40, dim=24, seed=5), "tiny40")])
    emb = ens.embed_all(photo, faces)
    assert emb["tiny"].shape == (2, 16) and emb["tiny40"].shape == (2, 24)
    assert torch.allclose(emb["tiny"].norm(dim=-1), torch.ones(2), atol=1e-5)
    b = (photo + 0.05 * torch.randn_like(photo)).clamp(0, 1).requires_grad_(True)
    sims = ens.similarities(photo, b, faces)
    assert set(sims) == {"tiny", "tiny40"} and all(v.shape == (2,) for v in sims.values())
    assert all(((-1 <= v) & (v <= 1)).all() for v in sims.values())
    same = ens.similarities(photo, photo, faces)
    assert all(torch.allclose(v, torch.ones(2), atol=1e-5) for v in same.values())
    sum(v.sum() for v in sims.values()).backward()
    assert b.grad is not None and b.grad.abs().sum() > 0
    sub = ens.select(["tiny"])
    assert sub.names == ["tiny"] and sub["tiny"] is tiny
    assert ens.differentiable_names() == ["tiny", "tiny40"]
    # landmarks tensor and batched photos give the same embeddings as the Face list
    lm = torch.as_tensor(np.stack([f.landmarks for f in faces]), dtype=torch.float32)
    two = torch.cat([photo, torch.rand_like(photo)])
    e2 = tiny.embed(two, lm, torch.tensor([0, 0]))
    assert torch.allclose(e2, emb["tiny"], atol=1e-6)
    with pytest.raises(TypeError, match="crop_size"):
        rec.Recognizer(nn.Linear(2, 2), "bad")
    with pytest.raises(KeyError):
        ens["nope"]


def test_training_ensemble_holds_out_facenet():
    from obscrowd_lib import zoo

    names = rec.recognizer_names(differentiable=True, available_only=False)
    assert "facenet" in names and "dlib-native" not in names
    ens = rec.training_ensemble(device="cpu")  # nothing loads until used
    assert "facenet" not in ens.names and "dlib-native" not in ens.names
    assert all(zoo.get_entry(n).differentiable for n in ens.names)
    assert rec.holdout().names == ["facenet"]


# ---------------------------------------------------------------- calibration (synthetic, known answers)


def test_threshold_is_the_exact_impostor_quantile():
    imp = np.arange(100_000) / 100_000  # uniform grid
    cal = rec.calibrate(np.array([1.0]), imp)
    for far in (1e-2, 1e-3, 1e-4):
        t = cal.thresholds[far]
        assert 1 - far - 1e-5 < t < 1 - far  # between the last rejected and the first accepted impostor
        assert (imp >= t).sum() == round(far * len(imp)) == cal.n_beyond[far]
        assert not cal.extrapolated[far]
    assert cal.impostor_mean == pytest.approx(0.499995)


def test_eer_known_answers():
    imp = np.arange(1000) / 1000  # U[0, 1)
    gen = 0.8 + np.arange(1000) / 1000  # U[0.8, 1.8): FAR = 1 - t, FRR = t - 0.8, equal at t = 0.9
    cal = rec.calibrate(gen, imp)
    assert cal.eer == pytest.approx(0.1, abs=2e-3) and cal.eer_threshold == pytest.approx(0.9, abs=2e-3)
    sep = rec.calibrate(np.array([0.7, 0.8, 0.9]), np.array([0.1, 0.2, 0.3, 0.4]))
    assert sep.eer == 0.0 and 0.4 < sep.eer_threshold <= 0.7
    assert sep.tar[1e-2] == 1.0
    inverted = rec.calibrate(np.array([0.1, 0.2]), np.array([0.8, 0.9]))
    assert inverted.eer == pytest.approx(1.0)


def test_too_few_impostors_are_flagged_extrapolated():
    rng = np.random.default_rng(0)
    imp = rng.normal(0.1, 0.1, size=500)
    cal = rec.calibrate(rng.normal(0.7, 0.1, 300), imp)
    assert not cal.extrapolated[1e-2] and cal.extrapolated[1e-3] and cal.extrapolated[1e-4]
    assert cal.thresholds[1e-3] >= imp.max() and cal.thresholds[1e-4] >= cal.thresholds[1e-3]
    assert cal.thresholds[1e-4] == pytest.approx(max(imp.max(), imp.mean() + 3.719 * imp.std(ddof=1)), abs=1e-3)
    assert "extrapolated" in cal.notes
    with pytest.raises(ValueError, match="far|rate"):
        rec.calibrate([0.9], [0.1, 0.2], fars=(0.0,))


def test_calibrate_embeddings_pairs_and_json_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 32))
    labels = ["a"] * 2 + ["b"] * 3 + ["c"] * 4
    emb = np.stack([centres["abc".index(l)] + 0.3 * rng.normal(size=32) for l in labels])
    cal = rec.calibrate_embeddings(emb, labels, bootstrap=50)
    assert (cal.n_genuine, cal.n_impostor) == (1 + 3 + 6, 36 - 10)
    assert cal.eer == 0.0 and cal.genuine_mean > cal.impostor_mean
    assert set(cal.ci95) == {"eer", "0.01", "0.001", "0.0001"}
    res = {"models": {"toy": cal}, "provenance": {"images": []}, "errors": {"other": "did not load"}}
    doc = rec.load_thresholds(rec.save_thresholds(res, tmp_path / "t.json", notes={"uncertainty": "toy"}))
    assert doc["models"]["toy"] == cal and doc["missing"] == {"other": "did not load"}
    assert rec.threshold_for("toy", 1e-2, tmp_path / "t.json") == cal.thresholds[1e-2]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        rec.load_thresholds(tmp_path / "bad.json")


def test_shipped_thresholds_cover_the_zoo_recognizers():
    doc = rec.load_thresholds()
    assert {"arcface-faceplugin", "dlib-native"} <= set(doc["models"])
    for name, cal in doc["models"].items():
        t = cal.thresholds
        assert t[1e-2] <= t[1e-3] <= t[1e-4] <= 1.0, name
        assert cal.extrapolated[1e-4], name  # < 10 000 impostor pairs: must be flagged
        assert cal.genuine_mean > cal.impostor_mean, name
    assert "not estimable" in doc["uncertainty"].lower()
    assert doc["provenance"]["pairs"]["impostor"] == doc["models"]["dlib-native"].n_impostor


# ---------------------------------------------------------------- real models on registry sample photos


def _load_photo(name: str, max_side: int):
    from PIL import Image

    from obscrowd_lib import data

    im = Image.open(data.sample_path(name)).convert("RGB")
    s = max_side / max(im.size)
    im = im.resize((round(im.width * s), round(im.height * s)), Image.BILINEAR)
    rgb = np.asarray(im)
    return rgb, torch.from_numpy(rgb.copy()).permute(2, 0, 1).float()[None] / 255


@pytest.fixture(scope="module")
def portraits():
    from obscrowd_lib.faces import detect_faces

    out = {}
    for n in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        rgb, photo = _load_photo(n, 320)
        faces = detect_faces(rgb, detector="mtcnn")
        assert len(faces) == 1, n
        out[n] = (photo, faces)
    return out


@pytest.fixture(scope="module")
def real_ensemble():
    return rec.FREnsemble(["arcface-faceplugin", "dlib-faceapi", "dlib-native"])


@pytest.mark.slow
def test_real_models_tell_obama_from_biden(portraits, real_ensemble):
    emb = {n: real_ensemble.embed_all(*portraits[n]) for n in portraits}
    for name, gap in (("arcface-faceplugin", 0.4), ("dlib-faceapi", 0.08), ("dlib-native", 0.08)):
        e = {n: emb[n][name][0].detach() for n in emb}
        assert e["obama.jpg"].shape == (real_ensemble[name].embedding_dim,)
        genuine, impostor = float(e["obama.jpg"] @ e["obama2.jpg"]), float(e["obama.jpg"] @ e["biden.jpg"])
        assert genuine > impostor + gap, (name, genuine, impostor)
    # the face-api port behind our alignment agrees with native dlib (own landmarks and chips): same network
    for n in emb:
        assert float(emb[n]["dlib-faceapi"][0] @ emb[n]["dlib-native"][0]) > 0.98, n
    # dlib-native also accepts bare landmarks (box derived from them)
    photo, faces = portraits["obama.jpg"]
    lm_only = real_ensemble["dlib-native"].embed(photo, np.stack([f.landmarks for f in faces]))
    assert float(lm_only[0] @ emb["obama.jpg"]["dlib-native"][0]) > 0.98


@pytest.mark.slow
def test_real_similarities_are_differentiable_where_the_model_is(portraits, real_ensemble):
    photo, faces = portraits["obama.jpg"]
    b = (photo + 4 / 255 * torch.randn_like(photo)).clamp(0, 1).requires_grad_(True)
    sims = real_ensemble.similarities(photo, b, faces)
    assert all(v.shape == (1,) for v in sims.values())
    assert sims["arcface-faceplugin"].requires_grad and not sims["dlib-native"].requires_grad
    assert float(sims["dlib-native"][0]) > 0.9 and float(sims["arcface-faceplugin"][0].detach()) > 0.8
    sims["arcface-faceplugin"].sum().backward()
    assert b.grad.abs().sum() > 0


@pytest.mark.slow
def test_real_gradient_of_one_face_in_a_group_photo_stays_on_it(real_ensemble):
    from obscrowd_lib.faces import detect_faces

    rgb, photo = _load_photo("t1.jpg", 512)
    faces = detect_faces(rgb, detector="mtcnn")
    assert len(faces) == 6
    ens = real_ensemble.select(["arcface-faceplugin"])
    k = 2
    grad = _grad_of_one_face(ens, photo, faces, "arcface-faceplugin", k)  # all 6 faces embedded, one scored
    x0, y0, x1, y1 = faces[k].box
    margin = 0.5 * max(x1 - x0, y1 - y0)
    assert _outside(grad, faces[k].box, margin).abs().max() == 0
    assert grad[int(y0):int(y1), int(x0):int(x1)].gt(0).float().mean() > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("max_side", [320, 640])
def test_alignment_matches_insightface_norm_crop(portraits, max_side):
    """Our differentiable crop = insightface 0.7.3's ``norm_crop`` (skimage similarity + cv2.warpAffine) on a
    real portrait at two sizes (faces at most about twice the crop: no pyramid level, both bilinear).
    Measured: mean |diff| 0.0011, 99th percentile 0.003; a one-pixel shift alone gives 0.03."""
    from insightface.utils.face_align import norm_crop

    from obscrowd_lib.faces import detect_faces

    rgb, photo = _load_photo("obama.jpg", max_side)
    (face,) = detect_faces(rgb, detector="mtcnn")
    theirs = norm_crop(rgb, face.landmarks.astype(np.float32), image_size=112).astype(np.float32) / 255
    ours = rec.align_faces(photo, [face], ARCFACE_112, 112)[0].permute(1, 2, 0).numpy()
    diff = np.abs(ours - theirs)
    assert diff.mean() < 0.003 and np.percentile(diff, 99) < 0.01, (diff.mean(), np.percentile(diff, 99))
    assert np.abs(np.roll(ours, 1, axis=1) - theirs).mean() > 5 * diff.mean()  # the bounds can fail
