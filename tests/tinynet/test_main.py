"""``python -m tinynet``: the README's main job, run end to end on a short budget."""

import re

import numpy as np
import pytest

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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--lr", "-1"], "--lr must be a positive number, got -1.0"),
        (["--lr", "nan"], "--lr must be a positive number, got nan"),
        (["--seed", "-1"], "--seed must be a non-negative integer, got -1"),
    ],
)
def test_demo_rejects_bad_arguments(args, message, capsys):
    with pytest.raises(SystemExit):
        main(args)
    assert message in capsys.readouterr().err


def test_demo_says_before_training_when_its_folder_cannot_be_made(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    assert main(["--out", str(tmp_path / "a_file" / "demo"), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "error: cannot create the folder" in captured.err
    assert "data:" not in captured.out  # nothing was loaded or trained


def test_a_diverging_demo_stops_with_what_to_do(tmp_path, capsys):
    assert main(["--lr", "1e9", "--epochs", "1", "--quiet", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "error: loss became nan" in err and "lower the learning rate" in err
    assert not (tmp_path / "lenet_300_100.npz").exists()
