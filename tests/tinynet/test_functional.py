"""functional: conv and pooling math. Known answers, naive == fast, adjoints, PyTorch parity."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet import functional as F
from tinynet.gradcheck import numerical_gradient

# ------------------------------------------------------------ output size


def test_conv_output_size_formula():
    assert F.conv_output_size(28, 5, 1, 2) == 28  # LeNet-5 conv1 keeps 28x28
    assert F.conv_output_size(28, 5) == 24
    assert F.conv_output_size(7, 3, 2, 1) == 4  # floor((7 + 2 - 3)/2) + 1
    assert F.conv_output_size(6, 3, 2, 0) == 2  # floor(3/2) + 1: the last column is dropped
    with pytest.raises(ValueError, match="smaller than the kernel"):
        F.conv_output_size(3, 5, 1, 0)


def test_bad_stride_and_padding_are_rejected():
    x, w = np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 2, 2))
    with pytest.raises(ValueError, match="stride must be an integer >= 1"):
        F.conv2d_forward(x, w, stride=0)
    with pytest.raises(ValueError, match="padding must be an integer >= 0"):
        F.conv2d_forward(x, w, padding=-1)
    with pytest.raises(ValueError, match="input has 1 channels but the weight expects 2"):
        F.conv2d_forward(x, np.zeros((1, 2, 2, 2)))


# ------------------------------------------------------------ known answers

X3 = np.arange(9.0).reshape(1, 1, 3, 3)  # [[0 1 2] [3 4 5] [6 7 8]]
W2 = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])  # out = top-left - bottom-right


def test_conv2d_naive_known_answer():
    out = F.conv2d_naive(X3, W2, np.array([10.0]))
    np.testing.assert_array_equal(out, [[[[10 - 4.0, 10 - 4.0], [10 - 4.0, 10 - 4.0]]]])
    # padding 1, stride 2: windows at (-1, -1), (-1, 1), (1, -1), (1, 1) of the padded input
    out = F.conv2d_naive(X3, W2, None, stride=2, padding=1)
    np.testing.assert_array_equal(out, [[[[0 - 0.0, 0 - 2.0], [0 - 6.0, 4 - 8.0]]]])


def test_conv2d_backward_naive_known_answer():
    dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx, dW, db = F.conv2d_backward_naive(dout, X3, W2)
    # dW[a, e] = sum_ij dout[i, j] * x[i + a, j + e]
    np.testing.assert_array_equal(
        dW[0, 0], [[0 + 2 + 9 + 16, 1 + 4 + 12 + 20], [3 + 8 + 18 + 28, 4 + 10 + 21 + 32]]
    )
    np.testing.assert_array_equal(db, [10.0])
    # dx: +dout at each window's top-left, -dout at its bottom-right
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 0], [3, 4 - 1, -2], [0, -3, -4]])


def test_conv2d_backward_naive_matches_numerical_gradient():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 5, 4))
    w = rng.standard_normal((3, 2, 3, 2))
    dout = rng.standard_normal(F.conv2d_naive(x, w, None, 2, 1).shape)
    dx, dW, _ = F.conv2d_backward_naive(dout, x, w, 2, 1)
    np.testing.assert_allclose(
        dx, numerical_gradient(lambda z: F.conv2d_naive(z, w, None, 2, 1), x, dout), atol=1e-7
    )
    np.testing.assert_allclose(
        dW, numerical_gradient(lambda v: F.conv2d_naive(x, v, None, 2, 1), w, dout), atol=1e-7
    )


def test_im2col_known_answer_both_column_orders():
    x = np.arange(2 * 9.0).reshape(2, 1, 3, 3)  # two samples
    cols = F.im2col(x, 2)  # columns (n, oh, ow)
    assert cols.shape == (4, 8)
    # column 0: sample 0, window at (0, 0) = [0 1; 3 4]; column 4: sample 1 window (0, 0)
    np.testing.assert_array_equal(cols[:, 0], [0, 1, 3, 4])
    np.testing.assert_array_equal(cols[:, 3], [4, 5, 7, 8])
    np.testing.assert_array_equal(cols[:, 4], [9, 10, 12, 13])
    cols_bl = F.im2col(x, 2, batch_last=True)  # columns (oh, ow, n)
    np.testing.assert_array_equal(cols_bl[:, 1], [9, 10, 12, 13])  # (0, 0), sample 1
    np.testing.assert_array_equal(
        cols_bl.reshape(4, 2, 2, 2), cols.reshape(4, 2, 2, 2).transpose(0, 2, 3, 1)
    )


@pytest.mark.parametrize("batch_last", [False, True])
def test_col2im_is_the_adjoint_of_im2col(batch_last):
    # <im2col(x), Y> == <x, col2im(Y)> for every x, Y: the definition of a transpose.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 7, 6))
    cols = F.im2col(x, (3, 2), (2, 1), (1, 2), batch_last)
    y = rng.standard_normal(cols.shape)
    back = F.col2im(y, x.shape, (3, 2), (2, 1), (1, 2), batch_last)
    assert np.sum(cols * y) == pytest.approx(np.sum(x * back), rel=1e-12)


def test_col2im_counts_overlaps():
    # col2im of all-ones columns = how many windows cover each pixel
    counts = F.col2im(np.ones((4, 4)), (1, 1, 3, 3), 2)
    np.testing.assert_array_equal(counts[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


# ------------------------------------------------------------ fast == naive

CASES = [
    # (N, C_in, H, W, C_out, kh, kw, stride, padding)
    (2, 1, 6, 6, 3, 3, 3, 1, 0),
    (2, 3, 7, 6, 4, 3, 2, 2, 1),  # stride 2, padding 1, non-square kernel, C_in > 1
    (1, 2, 5, 8, 2, 2, 4, (1, 2), (2, 0)),  # padding 2, different strides per axis
    (3, 2, 20, 18, 3, 5, 5, 1, 2),  # wide rows: the batch-first path
    (2, 2, 9, 9, 2, 9, 9, 1, 0),  # kernel = input: a 1x1 output
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("batch_last", [None, False, True])
def test_fast_conv_matches_naive_float64(case, batch_last):
    N, C, H, W, C_out, kh, kw, s, p = case
    rng = np.random.default_rng(sum(case[:7]))
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((C_out, C, kh, kw))
    b = rng.standard_normal(C_out)
    out, cache = F.conv2d_forward(x, w, b, s, p, batch_last)
    np.testing.assert_allclose(out, F.conv2d_naive(x, w, b, s, p), rtol=0, atol=1e-10)
    dout = rng.standard_normal(out.shape)
    dx, dW, db = F.conv2d_backward(dout, cache)
    ndx, ndW, ndb = F.conv2d_backward_naive(dout, x, w, s, p)
    np.testing.assert_allclose(dx, ndx, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dW, ndW, rtol=0, atol=1e-10)
    np.testing.assert_allclose(db, ndb, rtol=0, atol=1e-10)


@settings(deadline=None, max_examples=25)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    c_out=st.integers(1, 3),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    ph=st.integers(0, 2),
    pw=st.integers(0, 2),
    batch_last=st.booleans(),
)
def test_fast_conv_matches_naive_on_random_shapes(
    n, c, h, w, c_out, kh, kw, sh, sw, ph, pw, batch_last
):
    if h + 2 * ph < kh or w + 2 * pw < kw:
        return
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((c_out, c, kh, kw))
    out, cache = F.conv2d_forward(x, wt, None, (sh, sw), (ph, pw), batch_last)
    np.testing.assert_allclose(out, F.conv2d_naive(x, wt, None, (sh, sw), (ph, pw)), atol=1e-10)
    dout = rng.standard_normal(out.shape)
    got = F.conv2d_backward(dout, cache)
    want = F.conv2d_backward_naive(dout, x, wt, (sh, sw), (ph, pw))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("batch_last", [False, True])
def test_fast_conv_keeps_float32_and_can_skip_dx(batch_last):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 2, 8, 8), dtype=np.float32)
    w = rng.standard_normal((3, 2, 3, 3), dtype=np.float32)
    b = rng.standard_normal(3, dtype=np.float32)
    out, cache = F.conv2d_forward(x, w, b, 1, 1, batch_last)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    dx, dW, db = F.conv2d_backward(np.ones_like(out), cache)
    assert dx.dtype == dW.dtype == db.dtype == np.float32
    none, dW2, db2 = F.conv2d_backward(np.ones_like(out), cache, need_dx=False)
    assert none is None
    np.testing.assert_array_equal(dW2, dW)
    np.testing.assert_array_equal(db2, db)
    ref = F.conv2d_naive(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1, 1)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_conv2d_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 7))
    w = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(4)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    tout = torch.nn.functional.conv2d(tx, tw, tb, stride=(2, 1), padding=(1, 2))
    out, cache = F.conv2d_forward(x, w, b, (2, 1), (1, 2))
    np.testing.assert_allclose(out, tout.detach().numpy(), atol=1e-12)
    dout = rng.standard_normal(out.shape)
    tout.backward(torch.tensor(dout))
    dx, dW, db = F.conv2d_backward(dout, cache)
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(dW, tw.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(db, tb.grad.numpy(), atol=1e-12)


# ------------------------------------------------------------ pooling

X44 = np.array(
    [[[[1.0, 3.0, 2.0, 0.0], [4.0, 2.0, 1.0, 1.0], [0.0, 0.0, 5.0, 6.0], [1.0, 2.0, 7.0, 8.0]]]]
)


def test_max_and_avg_pool_known_answers():
    np.testing.assert_array_equal(F.max_pool2d_naive(X44, 2), [[[[4.0, 2.0], [2.0, 8.0]]]])
    np.testing.assert_array_equal(F.max_pool2d(X44, 2), [[[[4.0, 2.0], [2.0, 8.0]]]])
    np.testing.assert_array_equal(F.avg_pool2d(X44, 2), [[[[2.5, 1.0], [0.75, 6.5]]]])
    # stride 1, overlapping 3x3 windows
    np.testing.assert_array_equal(F.max_pool2d(X44, 3, 1), [[[[5.0, 6.0], [7.0, 8.0]]]])
    # floor mode: a 5x5 input and 2x2 windows give 2x2, the last row/column unused
    assert F.max_pool2d(np.zeros((1, 1, 5, 5)), 2).shape == (1, 1, 2, 2)


def test_max_pool_backward_sends_a_tie_to_the_first_maximum():
    # Top-right window [[2, 0], [1, 1]] has one max; bottom-left [[0, 0], [1, 2]]
    # too. Make ties: window [[3, 3], [3, 1]] -> only the top-left 3 gets dout.
    x = np.array(
        [[[[3.0, 3.0, 1.0, 1.0], [3.0, 1.0, 1.0, 1.0], [0.0, 2.0, 4.0, 0.0], [2.0, 1.0, 0.0, 4.0]]]]
    )
    dout = np.array([[[[10.0, 20.0], [30.0, 40.0]]]])
    expected = np.zeros_like(x)
    expected[0, 0, 0, 0] = 10.0  # first of three 3s (row-major)
    expected[0, 0, 0, 2] = 20.0  # all four equal: the very first
    expected[0, 0, 2, 1] = 30.0  # (2, 1) comes before (3, 0) in row-major order
    expected[0, 0, 2, 2] = 40.0  # 4 at (2, 2) before 4 at (3, 3)
    _, cache = F.max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(F.max_pool2d_backward(dout, cache), expected)
    np.testing.assert_array_equal(F.max_pool2d_backward_naive(dout, x, 2), expected)


def test_max_pool_backward_overlapping_windows_add_up():
    # stride 1: the 9 sits in all four 2x2 windows and collects all four gradients
    x = np.array([[[[1.0, 2.0, 1.0], [0.0, 9.0, 0.0], [1.0, 2.0, 1.0]]]])
    _, cache = F.max_pool2d_forward(x, 2, 1)
    dx = F.max_pool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    np.testing.assert_array_equal(dx[0, 0], [[0, 0, 0], [0, 10, 0], [0, 0, 0]])


POOL_CASES = [(2, None), (3, 2), ((2, 3), (1, 2)), (3, 1), (2, 3)]


@pytest.mark.parametrize("kernel, stride", POOL_CASES)
def test_fast_pooling_matches_naive_with_many_ties(kernel, stride):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, size=(2, 3, 9, 8)).astype(np.float64)  # values in {0, 1, 2}: ties
    out, cache = F.max_pool2d_forward(x, kernel, stride)
    np.testing.assert_array_equal(out, F.max_pool2d_naive(x, kernel, stride))
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(
        F.max_pool2d_backward(dout, cache),
        F.max_pool2d_backward_naive(dout, x, kernel, stride),
        atol=1e-12,
    )
    out, cache = F.avg_pool2d_forward(x, kernel, stride)
    np.testing.assert_allclose(out, F.avg_pool2d_naive(x, kernel, stride), atol=1e-12)
    np.testing.assert_allclose(
        F.avg_pool2d_backward(dout, cache),
        F.avg_pool2d_backward_naive(dout, x.shape, kernel, stride),
        atol=1e-12,
    )


def test_pooling_keeps_float32():
    x = np.random.default_rng(5).standard_normal((2, 2, 6, 6), dtype=np.float32)
    for forward, backward in (
        (F.max_pool2d_forward, F.max_pool2d_backward),
        (F.avg_pool2d_forward, F.avg_pool2d_backward),
    ):
        out, cache = forward(x, 2)
        assert out.dtype == np.float32
        assert backward(np.ones_like(out), cache).dtype == np.float32


def test_avg_pool_backward_matches_numerical_gradient():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 2, 5, 5))
    dout = rng.standard_normal(F.avg_pool2d(x, 3, 2).shape)
    _, cache = F.avg_pool2d_forward(x, 3, 2)
    numeric = numerical_gradient(lambda z: F.avg_pool2d(z, 3, 2), x, dout)
    np.testing.assert_allclose(F.avg_pool2d_backward(dout, cache), numeric, atol=1e-8)


@pytest.mark.parametrize("kernel, stride", POOL_CASES)
def test_pooling_matches_torch_including_ties(kernel, stride):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, size=(2, 3, 9, 8)).astype(np.float64)
    dout = rng.standard_normal(F.max_pool2d(x, kernel, stride).shape)
    tfun = torch.nn.functional
    for ours_fwd, ours_bwd, theirs in (
        (F.max_pool2d_forward, F.max_pool2d_backward, tfun.max_pool2d),
        (F.avg_pool2d_forward, F.avg_pool2d_backward, tfun.avg_pool2d),
    ):
        tx = torch.tensor(x, requires_grad=True)
        tout = theirs(tx, kernel, stride)
        tout.backward(torch.tensor(dout))
        out, cache = ours_fwd(x, kernel, stride)
        np.testing.assert_allclose(out, tout.detach().numpy(), atol=1e-12)
        np.testing.assert_allclose(ours_bwd(dout, cache), tx.grad.numpy(), atol=1e-12)


def test_pooling_input_smaller_than_window():
    with pytest.raises(ValueError, match="smaller than the kernel"):
        F.max_pool2d(np.zeros((1, 1, 1, 4)), 2)


@settings(deadline=None, max_examples=25)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    sh=st.integers(1, 4),
    sw=st.integers(1, 4),
)
def test_fast_max_pool_matches_naive_on_random_shapes(h, w, kh, kw, sh, sw):
    if h < kh or w < kw:
        return
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(2, 2, h, w)).astype(np.float64)  # ties everywhere
    out, cache = F.max_pool2d_forward(x, (kh, kw), (sh, sw))
    np.testing.assert_array_equal(out, F.max_pool2d_naive(x, (kh, kw), (sh, sw)))
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(
        F.max_pool2d_backward(dout, cache),
        F.max_pool2d_backward_naive(dout, x, (kh, kw), (sh, sw)),
        atol=1e-12,
    )


def test_max_pool_with_more_than_256_window_positions():
    # the winning offset is stored in the smallest unsigned type that fits (uint16 here)
    x = np.random.default_rng(8).standard_normal((1, 2, 17, 18))
    out, cache = F.max_pool2d_forward(x, 17, 1)
    assert cache[1].dtype == np.uint16
    dout = np.array([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    np.testing.assert_array_equal(
        F.max_pool2d_backward(dout, cache), F.max_pool2d_backward_naive(dout, x, 17, 1)
    )
