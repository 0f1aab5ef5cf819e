"""Evaluation harness (obscrowd_lib.evaluation): matching, D<->sys, summaries, and the per-face protocol
on a real two-face photo with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from obscrowd_lib import evaluation as E

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

# ---------------------------------------------------------------- pure functions (no models)


def test_box_iou_known_values():
    a = [[0, 0, 10, 10]]
    b = [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]]
    np.testing.assert_allclose(E.box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.0]])


def test_hungarian_matching_beats_greedy_and_respects_min_iou():
    # greedy (best pair first) would give detection 0 to face 0 (IoU 0.6) and leave face 1 unmatched;
    # the assignment maximising total IoU gives det 1 -> face 0 and det 0 -> face 1
    ref = [[0, 0, 10, 10], [4, 0, 14, 10]]
    det = [[2, 0, 12, 10], [-3, 0, 7, 10]]
    iou = E.box_iou(ref, det)
    assert iou[0, 0] > iou[0, 1] and iou[1, 1] < E.MIN_IOU
    index, best = E.match_boxes(ref, det)
    assert index.tolist() == [1, 0]
    np.testing.assert_allclose(best, [iou[0, 1], iou[1, 0]])
    # a detection far away matches nothing; no detections -> all failures
    index, best = E.match_boxes(ref, [[100, 100, 110, 110]])
    assert index.tolist() == [-1, -1] and best.tolist() == [0, 0]
    assert E.match_boxes(ref, np.zeros((0, 4)))[0].tolist() == [-1, -1]


def test_dsys_known_answers():
    rng = np.random.default_rng(0)
    s = rng.normal(0.5, 0.1, 400)
    assert E.dsys(s, s) == pytest.approx(0.0, abs=1e-12)  # identical distributions: unlinkable
    assert E.dsys(rng.uniform(0.8, 0.9, 300), rng.uniform(0.0, 0.1, 300)) == pytest.approx(1.0)  # disjoint
    partial = E.dsys(rng.normal(0.6, 0.1, 2000), rng.normal(0.4, 0.1, 2000))
    assert 0.2 < partial < 0.8
    # mated scores pushed consistently BELOW the non-mated ones are just as linkable: D<->sys reads the
    # likelihood ratio of a score, not its sign (over-protection that sends every face to -1 gives it away)
    assert E.dsys(rng.uniform(0.0, 0.1, 300), rng.uniform(0.8, 0.9, 300)) == pytest.approx(1.0)
    assert math.isnan(E.dsys([], [0.1, 0.2]))


def _records(prot, unprot, det, attack="jpeg75", evaluator="m", photo="p"):
    return [{"photo": photo, "face": i, "attack": attack, "seed": 0, "evaluator": evaluator, "protected": p,
             "unprotected": u, "detected": d, "detected_unprotected": True}
            for i, (p, u, d) in enumerate(zip(prot, unprot, det, strict=True))]


def test_summary_counts_a_detection_failure_as_not_protected():
    thr = {"m": {1e-2: 0.5, 1e-3: 0.6, 1e-4: 0.7}}
    recs = _records([0.2, 0.9, math.nan, 0.65], [0.95, 0.9, 0.97, 0.92], [True, True, False, True])
    s = E.summarize(recs, thr, ["m"], ["jpeg75"], bootstrap=200)["m"]["jpeg75"]
    assert s["n"] == 4 and s["detection_failures"] == 1 and s["detection_failure_rate"] == 0.25
    assert s["psr"] == {"0.01": 0.25, "0.001": 0.25, "0.0001": 0.5}  # the missed face is never a success
    assert s["psr_detected"]["0.001"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["mean"] == pytest.approx((0.2 + 0.9 + 0.65) / 3, abs=1e-4) and s["worst"] == 0.9
    assert s["threshold"] == 0.6 and s["unprotected_mean"] == pytest.approx(0.935, abs=1e-4)
    assert s["unprotected_psr"] == 0.0
    lo, hi = s["ci95"]["mean"]
    assert lo <= s["mean"] <= hi
    # worst case over attacks: a face protected under jpeg but not under blur is not protected
    recs2 = recs + _records([0.1, 0.1, 0.1, 0.1], [0.9] * 4, [True] * 4, attack="blur")
    w = E.summarize(recs2, thr, ["m"], ["jpeg75", "blur"], bootstrap=0)["m"][E.WORST_CASE]
    assert w["n"] == 4 and w["psr"]["0.001"] == 0.25 and w["worst"] == 0.9 and w["detection_failures"] == 1
    # no calibrated threshold: PSR undefined, not zero
    none = E.summarize(recs, {}, ["m"], ["jpeg75"], bootstrap=0)["m"]["jpeg75"]
    assert none["psr"]["0.001"] is None and none["threshold"] is None


def test_attack_specs_parse():
    assert E.parse_attack("jpeg75")[1].params == {"quality": 75}
    key, entry = E.parse_attack("noise:sigma=0.1")
    assert key == "noise:sigma=0.1" and entry.registry == "noise" and entry.params == {"sigma": 0.1}
    with pytest.raises(KeyError, match="unknown attack"):
        E.parse_attack("nope")


def test_expected_boxes_follow_a_rotation():
    from obscrowd_lib.attacks import make_attack

    h, w = 120, 160
    box = [60, 40, 90, 80]
    rot = make_attack("rotate", max_degrees=10.0)
    img = torch.zeros(1, 3, h, w)
    img[..., box[1]:box[3], box[0]:box[2]] = 1  # a white square in every channel
    warped = rot(img, 3)[0, 0] > 0.5
    ys, xs = torch.nonzero(warped, as_tuple=True)
    truth = [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]
    moved = E.expected_boxes(rot, [box], (h, w), 3)
    assert E.box_iou(moved, [truth])[0, 0] > 0.95 and E.box_iou(moved, [box])[0, 0] < 0.95
    np.testing.assert_array_equal(E.expected_boxes(make_attack("jpeg"), [box], (h, w), 3), [box])


# ---------------------------------------------------------------- the protocol on a real two-face photo

EVALUATORS = ("dlib-faceapi", "facenet")
ATTACKS = ("jpeg75",)  # one real attack keeps the file fast; "none" is exercised by the same-detector test


@pytest.fixture(scope="module")
def photo():
    from obscrowd_lib import data
    from obscrowd_lib.io import load_image

    obama, biden = load_image(data.sample_path("obama.jpg")), load_image(data.sample_path("biden.jpg"))
    # square crops around the heads of the two portraits, side by side: a two-face photo
    comp = data.make_composite([obama[0:700, 140:840], biden[0:850, 120:970]], tile=160, gap=24)
    return np.ascontiguousarray(np.minimum(comp.image, 250))  # room for +2 without clipping


@pytest.fixture(scope="module")
def evaluator():
    return E.Evaluator(attacks=ATTACKS, evaluators=EVALUATORS, holdout="facenet",
                       metrics=("psnr", "ssim", "linf"), progress=False)


@pytest.fixture(scope="module")
def identical(evaluator, photo):
    return evaluator.evaluate(photo, photo, name="identical")


def test_identical_photo_is_not_protected(identical):
    assert len(identical.faces) == 2
    s = identical.summary(bootstrap=0)
    for ev in EVALUATORS:
        for attack in ATTACKS:
            b = s[ev][attack]
            assert b["detection_failures"] == 0
            assert b["mean"] == pytest.approx(b["unprotected_mean"], abs=1e-6)  # same photo, same numbers
            assert b["mean"] > 0.5
            if b["threshold"] is not None:
                assert b["psr"]["0.001"] == 0.0
    assert identical.imperceptibility["linf"] == 0 and identical.imperceptibility["psnr_mask"] == math.inf


def test_identical_photo_same_detector_gives_similarity_one(evaluator, photo):
    same = E.Evaluator(attacks=["none"], evaluators=["facenet"], detector="mtcnn", reference_detector="mtcnn",
                       detect_regions=False, metrics=(), progress=False, recognizers=evaluator.ensemble)
    res = same.evaluate(photo, photo)
    sims = [r["protected"] for r in res.records()]
    assert len(sims) == 2 and np.allclose(sims, 1.0, atol=1e-5)


def test_a_photo_without_faces_gives_an_empty_valid_report(evaluator):
    blank = np.full((64, 80, 3), 128, np.uint8)
    res = evaluator.evaluate(blank, blank, name="blank")
    doc = res.to_json(bootstrap=0)
    json.dumps(doc, allow_nan=False)
    assert res.faces == () and doc["faces"] == [] and doc["summary"] == {}
    assert doc["unlinkability"]["facenet"]["dsys"] is None


def test_blacked_out_face_is_a_detection_failure_not_a_success(evaluator, photo, identical):
    x0, y0, x1, y1 = (int(round(v)) for v in identical.faces[0].box)
    masked = photo.copy()
    pad = (x1 - x0) // 3
    masked[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad] = 0
    res = evaluator.evaluate(photo, masked, name="blacked")
    s = res.summary(bootstrap=0)
    for ev in EVALUATORS:
        for attack in ATTACKS:
            b = s[ev][attack]
            assert b["detection_failures"] == 1 and b["unprotected_detection_failures"] == 0
            if b["threshold"] is not None:
                assert b["psr"]["0.001"] == 0.0  # the other face is untouched, the missing one is no success
    face0 = res.faces_json()[0]["scores"]["facenet"]["jpeg75"]
    assert face0["detected"] is False and face0["protected"] is None and face0["unprotected"] is not None


def test_known_perturbation_json_schema_csv_and_html(evaluator, photo, identical, tmp_path):
    shifted = photo + 2  # every channel +2/255: MSE = (2/255)^2 -> PSNR = 20 log10(255/2)
    res = evaluator.evaluate(photo, shifted, name="shifted")
    imp = res.imperceptibility
    assert imp["psnr"] == pytest.approx(20 * math.log10(255 / 2), abs=1e-3)
    assert imp["psnr_mask"] == pytest.approx(20 * math.log10(255 / 2), abs=1e-3)
    assert imp["linf"] == pytest.approx(2.0, abs=1e-4) and imp["ssim"] < 1.0
    for r in res.records():  # a 2/255 shift protects nobody: both branches agree closely
        assert r["detected"] and r["detected_unprotected"] and abs(r["protected"] - r["unprotected"]) < 0.05
    doc = res.to_json(bootstrap=50)
    json.dumps(doc, allow_nan=False)  # strict JSON
    assert doc["schema_version"] == E.SCHEMA_VERSION
    assert {"schema_version", "imperceptibility", "faces", "summary", "unlinkability", "protocol"} <= set(doc)
    assert doc["protocol"]["holdout"] == "facenet" and doc["protocol"]["detector"] == "dlib-cnn"
    face = doc["faces"][0]
    assert {"box", "scores", "index", "photo"} <= set(face)
    cell = face["scores"]["facenet"]["jpeg75"]
    assert {"unprotected", "protected", "detected", "per_seed"} <= set(cell)
    block = doc["summary"]["facenet"]["jpeg75"]
    assert {"mean", "worst", "psr", "threshold", "detection_failures", "unprotected_mean", "ci95"} <= set(block)
    assert E.WORST_CASE in doc["summary"]["facenet"]
    u = doc["unlinkability"]["facenet"]
    assert u["n_mated"] == 2 and u["n_nonmated"] == 2 and 0 <= u["dsys"] <= 1
    paths = E.write_reports(res, tmp_path, html=True)
    assert json.loads(paths["json"].read_text())["schema_version"] == E.SCHEMA_VERSION
    header = paths["summary_csv"].read_text().splitlines()[0].split(",")
    assert header == list(E.SUMMARY_COLUMNS)
    assert len(paths["faces_csv"].read_text().splitlines()) == 1 + 2 * 1 * 2  # faces x attacks x evaluators
    assert "data:image/jpeg;base64" in paths["html"].read_text()
    rows = E.comparison_table({"none": identical, "noise": res}, "facenet", attacks=["jpeg75"])
    assert [r["method"] for r in rows] == ["none", "noise"] and "sim:jpeg75" in rows[0]
    assert E.format_table(rows).startswith("| method |")


def test_folder_mode_pairs_by_stem(evaluator, photo, tmp_path):
    from PIL import Image

    (tmp_path / "clean").mkdir()
    (tmp_path / "prot").mkdir()
    Image.fromarray(photo).save(tmp_path / "clean" / "a.png")
    Image.fromarray(photo).save(tmp_path / "prot" / "a.png")
    Image.fromarray(photo).save(tmp_path / "clean" / "b.png")  # same content, another photo: 4 faces pooled
    Image.fromarray(photo + 2).save(tmp_path / "prot" / "b.jpeg")
    Image.fromarray(photo).save(tmp_path / "clean" / "lonely.png")
    res = E.evaluate_folder(tmp_path / "clean", tmp_path / "prot", evaluator=evaluator, out_dir=tmp_path / "out",
                            progress=False)
    assert [r.name for r in res.results] == ["a", "b"]
    assert any("lonely" in k for k in res.unpaired)
    s = res.summary(bootstrap=100)
    assert s["facenet"]["jpeg75"]["n_faces"] == 4 and s["facenet"]["jpeg75"]["ci95"]["mean"] is not None
    doc = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert doc["kind"] == "folder" and len(doc["faces"]) == 4 and len(doc["photos"]) == 2


def test_evaluate_paths_is_the_cli_entry(evaluator, photo, tmp_path):
    from PIL import Image

    Image.fromarray(photo).save(tmp_path / "clean.png")
    Image.fromarray(photo).save(tmp_path / "prot.png")
    res = E.evaluate_paths(tmp_path / "clean.png", tmp_path / "prot.png", json_out=tmp_path / "r.json",
                           html_out=tmp_path / "r.html", evaluator=evaluator)
    assert res.name == "clean" and json.loads((tmp_path / "r.json").read_text())["kind"] == "photo"
    assert (tmp_path / "r.html").stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="no such file"):
        E.evaluate_paths(tmp_path / "missing.png", tmp_path / "prot.png")
    with pytest.raises(ValueError, match="two image files or two folders"):
        E.evaluate_paths(tmp_path / "clean.png", tmp_path)
