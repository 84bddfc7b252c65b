"""The tests must exercise the installed package, not the source tree.

CI sets TINYNET_REQUIRE_INSTALLED=1: then ``tinynet`` must come from the
installed wheel, so a data file missing from the package fails here.
"""

import os
from pathlib import Path

import pytest

import tinynet

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not os.environ.get("TINYNET_REQUIRE_INSTALLED"), reason="only in CI")
def test_tinynet_is_imported_from_the_installed_wheel():
    location = Path(tinynet.__file__).resolve()
    assert REPO not in location.parents, f"tinynet imported from the source tree: {location}"


def test_embedded_dataset_ships_inside_the_package():
    data_dir = Path(tinynet.__file__).parent / "datasets"
    assert (data_dir / "mnist_mini.npz").is_file()
    assert any(p.suffix in (".md", ".txt") for p in data_dir.iterdir())
