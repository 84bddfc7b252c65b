"""tinynet: a from-scratch neural-network framework in NumPy, for learning.

Every layer has a hand-written ``forward`` and ``backward`` you can read in
one screen; names, layouts and numbers follow PyTorch, so what you learn
here carries over. Start with :class:`Module` (the contract), then
``tinynet/layers/linear.py``.
"""

from tinynet import data, functional, init, models
from tinynet.callbacks import Callback, EarlyStopping, History
from tinynet.grad_mode import enable_grad, is_grad_enabled, no_grad
from tinynet.gradcheck import GradcheckError, check_loss, gradcheck
from tinynet.layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Tanh,
)
from tinynet.losses import CrossEntropyLoss, MSELoss
from tinynet.lr_scheduler import CosineAnnealingLR, LambdaLR, MultiStepLR, StepLR
from tinynet.module import Module, Sequential, StateDict
from tinynet.optim import SGD, Adam, AdamW, Optimizer, clip_grad_norm_
from tinynet.parameter import Parameter
from tinynet.random import get_rng, manual_seed
from tinynet.serialization import load, save
from tinynet.summary import summary
from tinynet.train import TrainingDiverged, evaluate, fit, predict
from tinynet.transforms import (
    Mask,
    Transform,
    apply_transform_spec,
    register_transform,
    strip,
    transform_spec,
)

__version__ = "0.1.0"

__all__ = [
    "AvgPool2d",
    "Adam",
    "AdamW",
    "BatchNorm1d",
    "BatchNorm2d",
    "Callback",
    "Conv2d",
    "CosineAnnealingLR",
    "CrossEntropyLoss",
    "Dropout",
    "EarlyStopping",
    "Flatten",
    "GradcheckError",
    "History",
    "LambdaLR",
    "LeakyReLU",
    "Linear",
    "MSELoss",
    "Mask",
    "MaxPool2d",
    "Module",
    "MultiStepLR",
    "Optimizer",
    "Parameter",
    "ReLU",
    "SGD",
    "Sequential",
    "Sigmoid",
    "StateDict",
    "StepLR",
    "Tanh",
    "TrainingDiverged",
    "Transform",
    "apply_transform_spec",
    "check_loss",
    "clip_grad_norm_",
    "data",
    "enable_grad",
    "evaluate",
    "fit",
    "functional",
    "get_rng",
    "gradcheck",
    "init",
    "is_grad_enabled",
    "load",
    "manual_seed",
    "models",
    "no_grad",
    "predict",
    "register_transform",
    "save",
    "strip",
    "summary",
    "transform_spec",
]
