"""Tests for tinynet.summary against hand-computed shapes, parameters and MACs."""

from __future__ import annotations

import re

import numpy as np

import tinynet
from tinynet.models import lenet5, lenet5_caffe, lenet_300_100, mlp
from tinynet.summary import Summary, summary


def test_lenet5_rows_by_hand():
    s = summary(lenet5(), (1, 28, 28))
    assert isinstance(s, Summary)
    assert [r.type for r in s.rows] == [
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Flatten",
        "Linear",
        "ReLU",
        "Linear",
        "ReLU",
        "Linear",
    ]
    assert [r.name for r in s.rows] == [str(i) for i in range(12)]
    shapes = [r.output_shape for r in s.rows]
    assert shapes[0] == (1, 6, 28, 28)  # padding 2 keeps 28x28
    assert shapes[2] == (1, 6, 14, 14)
    assert shapes[3] == (1, 16, 10, 10)  # 14 - 5 + 1
    assert shapes[5] == (1, 16, 5, 5)
    assert shapes[6] == (1, 400)
    assert shapes[-1] == (1, 10)
    conv1, conv2, fc1, fc2, fc3 = (s.rows[i] for i in (0, 3, 7, 9, 11))
    assert (conv1.params, conv1.bytes, conv1.macs) == (156, 624, 6 * 28 * 28 * 1 * 25)
    assert conv1.macs == 117_600
    assert (conv2.params, conv2.macs) == (2_416, 16 * 10 * 10 * 6 * 25)
    assert (fc1.params, fc1.macs) == (48_120, 400 * 120)
    assert (fc2.params, fc2.macs) == (10_164, 120 * 84)
    assert (fc3.params, fc3.macs) == (850, 84 * 10)
    assert all(s.rows[i].macs == 0 and s.rows[i].params == 0 for i in (1, 2, 4, 5, 6, 8, 10))
    assert s.total_params == 61_706
    assert s.total_bytes == 4 * 61_706
    assert s.total_macs == 117_600 + 240_000 + 48_000 + 10_080 + 840 == 416_520


def test_lenet5_caffe_and_lenet_300_100_totals():
    s = summary(lenet5_caffe(), (1, 28, 28))
    assert s.total_params == 431_080
    # conv1 20*24*24*25, conv2 50*8*8*20*25, fc 800*500, 500*10
    assert [r.macs for r in s.rows if r.macs] == [288_000, 1_600_000, 400_000, 5_000]
    assert s.total_macs == 2_293_000
    s = summary(lenet_300_100(), (1, 28, 28))
    assert s.total_params == 266_610
    assert s.total_macs == 784 * 300 + 300 * 100 + 100 * 10


def test_printed_table_has_rows_and_totals():
    text = str(summary(lenet5(), (1, 28, 28)))
    assert re.search(r"^0\s+Conv2d\s+\(1, 6, 28, 28\)\s+156\s+624 B\s+117,600$", text, re.M)
    assert re.search(r"^11\s+Linear\s+\(1, 10\)\s+850\s+3,400 B\s+840$", text, re.M)
    assert "61,706" in text and "416,520" in text and "246,824 B" in text
    assert repr(summary(lenet5(), (1, 28, 28))) == text


def test_summary_leaves_the_model_as_it_was():
    model = mlp((4, 3, 2), batchnorm=True, dropout=0.5)
    model.train()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    s = summary(model, (4,))
    assert [r.type for r in s.rows] == [
        "Flatten",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    assert s.rows[2].params == 6 and s.rows[2].macs == 0
    assert all(m.training for m in model.modules())
    assert all(m.cache is None for m in model.modules())
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    after = model.state_dict()
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v)  # BatchNorm running stats untouched


def test_masked_weights_still_count_their_dense_parameters():
    model = tinynet.Sequential(tinynet.Linear(3, 2))
    model[0].weight.add_transform(tinynet.Mask(np.zeros((2, 3), dtype=bool)))
    s = summary(model, (3,))
    assert s.total_params == 8 and s.rows[0].macs == 6
