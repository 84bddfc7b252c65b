"""kd_loss: hand-worked values, the gradient, the T^2 factor, PyTorch parity, errors."""

import numpy as np
import pytest

import tinynet
from compression.distillation import KDLoss, TeacherBatches, kd_loss, teacher_logits
from tinynet import Linear, ReLU, Sequential
from tinynet.data import DataLoader
from tinynet.gradcheck import numerical_gradient


def logits(seed, n=5, c=4, scale=3.0):
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((n, c)), scale * rng.standard_normal((n, c))


def test_hand_worked_two_classes():
    # s = [0, 0], t = [2, 0], T = 2: q = softmax([1, 0]) = [e/(e+1), 1/(e+1)], p = [1/2, 1/2]
    q = np.array([np.e / (np.e + 1), 1 / (np.e + 1)])
    kl = float(np.sum(q * np.log(q / 0.5)))
    loss, grad = kd_loss([[0.0, 0.0]], [[2.0, 0.0]], [1], T=2.0, alpha=0.25)
    assert loss == pytest.approx(0.75 * np.log(2) + 0.25 * 4 * kl)
    expected = 0.75 * np.array([0.5, -0.5]) + 0.25 * 2 * (np.array([0.5, 0.5]) - q)
    np.testing.assert_allclose(grad[0], expected, rtol=1e-12)


@pytest.mark.parametrize("T", [1.0, 2.5, 20.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_gradient_matches_central_differences(T, alpha):
    s, t = logits(0)
    y = np.array([0, 3, 1, 2, 3])
    _, grad = kd_loss(s, t, y, T, alpha)
    numeric = numerical_gradient(lambda z: kd_loss(z, t, y, T, alpha)[0], s.copy(), 1.0)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_t_squared_keeps_the_soft_gradient_the_same_size_across_temperatures():
    s, t = logits(1, n=64, c=10, scale=1.0)
    y = np.zeros(64, dtype=int)
    norms, norms_without = [], []
    for T in (1, 2, 4, 8, 20):
        _, soft = kd_loss(s, t, y, T, alpha=1.0)  # soft term only
        norms.append(np.linalg.norm(soft))
        norms_without.append(np.linalg.norm(soft) / T**2)  # the same loss without T^2
    assert max(norms) / min(norms) < 2.0  # kept its size from T = 1 to T = 20
    assert norms_without[-1] < norms_without[0] / 200  # without T^2 it vanishes


def test_large_logits_stay_finite_and_zero_probabilities_add_nothing():
    s = np.array([[1e4, 0.0, -1e4]])
    t = np.array([[-1e4, 1e4, 0.0]])
    loss, grad = kd_loss(s, t, [0], T=1.0, alpha=0.5)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    loss, _ = kd_loss(s, s, [0], T=1.0, alpha=1.0)  # identical: KL is exactly 0
    assert loss == 0.0


def test_agrees_with_pytorch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    s, t = logits(2, n=6, c=5)
    y = np.array([0, 1, 2, 3, 4, 0])
    T, alpha = 4.0, 0.7
    loss, grad = kd_loss(s, t, y, T, alpha)
    st = torch.tensor(s, requires_grad=True)
    tt = torch.tensor(t)
    soft = F.kl_div(
        F.log_softmax(st / T, 1), F.log_softmax(tt / T, 1), reduction="batchmean", log_target=True
    )
    ref = (1 - alpha) * F.cross_entropy(st, torch.tensor(y)) + alpha * T * T * soft
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(grad, st.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ({"T": 0.0}, ValueError, r"T \(temperature\) must be positive and finite, got 0.0"),
        ({"T": -2}, ValueError, "must be positive"),
        ({"T": "hot"}, TypeError, "T .* must be a number"),
        ({"alpha": 1.5}, ValueError, r"alpha must lie in \[0, 1\], got 1.5"),
        (
            {"teacher": np.zeros((2, 3))},
            ValueError,
            r"teacher_logits must have the student's shape",
        ),
        ({"labels": np.zeros(3, int)}, ValueError, r"labels must have shape \(2,\)"),
        ({"labels": np.array([0, 9])}, ValueError, r"labels must be integers in \[0, 4\)"),
    ],
)
def test_bad_arguments_say_what_is_wrong(args, error, message):
    kwargs = {
        "student": np.zeros((2, 4)),
        "teacher": np.zeros((2, 4)),
        "labels": np.array([0, 1]),
        "T": 2.0,
        "alpha": 0.5,
        **args,
    }
    with pytest.raises(error, match=message):
        kd_loss(
            kwargs["student"], kwargs["teacher"], kwargs["labels"], kwargs["T"], kwargs["alpha"]
        )


def toy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return x, y


def test_kd_loss_trains_a_student_through_fit_and_teacher_batches():
    x, y = toy()
    tinynet.manual_seed(0)
    teacher = Sequential(Linear(8, 32), ReLU(), Linear(32, 2))
    tinynet.fit(
        teacher,
        (x, y),
        tinynet.CrossEntropyLoss(),
        tinynet.SGD(teacher.parameters(), 0.1),
        20,
        progress=False,
    )
    student = Sequential(Linear(8, 4), ReLU(), Linear(4, 2))
    crit = KDLoss(T=4.0, alpha=0.9)
    batches = TeacherBatches(DataLoader(x, y, batch_size=32, shuffle=True, seed=0), teacher)
    first = crit(student(x), y, teacher_logits(teacher, x))
    tinynet.fit(student, batches, crit, tinynet.SGD(student.parameters(), 0.1), 30, progress=False)
    assert crit(student(x), y, teacher_logits(teacher, x)) < 0.7 * first
    assert teacher.training  # the teacher's mode is left as it was
    cached = DataLoader(x, y, teacher_logits(teacher, x), batch_size=32)
    assert [len(b) for b in cached][0] == 3 and len(batches) == 4


def test_kd_loss_object_needs_teacher_logits():
    with pytest.raises(ValueError, match="KDLoss needs batches"):
        KDLoss(2.0, 0.5)(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="alpha must lie"):
        KDLoss(2.0, -0.1)
