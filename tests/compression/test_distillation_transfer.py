"""Weight transfer: a student that is the teacher's best units, thinned."""

import numpy as np
import pytest

import tinynet
from compression.distillation.transfer import hidden_widths, masked_copy, student_from_teacher
from compression.pruning.thinning import count_parameters
from tinynet import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from tinynet.models import mlp


def teacher_mlp(seed=0, batchnorm=False):
    tinynet.manual_seed(seed)
    return mlp((20, 16, 12, 5), batchnorm=batchnorm)


def inputs(shape=(6, 20), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def outputs(model, x):
    with tinynet.no_grad():
        return model(x)


@pytest.mark.parametrize("widths", [[6, 4], {"1": 6, "3": 4}, (6, 4)])
def test_student_computes_what_the_masked_teacher_computes(widths):
    teacher = teacher_mlp()
    student = student_from_teacher(teacher, widths)
    masked, keep = masked_copy(teacher, widths)
    assert [int(k.sum()) for k in keep.values()] == [6, 4]
    x = inputs()
    np.testing.assert_allclose(outputs(student, x), outputs(masked, x), rtol=1e-5, atol=1e-6)
    # 20*6 + 6  +  6*4 + 4  +  4*5 + 5 parameters, plain and dense
    assert count_parameters(student) == 126 + 28 + 25
    assert hidden_widths(student) == {"1": 6, "3": 4}
    assert all(not p.transforms for p in student.parameters())


def test_student_holds_the_teachers_largest_l1_rows():
    teacher = teacher_mlp()
    W1, W2 = teacher[1].weight.data, teacher[3].weight.data
    k1 = np.sort(np.argsort(np.abs(W1).sum(1))[-6:])  # the 6 rows of largest L1 norm
    k2 = np.sort(np.argsort(np.abs(W2).sum(1))[-4:])
    student = student_from_teacher(teacher, [6, 4])
    np.testing.assert_array_equal(student[1].weight.data, W1[k1])
    np.testing.assert_array_equal(student[1].bias.data, teacher[1].bias.data[k1])
    np.testing.assert_array_equal(student[3].weight.data, W2[k2][:, k1])
    np.testing.assert_array_equal(student[5].weight.data, teacher[5].weight.data[:, k2])
    np.testing.assert_array_equal(student[5].bias.data, teacher[5].bias.data)  # classes kept


def test_the_teacher_is_left_untouched():
    teacher = teacher_mlp()
    before = teacher.state_dict()
    x = inputs()
    y = outputs(teacher, x)
    student_from_teacher(teacher, 0.5)
    after = teacher.state_dict()
    assert list(after) == list(before) and not after.metadata  # no masks added
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    np.testing.assert_array_equal(outputs(teacher, x), y)


def test_keep_fraction_l2_and_own_scores():
    teacher = teacher_mlp()
    assert hidden_widths(student_from_teacher(teacher, 0.5)) == {"1": 8, "3": 6}
    assert hidden_widths(student_from_teacher(teacher, 0.01)) == {"1": 1, "3": 1}  # at least 1
    W1 = teacher[1].weight.data
    l2 = student_from_teacher(teacher, {"1": 3}, score="l2")
    np.testing.assert_array_equal(l2[1].weight.data, W1[np.sort(np.argsort((W1**2).sum(1))[-3:])])
    assert hidden_widths(l2) == {"1": 3, "3": 12}  # a layer not named keeps its units
    scores = {"1": np.arange(16.0), "3": -np.arange(12.0)}  # keep the last 3, the first 2
    own = student_from_teacher(teacher, [3, 2], score=scores)
    np.testing.assert_array_equal(own[1].weight.data, W1[13:])
    np.testing.assert_array_equal(own[3].weight.data, teacher[3].weight.data[:2, 13:])


def test_batchnorm_teacher_in_eval_mode():
    teacher = teacher_mlp(batchnorm=True)
    rng = np.random.default_rng(0)
    for layer in (teacher[2], teacher[5]):  # running statistics that are not 0 and 1
        layer.running_mean[:] = rng.normal(size=layer.running_mean.shape)
        layer.running_var[:] = rng.uniform(0.5, 2.0, size=layer.running_var.shape)
    teacher.eval()
    student = student_from_teacher(teacher, [5, 7])
    masked, _ = masked_copy(teacher, [5, 7])
    x = inputs()
    np.testing.assert_allclose(outputs(student, x), outputs(masked, x), rtol=1e-5, atol=1e-6)
    assert student[2].running_mean.shape == (5,) and not student.training


def test_convolutional_teacher_keeps_its_best_filters():
    tinynet.manual_seed(0)
    teacher = Sequential(
        Conv2d(1, 4, 3), ReLU(), MaxPool2d(2), Flatten(), Linear(4 * 3 * 3, 8), ReLU(), Linear(8, 3)
    )
    assert hidden_widths(teacher) == {"0": 4, "4": 8}
    student = student_from_teacher(teacher, [2, 5])
    masked, _ = masked_copy(teacher, [2, 5])
    x = inputs((3, 1, 8, 8))
    np.testing.assert_allclose(outputs(student, x), outputs(masked, x), rtol=1e-5, atol=1e-6)
    assert student[0].weight.shape == (2, 1, 3, 3) and student[4].weight.shape == (5, 18)


@pytest.mark.parametrize(
    ("widths", "error", "message"),
    [
        ([17, 4], ValueError, r"widths\['1'\] must be in 1..16 \(the teacher's units\), got 17"),
        ([6, 0], ValueError, r"widths\['3'\] must be in 1..12 .* got 0"),
        ([6], ValueError, r"widths lists 1 width\(s\) for the teacher's 2 hidden layer\(s\)"),
        ({"5": 3}, ValueError, r"widths names layers \['5'\]; the hidden layers are"),
        (0.0, ValueError, r"keep fraction must lie in \(0, 1\], got 0.0"),
        (1.5, ValueError, r"keep fraction must lie in \(0, 1\], got 1.5"),
        ([6.5, 4], TypeError, r"widths\['1'\] must be an int, got 6.5"),
        ("6,4", TypeError, "widths must be a sequence of ints"),
    ],
)
def test_bad_widths_say_what_is_wrong(widths, error, message):
    with pytest.raises(error, match=message):
        student_from_teacher(teacher_mlp(), widths)


def test_bad_score_and_teacher_without_hidden_layers():
    with pytest.raises(ValueError, match=r"score must be one of \['l1', 'l2'\]"):
        student_from_teacher(teacher_mlp(), [6, 4], score="l3")
    with pytest.raises(ValueError, match="no hidden Linear/Conv2d layer"):
        student_from_teacher(Sequential(Linear(4, 2)), [1])
