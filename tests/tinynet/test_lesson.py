"""The notebooks' setup cell: FAST parsing, the stamp, seeding."""

import subprocess

import numpy as np
import pytest

import tinynet
from tinynet import lesson


@pytest.fixture(autouse=True)
def _restore_matplotlib_defaults():
    """``setup`` changes matplotlib's global rcParams: undo it after each test."""
    try:
        import matplotlib as mpl
    except ImportError:
        yield
        return
    with mpl.rc_context():
        yield


@pytest.mark.parametrize("value", ["1", "true", "yes", "on", "TRUE", " Yes ", "True"])
def test_fast_values_that_mean_fast(value):
    assert lesson.parse_fast(value) is True


@pytest.mark.parametrize("value", [None, "", "0", "false", "no", "off", " 0 ", "False"])
def test_fast_values_that_mean_default(value):
    assert lesson.parse_fast(value) is False


@pytest.mark.parametrize("value", ["2", "ture", "fast"])
def test_fast_typo_is_an_error_naming_the_value(value):
    with pytest.raises(ValueError, match=repr(value)):
        lesson.parse_fast(value)


def test_setup_reads_fast_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("TINYNET_COMMIT", "abc1234")
    monkeypatch.setenv("FAST", "1")
    cfg = lesson.setup()
    assert cfg.fast and cfg.pick(10, fast=2) == 2
    monkeypatch.setenv("FAST", "0")
    cfg = lesson.setup()
    assert not cfg.fast and cfg.pick(10, fast=2) == 10
    monkeypatch.delenv("FAST")
    assert lesson.setup().fast is False
    assert lesson.setup(fast=True).fast is True  # an explicit argument wins
    capsys.readouterr()


def test_stamp_is_printed_with_commit_versions_and_mode(monkeypatch, capsys):
    monkeypatch.setenv("TINYNET_COMMIT", "abc1234")
    monkeypatch.setenv("FAST", "yes")
    cfg = lesson.setup(seed=0)
    printed = capsys.readouterr().out
    assert printed.strip() == cfg.stamp
    assert "commit abc1234" in printed
    assert f"numpy {np.__version__}" in printed
    assert "python 3." in printed
    assert "FAST=1" in printed
    assert cfg.commit == "abc1234"


def test_stamp_never_raises_without_git(monkeypatch, capsys):
    monkeypatch.delenv("TINYNET_COMMIT", raising=False)

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git: command not found")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert lesson.commit_id() == "unknown"
    cfg = lesson.setup(seed=0)
    assert cfg.commit == "unknown"
    assert "commit unknown" in capsys.readouterr().out


def test_stamp_when_git_fails(monkeypatch):
    monkeypatch.delenv("TINYNET_COMMIT", raising=False)

    def failing_git(*args, **kwargs):
        return subprocess.CompletedProcess(args, 128, stdout="", stderr="not a git repository")

    monkeypatch.setattr(subprocess, "run", failing_git)
    assert lesson.commit_id() == "unknown"

    def hanging_git(*args, **kwargs):
        raise subprocess.TimeoutExpired("git", 10)

    monkeypatch.setattr(subprocess, "run", hanging_git)
    assert lesson.commit_id() == "unknown"


def test_environment_commit_wins_over_git(monkeypatch):
    monkeypatch.setenv("TINYNET_COMMIT", "  deadbee ")
    assert lesson.commit_id() == "deadbee"


def test_setup_seeds_tinynet_and_numpy(monkeypatch, capsys):
    monkeypatch.setenv("TINYNET_COMMIT", "x")
    lesson.setup(seed=3)
    a = (tinynet.get_rng().random(), np.random.random())  # noqa: NPY002
    lesson.setup(seed=3)
    b = (tinynet.get_rng().random(), np.random.random())  # noqa: NPY002
    assert a == b
    assert a[0] == np.random.default_rng(3).random()
    capsys.readouterr()


def test_setup_applies_plot_defaults(monkeypatch, capsys):
    mpl = pytest.importorskip("matplotlib")
    monkeypatch.setenv("TINYNET_COMMIT", "x")
    lesson.setup()
    assert mpl.rcParams["axes.grid"] is True
    assert tuple(mpl.rcParams["figure.figsize"]) == lesson.MPL_DEFAULTS["figure.figsize"]
    capsys.readouterr()


# The lessons' one plot helper, tinynet/plotting.py (used by every notebook).


@pytest.mark.parametrize(
    "n, text", [(512, "512 B"), (3360, "3.36 kB"), (1_066_440, "1.07 MB"), (2.5e9, "2.5 GB")]
)
def test_format_bytes_uses_decimal_units(n, text):
    from tinynet.plotting import format_bytes

    assert format_bytes(n) == text


def test_accuracy_vs_bytes_plots_means_in_percent_on_a_log_axis():
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    from tinynet.plotting import plot_accuracy_vs_bytes

    fig, ax = plt.subplots()
    try:
        plot_accuracy_vs_bytes([("a", 1000, [0.9, 0.92]), ("b", 4000, 0.95)], ax=ax, label="s")
        assert ax.get_xscale() == "log"
        line = ax.get_lines()[0]
        assert np.allclose(line.get_xdata(), [1000, 4000])
        assert np.allclose(line.get_ydata(), [91.0, 95.0])  # the mean over seeds, in percent
        assert [t.get_text() for t in ax.texts] == ["a", "b"]
        with pytest.raises(ValueError, match="at least one"):
            plot_accuracy_vs_bytes([], ax=ax)
    finally:
        plt.close(fig)
