"""ReLU, LeakyReLU, Sigmoid, Tanh: known answers, stability, gradients, parity."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tinynet import LeakyReLU, ReLU, Sigmoid, Tanh, no_grad
from tinynet.gradcheck import gradcheck

ALL = [ReLU, LeakyReLU, Sigmoid, Tanh]


def away_from_zero(shape, seed=0):
    """Random inputs at least 0.1 from 0, where ReLU's kink would fool finite differences."""
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 0.1, 0.5, x)


# ---------------------------------------------------------------- known answers
def test_relu_known_answer_and_zero_gradient_at_zero():
    relu = ReLU()
    x = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_array_equal(relu(x), [[0.0, 0.0, 3.0]])
    assert relu.cache.dtype == bool  # only the mask is kept
    np.testing.assert_array_equal(relu.backward(np.array([[5.0, 5.0, 5.0]])), [[0.0, 0.0, 5.0]])


def test_leaky_relu_known_answer():
    act = LeakyReLU(0.1)
    x = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(act(x), [-0.2, 0.0, 3.0])
    np.testing.assert_allclose(act.backward(np.array([1.0, 1.0, 1.0])), [0.1, 0.1, 1.0])
    assert LeakyReLU().negative_slope == 0.01
    assert repr(LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert repr(ReLU()) == "ReLU()"


def test_sigmoid_and_tanh_known_answers():
    sig, tanh = Sigmoid(), Tanh()
    x = np.array([0.0, np.log(3.0)])
    np.testing.assert_allclose(sig(x), [0.5, 0.75])  # 1 / (1 + 1/3)
    np.testing.assert_allclose(sig.backward(np.ones(2)), [0.25, 0.1875])  # s (1 - s)
    np.testing.assert_allclose(tanh(np.array([0.0, np.log(2.0)])), [0.0, 0.6])  # (4-1)/(4+1)
    np.testing.assert_allclose(tanh.backward(np.ones(2)), [1.0, 0.64])  # 1 - t^2


def test_sigmoid_is_stable_for_huge_inputs():
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any overflow warning fails the test
        for dtype in (np.float64, np.float32):
            sig = Sigmoid()
            out = sig(x.astype(dtype))
            dx = sig.backward(np.ones(5, dtype=dtype))
            assert out.dtype == dtype and np.all(np.isfinite(out)) and np.all(np.isfinite(dx))
            np.testing.assert_allclose(out[[0, 2, 4]], [0.0, 0.5, 1.0])
            np.testing.assert_allclose(dx[[0, 4]], [0.0, 0.0])
        np.testing.assert_allclose(Tanh()(x), [-1.0, -1.0, 0.0, 1.0, 1.0])


@settings(deadline=None, max_examples=25)
@given(arrays(np.float64, (6,), elements=st.floats(-700, 700)))
def test_sigmoid_matches_the_textbook_formula_and_symmetry(x):
    out = Sigmoid()(x)
    np.testing.assert_allclose(out, 1.0 / (1.0 + np.exp(-x)), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(out + Sigmoid()(-x), 1.0, rtol=1e-12)


# ---------------------------------------------------------- the module contract
@pytest.mark.parametrize("cls", ALL)
def test_gradcheck(cls):
    gradcheck(cls(), away_from_zero((4, 5)))
    gradcheck(cls(), away_from_zero((2, 3, 4, 4), seed=1))


@pytest.mark.parametrize("cls", ALL)
def test_float32_in_float32_out(cls):
    act = cls()
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    out = act(x)
    dx = act.backward(np.ones_like(out))
    assert out.dtype == np.float32 and dx.dtype == np.float32


@pytest.mark.parametrize("cls", ALL)
def test_no_grad_keeps_no_cache(cls):
    act = cls()
    with no_grad():
        act(np.ones((2, 2)))
    assert act.cache is None
    with pytest.raises(RuntimeError, match="cached forward"):
        act.backward(np.ones((2, 2)))


@pytest.mark.parametrize("cls", ALL)
def test_requires_input_grad_false_returns_none(cls):
    act = cls()
    act.requires_input_grad = False
    act(np.ones((2, 2)))
    assert act.backward(np.ones((2, 2))) is None


@pytest.mark.parametrize("cls", ALL)
def test_wrong_dout_shape_is_named(cls):
    act = cls()
    act(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"dout of shape \(2, 3\), got \(3, 2\)"):
        act.backward(np.ones((3, 2)))


@pytest.mark.parametrize(
    ("cls", "torch_name"),
    [(ReLU, "ReLU"), (LeakyReLU, "LeakyReLU"), (Sigmoid, "Sigmoid"), (Tanh, "Tanh")],
)
def test_torch_parity_float64(cls, torch_name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6)) * 3
    x[0, :3] = [0.0, -0.0, 40.0]  # include the kink and a saturated value
    dout = rng.standard_normal((5, 6))
    ours = cls()
    out = ours(x)
    dx = ours.backward(dout)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = getattr(torch.nn, torch_name)()(xt)
    out_t.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-15)
