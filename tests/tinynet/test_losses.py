"""Tests for tinynet.losses: known answers, gradient checks, stability, PyTorch parity."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinynet
from tinynet.gradcheck import check_loss
from tinynet.losses import CrossEntropyLoss, Loss, MSELoss, log_softmax, softmax


# ------------------------------------------------------------ softmax & co
def test_softmax_known_answer():
    # exp(0) : exp(ln 3) = 1 : 3
    z = np.array([[0.0, math.log(3.0)], [5.0, 5.0]])
    np.testing.assert_allclose(softmax(z), [[0.25, 0.75], [0.5, 0.5]], rtol=1e-15)
    np.testing.assert_allclose(log_softmax(z), np.log([[0.25, 0.75], [0.5, 0.5]]), rtol=1e-15)


def test_softmax_axis():
    z = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    np.testing.assert_allclose(softmax(z, axis=0), [[0.25, 0.5], [0.75, 0.5]], rtol=1e-15)
    np.testing.assert_allclose(np.exp(log_softmax(z, axis=0)), softmax(z, axis=0), rtol=1e-15)


def test_softmax_of_huge_logits_is_stable():
    z = np.array([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, -1000.0], [-1000.0, -1000.0, -1000.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any RuntimeWarning fails (underflow to 0 is fine)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            p = softmax(z)
            logp = log_softmax(z)
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(logp))
    # exp(-1000) underflows to exactly 0 in float64, which is the right answer to 430 digits
    np.testing.assert_array_equal(p[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(p[1], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(p[2], [1 / 3] * 3)
    np.testing.assert_allclose(logp[0], [0.0, -1000.0, -2000.0])
    np.testing.assert_allclose(logp[1], [-math.log(2), -math.log(2), -2000.0 - math.log(2)])


def test_softmax_keeps_float32():
    z = np.array([[1000.0, -1000.0, 3.0]], dtype=np.float32)
    assert softmax(z).dtype == np.float32
    assert log_softmax(z).dtype == np.float32
    np.testing.assert_allclose(log_softmax(z), [[0.0, -2000.0, -997.0]])


@settings(deadline=None, max_examples=25)
@given(
    st.lists(st.floats(-50, 50), min_size=2, max_size=6),
    st.floats(-1000, 1000),
)
def test_softmax_properties(values, shift):
    z = np.array([values])
    p = softmax(z)
    assert np.all(p >= 0)
    assert abs(p.sum() - 1.0) < 1e-12
    # adding a constant to every logit changes nothing (the max subtraction relies on it)
    np.testing.assert_allclose(log_softmax(z + shift), log_softmax(z), atol=1e-9)


# ------------------------------------------------------------ CrossEntropyLoss
def test_cross_entropy_uniform_logits_is_log_C():
    crit = CrossEntropyLoss()
    for C in (2, 10, 100):
        loss = crit(np.zeros((4, C)), np.array([0, 1, 1, C - 1]))
        assert isinstance(loss, float)
        assert loss == pytest.approx(math.log(C), rel=1e-14)


def test_cross_entropy_known_answer_and_gradient():
    # p = softmax([0, ln 3]) = [1/4, 3/4]
    z = np.array([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    y = np.array([1, 0])
    crit = CrossEntropyLoss()
    loss = crit(z, y)
    assert loss == pytest.approx((-math.log(0.75) - math.log(0.25)) / 2, rel=1e-14)
    # (p - onehot) / N
    expected = np.array([[0.25, 0.75 - 1.0], [0.25 - 1.0, 0.75]]) / 2
    np.testing.assert_allclose(crit.backward(), expected, rtol=1e-14)
    # backward can be called again on the same cache (it does not consume it)
    np.testing.assert_allclose(crit.backward(), expected, rtol=1e-14)


def test_cross_entropy_gradient_rows_sum_to_zero():
    rng = np.random.default_rng(0)
    crit = CrossEntropyLoss()
    crit(rng.standard_normal((6, 5)), rng.integers(0, 5, size=6))
    np.testing.assert_allclose(crit.backward().sum(axis=1), 0.0, atol=1e-15)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
def test_cross_entropy_gradcheck(label_smoothing):
    rng = np.random.default_rng(1)
    z = 3.0 * rng.standard_normal((7, 5))
    y = rng.integers(0, 5, size=7)
    err = check_loss(CrossEntropyLoss(label_smoothing=label_smoothing), z, y)
    assert err < 1e-5


def test_cross_entropy_large_logits_stable():
    z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0]])
    y = np.array([1, 2])  # the first sample is confidently wrong
    crit = CrossEntropyLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            loss = crit(z, y)
            dz = crit.backward()
    # sample 0: -log p_1 = 2000; sample 1: -log(1/2)
    assert loss == pytest.approx((2000.0 + math.log(2.0)) / 2, rel=1e-14)
    np.testing.assert_allclose(dz, np.array([[1.0, -1.0, 0.0], [0.0, 0.5, -0.5]]) / 2, atol=1e-15)


def test_cross_entropy_float32_in_float32_out():
    rng = np.random.default_rng(2)
    z = (100 * rng.standard_normal((8, 10))).astype(np.float32)
    y = rng.integers(0, 10, size=8)
    for crit in (CrossEntropyLoss(), CrossEntropyLoss(label_smoothing=0.2)):
        loss = crit(z, y)
        dz = crit.backward()
        assert isinstance(loss, float) and math.isfinite(loss)
        assert dz.dtype == np.float32 and dz.shape == z.shape
        ref = CrossEntropyLoss(label_smoothing=crit.label_smoothing)
        ref_loss = ref(z.astype(np.float64), y)
        assert loss == pytest.approx(ref_loss, rel=1e-5)
        np.testing.assert_allclose(dz, ref.backward(), atol=1e-6)


def test_cross_entropy_label_smoothing_known_answer():
    # C = 2, uniform logits: log p = -ln 2 everywhere, so any q gives ln 2
    crit = CrossEntropyLoss(label_smoothing=0.2)
    assert crit(np.zeros((3, 2)), np.array([0, 1, 0])) == pytest.approx(math.log(2.0))
    # q = 0.8 * onehot + 0.1: gradient (p - q) / N = (0.5 - 0.9, 0.5 - 0.1) / 3 for y = 0
    np.testing.assert_allclose(crit.backward()[0], [-0.4 / 3, 0.4 / 3], rtol=1e-14)


def test_cross_entropy_errors():
    crit = CrossEntropyLoss()
    z = np.zeros((32, 10))
    with pytest.raises(ValueError, match=r"expected logits of shape \(N, C\), got \(32, 1, 10\)"):
        crit(np.zeros((32, 1, 10)), np.zeros(32, dtype=int))
    with pytest.raises(
        ValueError,
        match=r"^CrossEntropyLoss expected targets of shape \(32,\), got \(32, 10\): "
        r"targets are class indices",
    ):
        crit(z, np.zeros((32, 10), dtype=int))
    with pytest.raises(ValueError, match=r"expected targets of shape \(32,\), got \(31,\)$"):
        crit(z, np.zeros(31, dtype=int))
    with pytest.raises(ValueError, match=r"class indices in \[0, 10\), got 10 at position 3"):
        crit(z, np.array([0] * 3 + [10] + [0] * 28))
    with pytest.raises(ValueError, match=r"got -100 at position 0"):
        crit(z, np.array([-100] + [0] * 31))
    with pytest.raises(TypeError, match="expected integer class indices, got targets of dtype"):
        crit(z, np.zeros(32))
    with pytest.raises(TypeError, match="expected floating-point logits, got dtype int64"):
        crit(np.zeros((32, 10), dtype=np.int64), np.zeros(32, dtype=int))
    with pytest.raises(ValueError, match="empty batch"):
        crit(np.zeros((0, 10)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\], got 1.5"):
        CrossEntropyLoss(label_smoothing=1.5)


# ------------------------------------------------------------ MSELoss
def test_mse_known_answer():
    crit = MSELoss()
    y = np.array([[1.0, 2.0], [3.0, 4.0]])
    t = np.array([[1.0, 0.0], [0.0, 4.0]])
    loss = crit(y, t)
    assert isinstance(loss, float)
    assert loss == pytest.approx((0 + 4 + 9 + 0) / 4, rel=1e-15)
    np.testing.assert_allclose(crit.backward(), 2 * (y - t) / 4, rtol=1e-15)


def test_mse_gradcheck():
    rng = np.random.default_rng(3)
    err = check_loss(MSELoss(), rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 3, 2)))
    assert err < 1e-5


def test_mse_float32_in_float32_out():
    y = np.array([[0.5, -1.0]], dtype=np.float32)
    t = np.array([[1.0, 1.0]], dtype=np.float64)  # float64 targets must not promote
    crit = MSELoss()
    assert crit(y, t) == pytest.approx((0.25 + 4.0) / 2)
    dy = crit.backward()
    assert dy.dtype == np.float32
    np.testing.assert_allclose(dy, [[-0.5, -2.0]])


def test_mse_errors():
    with pytest.raises(ValueError, match=r"same shape, got outputs \(32, 1\) and targets \(32,\)"):
        MSELoss()(np.zeros((32, 1)), np.zeros(32))
    with pytest.raises(TypeError, match="floating-point outputs"):
        MSELoss()(np.zeros(3, dtype=int), np.zeros(3))


# ------------------------------------------------------------ the contract
@pytest.mark.parametrize("crit", [CrossEntropyLoss(), MSELoss()])
def test_backward_before_forward_raises(crit):
    with pytest.raises(RuntimeError, match=r"backward\(\) called without a cached forward pass"):
        crit.backward()


def test_no_grad_forward_keeps_no_cache():
    crit = CrossEntropyLoss()
    z, y = np.zeros((2, 3)), np.array([0, 1])
    with tinynet.no_grad():
        loss = crit(z, y)
    assert loss == pytest.approx(math.log(3))
    assert crit.cache is None
    with pytest.raises(RuntimeError, match=r"not inside tinynet.no_grad\(\)"):
        crit.backward()


def test_base_class_contract():
    assert isinstance(CrossEntropyLoss(), Loss) and isinstance(MSELoss(), Loss)
    with pytest.raises(NotImplementedError):
        Loss()(np.zeros(2), np.zeros(2))
    assert repr(CrossEntropyLoss(label_smoothing=0.1)) == "CrossEntropyLoss(label_smoothing=0.1)"
    assert repr(MSELoss()) == "MSELoss()"


# ------------------------------------------------------------ PyTorch parity
@pytest.mark.parametrize("label_smoothing", [0.0, 0.05, 0.3])
def test_cross_entropy_matches_torch(label_smoothing):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    z = 5.0 * rng.standard_normal((16, 7))
    y = rng.integers(0, 7, size=16)
    crit = CrossEntropyLoss(label_smoothing=label_smoothing)
    loss = crit(z, y)
    dz = crit.backward()

    tz = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    tloss = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)(tz, torch.from_numpy(y))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(dz, tz.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_softmax_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    z = 300.0 * rng.standard_normal((4, 5, 6))
    for axis in (0, 1, -1):
        tz = torch.from_numpy(z)
        np.testing.assert_allclose(
            log_softmax(z, axis=axis), torch.log_softmax(tz, dim=axis).numpy(), rtol=1e-12
        )
        np.testing.assert_allclose(
            softmax(z, axis=axis), torch.softmax(tz, dim=axis).numpy(), rtol=1e-12, atol=1e-300
        )


def test_mse_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    y, t = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    crit = MSELoss()
    loss = crit(y, t)
    ty = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    tloss = torch.nn.MSELoss()(ty, torch.from_numpy(t))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    np.testing.assert_allclose(crit.backward(), ty.grad.numpy(), rtol=1e-10, atol=1e-14)
