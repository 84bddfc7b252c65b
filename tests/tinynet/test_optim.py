"""Tests for tinynet.optim: update rules, parameter groups, state, schedules, clipping."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet import Parameter
from tinynet.lr_scheduler import CosineAnnealingLR, LambdaLR, MultiStepLR, StepLR
from tinynet.optim import SGD, Adam, AdamW, Optimizer, clip_grad_norm_

SHAPES = [(3, 4), (5,), ()]


def make_params(dtype=np.float64, seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]


def set_random_grads(params, rng):
    for p in params:
        p.grad = rng.standard_normal(p.shape).astype(p.dtype)


# ------------------------------------------------------------ hand-worked answers
def test_sgd_momentum_by_hand():
    p = Parameter(np.array([1.0]))
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = np.array([1.0])
    opt.step()  # buf = g = 1;  p = 1 - 0.1 * 1
    assert p.data[0] == pytest.approx(0.9, rel=1e-15)
    opt.step()  # buf = 0.9 * 1 + 1 = 1.9;  p = 0.9 - 0.19
    assert p.data[0] == pytest.approx(0.71, rel=1e-15)
    np.testing.assert_allclose(opt.state[p]["momentum_buffer"], [1.9])


def test_sgd_plain_and_weight_decay_by_hand():
    p = Parameter(np.array([2.0, -1.0]))
    opt = SGD([p], lr=0.5, weight_decay=0.1)
    p.grad = np.array([1.0, 1.0])
    opt.step()  # g = grad + 0.1 p = [1.2, 0.9]
    np.testing.assert_allclose(p.data, [2.0 - 0.6, -1.0 - 0.45], rtol=1e-15)
    np.testing.assert_array_equal(p.grad, [1.0, 1.0])  # grad itself untouched
    assert len(opt.state) == 0  # no momentum, no state


def test_adam_first_step_is_lr_times_sign():
    # t = 1: m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps)
    p = Parameter(np.array([0.0, 0.0, 0.0]))
    opt = Adam([p], lr=0.01)
    p.grad = np.array([3.0, -1e-3, 0.0])
    opt.step()
    expected = [-0.01 * 3.0 / (3.0 + 1e-8), 0.01 * 1e-3 / (1e-3 + 1e-8), 0.0]
    np.testing.assert_allclose(p.data, expected, rtol=1e-12)
    assert opt.state[p]["step"] == 1


def test_adamw_decays_weight_without_gradient_contribution():
    p = Parameter(np.array([2.0]))
    opt = AdamW([p], lr=0.1, weight_decay=0.5)
    p.grad = np.array([0.0])  # zero gradient: Adam moves nothing, decay shrinks by 1 - lr*wd
    opt.step()
    assert p.data[0] == pytest.approx(2.0 * (1 - 0.05), rel=1e-15)
    q = Parameter(np.array([2.0]))
    adam = Adam([q], lr=0.1, weight_decay=0.5)  # L2: g = 0 + 0.5 * 2 = 1, Adam step ~ lr
    q.grad = np.array([0.0])
    adam.step()
    assert q.data[0] == pytest.approx(2.0 - 0.1, rel=1e-7)


# ------------------------------------------------------------ PyTorch parity
def run_against_torch(make_ours, make_torch, steps=10, seed=0, state_keys=()):
    """Apply the same random gradients to tinynet and torch parameters; compare."""
    torch = pytest.importorskip("torch")
    ours = make_params(seed=seed)
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    opt, topt = make_ours(ours), make_torch(theirs)
    rng = np.random.default_rng(seed + 100)
    for _ in range(steps):
        for p, tp in zip(ours, theirs):
            g = rng.standard_normal(p.shape)
            p.grad = g.copy()
            tp.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
    for p, tp in zip(ours, theirs):
        assert p.data.dtype == np.float64
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10, atol=1e-12)
        for key in state_keys:
            np.testing.assert_allclose(
                opt.state[p][key], topt.state[tp][key].numpy(), rtol=1e-10, atol=1e-12
            )


SGD_OPTIONS = [
    dict(momentum=m, dampening=d, weight_decay=wd, nesterov=n)
    for m, d, wd, n in itertools.product([0.0, 0.9], [0.0, 0.3], [0.0, 0.05], [False, True])
    if not n or (m > 0 and d == 0)
]


@pytest.mark.parametrize("options", SGD_OPTIONS, ids=str)
def test_sgd_matches_torch(options):
    torch = pytest.importorskip("torch")
    keys = ("momentum_buffer",) if options["momentum"] else ()
    run_against_torch(
        lambda ps: SGD(ps, lr=0.1, **options),
        lambda ps: torch.optim.SGD(ps, lr=0.1, **options),
        state_keys=keys,
    )


ADAM_OPTIONS = [
    dict(),
    dict(weight_decay=0.1),
    dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01),
    dict(betas=(0.0, 0.5)),
]


@pytest.mark.parametrize("options", ADAM_OPTIONS, ids=str)
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_and_adamw_match_torch(name, options):
    torch = pytest.importorskip("torch")
    ours_cls = {"Adam": Adam, "AdamW": AdamW}[name]
    run_against_torch(
        lambda ps: ours_cls(ps, **options),
        lambda ps: getattr(torch.optim, name)(ps, **options),
        state_keys=("exp_avg", "exp_avg_sq"),
    )


def test_adamw_default_weight_decay_matches_torch():
    torch = pytest.importorskip("torch")
    run_against_torch(lambda ps: AdamW(ps, lr=0.1), lambda ps: torch.optim.AdamW(ps, lr=0.1))


def test_param_groups_match_torch():
    torch = pytest.importorskip("torch")

    def groups(ps):
        return [
            {"params": ps[:2]},
            {"params": ps[2:], "lr": 0.01, "momentum": 0.5, "weight_decay": 0.1},
        ]

    run_against_torch(
        lambda ps: SGD(groups(ps), lr=0.1, momentum=0.9),
        lambda ps: torch.optim.SGD(groups(ps), lr=0.1, momentum=0.9),
    )
    run_against_torch(
        lambda ps: Adam(groups(ps)[:1] + [{"params": ps[2:], "lr": 0.1}], lr=0.01),
        lambda ps: torch.optim.Adam(groups(ps)[:1] + [{"params": ps[2:], "lr": 0.1}], lr=0.01),
    )


def test_param_group_has_own_lr():
    a, b = make_params(shapes=[(2,), (2,)])
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=1.0)
    assert [g["lr"] for g in opt.param_groups] == [1.0, 0.01]
    a0, b0 = a.data.copy(), b.data.copy()
    a.grad, b.grad = np.ones(2), np.ones(2)
    opt.step()
    np.testing.assert_allclose(a.data, a0 - 1.0)
    np.testing.assert_allclose(b.data, b0 - 0.01)


def test_add_param_group_later():
    a, b = make_params(shapes=[(2,), (2,)])
    opt = Adam([a], lr=0.1)
    opt.add_param_group({"params": b, "betas": (0.5, 0.9)})
    assert opt.param_groups[1]["params"] == [b]
    assert opt.param_groups[1]["lr"] == 0.1 and opt.param_groups[1]["betas"] == (0.5, 0.9)


# ------------------------------------------------------------ skipping, dtype, in place
@pytest.mark.parametrize(
    "make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1), Adam, AdamW]
)
def test_frozen_and_gradless_params_are_skipped(make):
    frozen, no_grad, live = make_params(shapes=[(3,), (3,), (3,)])
    frozen.requires_grad = False
    frozen.grad = np.ones(3)  # even a stray gradient must not move it
    live.grad = np.ones(3)
    before = [p.data.copy() for p in (frozen, no_grad, live)]
    opt = make([frozen, no_grad, live])
    for _ in range(3):
        opt.step()
    np.testing.assert_array_equal(frozen.data, before[0])
    np.testing.assert_array_equal(no_grad.data, before[1])
    assert not np.allclose(live.data, before[2])
    assert frozen not in opt.state and no_grad not in opt.state


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: SGD(ps, lr=0.1),
        lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True),
        lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=0.5),
        lambda ps: Adam(ps, lr=0.1, weight_decay=0.1),
        lambda ps: AdamW(ps, lr=0.1),
    ],
)
def test_float32_stays_float32_and_updates_in_place(make):
    params32 = make_params(np.float32, seed=3)
    params64 = make_params(np.float64, seed=3)
    arrays = [p.data for p in params32]
    opt32, opt64 = make(params32), make(params64)
    rng = np.random.default_rng(7)
    for _ in range(5):
        for p32, p64 in zip(params32, params64):
            g = rng.standard_normal(p32.shape)
            p32.grad, p64.grad = g.astype(np.float32), g
        opt32.step()
        opt64.step()
    for p32, p64, array in zip(params32, params64, arrays):
        assert p32.data is array  # updated in place, not replaced
        assert p32.data.dtype == np.float32
        for buffer in opt32.state[p32].values():
            if isinstance(buffer, np.ndarray):
                assert buffer.dtype == np.float32
        np.testing.assert_allclose(p32.data, p64.data, rtol=1e-4, atol=1e-5)


def test_float64_grad_on_float32_param_keeps_float32():
    p = Parameter(np.ones(3, dtype=np.float32))
    p.grad = np.ones(3, dtype=np.float64)
    opt = SGD([p], lr=np.float64(0.5), momentum=0.9)
    opt.step()
    assert p.data.dtype == np.float32
    assert opt.state[p]["momentum_buffer"].dtype == np.float32
    np.testing.assert_allclose(p.data, 0.5)


def test_zero_grad():
    a, b = make_params(shapes=[(2,), (2,)])
    opt = SGD([a, b], lr=0.1)
    a.grad = np.ones(2)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad, [0.0, 0.0])
    assert b.grad is None
    opt.zero_grad()
    assert a.grad is None and b.grad is None


# ------------------------------------------------------------ reset_state
def test_reset_state_whole_parameter():
    p, q = make_params(shapes=[(4,), (4,)])
    opt = Adam([p, q], lr=0.1)
    rng = np.random.default_rng(0)
    for _ in range(3):
        set_random_grads([p, q], rng)
        opt.step()
    opt.reset_state(p)
    assert p not in opt.state and opt.state[q]["step"] == 3
    # the next step treats p as fresh: same as a brand-new optimizer would do
    fresh = Parameter(p.data.copy())
    set_random_grads([p, q], rng)
    fresh.grad = p.grad.copy()
    opt.step()
    Adam([fresh], lr=0.1).step()
    np.testing.assert_allclose(p.data, fresh.data, rtol=1e-15)
    assert opt.state[p]["step"] == 1


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9), Adam])
def test_reset_state_with_mask(make):
    (p,) = make_params(shapes=[(2, 3)])
    opt = make([p])
    rng = np.random.default_rng(1)
    for _ in range(3):
        set_random_grads([p], rng)
        opt.step()
    before = {k: np.copy(v) for k, v in opt.state[p].items()}
    forget = np.array([[True, False, False], [False, True, False]])
    opt.reset_state(p, mask=forget)
    for key, buffer in opt.state[p].items():
        if isinstance(buffer, np.ndarray):
            np.testing.assert_array_equal(buffer[forget], 0.0)
            np.testing.assert_array_equal(buffer[~forget], before[key][~forget])
        else:
            assert buffer == before[key]  # Adam's step count is kept
    # pruned entries (zero gradient from now on) never move again
    pruned = p.data[forget].copy()
    for _ in range(3):
        set_random_grads([p], rng)
        p.grad[forget] = 0.0
        opt.step()
    np.testing.assert_array_equal(p.data[forget], pruned)


def test_reset_state_errors():
    p, stranger = make_params(shapes=[(2,), (2,)])
    opt = SGD([p], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="is not updated by this optimizer"):
        opt.reset_state(stranger)
    with pytest.raises(ValueError, match=r"mask of shape \(2,\) \(the parameter's\), got \(3,\)"):
        opt.reset_state(p, mask=np.zeros(3, dtype=bool))
    with pytest.raises(TypeError, match="boolean mask"):
        opt.reset_state(p, mask=np.zeros(2))
    opt.reset_state(p, mask=np.ones(2, dtype=bool))  # no state yet: nothing to do


# ------------------------------------------------------------ construction errors
def test_bad_hyperparameters_are_named():
    (p,) = make_params(shapes=[(2,)])
    cases = [
        (lambda: SGD([p], lr=-0.1), "invalid lr: expected a number >= 0, got -0.1"),
        (lambda: SGD([p], lr=0.1, momentum=-1), "invalid momentum"),
        (lambda: SGD([p], lr=0.1, weight_decay=-1e-4), "invalid weight_decay"),
        (lambda: SGD([p], lr=float("nan")), "invalid lr"),
        (lambda: Adam([p], betas=(1.0, 0.999)), r"invalid betas\[0\]: .* in \[0, 1\), got 1.0"),
        (lambda: Adam([p], betas=(0.9, -0.1)), r"invalid betas\[1\]"),
        (lambda: Adam([p], eps=-1e-8), "invalid eps"),
        (lambda: AdamW([p], weight_decay=-0.01), "invalid weight_decay"),
        (lambda: SGD([p], lr=0.1, nesterov=True), "Nesterov momentum needs momentum > 0"),
        (lambda: SGD([p], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening = 0"),
        (lambda: SGD([{"params": [p], "lr": -1.0}], lr=0.1), "invalid lr"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError, match=message):
            make()


def test_bad_params_arguments():
    p, q = make_params(shapes=[(2,), (2,)])
    with pytest.raises(TypeError):
        SGD([p])  # lr is required
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="got a single Parameter"):
        SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="not a set"):
        SGD([{"params": {p}}], lr=0.1)
    with pytest.raises(TypeError, match="optimizers update Parameters, got a ndarray"):
        SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        SGD([{"params": [p, q]}, {"params": [q]}], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        SGD([p, p], lr=0.1)
    opt = SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [p]})
    with pytest.raises(TypeError, match="'params' entry"):
        opt.add_param_group({"lr": 0.1})
    assert len(opt.param_groups) == 1  # failed additions leave no trace


def test_generator_of_params_is_accepted():
    params = make_params()
    opt = SGD((p for p in params), lr=0.1)
    assert opt.param_groups[0]["params"] == params
    assert isinstance(opt, Optimizer)
    assert "group 0: 3 params" in repr(opt)


# ------------------------------------------------------------ lr schedules
def lrs_over_epochs(scheduler, opt, epochs):
    lrs = [scheduler.get_last_lr()]
    for _ in range(epochs):
        opt.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr())
    return np.array(lrs)


def test_steplr_by_hand():
    (p,) = make_params(shapes=[(1,)])
    opt = SGD([p], lr=1.0)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    np.testing.assert_allclose(lrs_over_epochs(sched, opt, 5)[:, 0], [1, 1, 0.5, 0.5, 0.25, 0.25])
    assert opt.param_groups[0]["lr"] == 0.25 and opt.param_groups[0]["initial_lr"] == 1.0


def test_cosine_by_hand():
    (p,) = make_params(shapes=[(1,)])
    opt = SGD([p], lr=1.0)
    sched = CosineAnnealingLR(opt, T_max=4, eta_min=0.2)
    lrs = lrs_over_epochs(sched, opt, 4)[:, 0]
    np.testing.assert_allclose(lrs[[0, 2, 4]], [1.0, 0.6, 0.2], rtol=1e-15)


def scheduler_pairs(torch):
    return [
        (lambda o: StepLR(o, 3, gamma=0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5)),
        (
            lambda o: MultiStepLR(o, [2, 5, 5, 9], gamma=0.3),
            lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 5, 5, 9], gamma=0.3),
        ),
        (
            lambda o: CosineAnnealingLR(o, T_max=12, eta_min=1e-3),
            lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=12, eta_min=1e-3),
        ),
        (
            lambda o: CosineAnnealingLR(o, T_max=7),
            lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7),
        ),
        (
            lambda o: LambdaLR(o, [lambda t: min(1.0, (t + 1) / 4), lambda t: 0.9**t]),
            lambda o: torch.optim.lr_scheduler.LambdaLR(
                o, [lambda t: min(1.0, (t + 1) / 4), lambda t: 0.9**t]
            ),
        ),
    ]


@pytest.mark.parametrize("index", range(5))
def test_schedulers_match_torch(index):
    torch = pytest.importorskip("torch")
    make_ours, make_torch = scheduler_pairs(torch)[index]
    a, b = make_params(shapes=[(2,), (2,)])
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=0.1, momentum=0.9)
    ta, tb = (torch.zeros(2, dtype=torch.float64, requires_grad=True) for _ in range(2))
    topt = torch.optim.SGD([{"params": [ta]}, {"params": [tb], "lr": 0.01}], lr=0.1, momentum=0.9)
    ours = lrs_over_epochs(make_ours(opt), opt, 12)  # cosine: t = 0 .. T_max (and past 7)
    theirs = lrs_over_epochs(make_torch(topt), topt, 12)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx(list(theirs[-1]), rel=1e-12)


def test_scheduler_errors():
    (p,) = make_params(shapes=[(1,)])
    opt = SGD([p], lr=1.0)
    with pytest.raises(TypeError, match="StepLR expected an Optimizer, got list"):
        StepLR([p], step_size=1)
    with pytest.raises(ValueError, match="step_size must be an integer >= 1, got 0"):
        StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="T_max must be > 0"):
        CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match=r"expected 1 lr_lambdas \(one per group\), got 2"):
        LambdaLR(opt, [lambda t: 1.0, lambda t: 1.0])


# ------------------------------------------------------------ clip_grad_norm_
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    torch = pytest.importorskip("torch")
    params = make_params(shapes=[(3, 4), (5,), (2,)])
    rng = np.random.default_rng(2)
    set_random_grads(params, rng)
    params[2].grad = None  # skipped
    tparams = [torch.zeros(p.shape, dtype=torch.float64) for p in params]
    for p, tp in zip(params, tparams):
        if p.grad is not None:
            tp.grad = torch.from_numpy(p.grad.copy())
    total = clip_grad_norm_(params, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type=norm_type)
    assert isinstance(total, float)
    assert total == pytest.approx(ttotal.item(), rel=1e-12)
    for p, tp in zip(params[:2], tparams[:2]):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12)
    assert params[2].grad is None


def test_clip_grad_norm_by_hand():
    p, q = Parameter(np.zeros(2)), Parameter(np.zeros(1))
    p.grad, q.grad = np.array([3.0, 0.0]), np.array([4.0])  # joint norm 5
    assert clip_grad_norm_([p, q], max_norm=1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(np.r_[p.grad, q.grad], [0.6, 0.0, 0.8], rtol=1e-6)
    single = Parameter(np.zeros(2))
    single.grad = np.array([0.3, 0.4])
    assert clip_grad_norm_(single, max_norm=1.0) == pytest.approx(0.5)  # no clipping
    np.testing.assert_array_equal(single.grad, [0.3, 0.4])
    assert clip_grad_norm_([Parameter(np.zeros(2))], 1.0) == 0.0  # no grads at all


def test_clip_grad_norm_keeps_float32():
    p = Parameter(np.zeros(3, dtype=np.float32))
    p.grad = np.array([30.0, 40.0, 0.0], dtype=np.float32)
    grad = p.grad
    clip_grad_norm_([p], 5.0)
    assert p.grad is grad and p.grad.dtype == np.float32
    np.testing.assert_allclose(p.grad, [3.0, 4.0, 0.0], rtol=1e-6)


def test_clip_grad_norm_nonfinite():
    p = Parameter(np.zeros(2))
    p.grad = np.array([np.inf, 1.0])
    with np.errstate(invalid="ignore"):
        assert clip_grad_norm_([p], 1.0) == math.inf  # returned as is, like torch
    p.grad = np.array([np.nan, 1.0])
    assert math.isnan(clip_grad_norm_([p], 1.0))
    assert np.all(np.isnan(p.grad))
    p.grad = np.array([np.inf, 1.0])
    with pytest.raises(RuntimeError, match="inf or nan"):
        clip_grad_norm_([p], 1.0, error_if_nonfinite=True)


@settings(deadline=None, max_examples=20)
@given(
    st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=8),
    st.floats(1e-3, 10.0),
)
def test_clip_grad_norm_property(values, max_norm):
    p = Parameter(np.zeros(len(values)))
    p.grad = np.array(values)
    original = p.grad.copy()
    total = clip_grad_norm_([p], max_norm)
    assert total == pytest.approx(float(np.linalg.norm(original)), rel=1e-12, abs=1e-300)
    assert np.linalg.norm(p.grad) <= max_norm * (1 + 1e-9)
    if total > 0:  # same direction
        scale = np.linalg.norm(p.grad) / total
        np.testing.assert_allclose(p.grad, scale * original, rtol=1e-12, atol=1e-300)
