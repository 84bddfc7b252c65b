"""FitNets hints: the loss and its gradient, truncated models, regressors, training through fit."""

import numpy as np
import pytest

import tinynet
from compression.distillation.hints import (
    HintBatches,
    HintLoss,
    feature_shape,
    fitnets_stage1,
    hint_model,
    make_regressor,
    teacher_hints,
    truncate,
)
from tinynet import Conv2d, Dropout, Linear, ReLU, Sequential
from tinynet.data import DataLoader
from tinynet.gradcheck import check_loss, gradcheck, numerical_gradient


def mlp_pair(seed=0):
    tinynet.manual_seed(seed)
    teacher = Sequential(Linear(8, 32), ReLU(), Dropout(0.2), Linear(32, 2))
    student = Sequential(Linear(8, 4), ReLU(), Linear(4, 2))
    return teacher, student


def toy_inputs(n=128, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)


# ------------------------------------------------------------------ the loss


def test_hint_loss_hand_worked():
    # example 1: r - u = (1, 2) -> 1/2 (1 + 4) = 2.5; example 2: (0, 2) -> 2.0; mean 2.25
    r = np.array([[1.0, 2.0], [3.0, 4.0]])
    u = np.array([[0.0, 0.0], [3.0, 2.0]])
    crit = HintLoss()
    assert crit(r, u) == 2.25
    np.testing.assert_array_equal(crit.backward(), [[0.5, 1.0], [0.0, 1.0]])  # (r - u) / N


def test_hint_loss_is_mse_loss_times_half_the_features():
    rng = np.random.default_rng(1)
    r, u = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    hint, mse = HintLoss(), tinynet.MSELoss()
    assert mse(r, u) == pytest.approx(2 / 7 * hint(r, u), rel=1e-12)
    np.testing.assert_allclose(mse.backward(), 2 / 7 * hint.backward(), rtol=1e-12)


@pytest.mark.parametrize("shape", [(4, 5), (3, 2, 3, 3)])
def test_hint_loss_gradient_check(shape):
    rng = np.random.default_rng(2)
    r, u = rng.standard_normal(shape), rng.standard_normal(shape)
    assert check_loss(HintLoss(), r, u) < 1e-6


def test_hint_loss_keeps_float32():
    r = np.ones((2, 3), np.float32)
    crit = HintLoss()
    crit(r, np.zeros((2, 3)))  # float64 targets are cast to the outputs' dtype
    assert crit.backward().dtype == np.float32


def test_hint_loss_agrees_with_pytorch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(3)
    r, u = rng.standard_normal((6, 3, 2, 2)), rng.standard_normal((6, 3, 2, 2))
    crit = HintLoss()
    loss = crit(r, u)
    rt = torch.tensor(r, requires_grad=True)
    ref = F.mse_loss(rt, torch.tensor(u), reduction="sum") / (2 * 6)
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(crit.backward(), rt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_hint_loss_errors_say_what_is_wrong():
    crit = HintLoss()
    with pytest.raises(ValueError, match=r"shape \(4, 10\), got \(4, 32\)"):
        crit(np.zeros((4, 10)), np.zeros((4, 32)))
    with pytest.raises(TypeError, match="floating-point outputs, got dtype int64"):
        crit(np.zeros((2, 2), np.int64), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="N >= 1"):
        crit(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(RuntimeError, match="without a cached forward pass"):
        HintLoss().backward()
    with tinynet.no_grad():
        crit(np.zeros((2, 2)), np.ones((2, 2)))  # validation: loss computed, nothing kept
    with pytest.raises(RuntimeError, match="without a cached forward pass"):
        crit.backward()


# ------------------------------------------------------------------ models


def test_truncate_shares_the_first_layers():
    teacher, _ = mlp_pair()
    part = truncate(teacher, "1")
    assert len(part) == 2 and part[0] is teacher[0] and part[1] is teacher[1]
    assert len(truncate(teacher, 3)) == 4  # an int index names the same layer
    x = toy_inputs(4)
    with tinynet.no_grad():
        np.testing.assert_array_equal(part(x), teacher[1](teacher[0](x)))


def test_unknown_layers_are_named_with_the_ones_that_exist():
    teacher, student = mlp_pair()
    with pytest.raises(ValueError, match=r"layer '7' not found: .* 0 Linear, 1 ReLU, 2 Linear"):
        truncate(student, "7")
    with pytest.raises(ValueError, match="layer 'fc1' not found"):
        HintBatches([], teacher, "fc1")
    with pytest.raises(ValueError, match="layer True not found"):
        truncate(student, True)
    with pytest.raises(TypeError, match="need a tinynet Sequential, got Linear"):
        truncate(Linear(2, 2), "0")


def test_make_regressor_linear_for_vectors_and_1x1_conv_for_maps():
    tinynet.manual_seed(0)
    linear = make_regressor((4,), (32,))
    assert isinstance(linear, Linear) and linear.weight.shape == (32, 4)
    conv = make_regressor((3, 5, 5), (8, 5, 5))
    assert isinstance(conv, Conv2d) and conv.weight.shape == (8, 3, 1, 1)
    with pytest.raises(
        ValueError, match=r"expected a teacher map of size \(5, 5\).*got \(8, 4, 4\)"
    ):
        make_regressor((3, 5, 5), (8, 4, 4))
    with pytest.raises(ValueError, match=r"got student \(4,\) and teacher \(8, 5, 5\)"):
        make_regressor((4,), (8, 5, 5))


def test_gradient_check_of_the_hint_model_and_regressor():
    tinynet.manual_seed(0)
    student = Sequential(Linear(5, 4), ReLU(), Linear(4, 3))
    model = hint_model(student, "1", make_regressor((4,), (6,)))
    assert model[0] is student[0] and len(model) == 3
    x = np.random.default_rng(0).standard_normal((3, 5))
    report = gradcheck(model, x)  # raises on a wrong gradient
    assert set(report) == {"input", "0.weight", "0.bias", "2.weight", "2.bias"}

    tinynet.manual_seed(1)
    convs = Sequential(Conv2d(1, 2, 3, padding=1), ReLU())  # feature maps (2, 4, 4)
    maps = np.random.default_rng(1).standard_normal((2, 1, 4, 4))
    report = gradcheck(hint_model(convs, "1", make_regressor((2, 4, 4), (3, 4, 4))), maps)
    assert "2.weight" in report  # the 1x1 Conv2d regressor


def test_hint_loss_gradient_reaches_the_student_through_the_regressor():
    tinynet.manual_seed(0)
    student = Sequential(Linear(5, 4), ReLU(), Linear(4, 3))
    model = hint_model(student, 1, make_regressor((4,), (6,))).astype(np.float64)
    rng = np.random.default_rng(1)
    x, u = rng.standard_normal((3, 5)), rng.standard_normal((3, 6))
    crit = HintLoss()
    crit(model(x), u)
    model.zero_grad()
    model.backward(crit.backward())
    for param in (student[0].weight, model[2].weight):  # a student weight, the regressor's

        def loss_of(w, p=param):
            p.data = w
            return crit(model(x), u)

        numeric = numerical_gradient(loss_of, param.data.copy(), 1.0)
        np.testing.assert_allclose(param.grad, numeric, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------ teacher features


def test_hint_batches_give_the_teacher_features_in_eval_mode():
    teacher, _ = mlp_pair()
    x = toy_inputs(10)
    y = np.zeros(10, np.int64)
    batches = HintBatches(DataLoader(x, y, batch_size=4, shuffle=False), teacher, "2")
    assert len(batches) == 3
    got = list(batches)
    assert [len(b) for b in got] == [2, 2, 2]  # (x, u): the labels are dropped
    with tinynet.no_grad():
        expected = teacher[1](teacher[0](x))  # Dropout at layer 2 is the identity in eval mode
    # float32, batches of other sizes: BLAS may round the last bit differently
    np.testing.assert_allclose(np.concatenate([u for _, u in got]), expected, atol=1e-6)
    np.testing.assert_allclose(teacher_hints(teacher, "2", x, batch_size=3), expected, atol=1e-6)
    assert teacher.training and teacher[2].training  # modes given back
    assert feature_shape(teacher, "2", x) == (32,)


# ------------------------------------------------------------------ stage 1 through fit


def test_fitnets_stage1_trains_the_student_to_give_the_hint():
    teacher, student = mlp_pair()
    x = toy_inputs()
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    tinynet.fit(
        teacher,
        (x, y),
        tinynet.CrossEntropyLoss(),
        tinynet.SGD(teacher.parameters(), 0.1),
        10,
        progress=False,
    )
    teacher_state = teacher.state_dict()
    last_layer = student[2].weight.data.copy()
    u = teacher_hints(teacher, "1", x)

    def hint_loss_now(regressor):
        with tinynet.no_grad():
            return HintLoss()(hint_model(student, "1", regressor)(x), u)

    tinynet.manual_seed(0)
    regressor = make_regressor((4,), (32,))
    before = hint_loss_now(regressor)
    regressor, history = fitnets_stage1(
        student, teacher, "1", "1", x, 15, lr=0.05, regressor=regressor
    )
    assert hint_loss_now(regressor) < 0.5 * before
    assert history["loss"][-1] < history["loss"][0]
    np.testing.assert_array_equal(student[2].weight.data, last_layer)  # beyond the guided layer
    for key, value in teacher.state_dict().items():
        np.testing.assert_array_equal(value, teacher_state[key])  # the teacher is not trained


def test_fitnets_stage1_refuses_a_regressor_of_the_wrong_shape():
    teacher, student = mlp_pair()
    with pytest.raises(ValueError, match=r"expected \(32,\) per example, got \(16,\)"):
        fitnets_stage1(student, teacher, "1", "1", toy_inputs(8), 1, regressor=Linear(4, 16))
