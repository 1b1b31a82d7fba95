"""The package version: read by setuptools (pyproject.toml) and reported by the engine, which imports no package root."""

__version__ = "0.1.0"
