"""BatchNorm1d / BatchNorm2d: statistics, running averages, gradients, PyTorch parity."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet import BatchNorm1d, BatchNorm2d, no_grad
from tinynet.gradcheck import gradcheck

KEYS = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def with_affine(bn, seed=1):
    """Non-trivial gamma and beta (float64), so gradients through them are tested."""
    bn.astype(np.float64)
    rng = np.random.default_rng(seed)
    bn.weight.data = rng.uniform(0.5, 2.0, bn.num_features)
    bn.bias.data = rng.standard_normal(bn.num_features)
    return bn


# --------------------------------------------------------------- construction
def test_parameters_buffers_and_state_dict_keys():
    bn = BatchNorm2d(16)
    assert list(bn.state_dict()) == KEYS
    np.testing.assert_array_equal(bn.weight.data, np.ones(16))
    np.testing.assert_array_equal(bn.bias.data, np.zeros(16))
    np.testing.assert_array_equal(bn.running_mean, np.zeros(16))
    np.testing.assert_array_equal(bn.running_var, np.ones(16))
    assert bn.weight.dtype == np.float32 and bn.running_mean.dtype == np.float32
    assert bn.running_var.dtype == np.float32
    assert bn.num_batches_tracked.shape == () and bn.num_batches_tracked.dtype == np.int64
    assert [name for name, _ in bn.named_parameters()] == ["weight", "bias"]
    assert repr(bn) == "BatchNorm2d(16, eps=1e-05, momentum=0.1)"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_features": 0}, "num_features"),
        ({"num_features": 4, "eps": -1.0}, "eps"),
        ({"num_features": 4, "momentum": 1.5}, "momentum"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchNorm1d(**kwargs)


def test_wrong_shapes_name_expected_and_received():
    with pytest.raises(
        ValueError, match=r"BatchNorm2d expected input of shape \(N, 16, H, W\), got \(8, 3, 4, 4\)"
    ):
        BatchNorm2d(16)(np.zeros((8, 3, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, 16, H, W\), got \(8, 16\)"):
        BatchNorm2d(16)(np.zeros((8, 16), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, 5\) or \(N, 5, L\), got \(4, 5, 2, 2\)"):
        BatchNorm1d(5)(np.zeros((4, 5, 2, 2)))
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 5\)"):
        BatchNorm1d(5)(np.zeros((1, 5)))
    bn = BatchNorm1d(5)
    bn(randn(4, 5))
    with pytest.raises(ValueError, match=r"dout of shape \(4, 5\), got \(5, 4\)"):
        bn.backward(randn(5, 4))


# -------------------------------------------------------------- known answers
def test_training_forward_and_running_stats_known_answer():
    bn = BatchNorm1d(2)
    bn.weight.data[...] = [2.0, 0.5]
    bn.bias.data[...] = [1.0, -1.0]
    x = np.array([[1.0, 4.0], [3.0, 8.0]], dtype=np.float32)
    out = bn(x)
    # channel 0: mean 2, biased var 1; channel 1: mean 6, biased var 4
    s0, s1 = 1 / np.sqrt(1 + 1e-5), 2 / np.sqrt(4 + 1e-5)
    np.testing.assert_allclose(
        out, [[1 - 2 * s0, -1 - 0.5 * s1], [1 + 2 * s0, -1 + 0.5 * s1]], rtol=1e-6
    )
    assert out.dtype == np.float32
    # running = 0.9 * running + 0.1 * batch, with the unbiased variance (2 and 8)
    np.testing.assert_allclose(bn.running_mean, [0.2, 0.6], rtol=1e-6)
    np.testing.assert_allclose(bn.running_var, [0.9 + 0.2, 0.9 + 0.8], rtol=1e-6)
    assert int(bn.num_batches_tracked) == 1
    assert bn.running_mean.dtype == np.float32 and bn.running_var.dtype == np.float32
    assert bn.num_batches_tracked.dtype == np.int64 and bn.num_batches_tracked.shape == ()


def test_eval_uses_running_stats_and_updates_nothing():
    bn = BatchNorm1d(2, eps=1e-3)
    bn.running_mean = np.array([1.0, -1.0], dtype=np.float32)
    bn.running_var = np.array([4.0, 0.25], dtype=np.float32)
    bn.eval()
    out = bn(np.array([[3.0, 0.0]], dtype=np.float32))  # one example is fine in eval
    np.testing.assert_allclose(out, [[2 / np.sqrt(4.001), 1 / np.sqrt(0.251)]], rtol=1e-6)
    np.testing.assert_array_equal(bn.running_mean, [1.0, -1.0])
    assert int(bn.num_batches_tracked) == 0
    dx = bn.backward(np.array([[1.0, 1.0]], dtype=np.float32))
    np.testing.assert_allclose(dx, [[1 / np.sqrt(4.001), 1 / np.sqrt(0.251)]], rtol=1e-6)


def test_two_examples_give_a_near_zero_input_gradient():
    # With N = 2 the normalised values are +-1 whatever x is (when eps << var),
    # so the output cannot change with x: dx ~ 0.
    bn = with_affine(BatchNorm1d(3, eps=1e-12))
    bn(np.array([[0.0, 1.0, -2.0], [3.0, -1.0, 2.0]]))
    dx = bn.backward(randn(2, 3, seed=5))
    np.testing.assert_allclose(dx, 0.0, atol=1e-9)


def test_training_input_gradient_is_orthogonal_to_ones_and_xhat():
    # dx removes the components along 1 and xhat (per channel): the batch
    # mean and variance cannot be changed through the normalised output
    # (exactly so as eps -> 0; eps makes sum(xhat^2) slightly less than m).
    bn = with_affine(BatchNorm2d(3, eps=1e-12))
    x = randn(4, 3, 2, 2)
    bn(x)
    dx = bn.backward(randn(4, 3, 2, 2, seed=3))
    xhat = bn.cache[0]
    np.testing.assert_allclose(dx.sum(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose((dx * xhat).sum(axis=(0, 2, 3)), 0.0, atol=1e-9)


def test_momentum_none_is_the_cumulative_average():
    bn = BatchNorm1d(3, momentum=None)
    batches = [randn(5, 3, seed=s) for s in range(4)]
    for b in batches:
        bn(b)
    np.testing.assert_allclose(
        bn.running_mean, np.mean([b.mean(0) for b in batches], axis=0), rtol=1e-5
    )
    np.testing.assert_allclose(
        bn.running_var, np.mean([b.var(0, ddof=1) for b in batches], axis=0), rtol=1e-5
    )
    assert int(bn.num_batches_tracked) == 4


@settings(deadline=None, max_examples=20)
@given(
    n=st.integers(2, 6),
    c=st.integers(1, 4),
    hw=st.integers(1, 3),
    shift=st.floats(-100, 100),
    spread=st.floats(0.5, 50),
    seed=st.integers(0, 1000),
)
def test_training_output_has_zero_mean_unit_variance_per_channel(n, c, hw, shift, spread, seed):
    bn = BatchNorm2d(c, eps=1e-12).astype(np.float64)
    x = randn(n, c, hw, hw, seed=seed) * spread + shift
    if np.any(x.var(axis=(0, 2, 3)) < 1e-6):
        return  # a constant channel has nothing to normalise
    out = bn(x)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-9)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1.0, rtol=1e-6)


# -------------------------------------------------------------- gradient checks
@pytest.mark.parametrize(
    ("cls", "shape"),
    [(BatchNorm1d, (6, 4)), (BatchNorm1d, (3, 4, 5)), (BatchNorm2d, (3, 2, 3, 4))],
)
def test_gradcheck_train_and_eval(cls, shape):
    bn = with_affine(cls(shape[1]))
    x = randn(*shape) * 2 + 1
    gradcheck(bn, x)
    for _ in range(3):  # non-trivial running statistics for eval mode
        bn(randn(*shape, seed=7) * 3 - 1)
    gradcheck(bn.eval(), x)


# ---------------------------------------------------------- the module contract
def test_float32_stays_float32():
    bn = BatchNorm2d(3)
    x = randn(4, 3, 5, 5).astype(np.float32)
    out = bn(x)
    dx = bn.backward(np.ones_like(out))
    assert out.dtype == np.float32 and dx.dtype == np.float32
    assert bn.weight.grad.dtype == np.float32 and bn.running_var.dtype == np.float32
    bn.eval()
    assert bn(x).dtype == np.float32 and bn.backward(np.ones_like(out)).dtype == np.float32


def test_no_grad_keeps_no_cache_but_still_updates_running_stats_in_training():
    bn = BatchNorm1d(3)
    with no_grad():
        bn(randn(4, 3) + 5)
    assert bn.cache is None
    assert int(bn.num_batches_tracked) == 1 and np.all(bn.running_mean > 0.3)
    with pytest.raises(RuntimeError, match="no_grad"):
        bn.backward(randn(4, 3))
    bn.eval()
    with no_grad():
        bn(randn(4, 3))
    assert int(bn.num_batches_tracked) == 1


def test_requires_input_grad_false_still_accumulates_param_grads():
    bn = with_affine(BatchNorm1d(3))
    bn.requires_input_grad = False
    x, dout = randn(5, 3), randn(5, 3, seed=2)
    bn(x)
    assert bn.backward(dout) is None
    np.testing.assert_allclose(bn.bias.grad, dout.sum(0))
    assert bn.weight.grad is not None


def test_gradients_accumulate_across_backward_calls():
    bn = with_affine(BatchNorm1d(3))
    x, dout = randn(5, 3), randn(5, 3, seed=2)
    bn(x)
    bn.backward(dout)
    once = bn.weight.grad.copy(), bn.bias.grad.copy()
    bn(x)
    bn.backward(dout)
    np.testing.assert_allclose(bn.weight.grad, 2 * once[0])
    np.testing.assert_allclose(bn.bias.grad, 2 * once[1])


# --------------------------------------------------------------- torch parity
@pytest.mark.parametrize(
    ("cls", "shape", "momentum"),
    [
        (BatchNorm1d, (8, 4), 0.1),
        (BatchNorm1d, (5, 4, 3), 0.3),
        (BatchNorm2d, (4, 3, 5, 5), 0.1),
        (BatchNorm2d, (4, 3, 2, 3), None),
    ],
)
def test_torch_parity_float64(cls, shape, momentum):
    torch = pytest.importorskip("torch")
    ours = with_affine(cls(shape[1], momentum=momentum))
    theirs = getattr(torch.nn, cls.__name__)(shape[1], momentum=momentum).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    assert list(ours.state_dict()) == list(theirs.state_dict()) == KEYS

    def step(seed, training):
        ours.train(training)
        theirs.train(training)
        theirs.zero_grad()
        ours.zero_grad()
        x = randn(*shape, seed=seed) * (1 + seed) + seed
        dout = randn(*shape, seed=100 + seed)
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        out_t = theirs(xt)
        out_t.backward(torch.from_numpy(dout))
        out = ours(x)
        dx = ours.backward(dout)
        np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-6, atol=1e-10)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-6, atol=1e-10)
        np.testing.assert_allclose(
            ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-6, atol=1e-10
        )
        np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-6, atol=1e-10)

    for seed in range(4):
        step(seed, training=True)
    theirs_state = theirs.state_dict()
    for key in ["running_mean", "running_var"]:
        np.testing.assert_allclose(getattr(ours, key), theirs_state[key].numpy(), rtol=1e-12)
    assert int(ours.num_batches_tracked) == int(theirs_state["num_batches_tracked"]) == 4
    step(9, training=False)


def test_state_dict_round_trips_with_torch():
    torch = pytest.importorskip("torch")
    ours = BatchNorm2d(3)
    for seed in range(2):
        ours(randn(4, 3, 2, 2, seed=seed).astype(np.float32))
    theirs = torch.nn.BatchNorm2d(3)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    assert int(theirs.num_batches_tracked) == 2
    np.testing.assert_array_equal(theirs.running_var.numpy(), ours.running_var)
    back = BatchNorm2d(3)
    back.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key], value)
    assert back.num_batches_tracked.dtype == np.int64
