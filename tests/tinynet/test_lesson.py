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


# The exercises' checks: lesson.exercise("5.2") around an exercise's check code.


def run_cell(source, namespace, filename="<cell 7>"):
    """Run ``source`` like a notebook cell: its lines are known to linecache, as in IPython."""
    import linecache

    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)
    try:
        exec(compile(source, filename, "exec"), namespace)
    finally:
        linecache.cache.pop(filename, None)


def test_exercise_passes_and_says_correct(capsys):
    with lesson.exercise("5.2"):
        answer = 2
    assert answer == 2
    assert capsys.readouterr().out == "Exercise 5.2: correct\n"


def test_exercise_stub_is_not_attempted_and_the_notebook_goes_on(capsys):
    namespace = {"lesson": lesson}
    run_cell(
        'with lesson.exercise("5.2"):\n'
        '    raise NotImplementedError("Exercise 5.2: LSQ by hand")\n'
        "    assert grad_ex == 1\n"
        "after = True\n",
        namespace,
    )
    assert namespace["after"] is True  # swallowed: "Run all" reaches the next statement
    out = capsys.readouterr().out
    assert out.startswith("Exercise 5.2: not attempted yet")
    assert "raise NotImplementedError" in out


def test_exercise_stub_of_another_exercise_says_which(capsys):
    def count_bytes(model):
        raise NotImplementedError("Exercise 1.1: Bytes of a model")

    with lesson.exercise("1.3"):
        count_bytes(None)
    assert capsys.readouterr().out == (
        "Exercise 1.3: not attempted yet (it needs exercise 1.1 first)\n"
    )


@pytest.mark.parametrize(
    "message", ["not supported for float16", "Exercise five: no number", "Exercise 5.2 no colon"]
)
def test_a_real_not_implemented_error_is_not_a_stub(message, capsys):
    with pytest.raises(NotImplementedError) as info, lesson.exercise("5.2"):
        raise NotImplementedError(message)
    assert str(info.value) == message  # unchanged
    assert "not attempted" not in capsys.readouterr().out
    assert lesson.stub_number(NotImplementedError()) is None
    assert lesson.stub_number(ValueError("Exercise 5.2: x")) is None
    assert lesson.stub_number(NotImplementedError("Exercise 12.3: x")) == "12.3"


def test_a_failed_assert_names_the_exercise_and_the_check(capsys):
    namespace = {"lesson": lesson}
    with pytest.raises(AssertionError) as info:
        run_cell(
            'with lesson.exercise("5.2"):\n'
            "    grad_ex = 3\n"
            "    assert grad_ex > 0\n"
            '    assert grad_ex == 4, "the step size gradient"\n',
            namespace,
        )
    assert str(info.value) == (
        'Exercise 5.2: not yet right: assert grad_ex == 4, "the step size gradient"\n'
        "the step size gradient"
    )
    # The traceback still ends on the failing line of the cell (line 4), not in lesson.py.
    assert info.traceback[-1].lineno + 1 == 4
    assert "correct" not in capsys.readouterr().out


def test_a_failed_multiline_check_is_joined_into_one_line():
    with pytest.raises(AssertionError, match=r"^Exercise 3\.1: not yet right: assert \(x == 1\)$"):
        run_cell(
            'with lesson.exercise("3.1"):\n    x = 0\n    assert (x ==\n        1)\n',
            {"lesson": lesson},
        )


def test_a_failed_gradcheck_points_at_the_call_in_the_cell():
    from tinynet.gradcheck import GradcheckError, gradcheck

    source = (
        "import numpy as np\n"
        'with lesson.exercise("1.1"):\n'
        "    x = np.array([1.0, 2.0])\n"
        "    gradcheck(lambda v: float((v**2).sum()), x, lambda v, d: d * 3 * v)  # wrong: 2 v\n"
    )
    with pytest.raises(GradcheckError) as info:  # still a GradcheckError (an AssertionError)
        run_cell(source, {"lesson": lesson, "gradcheck": gradcheck})
    first, _, detail = str(info.value).partition("\n")
    assert first == (
        "Exercise 1.1: not yet right: gradcheck(lambda v: float((v**2).sum()), x, "
        "lambda v, d: d * 3 * v)  # wrong: 2 v"
    )
    assert detail  # gradcheck's own message (index, analytic, numeric) is kept below


def test_a_check_without_source_names_its_line():
    with pytest.raises(AssertionError, match=r"^Exercise 2\.1: not yet right: line 2$"):
        exec(
            compile('with lesson.exercise("2.1"):\n    assert 1 == 2\n', "<nowhere>", "exec"),
            {"lesson": lesson},
        )


def test_other_errors_propagate_unchanged(capsys):
    with pytest.raises(NameError, match="^name 'grad_ex' is not defined$"):
        run_cell('with lesson.exercise("5.2"):\n    print(grad_ex)\n', {"lesson": lesson})
    assert (
        capsys.readouterr().out
        == "Exercise 5.2: your code raised NameError (the traceback follows)\n"
    )


@pytest.mark.parametrize("number", ["5", "5.2.1", "five", 5.2, "Exercise 5.2"])
def test_exercise_number_must_be_lesson_dot_index(number):
    with pytest.raises(ValueError, match=r'"<lesson>\.<index>"'):
        lesson.exercise(number)


def test_statement_end_finds_where_a_multiline_statement_ends(tmp_path):
    # Python 3.10's tracebacks give only a statement's first line; the parsed
    # source gives its last (the path every version can run, tested on each).
    from tinynet.lesson import statement_end

    cell = tmp_path / "cell.py"
    cell.write_text("with open('x') as f:\n    x = 0\n    assert (x ==\n        1)\ny = 2\n")
    assert statement_end(str(cell), 3) == 4
    assert statement_end(str(cell), 5) == 5
    assert statement_end(str(cell), 1) == 4  # the with block: its own last line
    broken = tmp_path / "broken.py"
    broken.write_text("assert (x ==\n")
    assert statement_end(str(broken), 1) == 1  # does not parse: the line itself
    assert statement_end(str(tmp_path / "missing.py"), 7) == 7
