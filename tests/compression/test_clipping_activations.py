"""clipping.activations: Clip and ReLU6 by hand and against PyTorch; PACT's gradients."""

import numpy as np
import pytest

import tinynet
from compression.clipping.activations import (
    PACT,
    Clip,
    ReLU6,
    pact_alphas,
    pact_quantize,
    replace_relu_with_pact,
)
from tinynet.gradcheck import gradcheck

# the end points 0 and 2 included, on purpose
X = np.array([[-1.0, 0.0, 0.5, 1.25], [2.0, 3.0, 1.9, -0.1]])


def away_from(points, shape, seed=0, low=-3.0, high=3.0, gap=1e-3):
    """Random inputs at least ``gap`` from every kink (central differences straddle none)."""
    x = np.random.default_rng(seed).uniform(low, high, shape)
    for p in points:
        near = np.abs(x - p) < gap
        x[near] += 2 * gap
    return x


# ------------------------------------------------------------- Clip, ReLU6
def test_clip_forward_and_backward_by_hand():
    clip = Clip(2.0)
    np.testing.assert_array_equal(clip(X), [[0.0, 0.0, 0.5, 1.25], [2.0, 2.0, 1.9, 0.0]])
    # 1[0 < x < c]: zero at both end points (PyTorch's hardtanh convention)
    np.testing.assert_array_equal(
        clip.backward(np.full(X.shape, 3.0)), [[0, 0, 3, 3], [0, 0, 3, 0]]
    )
    assert clip(X.astype(np.float32)).dtype == np.float32
    assert repr(Clip(2.0)) == "Clip(c=2.0)"


def test_relu6_is_clip_at_six():
    x = np.array([-3.0, 0.0, 3.0, 6.0, 9.0])
    np.testing.assert_array_equal(ReLU6()(x), [0.0, 0.0, 3.0, 6.0, 6.0])
    assert ReLU6().c == 6.0


def test_clip_level_must_be_positive_and_cache_needed():
    with pytest.raises(ValueError, match="clipping level c must be positive, got 0"):
        Clip(0.0)
    with pytest.raises(ValueError, match="must be positive, got -1"):
        Clip(-1)
    with pytest.raises(TypeError, match="c must be a number"):
        Clip("6")
    clip = Clip(1.0)
    with tinynet.no_grad():
        clip(X)
    with pytest.raises(RuntimeError, match="without a cached forward"):
        clip.backward(np.ones_like(X))
    clip(X)
    with pytest.raises(ValueError, match="expected dout of shape"):
        clip.backward(np.ones(3))


def test_clip_gradcheck():
    gradcheck(Clip(1.5), away_from([0.0, 1.5], (3, 5)))


def test_clip_and_relu6_match_pytorch_including_the_end_points():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.array([-1.0, 0.0, 0.5, 2.0, 2.5, 6.0, 7.0])
    dout = np.arange(1.0, 8.0)
    for ours, theirs in [(Clip(2.0), lambda t: F.hardtanh(t, 0.0, 2.0)), (ReLU6(), F.relu6)]:
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        out = theirs(t)
        out.backward(torch.tensor(dout))
        np.testing.assert_array_equal(ours(x), out.detach().numpy())
        np.testing.assert_array_equal(ours.backward(dout), t.grad.numpy())


# ---------------------------------------------------------------------- PACT
def test_pact_float_forward_and_both_gradients_by_hand():
    pact = PACT(alpha=2.0)
    np.testing.assert_array_equal(pact(X), [[0.0, 0.0, 0.5, 1.25], [2.0, 2.0, 1.9, 0.0]])
    dout = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    dx = pact.backward(dout)
    np.testing.assert_array_equal(dx, [[0, 0, 3, 4], [0, 0, 7, 0]])  # 1[0 < x < alpha]
    assert float(pact.alpha.grad) == 5.0 + 6.0  # x = 2 and x = 3: 1[x >= alpha]
    pact(X)
    pact.backward(dout)
    assert float(pact.alpha.grad) == 22.0  # gradients accumulate
    assert pact.alpha.grad.shape == () and pact.alpha.grad.dtype == np.float32


@pytest.mark.parametrize("alpha", [0.7, 2.5])
def test_pact_gradcheck_input_and_alpha(alpha):
    x = away_from([0.0, alpha], (4, 6), seed=1)
    report = gradcheck(PACT(alpha=alpha), x)
    assert set(report) == {"input", "alpha"}


def test_pact_float_matches_pytorch_clamp_with_a_tensor_level():
    torch = pytest.importorskip("torch")
    x = away_from([0.0, 1.25], (3, 4), seed=2)
    dout = np.random.default_rng(3).standard_normal(x.shape)
    pact = PACT(alpha=1.25).astype(np.float64)
    out = pact(x)
    dx = pact.backward(dout)
    t = torch.tensor(x, requires_grad=True)
    a = torch.tensor(1.25, dtype=torch.float64, requires_grad=True)
    tout = torch.minimum(torch.relu(t), a)
    tout.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=0, atol=1e-15)
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=0, atol=1e-15)
    np.testing.assert_allclose(pact.alpha.grad, a.grad.numpy(), rtol=1e-12)


def test_pact_quantizer_levels_and_straight_through_gradients_by_hand():
    pact = PACT(alpha=1.5, bits=2)  # n = 3 steps of 0.5: levels 0, 0.5, 1, 1.5
    x = np.array([-1.0, 0.2, 0.3, 0.74, 1.2, 1.5, 4.0])
    np.testing.assert_array_equal(pact(x), [0.0, 0.0, 0.5, 0.5, 1.0, 1.5, 1.5])
    dout = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    # STE on the whole quantizer: the same masks as without it (PACT eq. 3)
    np.testing.assert_array_equal(pact.backward(dout), [0, 2, 3, 4, 5, 0, 0])
    assert float(pact.alpha.grad) == 6.0 + 7.0
    np.testing.assert_array_equal(
        pact_quantize(np.array([0.25, 0.75]), 1.5, 2), [0.0, 1.0]
    )  # half to even


def test_pact_quantized_output_lies_on_the_grid_within_half_a_step():
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 5, 1000).astype(np.float32)
    for bits in (2, 3, 4, 8):
        pact = PACT(alpha=3.0, bits=bits)
        y = pact(x)
        step = 3.0 / (2**bits - 1)
        assert y.dtype == np.float32
        assert np.unique(y).size <= 2**bits
        np.testing.assert_allclose(y / step, np.round(y / step), atol=1e-4)
        assert np.abs(y - np.clip(x, 0, 3.0)).max() <= step / 2 + 1e-6


def test_pact_alpha_must_be_positive():
    with pytest.raises(ValueError, match="clipping level alpha must be positive, got 0"):
        PACT(alpha=0.0)
    pact = PACT(alpha=1.0)
    pact.alpha.data = np.array(-0.1, dtype=np.float32)  # an optimizer step too far
    with pytest.raises(ValueError, match="alpha became -0.1.*must stay positive"):
        pact(X)
    with pytest.raises(ValueError, match="bits must lie in 2..16"):
        PACT(bits=1)


def test_alpha_learns_and_weight_decay_is_the_regulariser():
    pact = PACT(alpha=1.0)
    x = np.array([[2.0, 3.0, 0.5]])
    target = np.array([[2.0, 3.0, 0.5]])  # the clipped entries want a larger alpha
    loss = tinynet.MSELoss()
    opt = tinynet.SGD(
        [{"params": pact_alphas(tinynet.Sequential(pact)), "weight_decay": 0.1}], lr=0.1
    )
    loss(pact(x), target)
    pact.backward(loss.backward())
    grad = float(pact.alpha.grad)  # 2/3 * ((1 - 2) + (1 - 3)) = -2
    assert grad == pytest.approx(-2.0)
    opt.step()
    assert float(pact.alpha.data) == pytest.approx(1.0 - 0.1 * (grad + 0.1 * 1.0))  # L2 on alpha


def test_replace_relu_with_pact_keeps_slots_and_keys():
    model = tinynet.models.lenet5()
    pact = replace_relu_with_pact(model, alpha=6.0, bits={"1": 8, "10": 3})
    assert len(pact) == len(model)
    assert all(type(a) is type(b) or isinstance(a, tinynet.ReLU) for a, b in zip(model, pact))
    keys = list(pact.state_dict())
    assert [k for k in keys if k.endswith("alpha")] == ["1.alpha", "4.alpha", "8.alpha", "10.alpha"]
    assert [k for k in keys if not k.endswith("alpha")] == list(model.state_dict())
    assert pact[1].bits == 8 and pact[10].bits == 3 and pact[4].bits is None
    assert len(pact_alphas(pact)) == 4 and not pact_alphas(model)
    assert pact[0].weight is not model[0].weight  # a copy
    with pytest.raises(ValueError, match="not ReLUs"):
        replace_relu_with_pact(model, bits={"0": 4})
    with pytest.raises(TypeError, match="expects a Sequential"):
        replace_relu_with_pact(tinynet.Linear(2, 2))


def test_pact_model_trains_saves_and_loads(tmp_path):
    tinynet.manual_seed(0)
    model = replace_relu_with_pact(
        tinynet.Sequential(tinynet.Linear(4, 8), tinynet.ReLU(), tinynet.Linear(8, 3)), 2.0, 4
    )
    x = np.random.default_rng(5).standard_normal((32, 4)).astype(np.float32)
    y = np.random.default_rng(6).integers(0, 3, 32)
    before = float(model[1].alpha.data)
    tinynet.fit(
        model,
        (x, y),
        tinynet.CrossEntropyLoss(),
        tinynet.SGD(model.parameters(), lr=0.5),
        1,
        batch_size=8,
        progress=False,
    )
    assert float(model[1].alpha.data) != before
    tinynet.save(model, tmp_path / "pact.npz")
    fresh = replace_relu_with_pact(
        tinynet.Sequential(tinynet.Linear(4, 8), tinynet.ReLU(), tinynet.Linear(8, 3)), 2.0, 4
    )
    fresh.load_state_dict(tinynet.load(tmp_path / "pact.npz"))
    with tinynet.no_grad():
        np.testing.assert_array_equal(fresh.eval()(x), model.eval()(x))


def test_clipping_layers_travel_through_the_compressed_file(tmp_path):
    from compression.storage import load_compressed, save_compressed

    tinynet.manual_seed(0)
    pact = replace_relu_with_pact(tinynet.models.lenet5(), 3.0, bits={"1": 3, "4": 3})
    pact[8].alpha.data[...] = 1.7
    layers = list(pact)
    layers[10] = Clip(2.5)  # any Clip, and ReLU6, can be described too
    model = tinynet.Sequential(*layers)
    path = tmp_path / "pact.tnc"
    save_compressed(model, path)
    again = load_compressed(path)
    x = np.random.default_rng(0).normal(size=(4, 1, 28, 28)).astype(np.float32)
    with tinynet.no_grad():
        np.testing.assert_array_equal(again(x), model(x))
    assert (again[1].bits, again[8].bits) == (3, None)
    assert float(again[8].alpha.data) == np.float32(1.7)
    assert isinstance(again[10], Clip) and again[10].c == 2.5
