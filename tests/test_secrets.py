"""Secrets given to the tool appear in no output, log, error, summary or document, also
when the command fails and with debug logging on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from inbec_export.sample.generator import generate_sample_case

#: Values no output may contain; distinctive, so a hit is never a coincidence.
SECRETS = {
    "INBEC_ES_PASSWORD": "pw-Zq81-elastic",
    "INBEC_OPENSEARCH_API_KEY": "key-Zq82-opensearch",
    "INBEC_TIMESKETCH_PASSWORD": "pw-Zq83-timesketch",
    "INBEC_DASHBOARDS_PASSWORD": "pw-Zq84-kibana",
    "VT_API_KEY": "vt-Zq85-virustotal",
}

#: A loopback port nothing listens on (discard): every connection is refused.
DEAD_URL = "http://127.0.0.1:9"


@pytest.mark.parametrize(
    "arguments",
    [
        ["export", "elasticsearch", "--url", DEAD_URL, "--user", "elastic"],
        ["export", "opensearch", "--url", DEAD_URL],
        ["export", "timesketch", "--url", DEAD_URL, "--user", "analyst", "--sketch", "1"],
        ["dashboards", "install", "--kibana", DEAD_URL, "--user", "elastic"],
    ],
    ids=["elasticsearch", "opensearch", "timesketch", "dashboards"],
)
def test_failing_commands_never_show_a_secret(tmp_path: Path, arguments: list[str]) -> None:
    sample = generate_sample_case(tmp_path / "sample")
    out = tmp_path / "case"
    command = [sys.executable, "-m", "inbec_export", *arguments, "-v"]
    if arguments[0] == "export":
        command += [str(sample.evidence_dir), "--out", str(out)]
        command += ["--legit-file", str(sample.legit_file)]
    env = {**_base_env(), **SECRETS}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert result.returncode != 0
    # It failed for the reason given, on one line that says so.
    assert "127.0.0.1:9" in result.stderr
    outputs = {"stdout": result.stdout, "stderr": result.stderr}
    for path in tmp_path.rglob("*"):
        if path.is_file() and sample.out_dir not in path.parents:
            outputs[str(path)] = path.read_text("utf-8", errors="replace")
    if arguments[0] == "export":
        assert (out / "summary.json").is_file()
    for where, text in outputs.items():
        for secret in SECRETS.values():
            assert secret not in text, (where, secret)


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
    return {name: os.environ[name] for name in keep if name in os.environ}
