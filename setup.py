"""Shim for tools that want a setup.py, e.g. Beam's ``--setup_file ./setup.py`` (Dataflow, Flink,
Spark workers install the sdist built from it). Everything is declared in pyproject.toml."""

from setuptools import setup

setup()
