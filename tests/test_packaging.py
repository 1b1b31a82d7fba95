"""Packaging metadata: what an install reads."""

import os

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_license_is_an_spdx_string_with_a_build_backend_that_reads_it():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        pyproject = tomllib.load(f)
    # A TOML table here makes setuptools print a deprecation warning three times per install (PEP 639).
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in pyproject["build-system"]["requires"]  # the first setuptools that reads SPDX strings
