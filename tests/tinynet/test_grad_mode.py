"""no_grad / enable_grad and the global seed."""

import numpy as np
import pytest

import tinynet
from tinynet import Linear, no_grad


def test_no_grad_nests_and_restores():
    assert tinynet.is_grad_enabled()
    with no_grad():
        assert not tinynet.is_grad_enabled()
        with tinynet.enable_grad():
            assert tinynet.is_grad_enabled()
        assert not tinynet.is_grad_enabled()
    assert tinynet.is_grad_enabled()


def test_no_grad_restores_after_an_exception():
    with pytest.raises(KeyError), no_grad():
        raise KeyError("boom")
    assert tinynet.is_grad_enabled()


def test_inference_under_no_grad_keeps_no_cache_and_backward_says_why():
    layer = Linear(4, 3)
    x = np.ones((2, 4), dtype=np.float32)
    with no_grad():
        layer(x)
    assert layer.cache is None
    with pytest.raises(RuntimeError, match="no_grad"):
        layer.backward(np.ones((2, 3), dtype=np.float32))


def test_manual_seed_makes_initialisation_reproducible():
    tinynet.manual_seed(123)
    a = Linear(5, 4).weight.data.copy()
    tinynet.manual_seed(123)
    b = Linear(5, 4).weight.data.copy()
    tinynet.manual_seed(124)
    c = Linear(5, 4).weight.data.copy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_manual_seed_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="seed"):
        tinynet.manual_seed(bad)


def test_as_rng_accepts_seed_generator_or_none():
    from tinynet.random import as_rng, get_rng

    g = np.random.default_rng(0)
    assert as_rng(g) is g
    assert as_rng(None) is get_rng()
    assert as_rng(5).integers(1000) == np.random.default_rng(5).integers(1000)
    with pytest.raises(TypeError):
        as_rng(2.5)


def test_no_grad_is_per_thread():
    import threading

    inside, seen = threading.Event(), []

    def other_thread():
        inside.wait(5)
        seen.append(tinynet.is_grad_enabled())

    t = threading.Thread(target=other_thread)
    t.start()
    with no_grad():
        inside.set()
        t.join(5)
    assert seen == [True]
