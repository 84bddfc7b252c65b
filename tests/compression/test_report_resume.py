"""Resuming the report: cached points are reused, missing ones recomputed, bad ones refused."""

import dataclasses
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

import tinynet
from compression import __main__ as cli
from compression.pruning.curves import DensityPoint
from compression.sweep import (
    SweepTask,
    TechniquePoint,
    available_techniques,
    build_model,
    check_picklable,
)
from compression.sweep.cache import CachedPoint, PointCache, point_key, sha256_of
from compression.sweep.techniques import run_techniques

#: Every registered technique (importing their modules registers them).
TECHNIQUES = available_techniques()
#: No training in either: four points in about a second.
CHEAP = ("dense", "PTQ")


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished cached sweep: ``(its task, its cache folder, its rows)``, shared read-only."""
    folder = tmp_path_factory.mktemp("done")
    baseline = folder / "baseline.npz"
    tinynet.save(build_model(tinynet.models.lenet_300_100, 0), baseline)
    task = SweepTask(
        epochs=1, train_size=300, baseline_path=str(baseline), artifact_dir=str(folder / "m")
    )
    return task, folder / "cache", sweep(task, PointCache(str(folder / "cache")))


@pytest.fixture
def task(done, tmp_path):
    """The finished sweep's task, writing its files into this test's folder."""
    return dataclasses.replace(done[0], artifact_dir=str(tmp_path / "m"))


@pytest.fixture
def cache(done, tmp_path):
    """A copy of the finished sweep's cache, for this test to damage."""
    shutil.copytree(done[1], tmp_path / "cache")
    return PointCache(str(tmp_path / "cache"))


@pytest.fixture
def computed(monkeypatch):
    """The ``(technique, setting)`` of every point actually computed (not found in the cache)."""
    calls = []
    evaluate = TechniquePoint._evaluate

    def counting(self, setting, seed):
        calls.append((self.technique.name, self.technique.label(setting)))
        return evaluate(self, setting, seed)

    monkeypatch.setattr(TechniquePoint, "_evaluate", counting)
    return calls


def sweep(task, cache, log=None):
    techniques = [TECHNIQUES[name] for name in CHEAP]
    return run_techniques(task, techniques, fast=True, progress=False, cache=cache, log=log)


def entry(cache, label):
    """The JSON file of the cached point whose file name starts with ``label``."""
    return next(Path(cache.folder).glob(f"{label}_*.json"))


def test_a_rerun_skips_every_finished_point_and_says_so(done, task, cache, computed):
    first = done[2]
    assert len(list(Path(cache.folder).glob("*.json"))) == 4
    lines = []
    again = sweep(task, cache, lines.append)
    assert computed == []
    assert lines == [f"cache: 4 of 4 points found in {cache.folder} (skipped), 0 to compute"]
    assert again == first  # the very rows, times included
    # this test's models/ was empty: every file is restored from the cache
    assert sorted(os.listdir(task.artifact_dir)) == sorted(r.artifact for r in first)
    restored = Path(task.artifact_dir) / first[1].artifact
    assert restored.stat().st_size == first[1].nbytes
    assert sha256_of(restored) == sha256_of(entry(cache, "PTQ_8-bit").with_suffix(".tnc"))


def test_a_killed_run_recomputes_only_the_point_it_had_not_finished(done, task, cache, computed):
    first = done[2]
    # Killed while storing PTQ 4-bit: its file copied, a temporary JSON half written,
    # the JSON itself (the entry's commit mark, written last) never renamed into place.
    killed = entry(cache, "PTQ_4-bit")
    killed.rename(killed.with_name(f".{killed.name}.123.abc.tmp"))
    lines = []
    again = sweep(task, cache, lines.append)
    assert computed == [("PTQ", "4-bit")]
    assert lines == [f"cache: 3 of 4 points found in {cache.folder} (skipped), 1 to compute"]
    assert [r.without_time() for r in again] == [r.without_time() for r in first]
    assert killed.is_file()


def pickled_trap(path):
    """Bytes that create ``path`` if anyone unpickles them."""

    class Trap:
        def __reduce__(self):
            return (Path.touch, (path,))

    return pickle.dumps(Trap())


def garble(info, key, file):
    """Ways a cache entry goes bad; each returns the JSON text to write (file may be changed)."""
    info = json.loads(json.dumps(info))
    if key == "truncated":
        return json.dumps(info)[:100]
    if key == "other key":
        info["key"]["epochs"] = 7
    if key == "artifact path":
        info["row"]["artifact"] = "../../evil.tnc"
    if key == "bool bytes":
        info["row"]["nbytes"] = True
    if key == "missing field":
        del info["row"]["accuracy"]
    if key == "file edited":
        file.write_bytes(file.read_bytes()[:-1] + b"\0")
    if key == "file missing":
        file.unlink()
    if key == "other format":
        info["format"] = "something-else"
    return json.dumps(info)


BAD = [
    "truncated",
    "other key",
    "artifact path",
    "bool bytes",
    "missing field",
    "file edited",
    "file missing",
    "other format",
]


@pytest.mark.parametrize("damage", BAD)
def test_a_bad_entry_is_refused_with_its_reason_and_recomputed(done, task, cache, computed, damage):
    first = done[2]
    bad = entry(cache, "PTQ_2-bit")
    bad.write_text(garble(json.loads(bad.read_text()), damage, bad.with_suffix(".tnc")))
    lines = []
    again = sweep(task, cache, lines.append)
    assert computed == [("PTQ", "2-bit")]
    assert lines[0].startswith(f"cache: {bad} refused (") and lines[0].endswith(
        "recomputing PTQ 2-bit"
    )
    assert lines[1].startswith("cache: 3 of 4 points found")
    assert [r.without_time() for r in again] == [r.without_time() for r in first]
    assert PointCache(cache.folder).lookup(json.loads(bad.read_text())["key"])[0] is not None


def test_a_pickle_in_the_cache_is_refused_never_unpickled(task, cache, tmp_path, computed):
    trap = tmp_path / "unpickled"
    entry(cache, "dense").write_bytes(pickled_trap(trap))
    lines = []
    sweep(task, cache, lines.append)
    assert computed == [("dense", "baseline, float32")] and "refused" in lines[0]
    assert not trap.exists()


def test_fresh_recomputes_everything_and_overwrites(task, cache, tmp_path, computed):
    lines = []
    sweep(task, PointCache(str(tmp_path / "cache"), fresh=True), lines.append)
    assert len(computed) == 4
    assert lines == [f"cache: --fresh, recomputing all 4 points (and overwriting {tmp_path}/cache)"]
    assert not list((tmp_path / "cache").glob(".*"))  # no temporary file left behind


def test_the_key_holds_everything_that_makes_a_point(task):
    ptq = TECHNIQUES["PTQ"]
    key = point_key(task, ptq, 4, 11, "ab" * 32)
    assert key["setting"] == "4-bit" and key["seed"] == 11 and key["baseline_sha256"] == "ab" * 32
    assert key["description"] == ptq.description and key["tinynet"] == tinynet.__version__
    cache = PointCache("c")
    others = [
        point_key(task, ptq, 4, 12, "ab" * 32),  # another seed (sweep seed or index)
        point_key(task, ptq, 8, 11, "ab" * 32),  # another setting
        point_key(task, ptq, 4, 11, "cd" * 32),  # another baseline
        point_key(dataclasses.replace(task, epochs=2), ptq, 4, 11, "ab" * 32),
        point_key(dataclasses.replace(task, train_size=None), ptq, 4, 11, "ab" * 32),
        point_key(dataclasses.replace(task, dataset="mnist"), ptq, 4, 11, "ab" * 32),
        point_key(task, TECHNIQUES["QAT"], 4, 11, "ab" * 32),
    ]
    names = {cache.paths(k)[0].name for k in [key, *others]}
    assert len(names) == 1 + len(others)
    assert cache.paths(key)[0].name.startswith("PTQ_4-bit_")


def test_worker_processes_can_receive_a_cached_point(task, tmp_path):
    check_picklable(CachedPoint(TechniquePoint(TECHNIQUES["PTQ"], task), PointCache("c"), "0"))


# ------------------------------------------------------------- density curve


def test_the_density_curve_is_cached_whole_and_a_bad_file_refused(
    task, tmp_path, monkeypatch, capsys
):
    npz = Path(task.baseline_path)
    points = [
        DensityPoint("one-shot", 1.0, 0.5, 266_610, 1.0, 0),
        DensityPoint("one-shot", 0.1, 0.4, 26_800, 9.9, 1),
    ]
    runs = []

    def fake_curve(task_, npz_, seed, fast):
        runs.append(seed)
        return points

    def curve(seed=0, fresh=False):
        return cli.cached_density_curve(task, npz, seed, True, tmp_path, fresh=fresh)

    monkeypatch.setattr(cli, "pruning_density_curve", fake_curve)
    assert curve() == points and curve() == points
    assert runs == [0]  # the second call read the cache
    assert "density curve: reusing" in capsys.readouterr().out
    (cached,) = (tmp_path / "cache").glob("density_*.json")
    info = json.loads(cached.read_text())
    info["points"][1]["accuracy"] = "0.99"  # a string where a number belongs
    cached.write_text(json.dumps(info))
    assert curve() == points and runs == [0, 0]
    assert f"cache: {cached} refused (" in capsys.readouterr().out
    trap = tmp_path / "unpickled"
    cached.write_bytes(pickled_trap(trap))
    assert curve() == points and runs == [0, 0, 0] and not trap.exists()
    assert curve(seed=1) == points and runs == [0, 0, 0, 1]  # another seed: another key
    assert curve(fresh=True) == points and runs == [0, 0, 0, 1, 0]
