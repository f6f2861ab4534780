"""Longer fuzzing campaigns of the parsers: ``python tests/fuzz/fuzz_parsers.py``.

Runs each target of :mod:`targets` with hypothesis for a fixed time and writes every
input that makes a parser raise (after hypothesis has shrunk it) to the crash folder, one
file per crash, named by target and content hash. Exit status 1 when anything crashed.

Options: ``--seconds`` per target (default 60), ``--crashes`` folder (default
``fuzz-crashes``), ``--target`` (repeatable; default all).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.targets import TARGETS, Target

#: Examples in one hypothesis round; rounds repeat until the time is up.
ROUND_EXAMPLES = 2_000


def campaign(target: Target, seconds: float, crashes: Path) -> int:
    """Fuzz ``target`` for ``seconds``; returns the number of crashes written."""
    deadline = time.monotonic() + seconds
    found = 0
    rounds = 0
    last: list[Any] = [None]

    def check(value: Any) -> None:
        last[0] = value
        target.check(value)

    while time.monotonic() < deadline:
        rounds += 1

        @settings(
            max_examples=ROUND_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
        )
        @given(target.strategy)
        def run(value: Any) -> None:
            check(value)

        try:
            run()
        except Exception:
            found += 1
            _write_crash(target.name, last[0], traceback.format_exc(), crashes)
    print(f"{target.name}: {rounds} rounds of {ROUND_EXAMPLES} examples, {found} crash(es)")
    return found


def _write_crash(name: str, value: Any, trace: str, crashes: Path) -> Path:
    crashes.mkdir(parents=True, exist_ok=True)
    data = value if isinstance(value, bytes) else repr(value).encode("utf-8", "backslashreplace")
    path = crashes / f"{name}-{hashlib.sha256(data).hexdigest()[:16]}"
    path.with_suffix(".input").write_bytes(data)
    path.with_suffix(".trace").write_text(trace, encoding="utf-8")
    print(f"{name}: crash written to {path.with_suffix('.input')}")
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the campaigns; the exit status is 1 when any target crashed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per target")
    parser.add_argument("--crashes", type=Path, default=Path("fuzz-crashes"))
    parser.add_argument("--target", action="append", choices=sorted(TARGETS))
    options = parser.parse_args(argv)
    names = options.target or sorted(TARGETS)
    total = sum(campaign(TARGETS[name], options.seconds, options.crashes) for name in names)
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
