"""The model zoo: the MNIST networks the compression papers use, by their papers' names.

Each constructor returns a plain :class:`tinynet.Sequential`, so its
``state_dict`` keys (``"1.weight"``, ...) are those of the same
``torch.nn.Sequential`` and load into it without renaming.

Two different networks are called "LeNet-5" in the literature; say which:

=================  =========================================================  ==========
name               layers                                                     parameters
=================  =========================================================  ==========
``lenet_300_100``  784-300-100-10 fully connected, ReLU                       266,610
``lenet5``         LeCun et al. 1998 style: conv 6 and 16 filters, fc 120-84  61,706
``lenet5_caffe``   Caffe's "LeNet-5" used by Han et al. 2015/2016:            431,080
                   conv 20 and 50 filters, fc 500
=================  =========================================================  ==========

Parameter counts, layer by layer (weights + biases)::

    lenet_300_100:  784*300+300 = 235,500 | 300*100+100 = 30,100 | 100*10+10 = 1,010
    lenet5:         conv1 6*1*5*5+6 = 156 | conv2 16*6*5*5+16 = 2,416
                    fc 400*120+120 = 48,120 | 120*84+84 = 10,164 | 84*10+10 = 850
    lenet5_caffe:   conv1 20*1*5*5+20 = 520 | conv2 50*20*5*5+50 = 25,050
                    fc 800*500+500 = 400,500 | 500*10+10 = 5,010

References
----------
LeCun, Bottou, Bengio, Haffner (1998). Gradient-based learning applied to
document recognition. Proc. IEEE 86(11). (LeNet-5, and the 300-100 MLP among
its baselines.)

Han, Pool, Tran, Dally (2015). Learning both weights and connections for
efficient neural networks. NeurIPS. Han, Mao, Dally (2016). Deep Compression.
ICLR. (LeNet-300-100 and the Caffe LeNet-5 as pruning and quantization
benchmarks.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tinynet.layers import (
    BatchNorm1d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
)
from tinynet.module import Module, Sequential

__all__ = ["MODELS", "lenet5", "lenet5_caffe", "lenet_300_100", "mlp"]


def lenet_300_100() -> Sequential:
    """LeNet-300-100: a 784-300-100-10 fully connected net with ReLU (266,610 parameters).

    Input ``(N, 1, 28, 28)`` (or ``(N, 784)``), output logits ``(N, 10)``.
    One of the MLP baselines of LeCun et al. 1998; the first benchmark of
    Han et al. 2015 (12x fewer weights after pruning) and 2016 (Deep
    Compression: 1070 KB -> 27 KB).

    Layers (indices are the ``state_dict`` prefixes)::

        0 Flatten  1 Linear(784, 300)  2 ReLU  3 Linear(300, 100)  4 ReLU
        5 Linear(100, 10)
    """
    return Sequential(
        Flatten(),
        Linear(784, 300),
        ReLU(),
        Linear(300, 100),
        ReLU(),
        Linear(100, 10),
    )


def lenet5() -> Sequential:
    """LeNet-5 in the style of LeCun et al. 1998 (61,706 parameters).

    The modern, common rendering of LeCun's network (ReLU and max pooling
    instead of scaled tanh and trainable subsampling; a full connection
    table in the second convolution). Input ``(N, 1, 28, 28)``; padding 2
    makes the first convolution see a 32x32 image as in the paper. This is
    *not* the "LeNet-5" of Han et al.: that one is :func:`lenet5_caffe`.

    Shapes, for one image::

        (1, 28, 28) -conv5x5 p2-> (6, 28, 28) -pool2-> (6, 14, 14)
        -conv5x5-> (16, 10, 10) -pool2-> (16, 5, 5) -flatten-> 400
        -> 120 -> 84 -> 10

    Layers::

        0 Conv2d(1, 6, 5, padding=2)  1 ReLU  2 MaxPool2d(2)
        3 Conv2d(6, 16, 5)  4 ReLU  5 MaxPool2d(2)  6 Flatten
        7 Linear(400, 120)  8 ReLU  9 Linear(120, 84)  10 ReLU  11 Linear(84, 10)
    """
    return Sequential(
        Conv2d(1, 6, 5, padding=2),
        ReLU(),
        MaxPool2d(2),
        Conv2d(6, 16, 5),
        ReLU(),
        MaxPool2d(2),
        Flatten(),
        Linear(400, 120),
        ReLU(),
        Linear(120, 84),
        ReLU(),
        Linear(84, 10),
    )


def lenet5_caffe() -> Sequential:
    """Caffe's "LeNet-5", the one Han et al. 2015/2016 prune and quantize (431,080 parameters).

    From Caffe's MNIST example: two convolutions of 20 and 50 filters, each
    followed by 2x2 max pooling (and no activation), then a 500-unit hidden
    layer with ReLU. Han et al. report 0.80% error dense, and 12x fewer
    weights after pruning (2015), 39x smaller with Deep Compression (2016).

    Shapes, for one image::

        (1, 28, 28) -conv5x5-> (20, 24, 24) -pool2-> (20, 12, 12)
        -conv5x5-> (50, 8, 8) -pool2-> (50, 4, 4) -flatten-> 800 -> 500 -> 10

    Layers::

        0 Conv2d(1, 20, 5)  1 MaxPool2d(2)  2 Conv2d(20, 50, 5)  3 MaxPool2d(2)
        4 Flatten  5 Linear(800, 500)  6 ReLU  7 Linear(500, 10)
    """
    return Sequential(
        Conv2d(1, 20, 5),
        MaxPool2d(2),
        Conv2d(20, 50, 5),
        MaxPool2d(2),
        Flatten(),
        Linear(800, 500),
        ReLU(),
        Linear(500, 10),
    )


def mlp(
    sizes: Sequence[int] = (784, 300, 100, 10),
    batchnorm: bool = False,
    dropout: float = 0.0,
) -> Sequential:
    """A fully connected ReLU network with layer widths ``sizes``.

    ``mlp((784, 300, 100, 10))`` has the same layers, keys and parameter
    count as :func:`lenet_300_100`. Each hidden layer is
    ``Linear -> [BatchNorm1d] -> ReLU -> [Dropout]``; the last is a plain
    ``Linear`` giving the logits. A ``Flatten`` comes first, so images
    ``(N, 1, 28, 28)`` can be fed directly.

    Parameters
    ----------
    sizes : sequence of int
        Input features, hidden widths..., number of outputs (at least two).
        Hinton et al. 2015's distillation teacher is ``(784, 1200, 1200, 10)``
        and student ``(784, 800, 800, 10)``.
    batchnorm : bool, default False
        Insert ``BatchNorm1d`` after each hidden ``Linear``.
    dropout : float, default 0.0
        If positive, ``Dropout(dropout)`` after each hidden ReLU.
    """
    sizes = list(sizes)
    if len(sizes) < 2 or not all(isinstance(s, int) and s > 0 for s in sizes):
        raise ValueError(
            f"sizes must list at least two positive integers (inputs, ..., outputs), got {sizes}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers: list[Module] = [Flatten()]
    for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
        layers.append(Linear(fan_in, fan_out))
        if batchnorm:
            layers.append(BatchNorm1d(fan_out))
        layers.append(ReLU())
        if dropout > 0:
            layers.append(Dropout(dropout))
    layers.append(Linear(sizes[-2], sizes[-1]))
    return Sequential(*layers)


MODELS: dict[str, Callable[[], Sequential]] = {
    "lenet_300_100": lenet_300_100,
    "lenet5": lenet5,
    "lenet5_caffe": lenet5_caffe,
    "mlp": mlp,
}
"""Name -> constructor, for command lines and sweeps: ``MODELS["lenet5"]()``."""
