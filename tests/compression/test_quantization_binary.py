"""Binary and ternary weights: hand-worked values, the straight-through rules, training."""

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import tinynet
from compression.pruning import prune_model
from compression.quantization.binary import (
    BinaryWeights,
    ClipLatent,
    TernaryWeights,
    binarize,
    binary_codes,
    clip_latent,
    ternarize,
    ternary_codes,
)
from tinynet import Adam, CrossEntropyLoss, Linear, Parameter, ReLU, Sequential, gradcheck, strip


def mlp(seed=0):
    tinynet.manual_seed(seed)
    return Sequential(Linear(10, 32), ReLU(), Linear(32, 3))


def blobs(n=96, seed=0):
    """Three well separated Gaussian blobs in 10 dimensions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = rng.standard_normal((3, 10)) * 2
    x = (centres[y] + rng.standard_normal((n, 10))).astype(np.float32)
    return x, y


# ------------------------------------------------------------ values by hand
W = np.array([[0.5, -1.5, 0.0], [-0.2, 0.1, 0.3]], dtype=np.float32)


def test_binary_values_by_hand():
    s, alpha = binary_codes(W)
    np.testing.assert_array_equal(s, [[1, -1, 1], [-1, 1, 1]])  # sign(0) = +1
    assert alpha.dtype == np.float32 and alpha == np.float32(2.6 / 6)  # mean |W|
    _, alpha = binary_codes(W, "channel")
    np.testing.assert_allclose(alpha, [2.0 / 3, 0.6 / 3], rtol=1e-7)
    t = BinaryWeights("channel")
    np.testing.assert_allclose(t.forward(W), [[2 / 3, -2 / 3, 2 / 3], [-0.2, 0.2, 0.2]], rtol=1e-6)
    np.testing.assert_array_equal(BinaryWeights(None).forward(W), s)  # pure +-1
    np.testing.assert_array_equal(BinaryWeights(0.25).forward(W), 0.25 * s)  # a fixed H
    assert BinaryWeights().forward(W).dtype == np.float32


def test_ternary_values_by_hand():
    # mean |W| = 2.6 / 6; delta = 0.7 * that = 0.30333: keep 0.5, -1.5 (0.3 falls below)
    t, alpha = ternary_codes(W)
    np.testing.assert_array_equal(t, [[1, -1, 0], [0, 0, 0]])
    assert alpha == np.float32(1.0)  # mean of 0.5 and 1.5
    np.testing.assert_array_equal(TernaryWeights().forward(W), [[1.0, -1.0, 0], [0, 0, 0]])
    # a lower threshold keeps 0.3 too: delta = 0.13
    t, alpha = ternary_codes(W, 0.3)
    np.testing.assert_array_equal(t, [[1, -1, 0], [-1, 0, 1]])
    assert alpha == pytest.approx(2.5 / 4)
    # all zeros: nothing above the threshold, alpha = 0
    t, alpha = ternary_codes(np.zeros(4, np.float32))
    assert not t.any() and alpha == 0.0


@settings(deadline=None, max_examples=40)
@given(arrays(np.float32, (5, 7), elements=st.floats(-2, 2, width=32)))
def test_requantizing_the_effective_weight_gives_it_back_exactly(w):
    # what lets a compressed file store only the codes and the scale
    for t in (BinaryWeights("tensor"), BinaryWeights("channel"), TernaryWeights()):
        w_eff = t.forward(w)
        np.testing.assert_array_equal(t.forward(w_eff), w_eff)


# -------------------------------------------------- straight-through gradients
def test_binary_ste_passes_the_gradient_inside_the_window_only():
    p = Parameter(np.array([0.5, -1.5, 1.0, -0.2, 3.0], np.float32))
    p.add_transform(BinaryWeights())
    p.value()
    p.backward(np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32))
    np.testing.assert_array_equal(p.grad, [1.0, 0.0, 3.0, 4.0, 0.0])  # |w| <= 1 passes
    q = Parameter(p.data.copy())
    q.add_transform(BinaryWeights(limit=0.4))
    q.value()
    q.backward(np.ones(5, np.float32))
    np.testing.assert_array_equal(q.grad, [0.0, 0.0, 0.0, 1.0, 0.0])


def test_ternary_ste_passes_the_gradient_straight_through():
    p = Parameter(np.array([0.5, -1.5, 3.0, 0.0], np.float32))
    p.add_transform(TernaryWeights())
    p.value()
    p.backward(np.array([1.0, 2.0, 3.0, 4.0], np.float32))
    np.testing.assert_array_equal(p.grad, [1.0, 2.0, 3.0, 4.0])


@pytest.mark.parametrize("make", [lambda: BinaryWeights("channel"), lambda: TernaryWeights()])
def test_model_gradients_follow_the_ste_rule(make):
    """dW = dL/dW_eff (from the same net with W_eff baked in) times the STE's mask.

    The true derivative of sign is 0, so the latent gradient is not checked
    numerically; the input and bias gradients are (W_eff is fixed for them).
    """
    model = mlp()
    model[0].weight.data[0, :3] = [1.5, -2.0, 0.9]  # some latent weights outside [-1, 1]
    for layer in (model[0], model[2]):
        layer.weight.add_transform(make())
    x = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    baked = strip(copy.deepcopy(model))  # same effective weights, no transforms
    dout = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    for net in (model, baked):
        net(x)
        net.zero_grad()
        net.backward(dout)
    for layer, plain in ((model[0], baked[0]), (model[2], baked[2])):
        window = np.abs(layer.weight.data) <= 1.0
        expected = plain.weight.grad * (window if isinstance(make(), BinaryWeights) else 1)
        np.testing.assert_allclose(layer.weight.grad, expected, rtol=1e-6)
        np.testing.assert_allclose(layer.bias.grad, plain.bias.grad, rtol=1e-6)
    # numerically: dx and the biases, with the latent weights frozen
    for layer in (model[0], model[2]):
        layer.weight.requires_grad = False
    report = gradcheck(model, x)
    assert set(report) == {"input", "0.bias", "2.bias"}


# ------------------------------------------------------------------ the model
def test_binarize_and_ternarize_every_weight_and_round_trip_the_state_dict():
    model = mlp()
    added = binarize(model, "channel", exclude_first=True)
    assert list(added) == ["2.weight"] and not model[0].weight.transforms
    added = ternarize(model, include=["0.weight"], threshold=0.5)
    assert list(added) == ["0.weight"]
    state = model.state_dict()
    assert state.metadata["transforms"] == {
        "0.weight": [{"type": "TernaryWeights", "config": {"threshold": 0.5}}],
        "2.weight": [{"type": "BinaryWeights", "config": {"scale": "channel", "limit": 1.0}}],
    }
    fresh = mlp(seed=1)
    fresh.load_state_dict(state)
    x, _ = blobs(5)
    np.testing.assert_array_equal(fresh(x), model(x))
    assert len(np.unique(fresh[0].weight.value())) <= 3
    assert len(np.unique(np.abs(fresh[2].weight.value()), axis=None)) <= 3  # one alpha a row


def test_errors_teach():
    with pytest.raises(ValueError, match="scale must be 'tensor', 'channel', a positive number"):
        binarize(mlp(), "layer")
    with pytest.raises(ValueError, match="scale must be"):
        BinaryWeights(-1.0)
    with pytest.raises(ValueError, match="limit must be a positive number"):
        BinaryWeights(limit=0)
    with pytest.raises(ValueError, match=r"threshold must be a number in \(0, 1\), got 1.5"):
        ternarize(mlp(), 1.5)
    with pytest.raises(ValueError, match="scale='channel' needs a weight with output channels"):
        BinaryWeights("channel").forward(np.ones(3))
    pruned = mlp()
    prune_model(pruned, 0.5)
    with pytest.raises(ValueError, match=r"already has transforms \['Mask'\].*pruned zero"):
        binarize(pruned)


def test_clip_latent_keeps_latent_weights_in_the_window():
    model = mlp()
    binarize(model, include=["0.weight"])
    model[0].weight.data[0, 0] = 3.0
    model[2].weight.data[0, 0] = 3.0  # not binarized: left alone
    assert clip_latent(model, 1.0) == 1
    assert model[0].weight.data[0, 0] == 1.0 and model[2].weight.data[0, 0] == 3.0


def test_training_binary_weights_lowers_the_loss():
    model = mlp()
    binarize(model)
    x, y = blobs()
    crit = CrossEntropyLoss()
    first = crit(model(x), y)
    history = tinynet.fit(
        model,
        (x, y),
        crit,
        Adam(model.parameters(), lr=1e-2),
        epochs=10,
        batch_size=32,
        callbacks=[ClipLatent(1.0)],
        progress=False,
    )
    assert history.loss[-1] < 0.5 * first
    assert np.abs(model[0].weight.data).max() <= 1.0
    assert len(np.unique(model[0].weight.value())) == 2  # still binary: +-alpha


def test_training_ternary_weights_lowers_the_loss():
    model = mlp()
    ternarize(model)
    x, y = blobs()
    crit = CrossEntropyLoss()
    first = crit(model(x), y)
    opt = Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        crit(model(x), y)
        opt.zero_grad()
        model.backward(crit.backward())
        opt.step()
    assert crit(model(x), y) < 0.5 * first
    assert len(np.unique(model[0].weight.value())) == 3
