"""Packaging metadata: what an install reads."""

import os

import pytest
from packaging.version import Version

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_license_is_an_spdx_string_with_a_build_backend_that_reads_it():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        pyproject = tomllib.load(f)
    # A TOML table here makes setuptools print a deprecation warning three times per install (PEP 639).
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in pyproject["build-system"]["requires"]  # the first setuptools that reads SPDX strings


def test_ci_pins_every_declared_floor_at_the_floor():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        declared = tomllib.load(f)["project"]["dependencies"]
    with open(os.path.join(ROOT, ".ci", "minimums.txt"), encoding="utf-8") as f:
        pins = dict(line.split("==") for line in (raw.split("#")[0].strip() for raw in f) if "==" in line)
    assert all(requirement.count(">=") == 1 for requirement in declared)  # one floor each, nothing else to prove
    floors = {name: Version(v) for name, v in (requirement.split(">=") for requirement in declared)}
    # torch is the exception: CI installs only 2.13.0 (a local CPU wheel), so its floor is not proven (README).
    assert {name: v for name, v in floors.items() if name != "torch"} == {name: Version(v) for name, v in pins.items()}
