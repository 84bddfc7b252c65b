"""compression.pruning.scores: weight norms, activation statistics, Taylor scores."""

import numpy as np
import pytest

import tinynet
from compression.pruning import (
    activation_stats,
    ln_structured_mask,
    taylor_scores,
    unit_norms,
)
from tinynet import (
    BatchNorm1d,
    Conv2d,
    CrossEntropyLoss,
    Dropout,
    Flatten,
    Linear,
    MSELoss,
    ReLU,
    Sequential,
)


def set_linear(layer, W, b=None):
    layer.weight.data = np.array(W, dtype=np.float32)
    layer.bias.data = np.zeros(len(W), np.float32) if b is None else np.array(b, np.float32)
    return layer


# ------------------------------------------------------------- weight norms
def test_unit_norms_by_hand():
    w = np.array([[1.0, -2.0], [3.0, 0.0], [0.5, 0.5]])
    assert unit_norms(w, 1).tolist() == [3.0, 3.0, 1.0]
    np.testing.assert_allclose(unit_norms(w, 2), [np.sqrt(5), 3.0, np.sqrt(0.5)])


def test_unit_norms_of_filters_cover_every_axis_but_0():
    w = np.zeros((2, 3, 2, 2))
    w[0] = 1.0  # 12 ones
    w[1, 2, 1, 1] = -4.0
    assert unit_norms(w, 1).tolist() == [12.0, 4.0]
    assert unit_norms(w, 2).tolist() == [np.sqrt(12), 4.0]


@pytest.mark.parametrize("p", [0, 3, True, "l1"])
def test_unit_norms_p_is_checked(p):
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        unit_norms(np.ones((2, 2)), p)


def test_ln_structured_mask_drops_whole_rows():
    w = np.array([[1.0, -2.0], [3.0, 0.0], [0.5, 0.5], [0.0, 0.1]])
    keep = ln_structured_mask(w, 0.5, n=1)  # L1 norms 3, 3, 1, 0.1: drop units 3 and 2
    assert keep.astype(int).tolist() == [[1, 1], [1, 1], [0, 0], [0, 0]]
    keep = ln_structured_mask(w, 0.25, n=2)  # round(1.0) = 1 unit: unit 3
    assert keep.astype(int).tolist() == [[1, 1], [1, 1], [1, 1], [0, 0]]


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("shape", [(300, 784), (50, 20, 5, 5), (7, 3)])
@pytest.mark.parametrize("amount", [0.1, 0.5, 0.7, 1.0])
def test_ln_structured_mask_matches_pytorch(n, shape, amount):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import prune

    w = np.random.default_rng(n * 7 + len(shape)).standard_normal(shape)
    module = torch.nn.Module()
    module.weight = torch.nn.Parameter(torch.from_numpy(w.copy()))
    prune.ln_structured(module, "weight", amount=amount, n=n, dim=0)
    expected = module.weight_mask.numpy().astype(bool)
    assert np.array_equal(ln_structured_mask(w, amount, n=n), expected)


# -------------------------------------------------------------- activations
def relu_net():
    model = Sequential(Linear(2, 3), ReLU())
    set_linear(model[0], [[1, 0], [0, 1], [-1, -1]])
    return model


def test_activation_stats_by_hand():
    model = relu_net()
    x = np.array([[1, 2], [3, -1]], dtype=np.float32)
    # pre-activations [[1, 2, -3], [3, -1, -2]] -> ReLU [[1, 2, 0], [3, 0, 0]]
    stats = activation_stats(model, model[1], x)
    assert stats.mean_abs.tolist() == [2.0, 1.0, 0.0]
    assert stats.zero_fraction.tolist() == [0.0, 0.5, 1.0]  # unit 2 is dead
    assert stats.count == 2
    pre = activation_stats(model, model[0], x)  # the Linear's own output
    assert pre.mean_abs.tolist() == [2.0, 1.5, 2.5]
    assert pre.zero_fraction.tolist() == [0.0, 0.0, 0.0]


def test_activation_stats_in_chunks_equal_all_at_once():
    tinynet.manual_seed(0)
    model = Sequential(Conv2d(1, 4, 3), ReLU(), Flatten(), Linear(4 * 4 * 4, 3))
    x = np.random.default_rng(0).standard_normal((10, 1, 6, 6)).astype(np.float32)
    whole = activation_stats(model, model[1], x)
    chunks = activation_stats(model, model[1], x, batch_size=3)
    assert whole.count == chunks.count == 10 * 4 * 4  # N * H * W values per channel
    np.testing.assert_allclose(chunks.mean_abs, whole.mean_abs, rtol=1e-6)
    np.testing.assert_array_equal(chunks.zero_fraction, whole.zero_fraction)
    with tinynet.no_grad():
        a = model[1](model[0](x))
    np.testing.assert_allclose(whole.mean_abs, np.abs(a).mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(whole.zero_fraction, (a == 0).mean(axis=(0, 2, 3)))


def test_activation_stats_leave_the_model_as_it_was():
    tinynet.manual_seed(0)
    model = Sequential(Linear(4, 3), BatchNorm1d(3), ReLU(), Dropout(0.5), Linear(3, 2))
    model.train()
    before = model.state_dict()
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    stats = activation_stats(model, model[3], x)
    assert model.training and all(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])  # running stats untouched
    assert not model[3]._forward_hooks  # the hook is gone
    # eval-mode Dropout is the identity, so it sees exactly the ReLU's output
    np.testing.assert_array_equal(stats.mean_abs, activation_stats(model, model[2], x).mean_abs)


def test_activation_stats_checks_the_module():
    with pytest.raises(ValueError, match="not a module of this model"):
        activation_stats(relu_net(), ReLU(), np.ones((1, 2), np.float32))


# ------------------------------------------------------------------ Taylor
def test_taylor_scores_by_hand():
    model = Sequential(Linear(2, 2), Linear(2, 1))
    set_linear(model[0], [[1, 0], [0, 1]])
    set_linear(model[1], [[2, -1]])
    x = np.array([[1, 2], [3, 4]], dtype=np.float32)
    y = np.zeros((2, 1), dtype=np.float32)
    # a = x; out = 2 a0 - a1 = [0, 2]; each example's own loss (out - y)^2 has
    # dL_n/dout = 2 (out - y) = [0, 4]; da = dL_n/dout * [2, -1] = [[0, 0], [8, -4]]
    # a * da = [[0, 0], [24, -16]]; mean over the 2 examples of |.|: [12, 8]
    scores = taylor_scores(model, model[0], x, y, MSELoss())
    np.testing.assert_allclose(scores, [12.0, 8.0])
    one_by_one = taylor_scores(model, model[0], x, y, MSELoss(), batch_size=1)
    np.testing.assert_allclose(one_by_one, [12.0, 8.0])  # independent of the batching


def test_taylor_scores_of_a_conv_average_positions_then_examples():
    tinynet.manual_seed(1)
    model = Sequential(Conv2d(1, 3, 3), ReLU(), Flatten(), Linear(3 * 4 * 4, 5))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 5, size=6)
    scores = taylor_scores(model, model[1], x, y, CrossEntropyLoss())
    # the same by hand: split the model after the ReLU
    head, tail, crit = model[:2], model[2:], CrossEntropyLoss()
    a = head(x)
    crit(tail(a), y)
    da = tail.backward(crit.backward())
    da = 6 * da.astype(np.float64)  # per-example loss gradient: N times the mean's
    expected = np.abs((a * da).mean(axis=(2, 3))).mean(axis=0)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert scores.shape == (3,)


def test_taylor_scores_leave_grads_modes_and_backward_alone():
    tinynet.manual_seed(2)
    model = Sequential(Linear(3, 4), ReLU(), Linear(4, 2))
    x = np.ones((2, 3), np.float32)
    y = np.array([0, 1])
    model[0].weight.grad = np.full((4, 3), 7.0, np.float32)
    model.train()
    taylor_scores(model, model[1], x, y, CrossEntropyLoss())
    assert (model[0].weight.grad == 7.0).all() and model[2].weight.grad is None
    assert model.training
    assert "backward" not in vars(model[1])  # the class's method again
    assert not model[1]._forward_hooks


def test_taylor_scores_of_an_input_side_module_as_fit_leaves_the_model():
    model = Sequential(Flatten(), Linear(4, 2))
    set_linear(model[1], [[1, 0, 0, 0], [0, 0, 0, 1]])
    model.requires_input_grad = False  # what fit() sets: the input needs no gradient
    x = np.array([[[1, 2], [3, 4]]], dtype=np.float32)  # (1, 2, 2): Flatten's units are rows
    y = np.zeros((1, 2), np.float32)
    # out = [1, 4]; dL/dout = 2 * out / 2 = [1, 4] (one example, mean over 2 outputs)
    # Flatten output a = [1, 2, 3, 4], da = dout @ W = [1, 0, 0, 4]; a * da = [1, 0, 0, 16]
    scores = taylor_scores(model, model[0], x, y, MSELoss())
    np.testing.assert_allclose(scores, [1.0, 0.0, 0.0, 16.0])
    assert model.requires_input_grad is False


def test_taylor_scores_need_a_module_on_the_path():
    model = Sequential(Linear(2, 2))
    with pytest.raises(ValueError, match="not a module of this model"):
        taylor_scores(model, ReLU(), np.ones((1, 2), np.float32), np.zeros(1, int), MSELoss())
