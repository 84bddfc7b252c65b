"""Layers: each file is one lesson (forward, backward, shapes, formulas)."""

from tinynet.layers.activations import LeakyReLU, ReLU, Sigmoid, Tanh
from tinynet.layers.conv import Conv2d
from tinynet.layers.dropout import Dropout
from tinynet.layers.linear import Linear
from tinynet.layers.normalization import BatchNorm1d, BatchNorm2d
from tinynet.layers.pooling import AvgPool2d, MaxPool2d
from tinynet.layers.reshape import Flatten

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "Sigmoid",
    "Tanh",
]
