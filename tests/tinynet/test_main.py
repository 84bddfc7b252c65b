"""``python -m tinynet``: the README's main job, run end to end on a short budget."""

import re

import numpy as np

import tinynet
from tinynet.__main__ import main
from tinynet.models import lenet_300_100


def test_demo_trains_saves_and_reloads(tmp_path, capsys):
    assert main(["--epochs", "2", "--quiet", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    accuracy = float(re.search(r"held-out accuracy (\d+\.\d+)%", printed).group(1))
    assert accuracy > 90.0, printed  # two epochs on 7,200 images
    assert "(identical)" in printed
    saved = tmp_path / "lenet_300_100.npz"
    model = lenet_300_100()
    model.load_state_dict(tinynet.load(saved))
    assert all(np.all(np.isfinite(p.data)) for p in model.parameters())


def test_demo_rejects_a_bad_epoch_count(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["--epochs", "0"])
    assert "--epochs must be at least 1, got 0" in capsys.readouterr().err
