"""clipping.logits: the logits' range chosen by the softmax's cross entropy (Nagel et al. 2021).

The error by hand and against PyTorch, the search against every pair of
candidate ends, the prediction it keeps against MSE's, per-module observers
in ``quantize_activations``, and the error messages. Save and load: with the
other calibrators in ``test_clipping_calibration.py``.
"""

import functools

import numpy as np
import pytest

import tinynet
from compression.clipping import CrossEntropyObserver, MSEObserver, softmax_cross_entropy
from compression.quantization import calibrate, quantize_activations
from compression.quantization.affine import fake_quantize, qparams, qrange
from tinynet.losses import softmax


def logits(n=1000, classes=10, seed=0, margin=16.0):
    """Noise around -4, and one winner per row lifted by ``margin``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-4.0, 4.0, size=(n, classes))
    z[np.arange(n), rng.integers(0, classes, n)] += margin
    return z


def ce_at(z, lo, hi, bits):
    qmin, qmax = qrange(bits)
    z_hat = fake_quantize(z.astype(np.float32), *qparams(lo, hi, bits), qmin, qmax)
    return softmax_cross_entropy(softmax(z), z_hat), z_hat


# ------------------------------------------------------------------- the error
def test_cross_entropy_by_hand():
    z = np.array([[0.0, np.log(3.0)], [np.log(2.0), 0.0]])
    p = softmax(z)  # [1/4, 3/4] and [2/3, 1/3]
    np.testing.assert_allclose(p, [[0.25, 0.75], [2 / 3, 1 / 3]])
    # every logit rounded to 0: both rows predict [1/2, 1/2], each costs log 2
    assert softmax_cross_entropy(p, np.zeros_like(z)) == pytest.approx(np.log(2.0))
    # the floor is the mean entropy of the targets
    entropy = -np.mean(
        [
            0.25 * np.log(0.25) + 0.75 * np.log(0.75),
            (2 / 3) * np.log(2 / 3) + (1 / 3) * np.log(1 / 3),
        ]
    )
    assert softmax_cross_entropy(p, z) == pytest.approx(entropy)
    # shifting a row's logits changes no softmax
    assert softmax_cross_entropy(p, z + np.array([[5.0], [-7.0]])) == pytest.approx(entropy)


def test_cross_entropy_matches_pytorch():
    torch = pytest.importorskip("torch")
    z = logits(50, 7, seed=3)
    z_hat = np.round(z / 3.0) * 3.0
    p = softmax(z)
    expected = torch.nn.functional.cross_entropy(torch.tensor(z_hat), torch.tensor(p)).item()
    assert softmax_cross_entropy(p, z_hat) == pytest.approx(expected, rel=1e-10)


# ------------------------------------------------------------------ the search
@pytest.mark.parametrize("seed", range(3))
def test_search_is_near_the_best_pair_and_beats_min_max_and_mse(seed):
    z = logits(400, 10, seed=seed)
    ce, mse = CrossEntropyObserver(bins=64), MSEObserver(bins=64, two_sided=True)
    ce.observe(z)
    mse.observe(z)
    for bits in (2, 3, 4):
        lo, hi = (float(v) for v in ce.range(bits))
        assert float(ce.min_val) <= lo < 0 < hi <= float(ce.max_val)
        mine, _ = ce_at(z, lo, hi, bits)
        assert mine <= ce_at(z, float(z.min()), float(z.max()), bits)[0]
        assert mine <= ce_at(z, *(float(v) for v in mse.range(bits)), bits)[0]
        # every (lower, upper) pair of candidate edges: coordinate descent is within 2% of it
        edges = ce.candidates()
        uppers = np.append(edges[edges < float(ce.max_val)], float(ce.max_val))
        lowers = np.append(-edges[-edges > float(ce.min_val)], float(ce.min_val))
        brute = min(ce_at(z, a, b, bits)[0] for a in lowers for b in uppers)
        assert mine <= brute * 1.02


def test_it_keeps_more_predictions_than_mse_at_3_bits():
    z = logits(1000, 10, seed=0)
    ranges, kept = {}, {}
    for name, obs in (("mse", MSEObserver(two_sided=True)), ("ce", CrossEntropyObserver())):
        obs.observe(z)
        ranges[name] = tuple(float(v) for v in obs.range(3))
        _, z_hat = ce_at(z, *ranges[name], 3)
        kept[name] = np.mean(z_hat.argmax(axis=1) == z.argmax(axis=1))
    assert kept["ce"] > kept["mse"] + 0.005  # 99.1% against 98.4%
    assert ranges["ce"][0] > -4.0  # most of the negative tail (mean -4) is given up


def test_rows_beyond_max_rows_only_reach_the_histogram():
    z = logits(300, 5, seed=1)
    obs = CrossEntropyObserver(max_rows=100)
    obs.observe(z[:60])
    obs.observe(z[60:])
    assert int(obs.n_rows) == 100 and obs.count == z.size
    np.testing.assert_array_equal(obs.rows, z[:100].astype(np.float32))
    assert float(obs.min_val) == np.float32(z.min()) and float(obs.max_val) == np.float32(z.max())


# ------------------------------------------------------------------- errors
def test_errors_name_what_was_expected():
    obs = CrossEntropyObserver()
    with pytest.raises(ValueError, match=r"logits of shape \(N, classes\), got shape \(4, 3, 2\)"):
        obs.observe(np.zeros((4, 3, 2)))
    obs.observe(np.zeros((0, 10)))  # an empty batch is ignored
    with pytest.raises(ValueError, match="observed no data"):
        obs.range(3)
    obs.observe(logits(20, 10))
    with pytest.raises(ValueError, match=r"expects 10 classes, got shape \(5, 4\)"):
        obs.observe(np.zeros((5, 4)))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_rows must be a positive integer"):
            CrossEntropyObserver(max_rows=bad)
    with pytest.raises(ValueError, match="classes must be a positive integer"):
        CrossEntropyObserver(classes=0)


# ------------------------------------ plugging into post-training quantization
def mlp():
    tinynet.manual_seed(0)
    return tinynet.Sequential(tinynet.Linear(6, 16), tinynet.ReLU(), tinynet.Linear(16, 4))


def calibration_set():
    return np.random.default_rng(10).standard_normal((200, 6)).astype(np.float32)


def test_one_observer_per_module_in_quantize_activations():
    x = calibration_set()
    observers = {"1": functools.partial(MSEObserver, bins=256), "2": CrossEntropyObserver}
    model = quantize_activations(mlp(), x, bits=3, observer=observers)
    assert type(model[1].output_transforms[0].observer) is MSEObserver
    assert type(model[2].output_transforms[0].observer) is CrossEntropyObserver
    with pytest.raises(ValueError, match=r"unknown: \[\], missing: \['2'\]"):
        quantize_activations(mlp(), x, bits=3, observer={"1": MSEObserver})
    with pytest.raises(ValueError, match=r"unknown: \['9'\], missing: \[\]"):
        quantize_activations(mlp(), x, bits=3, observer={**observers, "9": MSEObserver})
    with pytest.raises(ValueError, match=r"logits of shape \(N, classes\)"):  # not on a conv output
        calibrate(
            tinynet.Sequential(tinynet.Conv2d(1, 2, 3)),
            {"0": CrossEntropyObserver()},
            np.zeros((2, 1, 5, 5), dtype=np.float32),
        )
