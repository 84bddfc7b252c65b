"""Dropout: inverted scaling, eval identity, seeding, backward with the same mask."""

import numpy as np
import pytest

import tinynet
from tinynet import Dropout, no_grad
from tinynet.gradcheck import gradcheck


def test_eval_mode_is_the_identity():
    drop = Dropout(0.5).eval()
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    out = drop(x)
    np.testing.assert_array_equal(out, x)
    dout = np.ones_like(x)
    np.testing.assert_array_equal(drop.backward(dout), dout)


def test_training_keeps_zeros_or_scaled_values():
    tinynet.manual_seed(0)
    drop = Dropout(0.25)
    x = np.full((50, 40), 3.0, dtype=np.float32)
    out = drop(x)
    assert out.dtype == np.float32
    assert set(np.unique(out).tolist()) == {0.0, 4.0}  # 3 / (1 - 0.25)
    assert np.mean(out == 0) == pytest.approx(0.25, abs=0.03)  # 2000 draws: sd ~ 0.01


def test_expected_value_is_preserved():
    tinynet.manual_seed(1)
    x = np.random.default_rng(2).uniform(0.5, 1.5, size=(200, 500))
    for p in (0.1, 0.5, 0.8):
        out = Dropout(p)(x)
        # E[out] = x: the mean of out / x is 1 within a few standard errors.
        ratio = out / x
        se = np.sqrt(p / (1 - p) / x.size)
        assert abs(ratio.mean() - 1.0) < 4 * se


def test_manual_seed_makes_masks_reproducible():
    x = np.ones((6, 7))
    tinynet.manual_seed(123)
    a = Dropout(0.5)(x)
    b = Dropout(0.5)(x)  # the generator moved on: a new mask
    tinynet.manual_seed(123)
    np.testing.assert_array_equal(Dropout(0.5)(x), a)
    assert not np.array_equal(a, b)


def test_backward_uses_the_forward_mask():
    tinynet.manual_seed(0)
    drop = Dropout(0.5)
    x = np.random.default_rng(0).standard_normal((8, 9))
    out = drop(x)
    dout = np.random.default_rng(1).standard_normal((8, 9))
    dx = drop.backward(dout)
    kept = out != 0
    np.testing.assert_array_equal(dx[~kept], 0.0)
    np.testing.assert_allclose(dx[kept], 2.0 * dout[kept])
    np.testing.assert_array_equal(drop.backward(dout), dx)  # the mask is not redrawn


def test_gradcheck_with_a_fixed_mask():
    # gradcheck calls forward many times; each draws a new mask, so we check
    # with every forward reseeded to the same mask.
    class Reseeded(Dropout):
        def forward(self, x):
            tinynet.manual_seed(7)
            return super().forward(x)

    x = np.random.default_rng(0).standard_normal((5, 6))
    gradcheck(Reseeded(0.3), x)
    gradcheck(Dropout(0.3).eval(), x)


def test_p_zero_and_p_one_like_torch():
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(Dropout(0.0)(x), x)
    drop = Dropout(1.0)
    out = drop(x)
    assert out.dtype == np.float32 and np.all(out == 0)
    np.testing.assert_array_equal(drop.backward(np.ones_like(x)), 0.0)
    assert repr(Dropout(0.2)) == "Dropout(p=0.2)"


@pytest.mark.parametrize("p", [-0.1, 1.5, "half", True])
def test_bad_p_is_named(p):
    with pytest.raises(ValueError, match="p must be"):
        Dropout(p)


def test_no_grad_keeps_no_cache_and_backward_raises():
    drop = Dropout(0.5)
    with no_grad():
        drop(np.ones((2, 3)))
    assert drop.cache is None
    with pytest.raises(RuntimeError, match="no_grad"):
        drop.backward(np.ones((2, 3)))


def test_requires_input_grad_false_and_wrong_dout_shape():
    drop = Dropout(0.5)
    drop(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"dout of shape \(2, 3\), got \(3, 2\)"):
        drop.backward(np.ones((3, 2)))
    drop.requires_input_grad = False
    assert drop.backward(np.ones((2, 3))) is None


def test_statistics_match_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    x = np.ones((400, 500))
    theirs = torch.nn.Dropout(0.3)(torch.from_numpy(x)).numpy()
    tinynet.manual_seed(0)
    ours = Dropout(0.3)(x)
    # Different generators, same law: same two values, same drop rate.
    np.testing.assert_allclose(np.unique(ours), np.unique(theirs))
    assert np.mean(ours == 0) == pytest.approx(np.mean(theirs == 0), abs=0.005)
