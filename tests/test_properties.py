"""Property-based tests: no input makes a header, address, date, encoded-word or
Authentication-Results parser raise (the targets are in ``tests/fuzz/targets.py``, which
``tests/fuzz/fuzz_parsers.py`` runs for longer campaigns)."""

from __future__ import annotations

from typing import Any

import pytest
from fuzz.targets import TARGETS
from hypothesis import HealthCheck, given, settings

from inbec_export.readers import headers as h

#: Examples per target in the regular suite; the fuzzing script runs far more.
EXAMPLES = 300


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_parser_never_raises(name: str) -> None:
    target = TARGETS[name]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(target.strategy)
    def run(value: Any) -> None:
        target.check(value)

    run()


def test_targets_reach_the_parsers_deep_paths() -> None:
    # The grammar pieces the strategies use produce real parses, not only rejections.
    assert h.decode_subject("=?utf-8?q?caf=C3=A9?=") == ("café", None)
    [result] = h.parse_authentication_results("mx.example; dmarc=fail header.from=x.example")
    assert (result.method, result.result, result.domain) == ("dmarc", "fail", "x.example")
    assert h.parse_date("Mon, 31 Feb 2024 10:00:00 +0000") is None
    assert h.parse_date("+9999") is None
