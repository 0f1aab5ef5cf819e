"""Soft masks: range, union, zero far from faces, one at the face centre, parameters behave."""

import numpy as np
import torch

from obscrowd_lib.masks import MaskConfig, face_masks

# two synthetic faces far apart (landmarks: left eye, right eye, nose, mouth left, mouth right)
A = np.array([[40, 50], [60, 50], [50, 60], [42, 70], [58, 70]], float)
B = A + [150, 20]


def test_range_union_and_zero_far_away():
    m = face_masks((160, 260), [A, B])
    assert m.per_face.shape == (2, 160, 260) and m.union.shape == (160, 260)
    assert float(m.per_face.min()) >= 0 and float(m.per_face.max()) <= 1
    assert torch.all(m.union >= m.per_face[0]) and torch.all(m.union >= m.per_face[1])
    assert float(m.per_face[0, 55, 50]) == 1.0 and float(m.per_face[1, 75, 200]) == 1.0
    assert float(m.per_face[0, :, 150:].max()) == 0.0  # face A's mask is zero near face B
    assert float(m.union[130:, :].max()) == 0.0 and float(m.union[:, 90:160].max()) == 0.0


def test_covers_forehead_and_chin():
    m = face_masks((120, 120), [A]).per_face[0]
    assert float(m[35, 50]) > 0.9  # forehead above the eyes
    assert float(m[80, 50]) > 0.5  # chin below the mouth


def test_dilation_and_feather_grow_the_mask():
    base = face_masks((120, 120), [A]).union.sum()
    assert face_masks((120, 120), [A], dilation=0.3).union.sum() > base
    assert face_masks((120, 120), [A], feather=0.5).union.sum() > base
    hard = face_masks((120, 120), [A], config=MaskConfig(feather=0.0)).union
    assert set(torch.unique(hard).tolist()) <= {0.0, 1.0}


def test_no_faces_gives_empty_masks():
    m = face_masks((10, 20), [])
    assert m.per_face.shape == (0, 10, 20) and float(m.union.sum()) == 0
