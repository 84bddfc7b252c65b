"""Tests for tinynet.models: exact parameter counts, shapes, and PyTorch key/output parity."""

from __future__ import annotations

import numpy as np
import pytest

import tinynet
from tinynet.models import MODELS, lenet5, lenet5_caffe, lenet_300_100, mlp


def n_params(model: tinynet.Module) -> int:
    return sum(p.size for p in model.parameters())


@pytest.mark.parametrize(
    ("build", "expected"),
    [(lenet_300_100, 266_610), (lenet5, 61_706), (lenet5_caffe, 431_080)],
)
def test_parameter_counts_are_exact(build, expected):
    assert n_params(build()) == expected


def test_parameter_counts_by_hand():
    # lenet5: conv 6*1*5*5+6, conv 16*6*5*5+16, fc 400*120+120, 120*84+84, 84*10+10
    assert 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706
    # lenet5_caffe: conv 20*25+20, conv 50*20*25+50, fc 800*500+500, 500*10+10
    assert 520 + 25_050 + 400_500 + 5_010 == 431_080
    sizes = [p.size for p in lenet5().parameters()]
    assert sizes == [150, 6, 2_400, 16, 48_000, 120, 10_080, 84, 840, 10]


@pytest.mark.parametrize("name", ["lenet_300_100", "lenet5", "lenet5_caffe", "mlp"])
def test_output_shape_for_mnist_batches(name):
    model = MODELS[name]()
    x = np.zeros((3, 1, 28, 28), dtype=np.float32)
    with tinynet.no_grad():
        out = model(x)
    assert out.shape == (3, 10)
    assert out.dtype == np.float32


def test_mlp_matches_lenet_300_100_and_options():
    assert list(mlp().state_dict()) == list(lenet_300_100().state_dict())
    assert n_params(mlp()) == 266_610
    model = mlp((784, 1200, 1200, 10), batchnorm=True, dropout=0.2)
    types = [type(m).__name__ for m in model]
    assert types == [
        "Flatten",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Dropout",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    assert n_params(mlp((4, 3))) == 15  # a single Linear(4, 3)
    with pytest.raises(ValueError, match="sizes"):
        mlp((784,))
    with pytest.raises(ValueError, match="dropout"):
        mlp(dropout=1.0)


def test_registry_names_constructors():
    assert MODELS["lenet5"] is lenet5
    assert set(MODELS) >= {"lenet_300_100", "lenet5", "lenet5_caffe"}


def torch_equivalent(name: str):
    nn = pytest.importorskip("torch").nn
    if name == "lenet_300_100":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 300),
            nn.ReLU(),
            nn.Linear(300, 100),
            nn.ReLU(),
            nn.Linear(100, 10),
        )
    if name == "lenet5":
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(400, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        )
    return nn.Sequential(
        nn.Conv2d(1, 20, 5),
        nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(800, 500),
        nn.ReLU(),
        nn.Linear(500, 10),
    )


@pytest.mark.parametrize("name", ["lenet_300_100", "lenet5", "lenet5_caffe"])
def test_state_dict_loads_into_torch_and_gives_the_same_outputs(name):
    torch = pytest.importorskip("torch")
    tinynet.manual_seed(0)
    model = MODELS[name]().astype(np.float64)
    reference = torch_equivalent(name).double()
    state = model.state_dict()
    assert list(state) == list(reference.state_dict())
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})  # no renaming

    x = np.random.default_rng(1).normal(size=(4, 1, 28, 28))
    with tinynet.no_grad():
        out = model(x)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
