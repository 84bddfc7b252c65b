"""quantization.observers: hand-worked ranges, per channel, calibration, PyTorch parity."""

import numpy as np
import pytest

import tinynet
from compression.quantization.affine import qparams
from compression.quantization.observers import (
    OBSERVER_TYPES,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    Observer,
    calibrate,
    min_max,
    register_observer,
)

BATCHES = [np.array([1.0, -2.0, 0.5]), np.array([4.0, 0.0]), np.array([-1.0, 2.0])]


# ----------------------------------------------------------- hand-worked
def test_min_max_observer_keeps_the_extremes():
    obs = MinMaxObserver()
    assert not obs.observed
    for x in BATCHES:
        obs.observe(x)
    x_min, x_max = obs.range()
    assert (float(x_min), float(x_max)) == (-2.0, 4.0)
    assert x_min.dtype == np.float32 and x_min.shape == ()


def test_moving_average_first_batch_sets_then_averages():
    obs = MovingAverageMinMaxObserver(averaging_constant=0.5)
    obs.observe(BATCHES[0])  # sets [-2, 1]
    assert (float(obs.min_val), float(obs.max_val)) == (-2.0, 1.0)
    obs.observe(BATCHES[1])  # min: -2 + 0.5 (0 + 2) = -1; max: 1 + 0.5 (4 - 1) = 2.5
    assert (float(obs.min_val), float(obs.max_val)) == (-1.0, 2.5)
    obs.observe(BATCHES[2])  # min: -1 + 0.5 (-1 + 1) = -1; max: 2.5 + 0.5 (2 - 2.5) = 2.25
    assert (float(obs.min_val), float(obs.max_val)) == (-1.0, 2.25)
    assert MovingAverageMinMaxObserver().averaging_constant == 0.01  # PyTorch's default


def test_per_channel_ranges_reduce_every_other_axis():
    x = np.zeros((2, 3, 2, 2), dtype=np.float32)
    x[0, 1, 0, 0], x[1, 1, 1, 1], x[1, 2, 0, 1] = -5.0, 7.0, 3.0
    obs = MinMaxObserver(axis=1)
    obs.observe(x)
    assert obs.channels == 3
    np.testing.assert_array_equal(obs.min_val, [0.0, -5.0, 0.0])
    np.testing.assert_array_equal(obs.max_val, [0.0, 7.0, 3.0])
    np.testing.assert_array_equal(min_max(x, -3)[1], [0.0, 7.0, 3.0])


def test_qparams_come_from_the_range():
    obs = MinMaxObserver()
    obs.observe(np.array([-1.0, 3.0]))
    for kwargs in [{}, {"symmetric": True}, {"symmetric": True, "narrow_range": True}]:
        expected = qparams(-1.0, 3.0, 4, **kwargs)
        got = obs.qparams(4, **kwargs)
        assert got[0] == expected[0] and got[1] == expected[1]


def test_empty_batches_are_ignored_and_nothing_observed_is_an_error():
    obs = MovingAverageMinMaxObserver()
    obs.observe(np.zeros((0, 3)))
    assert not obs.observed
    with pytest.raises(ValueError, match="observed no data"):
        obs.qparams(8)


def test_channel_count_is_checked_and_bad_arguments_refused():
    obs = MinMaxObserver(axis=1, channels=4)
    assert obs.min_val.shape == (4,)
    with pytest.raises(ValueError, match="expects 4 channels"):
        obs.observe(np.ones((2, 3)))
    with pytest.raises(ValueError, match="axis 2 does not exist"):
        MinMaxObserver(axis=2).observe(np.ones((2, 3)))
    with pytest.raises(ValueError, match="averaging_constant"):
        MovingAverageMinMaxObserver(averaging_constant=0.0)
    with pytest.raises(ValueError, match="one channel"):
        MinMaxObserver(axis=None, channels=3)


def test_state_and_config_round_trip():
    obs = MovingAverageMinMaxObserver(axis=0, channels=2, averaging_constant=0.1)
    obs.observe(np.array([[1.0, -1.0], [2.0, 3.0]]))
    clone = OBSERVER_TYPES["MovingAverageMinMaxObserver"].from_config(obs.get_config())
    for name, array in obs.named_state():
        clone.set_state(name, array)
    assert clone.averaging_constant == 0.1
    np.testing.assert_array_equal(clone.range()[0], obs.range()[0])
    with pytest.raises(ValueError, match="expected shape"):
        clone.set_state("min_val", np.zeros(3))


def test_a_new_calibration_method_only_overrides_range():
    """The interface a clipping method uses: keep what it needs, compute (x_min, x_max)."""

    @register_observer
    class HalfRangeObserver(MinMaxObserver):
        def range(self):
            x_min, x_max = super().range()
            return x_min / 2, x_max / 2

    try:
        obs = HalfRangeObserver()
        obs.observe(np.array([-2.0, 4.0]))
        assert obs.qparams(8)[0] == qparams(-1.0, 2.0, 8)[0]
        assert OBSERVER_TYPES["HalfRangeObserver"] is HalfRangeObserver
    finally:
        del OBSERVER_TYPES["HalfRangeObserver"]


# ------------------------------------------------------------ calibration
def mlp():
    tinynet.manual_seed(0)
    return tinynet.Sequential(
        tinynet.Linear(4, 6),
        tinynet.BatchNorm1d(6),
        tinynet.ReLU(),
        tinynet.Dropout(0.5),
        tinynet.Linear(6, 3),
    )


def test_calibrate_records_outputs_in_eval_mode_without_grad_and_detaches():
    model = mlp()
    model.train()
    x = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    running_mean = model[1].running_mean.copy()
    wanted = {"2": MinMaxObserver(), "4": MovingAverageMinMaxObserver()}
    observers = calibrate(model, wanted, x, batch_size=20)
    assert observers["2"] is wanted["2"]
    assert all(m.training for m in model.modules())  # modes given back
    model.eval()
    with tinynet.no_grad():
        hidden = model[:3](x)
    assert float(observers["2"].max_val) == hidden.max() and float(observers["2"].min_val) == 0
    np.testing.assert_array_equal(model[1].running_mean, running_mean)  # eval: stats untouched
    assert not model[2]._forward_hooks and not model[4]._forward_hooks
    assert model[0].cache is None  # ran under no_grad


def test_calibrate_accepts_names_tuples_and_loaders():
    model = mlp()
    x = np.random.default_rng(1).standard_normal((30, 4)).astype(np.float32)
    y = np.zeros(30, dtype=np.int64)
    a = calibrate(model, ["4"], (x, y))["4"]
    b = calibrate(model, ["4"], tinynet.data.DataLoader(x, y, batch_size=7))["4"]
    c = calibrate(model, ["4"], [x[:10], x[10:]])["4"]
    assert isinstance(a, MinMaxObserver)
    for other in (b, c):
        assert other.min_val == a.min_val and other.max_val == a.max_val


def test_calibrate_refuses_an_empty_set_and_unknown_modules():
    model = mlp()
    with pytest.raises(ValueError, match="calibration set is empty"):
        calibrate(model, ["2"], np.zeros((0, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="calibration set is empty"):
        calibrate(model, ["2"], [])
    assert not model[2]._forward_hooks
    with pytest.raises(ValueError, match="no modules named \\['9'\\]"):
        calibrate(model, ["9"], np.ones((2, 4)))


def test_hooks_are_removed_when_a_batch_fails():
    model = mlp()
    with pytest.raises(ValueError):
        calibrate(model, ["2"], [np.ones((2, 5), dtype=np.float32)])  # wrong width
    assert not model[2]._forward_hooks


# ------------------------------------------------------- PyTorch parity
def batches(seed, shape=(16, 5)):
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal(shape) * rng.uniform(0.5, 3) + 0.3).astype(np.float32)
        for _ in range(6)
    ]


@pytest.mark.parametrize("moving", [False, True])
def test_per_tensor_observers_match_pytorch(moving):
    torch = pytest.importorskip("torch")
    o = torch.ao.quantization
    theirs = o.MovingAverageMinMaxObserver() if moving else o.MinMaxObserver()
    ours = MovingAverageMinMaxObserver() if moving else MinMaxObserver()
    for x in batches(0):
        theirs(torch.from_numpy(x))
        ours.observe(x)
    assert float(theirs.min_val) == float(ours.min_val)
    assert float(theirs.max_val) == float(ours.max_val)
    t_scale, t_zp = theirs.calculate_qparams()  # quint8 affine: [0, 255]
    scale, zero_point = ours.qparams(8)
    assert float(t_scale) == float(scale) and int(t_zp) == int(zero_point)


@pytest.mark.parametrize("moving", [False, True])
def test_per_channel_observers_match_pytorch(moving):
    torch = pytest.importorskip("torch")
    o = torch.ao.quantization
    cls = o.MovingAveragePerChannelMinMaxObserver if moving else o.PerChannelMinMaxObserver
    theirs = cls(ch_axis=1, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    ours = (MovingAverageMinMaxObserver if moving else MinMaxObserver)(axis=1)
    for x in batches(1, (8, 5, 3)):
        theirs(torch.from_numpy(x))
        ours.observe(x)
    np.testing.assert_array_equal(theirs.min_val.numpy(), ours.min_val)
    np.testing.assert_array_equal(theirs.max_val.numpy(), ours.max_val)
    t_scale, t_zp = theirs.calculate_qparams()
    scale, zero_point = ours.qparams(8, symmetric=True)
    np.testing.assert_array_equal(t_scale.numpy(), scale)
    np.testing.assert_array_equal(t_zp.numpy(), zero_point)


def test_observer_base_class_needs_an_update_rule():
    with pytest.raises(NotImplementedError, match="update"):
        Observer().observe(np.ones(2))
