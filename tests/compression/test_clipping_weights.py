"""clipping.weights: levels, the projection after a step, and the clipping transform's gradient."""

import numpy as np
import pytest

import tinynet
from compression.clipping.weights import (
    ClipWeights,
    WeightClip,
    clip_weight,
    clip_weights_,
    clipping_level,
)
from tinynet.gradcheck import gradcheck
from tinynet.transforms import Mask, strip

W = np.array([[-3.0, 0.5, 2.0], [-0.2, 0.4, 0.9]])


def mlp():
    tinynet.manual_seed(0)
    return tinynet.Sequential(tinynet.Linear(3, 4), tinynet.ReLU(), tinynet.Linear(4, 2))


# ------------------------------------------------------------- levels
def test_levels_fixed_per_channel_and_in_standard_deviations():
    assert float(clipping_level(W, c=0.5)) == 0.5
    np.testing.assert_array_equal(clipping_level(W, c=[1.0, 0.3]), [1.0, 0.3])
    assert float(clipping_level(W, k=2.0)) == pytest.approx(2 * W.std())
    np.testing.assert_allclose(clipping_level(W, k=1.0, per_channel=True), W.std(axis=1))


def test_bad_levels_say_what_was_expected():
    with pytest.raises(ValueError, match="must be positive, got 0"):
        clipping_level(W, c=0.0)
    with pytest.raises(ValueError, match="must be positive"):
        clipping_level(W, c=[1.0, -0.3])
    with pytest.raises(ValueError, match="k .* must be a positive number, got -1"):
        clipping_level(W, k=-1)
    with pytest.raises(ValueError, match="exactly one of c"):
        clipping_level(W)
    with pytest.raises(ValueError, match="exactly one of c"):
        clipping_level(W, c=1.0, k=2.0)
    with pytest.raises(ValueError, match="must be positive"):  # a constant tensor: std 0
        clipping_level(np.ones((2, 2)), k=3.0)
    with pytest.raises(ValueError, match="one entry per output channel"):
        clip_weight(W, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="must be positive"):
        WeightClip(c=-1.0)
    with pytest.raises(ValueError, match="exactly one of c and k"):
        ClipWeights()


def test_hand_worked_clips():
    np.testing.assert_array_equal(clip_weight(W, 1.0), [[-1.0, 0.5, 1.0], [-0.2, 0.4, 0.9]])
    np.testing.assert_array_equal(clip_weight(W, [1.0, 0.3]), [[-1.0, 0.5, 1.0], [-0.2, 0.3, 0.3]])
    w32 = W.astype(np.float32)
    assert clip_weight(w32, 0.5).dtype == np.float32
    conv = np.arange(-8.0, 8.0).reshape(2, 2, 2, 2)  # per filter of a Conv2d weight
    out = clip_weight(conv, [2.0, 5.0])
    assert out[0].min() == -2.0 and out[0].max() == -1.0 and out[1].max() == 5.0


# ---------------------------------------------------- (a) the projection
def test_projection_clips_latent_weights_in_place_and_leaves_biases():
    model = mlp()
    model[0].weight.data *= 10
    model[0].bias.data[:] = 5.0
    before = model[2].weight.data.copy()
    assert clip_weights_(model, c=0.3) == 2
    assert np.abs(model[0].weight.data).max() == pytest.approx(0.3)
    np.testing.assert_array_equal(model[0].bias.data, 5.0)
    np.testing.assert_array_equal(model[2].weight.data, np.clip(before, -0.3, 0.3))
    level = clipping_level(model[2].weight.data, k=1.0, per_channel=True)  # before clipping
    assert clip_weights_(model, k=1.0, per_channel=True, include="2.weight") == 1
    w = model[2].weight.data
    np.testing.assert_allclose(np.abs(w).max(axis=1), level, rtol=1e-6)
    # the level moves with the weights: clipping shrank the std, a second pass clips again
    assert np.all(clipping_level(w, k=1.0, per_channel=True) < level)


def test_projection_acts_on_the_latent_value_under_a_mask():
    model = mlp()
    model[0].weight.data[:] = 2.0
    model[0].weight.add_transform(Mask(np.eye(4, 3, dtype=bool)))
    clip_weights_(model, c=0.5)
    np.testing.assert_array_equal(model[0].weight.data, 0.5)  # latent clipped
    np.testing.assert_array_equal(model[0].weight.value(), 0.5 * np.eye(4, 3))


def test_callback_keeps_weights_inside_the_window_during_fit():
    model = mlp()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = rng.integers(0, 2, 64)
    opt = tinynet.SGD(model.parameters(), lr=2.0)  # large steps push weights out
    tinynet.fit(
        model,
        (x, y),
        tinynet.CrossEntropyLoss(),
        opt,
        epochs=1,
        batch_size=16,
        callbacks=[ClipWeights(c=0.1)],
        progress=False,
    )
    for layer in (model[0], model[2]):
        assert np.abs(layer.weight.data).max() <= np.float32(0.1)


# ----------------------------------------------- (b) the transform, gradient checked
def test_transform_forward_and_backward_by_hand():
    clip = WeightClip(c=1.0)
    w = np.array([-2.0, -1.0, 0.3, 1.0, 1.5])
    np.testing.assert_array_equal(clip.forward(w), [-1.0, -1.0, 0.3, 1.0, 1.0])
    # the end points pass the gradient (torch.clamp); beyond them it is zero
    np.testing.assert_array_equal(clip.backward(np.full(5, 2.0)), [0.0, 2.0, 2.0, 2.0, 0.0])
    with tinynet.no_grad():
        clip.forward(w)
    with pytest.raises(RuntimeError, match="without a cached forward"):
        clip.backward(np.ones(5))


def test_transform_matches_torch_clamp_at_and_beyond_the_ends():
    torch = pytest.importorskip("torch")
    w = np.array([[-2.0, -0.5, 0.5], [0.25, -0.25, 0.7]])
    c = np.array([0.5, 0.25])
    dout = np.arange(1.0, 7.0).reshape(2, 3)
    clip = WeightClip(c=c)
    out = clip.forward(w)
    tw = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    tc = torch.tensor(c, dtype=torch.float64)[:, None]
    tout = torch.clamp(tw, -tc, tc)
    tout.backward(torch.tensor(dout))
    np.testing.assert_array_equal(out, tout.detach().numpy())
    np.testing.assert_array_equal(clip.backward(dout), tw.grad.numpy())


@pytest.mark.parametrize("c", [0.2, [0.1, 0.3, 0.2, 0.25]])
def test_gradcheck_through_the_transform(c):
    model = mlp()
    model[0].weight.data = np.random.default_rng(1).uniform(-0.5, 0.5, (4, 3)).astype(np.float32)
    model[0].weight.add_transform(WeightClip(c=c))
    x = np.random.default_rng(2).standard_normal((5, 3))
    report = gradcheck(model, x)
    assert "0.parametrizations.weight.original" in report
    model.astype(np.float64)
    out = model(x)
    model.zero_grad()
    model.backward(np.ones_like(out))
    level = np.asarray(c, dtype=np.float32).reshape(-1, 1) if np.ndim(c) else np.float32(c)
    outside = np.abs(model[0].weight.data) > level
    assert outside.any() and np.all(model[0].weight.grad[outside] == 0)


def test_level_in_standard_deviations_follows_the_weight():
    clip = WeightClip(k=1.0, per_channel=True, channels=2)
    out = clip.forward(W)
    np.testing.assert_allclose(clip.level, W.std(axis=1), rtol=1e-6)
    np.testing.assert_allclose(out, np.clip(W, -clip.level[:, None], clip.level[:, None]))
    mask = np.abs(W) <= clip.level.astype(np.float64)[:, None]
    np.testing.assert_array_equal(clip.backward(np.ones_like(W)), mask)  # level held constant


@pytest.mark.parametrize(
    "transform", [lambda: WeightClip(c=[0.1, 0.2, 0.3, 0.4]), lambda: WeightClip(k=1.5)]
)
def test_save_load_round_trip_and_strip(tmp_path, transform):
    model = mlp()
    model[0].weight.add_transform(transform())
    x = np.random.default_rng(3).standard_normal((6, 3)).astype(np.float32)
    with tinynet.no_grad():
        expected = model(x)
    tinynet.save(model, tmp_path / "clip.npz")
    fresh = mlp()
    fresh.load_state_dict(tinynet.load(tmp_path / "clip.npz"))
    assert isinstance(fresh[0].weight.transforms[0], WeightClip)
    with tinynet.no_grad():
        np.testing.assert_array_equal(fresh(x), expected)
    strip(fresh)
    assert "0.weight" in fresh.state_dict()
    assert np.abs(fresh[0].weight.data).max() <= np.abs(model[0].weight.value()).max()


def test_gradient_norm_clipping_is_tinynets_not_ours():
    import compression.clipping.weights as weights

    assert "clip_grad_norm_" in weights.__doc__
    assert not hasattr(weights, "clip_grad_norm_")
