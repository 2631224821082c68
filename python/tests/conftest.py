"""Shared paths for the package's tests (run from anywhere: paths are from the repository)."""

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def cli():
    """The Rust command line, to compare with (built by `cargo test` before pytest runs)."""
    for p in [os.environ.get("STREAMSCORE_BIN"), ROOT / "target/debug/streamscore", ROOT / "target/release/streamscore"]:
        if p and pathlib.Path(p).exists():
            return str(p)
    raise AssertionError("no streamscore binary: run `cargo build` first (the README's test command does)")
