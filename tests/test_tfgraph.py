"""Frozen TF GraphDef interpreter (TensorFlow's SAME padding, pooling, batch-1 graphs batched) and FaceNet."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensorboard.compat.proto import graph_pb2
from tensorboard.util import tensor_util

from obscrowd_lib.formats.tfgraph import FACENET_TEMPLATE, TFGraph, load_facenet


def _node(graph, name, op, inputs=(), value=None, **attrs):
    n = graph.node.add(name=name, op=op)
    n.input.extend(inputs)
    if value is not None:
        n.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value))
    for k, v in attrs.items():
        if isinstance(v, bytes):
            n.attr[k].s = v
        elif isinstance(v, bool):
            n.attr[k].b = v
        else:
            n.attr[k].list.i.extend(v)
    return n


def _toy_graph(path, extra_op: str | None = None):
    """x (1,4,4,1) -> [Conv 3x3 ones /2 SAME, AvgPool 3x3 /2 SAME, MaxPool 3x3 /2 SAME] -> concat -> [1,-1] -> L2.
    Nodes are written in reverse order (the interpreter must sort them)."""
    g = graph_pb2.GraphDef()
    win = {"strides": [1, 2, 2, 1], "padding": b"SAME"}
    nodes = [
        ("input", "Placeholder", (), None, {}),
        ("w", "Const", (), np.ones((3, 3, 1, 1), np.float32), {}),
        ("conv", "Conv2D", ("input:0", "w"), None, {**win, "dilations": [1, 1, 1, 1]}),
        ("avg", "AvgPool", ("input",), None, {**win, "ksize": [1, 3, 3, 1]}),
        ("max", "MaxPool", ("input",), None, {**win, "ksize": [1, 3, 3, 1]}),
        ("axis", "Const", (), np.int32(3), {}),
        ("cat", "ConcatV2", ("conv", "avg", "max", "axis"), None, {}),
        ("shape", "Const", (), np.array([1, -1], np.int32), {}),
        ("flat", "Reshape", ("cat", "shape"), None, {}),
        ("sq", "Square" if extra_op is None else extra_op, ("flat",), None, {}),
        ("ax1", "Const", (), np.int32(1), {}),
        ("sum", "Sum", ("sq", "ax1"), None, {"keep_dims": False}),
        ("eps", "Const", (), np.float32(1e-10), {}),
        ("mx", "Maximum", ("sum", "eps"), None, {}),
        ("rs", "Rsqrt", ("mx",), None, {}),
        ("out", "Mul", ("flat", "rs"), None, {}),
    ]
    for name, op, ins, value, attrs in reversed(nodes):
        _node(g, name, op, ins, value, **attrs)
    g.node[-1].attr["shape"].shape.dim.add(size=1)  # placeholder shape (1, 4, 4, 1)
    for s in (4, 4, 1):
        g.node[-1].attr["shape"].shape.dim.add(size=s)
    path.write_bytes(g.SerializeToString())


# TensorFlow's SAME for a 4x4 input, 3x3 window, stride 2: pad 0 before and 1 after, so the windows cover
# rows/cols {0,1,2} and {2,3}. On arange(16): conv sums 45, 39, 66, 50; averages over valid pixels only
# (45/9, 39/6, 66/6, 50/4); maxima 10, 11, 14, 15. Torch-style symmetric padding would give conv[0,0] = 10.
EXPECTED_FLAT = [45, 5, 10, 39, 6.5, 11, 66, 11, 14, 50, 12.5, 15]


def test_toy_graph_tf_same_padding_and_pooling(tmp_path):
    _toy_graph(tmp_path / "toy.pb")
    x = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4, 1)
    flat = TFGraph(tmp_path / "toy.pb", output="flat")
    assert flat.input_shape == (1, 4, 4, 1)
    assert flat(x)[0].tolist() == pytest.approx(EXPECTED_FLAT, abs=1e-5)


def test_toy_graph_batches_with_batch1_semantics_and_gradients(tmp_path):
    _toy_graph(tmp_path / "toy.pb")
    graph = TFGraph(tmp_path / "toy.pb", output="out")
    x = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4, 1)
    xb = torch.cat([x, 2 * x + 1]).requires_grad_(True)  # Sum drops the batch axis: only correct per item
    out = graph(xb)
    ref = torch.tensor(EXPECTED_FLAT)
    assert torch.allclose(out[0], ref / ref.norm(), atol=1e-6)
    assert torch.allclose(out[1], graph(xb[1:].detach())[0], atol=1e-6)
    out[:, 0].sum().backward()
    assert xb.grad is not None and xb.grad.abs().sum() > 0


def test_bad_graphs_raise_naming_the_file(tmp_path):
    _toy_graph(tmp_path / "odd.pb", extra_op="Softplus")
    with pytest.raises(ValueError, match=r"odd\.pb.*Softplus"):
        TFGraph(tmp_path / "odd.pb", output="out")
    _toy_graph(tmp_path / "toy.pb")
    with pytest.raises(ValueError, match=r"toy\.pb.*'nope'"):
        TFGraph(tmp_path / "toy.pb", output="nope")
    (tmp_path / "junk.pb").write_bytes(b"\xff\x00 not a graph")
    with pytest.raises(ValueError, match=r"junk\.pb"):
        TFGraph(tmp_path / "junk.pb")


# --- FaceNet (fetched weights) ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def facenet():
    return load_facenet()


@pytest.mark.slow
def test_facenet_contract_batching_and_gradients(facenet):
    assert (facenet.crop_size, facenet.embedding_dim) == (160, 512)
    assert torch.allclose(facenet.template, torch.tensor(FACENET_TEMPLATE)) and facenet.template.shape == (5, 2)
    assert not facenet.training and not any(p.requires_grad for p in facenet.parameters())
    assert sum(p.numel() for p in facenet.parameters()) > 23_000_000
    crops = torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    emb = facenet(crops)
    assert emb.shape == (2, 512) and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(facenet(crops[1:].detach())[0], emb[1], atol=1e-5)
    emb[:, 0].sum().backward()
    assert crops.grad is not None and crops.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="160"):
        facenet(torch.rand(1, 3, 112, 112))


@pytest.mark.slow
def test_facenet_genuine_above_impostor(facenet):
    from test_onnx_models import dlib_aligned_crops  # shared test-only aligner (dlib 5-point landmarks)

    with torch.no_grad():
        e = facenet(dlib_aligned_crops(facenet.template, 160))
    sim = (e @ e.T).numpy()
    genuine = [sim[0, 1], sim[0, 2], sim[1, 2]]  # obama, obama2, obama3
    impostor = sim[:3, 3]  # each against biden
    assert min(genuine) > max(impostor), (genuine, impostor)
