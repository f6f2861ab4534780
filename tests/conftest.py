"""Shared fixtures: the public evidence corpus and small helpers."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Real search servers for the export tests (tests/servers; the tests folder is on sys.path).
pytest_plugins = ["servers.fixtures"]

#: The shared corpus sits beside the project checkout, never inside it.
CORPUS_DIR = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def in_ci() -> bool:
    """True when running under CI, where a missing corpus or service is a failure."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The shared corpus folder; skips (or fails under CI) when it is absent."""
    if not CORPUS_DIR.is_dir():
        if in_ci():
            pytest.fail(f"the evidence corpus is missing at {CORPUS_DIR}")
        pytest.skip("the shared evidence corpus is not beside this checkout")
    return CORPUS_DIR


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Undo the logging set-up of a command run in-process (``-q`` raises the root level),
    so that a later test sees the default configuration whatever ran before it."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    named = {name: logging.getLogger(name).level for name in logging.Logger.manager.loggerDict}
    yield
    root.setLevel(level)
    root.handlers[:] = handlers
    for name, named_level in named.items():
        logging.getLogger(name).setLevel(named_level)
