"""VirusTotal enrichment against an API v3 lookalike on 127.0.0.1: limits, errors, secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from enrichment_helpers import (
    ApiAnswers,
    api_error,
    documents,
    domain_report,
    ip_report,
    virustotal_server,
    write_evidence,
)
from typer.testing import CliRunner

from inbec_export.cli import app
from inbec_export.ecs.mappings import index_templates, unmapped_fields
from inbec_export.enrichment.cache import ResponseCache
from inbec_export.enrichment.virustotal import RateLimiter, VirusTotalClient, VirusTotalConfig
from inbec_export.model import stable_id

runner = CliRunner()

API_KEY = "vt-test-key-5f0c1e9a7b3d"
LEGIT = ["--legit", "acme-corp.com", "--legit", "globex-ind.com"]
IP = "185.220.101.4"
RELAY = "45.95.147.236"
DOMAIN = "gl0bex-ind.com"
IP_PATH = f"/api/v3/ip_addresses/{IP}"
DOMAIN_PATH = f"/api/v3/domains/{DOMAIN}"
QUOTA = api_error("QuotaExceededError", "Quota exceeded")


class FakeTime:
    """A clock the client's sleeps move forward: limits are tested without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _client(url: str, tmp_path: Path, fake: FakeTime, **limits: int) -> VirusTotalClient:
    config = VirusTotalConfig(
        api_key=API_KEY,
        url=url,
        clock=fake.clock,
        sleep=fake.sleep,
        now=lambda: datetime(2024, 4, 10, 8, 0, tzinfo=UTC),
        **limits,  # type: ignore[arg-type]
    )
    return VirusTotalClient(config, ResponseCache(tmp_path, "virustotal"))


def _ip(report_ip: str = IP) -> dict[str, object]:
    return ip_report(report_ip, 5, -12, "Stiftung Erneuerbare Freiheit", 60729, "DE")


def test_rate_limiter_spaces_requests_within_a_minute() -> None:
    fake = FakeTime()
    limiter = RateLimiter(4, fake.clock, fake.sleep)
    for step in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0):
        fake.now += step
        limiter.wait()
    # Sent at 1000, 1001, 1003, 1006; the fifth (asked at 1010) waits until 1060; the
    # sixth (1065) finds only 1006 and 1060 in the last minute and goes at once.
    assert fake.sleeps == [50.0]
    assert fake.now == 1065.0


def test_ip_report_with_the_key_in_the_header(tmp_path: Path) -> None:
    answers = ApiAnswers({IP_PATH: [(200, _ip())]})
    fake = FakeTime()
    with virustotal_server(answers) as url:
        client = _client(url, tmp_path, fake)
        result = client.lookup("ip_address", IP)
        again = client.lookup("ip_address", IP)  # from the cache
    assert answers.requests == [(IP_PATH, API_KEY)]
    assert result.error is None
    assert result.stats() == {
        "harmless": 60,
        "malicious": 5,
        "suspicious": 1,
        "timeout": 0,
        "undetected": 27,
    }
    assert result.summary() == {
        "type": "ip_address",
        "id": IP,
        "not_found": False,
        "last_analysis_stats": result.stats(),
        "reputation": -12,
        "as_owner": "Stiftung Erneuerbare Freiheit",
        "asn": 60729,
        "country": "DE",
        "network": "185.220.101.0/24",
        "registrar": None,
        "creation_date": None,
        "last_analysis_date": "2024-04-08T13:20:00+00:00",
        "categories": [],
        "tags": [],
    }
    assert again.summary() == result.summary()
    cached = (tmp_path / "enrichment-cache" / "virustotal").rglob("*.json")
    assert all(API_KEY not in path.read_text("utf-8") for path in cached)


def test_four_requests_a_minute(tmp_path: Path) -> None:
    ips = [f"185.220.101.{n}" for n in range(1, 10)]
    answers = ApiAnswers({f"/api/v3/ip_addresses/{ip}": [(200, _ip(ip))] for ip in ips})
    fake = FakeTime()
    with virustotal_server(answers) as url:
        results = _client(url, tmp_path, fake).lookup_all(("ip_address", ip) for ip in ips)
    assert [r.error for r in results] == [None] * 9
    assert [path for path, _ in answers.requests] == [f"/api/v3/ip_addresses/{ip}" for ip in ips]
    assert fake.sleeps == [60.0, 60.0]  # the fifth and the ninth wait a minute


def test_429_backs_off_then_succeeds(tmp_path: Path) -> None:
    answers = ApiAnswers({IP_PATH: [(429, QUOTA), (429, QUOTA), (200, _ip())]})
    fake = FakeTime()
    with virustotal_server(answers) as url:
        result = _client(url, tmp_path, fake).lookup("ip_address", IP)
    assert result.error is None
    assert result.stats()["malicious"] == 5
    assert len(answers.requests) == 3
    assert fake.sleeps == [60.0, 120.0]


def test_429_that_persists_stops_the_lookups(tmp_path: Path) -> None:
    answers = ApiAnswers(
        {IP_PATH: [(429, QUOTA)], DOMAIN_PATH: [(200, domain_report(DOMAIN, 3, -5))]}
    )
    fake = FakeTime()
    with virustotal_server(answers) as url:
        results = _client(url, tmp_path, fake).lookup_all([("ip_address", IP), ("domain", DOMAIN)])
    stopped = "VirusTotal quota used up after 3 retries (429 QuotaExceededError: Quota exceeded)"
    assert [r.error for r in results] == [stopped, stopped]
    assert [path for path, _ in answers.requests] == [IP_PATH] * 4
    assert fake.sleeps == [60.0, 120.0, 240.0]


def test_401_stops_the_lookups_without_showing_the_key(tmp_path: Path) -> None:
    refused = api_error("WrongCredentialsError", f"Wrong API key {API_KEY}")
    answers = ApiAnswers({IP_PATH: [(401, refused)], DOMAIN_PATH: [(401, refused)]})
    fake = FakeTime()
    with virustotal_server(answers) as url:
        results = _client(url, tmp_path, fake).lookup_all([("domain", DOMAIN), ("ip_address", IP)])
    message = (
        "VirusTotal refused the API key (401 WrongCredentialsError: Wrong API key ***): "
        "check VT_API_KEY"
    )
    assert [r.error for r in results] == [message, message]
    assert answers.requests == [(DOMAIN_PATH, API_KEY)]
    assert fake.sleeps == []


def test_daily_quota_is_counted_in_the_case_folder(tmp_path: Path) -> None:
    ips = ["185.220.101.1", "185.220.101.2", "185.220.101.3"]
    answers = ApiAnswers({f"/api/v3/ip_addresses/{ip}": [(200, _ip(ip))] for ip in ips})
    fake = FakeTime()
    with virustotal_server(answers) as url:
        first = _client(url, tmp_path, fake, per_day=2).lookup_all(("ip_address", ip) for ip in ips)
        second = _client(url, tmp_path, fake, per_day=2).lookup("ip_address", ips[2])
    assert [r.error for r in first] == [None, None, "daily quota of 2 requests used up"]
    assert second.error == "daily quota of 2 requests used up"
    assert len(answers.requests) == 2
    usage = json.loads(
        (tmp_path / "enrichment-cache" / "virustotal" / "requests-per-day.json").read_text()
    )
    assert usage == {"day": "2024-04-10", "requests": 2, "key": "requests-per-day"}


def _run(evidence: Path, out: Path, url: str, *extra: str) -> str:
    result = runner.invoke(
        app,
        [
            "analyze",
            str(evidence),
            *LEGIT,
            "--out",
            str(out),
            "--virustotal",
            "--virustotal-url",
            url,
            *extra,
        ],
        env={"VT_API_KEY": API_KEY},
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_analyze_with_virustotal(tmp_path: Path) -> None:
    evidence = write_evidence(tmp_path / "evidence")
    answers = ApiAnswers(
        {IP_PATH: [(200, _ip())], DOMAIN_PATH: [(200, domain_report(DOMAIN, 3, -5))]}
    )
    case = tmp_path / "case"
    with virustotal_server(answers) as url:
        output = _run(evidence, case, url, "--verbose")
        first = (case / "findings.ndjson").read_text("utf-8")
        _run(evidence, case, url)
    # Lookalike first, then the client IP, then the relay; legit domains never; no private IP.
    assert answers.requests == [
        (DOMAIN_PATH, API_KEY),
        (IP_PATH, API_KEY),
        (f"/api/v3/ip_addresses/{RELAY}", API_KEY),
    ]
    assert (case / "findings.ndjson").read_text("utf-8") == first  # the cache answered
    summary = json.loads((case / "summary.json").read_text("utf-8"))
    assert summary["enrichment"] == {
        "virustotal": {
            "indicators": 3,
            "reports": [
                {
                    "indicator": DOMAIN,
                    "type": "domain",
                    "malicious": 3,
                    "suspicious": 0,
                    "engines": 88,
                    "reputation": -5,
                    "as_owner": None,
                    "country": None,
                },
                {
                    "indicator": IP,
                    "type": "ip_address",
                    "malicious": 5,
                    "suspicious": 1,
                    "engines": 93,
                    "reputation": -12,
                    "as_owner": "Stiftung Erneuerbare Freiheit",
                    "country": "DE",
                },
            ],
            "not_found": [RELAY],
            "not_looked_up": [],
        }
    }
    findings = documents(case / "findings.ndjson")
    mapping = index_templates()["findings"]["template"]["mappings"]
    assert all(unmapped_fields(d, mapping) == set() for _, d in findings)
    ip_finding = next(d for _, d in findings if d.get("rule", {}).get("id") == "originating-ip")
    assert ip_finding["threat"]["enrichments"] == [
        {
            "indicator": {
                "type": "ipv4-addr",
                "ip": IP,
                "provider": "VirusTotal",
                "description": (
                    f"VirusTotal: {IP}: 5 malicious, 1 suspicious of 93 engines; reputation -12; "
                    "AS60729 Stiftung Erneuerbare Freiheit; country DE"
                ),
                "reference": f"https://www.virustotal.com/gui/ip-address/{IP}",
                "modified_at": "2024-04-08T13:20:00+00:00",
                "as": {"number": 60729, "organization": {"name": "Stiftung Erneuerbare Freiheit"}},
                "geo": {"country_iso_code": "DE"},
                "scanner_stats": 6,
            },
            "matched": {
                "atomic": IP,
                "field": "threat.indicator.ip",
                "type": "inbec_lookup",
                "id": stable_id("enrichment", "virustotal", IP),
            },
        }
    ]
    relay = dict(findings)[stable_id("enrichment", "virustotal", RELAY)]
    assert relay["message"] == f"VirusTotal: {RELAY} is not in VirusTotal"
    assert relay["inbec"]["enrichment"]["role"] == "relay IP"
    domain = dict(findings)[stable_id("enrichment", "virustotal", DOMAIN)]
    assert domain["inbec"]["virustotal"]["categories"] == ["phishing"]
    assert domain["inbec"]["virustotal"]["creation_date"] == "2024-04-03T09:20:00+00:00"
    assert "VirusTotal: 3 of 3 indicators" in output
    assert API_KEY not in output


def test_the_key_is_written_nowhere(tmp_path: Path) -> None:
    evidence = write_evidence(tmp_path / "evidence")
    refused = api_error("WrongCredentialsError", f"Wrong API key {API_KEY}")
    case = tmp_path / "case"
    with virustotal_server(ApiAnswers({DOMAIN_PATH: [(401, refused)]})) as url:
        output = _run(evidence, case, url, "--verbose")
    with virustotal_server(ApiAnswers({DOMAIN_PATH: [(200, domain_report(DOMAIN, 3, -5))]})) as url:
        output += _run(evidence, tmp_path / "second", url, "--verbose")
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "evidence" not in p.parts]
    assert len(written) > 10
    assert [p for p in written if API_KEY.encode() in p.read_bytes()] == []
    assert API_KEY not in output
    summary = json.loads((case / "summary.json").read_text("utf-8"))
    reason = (
        "VirusTotal refused the API key (401 WrongCredentialsError: Wrong API key ***): "
        "check VT_API_KEY"
    )
    assert summary["enrichment"]["virustotal"]["not_looked_up"] == [
        {"value": value, "reason": reason} for value in (DOMAIN, IP, RELAY)
    ]
    assert f"not looked up {DOMAIN}: {reason}" in " ".join(output.split())


def test_virustotal_without_a_key_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyze", str(tmp_path), "--virustotal"], env={"VT_API_KEY": ""})
    assert result.exit_code == 2
    assert "--virustotal needs an API key: set VT_API_KEY or give --virustotal-key" in result.output
