"""quantization.lsq: the learned step size, its hand-derived gradient checked numerically."""

import copy

import numpy as np
import pytest

import tinynet
from compression.quantization.apply import bit_widths, prepare_qat
from compression.quantization.lsq import LSQ, lsq_levels, lsq_step_gradient

V = np.array([0.26, 0.24, 5.0, -9.0, -0.76])  # s = 0.5: v/s = 0.52, 0.48, 10, -18, -1.52


def test_levels_signed_and_unsigned():
    assert lsq_levels(2, True) == (2, 1) and lsq_levels(8, True) == (128, 127)
    assert lsq_levels(2, False) == (0, 3) and lsq_levels(4, False) == (0, 15)


def two_bit(**kwargs):
    lsq = LSQ(2, signed=True, grad_scale=1.0, initialized=True, **kwargs)
    lsq.step_size.data = np.array(0.5)
    return lsq


def test_worked_two_bit_forward_and_backward():
    lsq = two_bit()
    # v_bar = clip(round(v/s), -2, 1) = [1, 0, 1, -2, -2]
    np.testing.assert_array_equal(lsq.forward(V), [0.5, 0.0, 0.5, -1.0, -1.0])
    dx = lsq.backward(np.ones(5))
    np.testing.assert_array_equal(dx, [1, 1, 0, 0, 1])  # inside -2 < v/s < 1
    # d v_hat/ds: 1 - 0.52, 0 - 0.48, Q_P = 1, -Q_N = -2, -2 + 1.52
    np.testing.assert_allclose(lsq_step_gradient(V, 0.5, 2, 1), [0.48, -0.48, 1, -2, -0.48])
    np.testing.assert_allclose(lsq.step_size.grad, -1.48)


def test_gradient_scale_of_weights_and_activations():
    lsq = two_bit()
    lsq.grad_scale = None  # the paper's g = 1 / sqrt(N * Q_P)
    lsq.forward(V)
    lsq.backward(np.ones(5))
    np.testing.assert_allclose(lsq.step_size.grad, -1.48 / np.sqrt(5 * 1))
    act = LSQ(3, signed=False, role="activation")  # Q_P = 7, N = 4 features per example
    assert act.gradient_scale(np.ones((10, 4))) == pytest.approx(1 / np.sqrt(4 * 7))
    with pytest.raises(ValueError, match="role must be"):
        LSQ(role="bias")


def test_initial_step_is_two_mean_abs_over_sqrt_qp():
    lsq = LSQ(4, signed=True)  # Q_P = 7
    w = np.array([1.0, -1.0, 2.0, -2.0], dtype=np.float32)
    lsq.forward(w)
    assert lsq.initialized
    assert float(lsq.step_size.data) == pytest.approx(2 * 1.5 / np.sqrt(7))
    lsq.step_size.data = np.array(0.1, dtype=np.float32)
    lsq.forward(w)  # not initialised again
    assert float(lsq.step_size.data) == pytest.approx(0.1)


# ---------------------------------------------------- numerical gradient checks
def away_from_boundaries(rng, n, s, q_n, q_p):
    """Values whose v/s sits at least 0.05 from every half-integer and 0.55 from the clip ends."""
    u = rng.uniform(-q_n - 3, q_p + 3, size=4 * n)
    frac = np.abs(u - np.floor(u) - 0.5)
    ok = (frac > 0.05) & (np.abs(u - q_p) > 0.55) & (np.abs(u + q_n) > 0.55)
    return u[ok][:n] * s


@pytest.mark.parametrize("bits,signed", [(2, True), (3, False), (4, True)])
def test_step_gradient_against_the_ste_surrogate(bits, signed):
    """With round's residual held constant (the STE), eq. 3 is an exact derivative."""
    rng = np.random.default_rng(bits)
    s0 = 0.3
    lsq = LSQ(bits, signed=signed, grad_scale=1.0, initialized=True)
    lsq.step_size.data = np.array(s0)
    v = away_from_boundaries(rng, 200, s0, lsq.q_n, lsq.q_p)
    dout = rng.standard_normal(v.shape)
    lsq.forward(v)
    lsq.backward(dout)
    residual = np.round(v / s0) - v / s0  # round(u) = u + residual near s0

    def surrogate(s):
        return s * np.clip(v / s + residual, -lsq.q_n, lsq.q_p)

    np.testing.assert_allclose(surrogate(s0), lsq.forward(v), atol=1e-12)
    eps = 1e-6
    numeric = np.sum(dout * (surrogate(s0 + eps) - surrogate(s0 - eps))) / (2 * eps)
    np.testing.assert_allclose(lsq.step_size.grad, numeric, rtol=1e-6)


def test_step_gradient_minus_the_true_derivative_is_the_ste_term():
    """Where round is locally constant, d(s * v_bar)/ds = v_bar; LSQ adds -v/s inside."""
    rng = np.random.default_rng(7)
    s0, q_n, q_p = 0.25, 8, 7
    v = away_from_boundaries(rng, 100, s0, q_n, q_p)

    def quantizer(s):
        return s * np.clip(np.round(v / s), -q_n, q_p)

    eps = 1e-9  # moves v/s by ~4e-8: no value crosses a rounding boundary
    numeric = (quantizer(s0 + eps) - quantizer(s0 - eps)) / (2 * eps)
    np.testing.assert_allclose(numeric, np.clip(np.round(v / s0), -q_n, q_p), atol=1e-5)
    u = v / s0
    inside = (u > -q_n) & (u < q_p)
    np.testing.assert_allclose(lsq_step_gradient(v, s0, q_n, q_p) - numeric, -u * inside, atol=1e-5)


def test_input_gradient_is_straight_through_in_a_model():
    tinynet.manual_seed(0)
    model = tinynet.Sequential(tinynet.Linear(5, 4), tinynet.Linear(4, 2))
    lsq = model[0].weight.add_transform(LSQ(3, grad_scale=1.0))
    model.astype(np.float64)
    x = np.random.default_rng(1).standard_normal((6, 5))
    out = model(x)
    dout = np.random.default_rng(2).standard_normal(out.shape)
    model.backward(dout)
    h_grad = dout @ model[1].weight.data  # dL/d(first layer output)
    dW_eff = h_grad.T @ x
    w, s = model[0].weight.data, float(lsq.step_size.data)
    inside = (w / s > -lsq.q_n) & (w / s < lsq.q_p)
    np.testing.assert_allclose(model[0].weight.grad, dW_eff * inside, rtol=1e-10)
    expected = np.sum(dW_eff * lsq_step_gradient(w, s, lsq.q_n, lsq.q_p))
    np.testing.assert_allclose(lsq.step_size.grad, expected, rtol=1e-10)
    assert lsq.step_size in model.parameters()


# ------------------------------------------------------------- training, saving
def data(n=256):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    return x, (x[:, 0] - x[:, 3] > 0).astype(np.int64)


def mlp():
    tinynet.manual_seed(0)
    return tinynet.Sequential(tinynet.Linear(8, 16), tinynet.ReLU(), tinynet.Linear(16, 2))


def test_lsq_qat_trains_with_fit_and_learns_its_steps(tmp_path):
    x, y = data()
    model = prepare_qat(mlp(), 3, 3, method="lsq")
    assert bit_widths(model) == {"0.weight": 3, "1.output": 3, "2.weight": 3, "2.output": 3}
    relu_q, logits_q = model[1].output_transforms[0], model[2].output_transforms[0]
    assert not relu_q.signed and logits_q.signed  # ReLU outputs use the unsigned grid
    assert model[0].weight.transforms[0].initialized  # from the weights, before any pass
    steps = [float(p.data) for n, p in model.named_parameters() if n.endswith("step_size")]
    assert len(steps) == 4
    opt = tinynet.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = tinynet.CrossEntropyLoss()
    history = tinynet.fit(model, (x, y), loss, opt, 5, batch_size=32, progress=False)
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    after = [float(p.data) for n, p in model.named_parameters() if n.endswith("step_size")]
    assert all(a != b for a, b in zip(after, steps))

    tinynet.save(model, tmp_path / "lsq.npz")
    fresh = mlp()
    fresh.load_state_dict(tinynet.load(tmp_path / "lsq.npz"))
    model.eval()
    fresh.eval()
    with tinynet.no_grad():
        np.testing.assert_array_equal(fresh(x), model(x))
    assert fresh[1].output_transforms[0].get_config() == relu_q.get_config()


def test_float64_copy_and_bad_step_sizes():
    model = prepare_qat(mlp(), 4, 4, method="lsq")
    model(np.ones((2, 8), dtype=np.float32))
    double = copy.deepcopy(model).astype(np.float64)
    assert double[0].weight.transforms[0].step_size.dtype == np.float64
    assert double(np.ones((2, 8))).dtype == np.float64
    lsq = model[0].weight.transforms[0]
    lsq.step_size.data = np.array(-0.1, dtype=np.float32)
    with pytest.raises(ValueError, match="step size became -0.1"):
        model(np.ones((2, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="expected shape"):
        lsq.set_state("step_size", np.ones(3))
    with pytest.raises(RuntimeError, match="without a cached forward"):
        LSQ().backward(np.ones(2))
