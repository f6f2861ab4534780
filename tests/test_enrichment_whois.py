"""WHOIS enrichment against a port-43 server on 127.0.0.1 answering recorded responses."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from enrichment_helpers import (
    WhoisAnswers,
    documents,
    free_port,
    recorded,
    socket_events,
    whois_server,
    write_evidence,
)
from typer.testing import CliRunner

from inbec_export.cli import app
from inbec_export.ecs.mappings import index_templates, unmapped_fields
from inbec_export.enrichment.cache import ResponseCache
from inbec_export.enrichment.run import tell_age
from inbec_export.enrichment.whois import (
    WhoisClient,
    WhoisConfig,
    parse_server,
    parse_whois_date,
)
from inbec_export.errors import UsageError
from inbec_export.model import Finding, stable_id

runner = CliRunner()

LEGIT = ["--legit", "acme-corp.com", "--legit", "globex-ind.com"]


def _lookup(corpus_dir: Path, tmp_path: Path, name: str, query: str | None = None):  # type: ignore[no-untyped-def]
    """Look ``query`` (default: the recorded domain) up at a server answering ``name``."""
    domain = query or name
    answers = WhoisAnswers({domain: recorded(corpus_dir, name)})
    with whois_server(answers) as server:
        client = WhoisClient(WhoisConfig(server=server), ResponseCache(tmp_path, "whois"))
        result = client.lookup(domain)
    assert answers.queries == [domain]
    assert result.error is None
    assert result.record is not None
    return result.record


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type, misc]


def test_several_creation_dates_give_the_earliest_and_keep_the_raw_values(
    corpus_dir: Path, tmp_path: Path
) -> None:
    google = _lookup(corpus_dir, tmp_path, "google.com")
    assert google.creation.raw == ("15-sep-1997", "1997-09-15.")
    assert google.creation.value == _utc(1997, 9, 15)
    assert google.expiration.raw == ("14-sep-2011", "2011-09-13.")
    assert google.expiration.value == _utc(2011, 9, 13)
    assert google.registrar == "MARKMONITOR INC."
    assert google.name_servers == (
        "ns1.google.com",
        "ns2.google.com",
        "ns3.google.com",
        "ns4.google.com",
    )
    # The registry block's four-digit year and the registrar block's two-digit year.
    reddit = _lookup(corpus_dir, tmp_path, "reddit.com")
    assert reddit.creation.raw == ("29-apr-2005", "29-APR-05")
    assert reddit.creation.value == _utc(2005, 4, 29)
    assert reddit.updated.raw == ("04-jun-2008", "04-JUN-08")
    assert reddit.updated.value == _utc(2008, 6, 4)
    assert reddit.expiration.value == _utc(2009, 4, 29)
    assert reddit.registrar == "DOMAINBANK"
    brazil = _lookup(corpus_dir, tmp_path, "google.com.br")
    assert brazil.creation.raw == ("19990518 #162310", "20100520", "20020619")
    assert brazil.creation.value == _utc(1999, 5, 18)


def test_day_first_dotted_dates(corpus_dir: Path, tmp_path: Path) -> None:
    druid = _lookup(corpus_dir, tmp_path, "druid.fi")
    assert druid.creation.raw == ("18.7.2012",)
    assert druid.creation.value == _utc(2012, 7, 18)
    assert druid.expiration.value == _utc(2022, 7, 17)
    assert druid.registrar == "CSL Computer Service Langenbach GmbH (d/b/a joker.com)"
    costa_rica = _lookup(corpus_dir, tmp_path, "google.co.cr")
    assert costa_rica.creation.raw == ("18.04.2002 18:00:00",)
    assert costa_rica.creation.value == _utc(2002, 4, 18, 18, 0)
    assert costa_rica.expiration.value == _utc(2020, 4, 17)


def test_zones_and_layouts_python_whois_cannot_cast(corpus_dir: Path, tmp_path: Path) -> None:
    chile = _lookup(corpus_dir, tmp_path, "google.cl")
    assert chile.creation.value == datetime(
        2002, 10, 22, 17, 48, 23, tzinfo=timezone(-timedelta(hours=3))
    )
    # python-whois's own parse of this answer fails on the ctime layout of an update.
    kyrgyzstan = _lookup(corpus_dir, tmp_path, "google.kg")
    assert kyrgyzstan.creation.value == _utc(2004, 2, 10, 9, 42, 42)
    assert kyrgyzstan.updated.value == _utc(2025, 3, 5, 0, 13, 49)
    assert kyrgyzstan.expiration.value == _utc(2026, 3, 28, 23, 59)


def test_redacted_data_is_stated_as_redacted(corpus_dir: Path, tmp_path: Path) -> None:
    seal = _lookup(corpus_dir, tmp_path, "seal.jobs")
    assert seal.creation.value == _utc(2017, 2, 25, 6, 26, 32)
    assert seal.updated.value == _utc(2018, 3, 22, 13, 44, 7)
    assert seal.expiration.value == _utc(2022, 2, 25, 6, 26, 32)
    assert seal.registrar == "GoDaddy.com, LLC"
    assert seal.redacted == ("registrant_name",)
    assert seal.missing == ()
    assert seal.registrant == {
        "registrant_name": None,
        "registrant_organization": "Seal Jobs NV",
        "registrant_country": "BE",
    }
    brainly = _lookup(corpus_dir, tmp_path, "brainly.lat")
    assert brainly.creation.value == _utc(2015, 7, 31, 15, 59, 27)
    assert brainly.registrar == "Instra Corporation Pty Ltd."
    assert brainly.redacted == ("registrant_name",)
    assert brainly.registrant["registrant_organization"] == "Brainly Sp. z o.o."
    assert brainly.name_servers == ("adi.ns.cloudflare.com", "chad.ns.cloudflare.com")


def test_a_creation_value_that_is_no_date_is_kept_raw(corpus_dir: Path, tmp_path: Path) -> None:
    amazon = _lookup(corpus_dir, tmp_path, "amazon.co.uk")
    assert amazon.creation.value is None
    assert amazon.creation.raw == ("before Aug-1996",)
    assert amazon.creation.unparsed == ("before Aug-1996",)
    assert amazon.creation.state() == "not a date"
    assert amazon.expiration.value == _utc(2020, 12, 5)
    assert amazon.updated.value == _utc(2013, 10, 23)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2015-07-31T15:59:27Z", _utc(2015, 7, 31, 15, 59, 27)),
        ("29-APR-05", _utc(2005, 4, 29)),
        ("29-apr-99", _utc(1999, 4, 29)),
        ("03.06.2011 16:22:36", _utc(2011, 6, 3, 16, 22, 36)),
        ("1999.10.27 13:00:00", _utc(1999, 10, 27, 13, 0)),
        ("30/10/2002 00:00:00", _utc(2002, 10, 30)),
        ("2000-08-29 (YYYY-MM-DD)", _utc(2000, 8, 29)),
        (":  Wed Mar  5 00:13:49 2025", _utc(2025, 3, 5, 0, 13, 49)),
        (
            "2024/10/01 01:00:44 (JST)",
            datetime(2024, 10, 1, 1, 0, 44, tzinfo=timezone(timedelta(hours=9))),
        ),
        ("before Aug-1996", None),
        ("REDACTED FOR PRIVACY", None),
        ("2024-13-45", None),
    ],
)
def test_whois_date_layouts(raw: str, expected: datetime | None) -> None:
    assert parse_whois_date(raw) == expected


def test_server_option() -> None:
    assert parse_server("127.0.0.1:4343") == ("127.0.0.1", 4343)
    assert parse_server("[::1]:4343") == ("::1", 4343)
    assert parse_server("whois.example.net") == ("whois.example.net", 43)
    with pytest.raises(UsageError, match="the port must be 1 to 65535"):
        parse_server("127.0.0.1:70000")


def test_socket_errors_are_surfaced_after_retries(tmp_path: Path) -> None:
    port = free_port()
    pauses: list[float] = []
    config = WhoisConfig(
        server=("127.0.0.1", port), attempts=3, retry_delay=2.0, sleep=pauses.append
    )
    result = WhoisClient(config, ResponseCache(tmp_path, "whois")).lookup("gl0bex-ind.com")
    assert result.record is None
    assert result.error == (
        f"WHOIS server 127.0.0.1:{port} failed for gl0bex-ind.com after 3 attempts: "
        "Connection refused"
    )
    assert pauses == [2.0, 4.0]
    assert not (tmp_path / "enrichment-cache" / "whois").exists()


def test_a_silent_server_times_out(tmp_path: Path) -> None:
    answers = WhoisAnswers({}, silent={"gl0bex-ind.com"})
    with whois_server(answers) as server:
        config = WhoisConfig(server=server, timeout=0.3, attempts=2, sleep=lambda _s: None)
        result = WhoisClient(config, ResponseCache(tmp_path, "whois")).lookup("gl0bex-ind.com")
    assert answers.queries == ["gl0bex-ind.com", "gl0bex-ind.com"]
    assert result.error == (
        f"WHOIS server {server[0]}:{server[1]} failed for gl0bex-ind.com after 2 attempts: "
        "timed out"
    )


def test_concurrency_is_capped_and_every_domain_answered(corpus_dir: Path, tmp_path: Path) -> None:
    names = ["google.com", "reddit.com", "druid.fi", "seal.jobs", "brainly.lat"]
    answers = WhoisAnswers({name: recorded(corpus_dir, name) for name in names})
    with whois_server(answers) as server:
        client = WhoisClient(
            WhoisConfig(server=server, concurrency=2), ResponseCache(tmp_path, "whois")
        )
        results = client.lookup_all(names)
    assert sorted(answers.queries) == sorted(names)
    assert list(results) == names
    creation = {name: r.record.creation.value for name, r in results.items() if r.record}
    assert creation == {
        "google.com": _utc(1997, 9, 15),
        "reddit.com": _utc(2005, 4, 29),
        "druid.fi": _utc(2012, 7, 18),
        "seal.jobs": _utc(2017, 2, 25, 6, 26, 32),
        "brainly.lat": _utc(2015, 7, 31, 15, 59, 27),
    }


def _young(corpus_dir: Path) -> str:
    """seal.jobs's real answer, its creation date moved to five days before the fraud."""
    return recorded(corpus_dir, "seal.jobs").replace(
        "Creation Date: 2017-02-25T06:26:32Z", "Creation Date: 2024-04-03T10:00:00Z"
    )


def _analyze(evidence: Path, out: Path, server: tuple[str, int], *extra: str) -> None:
    result = runner.invoke(
        app,
        [
            "analyze",
            str(evidence),
            *LEGIT,
            "--out",
            str(out),
            "--whois",
            "--whois-server",
            f"{server[0]}:{server[1]}",
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output


def test_a_young_lookalike_domain_raises_its_finding(corpus_dir: Path, tmp_path: Path) -> None:
    evidence = write_evidence(tmp_path / "evidence")
    answers = WhoisAnswers({"gl0bex-ind.com": _young(corpus_dir)})
    with whois_server(answers) as server:
        _analyze(evidence, tmp_path / "case", server)
        assert answers.queries == ["gl0bex-ind.com"]  # the lookalike only, never a legit one
        _analyze(evidence, tmp_path / "again", server)
    findings = dict(documents(tmp_path / "case" / "findings.ndjson"))
    lookalike = next(
        d for d in findings.values() if d.get("rule", {}).get("id") == "lookalike-domain"
    )
    assert lookalike["inbec"]["finding"]["severity"] == "critical"
    assert lookalike["event"]["reason"].endswith(
        "; registered 2024-04-03, only 5 days before its first message"
    )
    assert lookalike["inbec"]["finding"]["evidence"]["whois"] == {
        "registrar": "GoDaddy.com, LLC",
        "creation_date": "2024-04-03T10:00:00+00:00",
        "creation_date_raw": ["2024-04-03T10:00:00Z"],
        "creation_date_state": "date",
        "age_days_at_first_message": 5,
        "young": True,
    }
    doc_id = stable_id("enrichment", "whois", "gl0bex-ind.com")
    assert lookalike["threat"]["enrichments"] == [
        {
            "indicator": {
                "type": "domain-name",
                "url": {"domain": "gl0bex-ind.com"},
                "provider": "WHOIS",
                "description": (
                    "WHOIS: gl0bex-ind.com; created 2024-04-03; registrar GoDaddy.com, LLC; "
                    "name servers pdns13.domaincontrol.com, pdns14.domaincontrol.com; "
                    "redacted: registrant_name"
                ),
            },
            "matched": {
                "atomic": "gl0bex-ind.com",
                "field": "threat.indicator.url.domain",
                "type": "inbec_lookup",
                "id": doc_id,
            },
        }
    ]
    enrichment = findings[doc_id]
    assert enrichment["event"]["kind"] == "enrichment"
    assert enrichment["@timestamp"] == "2024-04-03T10:00:00.000+00:00"
    whois = enrichment["inbec"]["whois"]
    assert whois["age_days"] == 5
    assert whois["first_message"] == "2024-04-08T13:37:42.000+00:00"
    assert whois["expiration_date"] == "2022-02-25T06:26:32+00:00"
    assert whois["redacted"] == ["registrant_name"]
    assert whois["registrant"] == {"organization": "Seal Jobs NV", "country": "BE"}
    mapping = index_templates()["findings"]["template"]["mappings"]
    assert all(unmapped_fields(d, mapping) == set() for d in findings.values())
    events = [json.loads(line) for line in (tmp_path / "case" / "timeline.jsonl").open()]
    created = [e for e in events if e.get("data_type") == "inbec:enrichment:whois"]
    assert created == [
        {
            "message": (
                "Domain gl0bex-ind.com registered (registrar GoDaddy.com, LLC); "
                "first used in a message 5 days later"
            ),
            "datetime": "2024-04-03T10:00:00+00:00",
            "timestamp": 1712138400000000,
            "timestamp_desc": "Domain registered (WHOIS creation date)",
            "data_type": "inbec:enrichment:whois",
            "inbec_doc_id": doc_id,
            "domain": "gl0bex-ind.com",
            "registrar": "GoDaddy.com, LLC",
            "whois_creation_raw": "2024-04-03T10:00:00Z",
            "domain_age_days": 5,
        }
    ]
    summary = json.loads((tmp_path / "case" / "summary.json").read_text("utf-8"))
    assert summary["enrichment"] == {
        "whois": {
            "domains": 1,
            "records": [
                {
                    "domain": "gl0bex-ind.com",
                    "not_found": False,
                    "creation_date": "2024-04-03T10:00:00+00:00",
                    "creation_date_state": "date",
                    "age_days_at_first_message": 5,
                    "registrar": "GoDaddy.com, LLC",
                    "redacted": ["registrant_name"],
                }
            ],
            "not_looked_up": [],
        }
    }
    assert summary["findings_by_severity"]["critical"] == 2


def test_the_cache_answers_reruns_with_the_same_documents(corpus_dir: Path, tmp_path: Path) -> None:
    evidence = write_evidence(tmp_path / "evidence")
    answers = WhoisAnswers({"gl0bex-ind.com": recorded(corpus_dir, "seal.jobs")})
    case = tmp_path / "case"
    with whois_server(answers) as server:
        _analyze(evidence, case, server)
        first = (case / "findings.ndjson").read_text("utf-8")
        _analyze(evidence, case, server)
    assert answers.queries == ["gl0bex-ind.com"]
    assert (case / "findings.ndjson").read_text("utf-8") == first
    lookalike = next(
        d
        for _, d in documents(case / "findings.ndjson")
        if d.get("rule", {}).get("id") == "lookalike-domain"
    )
    # Registered seven years before: said, but not raised (Reply-To only: high).
    assert lookalike["inbec"]["finding"]["severity"] == "high"
    assert lookalike["event"]["reason"].endswith(
        "; registered 2017-02-25, 2599 days before its first message"
    )


def test_sample_case_lookalike_mapped_onto_a_recorded_answer(
    corpus_dir: Path, tmp_path: Path
) -> None:
    generated = runner.invoke(app, ["sample-case", str(tmp_path / "sample")])
    assert generated.exit_code == 0, generated.output
    # A .com lookalike gets a .com registry's answer (python-whois picks the layout by TLD).
    answers = WhoisAnswers({"globex-lnd.com": recorded(corpus_dir, "reddit.com")})
    with whois_server(answers) as server:
        result = runner.invoke(
            app,
            [
                "analyze",
                str(tmp_path / "sample" / "evidence"),
                "--legit-file",
                str(tmp_path / "sample" / "legit-domains.txt"),
                "--out",
                str(tmp_path / "case"),
                "--whois",
                "--whois-server",
                f"{server[0]}:{server[1]}",
            ],
        )
    assert result.exit_code == 0, result.output
    assert answers.queries == ["globex-lnd.com"]
    findings = documents(tmp_path / "case" / "findings.ndjson")
    lookalike = next(d for _, d in findings if d.get("rule", {}).get("id") == "lookalike-domain")
    assert lookalike["inbec"]["finding"]["severity"] == "critical"  # in From already
    assert lookalike["event"]["reason"].endswith(
        "; registered 2005-04-29, 6919 days before its first message"
    )
    whois = next(d for _, d in findings if d["event"].get("provider") == "whois")
    assert whois["inbec"]["whois"]["creation_date_raw"] == ["29-apr-2005", "29-APR-05"]
    assert whois["inbec"]["whois"]["registrar"] == "DOMAINBANK"


def test_unknown_domain_is_said_to_have_no_record(tmp_path: Path) -> None:
    evidence = write_evidence(tmp_path / "evidence")
    answers = WhoisAnswers({})  # "No match for ..." as Verisign answers
    with whois_server(answers) as server:
        _analyze(evidence, tmp_path / "case", server)
    lookalike = next(
        d
        for _, d in documents(tmp_path / "case" / "findings.ndjson")
        if d.get("rule", {}).get("id") == "lookalike-domain"
    )
    assert lookalike["event"]["reason"].endswith(
        "; WHOIS holds no record of it (not registered, or deleted)"
    )


def test_an_unreachable_server_is_reported_in_the_summary_and_terminal(tmp_path: Path) -> None:
    evidence = write_evidence(tmp_path / "evidence")
    port = free_port()
    result = runner.invoke(
        app,
        [
            "analyze",
            str(evidence),
            *LEGIT,
            "--out",
            str(tmp_path / "case"),
            "--whois",
            "--whois-server",
            f"127.0.0.1:{port}",
            "--whois-timeout",
            "0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    reason = (
        f"WHOIS server 127.0.0.1:{port} failed for gl0bex-ind.com after 3 attempts: "
        "Connection refused"
    )
    summary = json.loads((tmp_path / "case" / "summary.json").read_text("utf-8"))
    assert summary["enrichment"]["whois"]["not_looked_up"] == [
        {"value": "gl0bex-ind.com", "reason": reason}
    ]
    assert "not looked up gl0bex-ind.com: " + reason in " ".join(result.output.split())


def test_whois_server_without_whois_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyze", str(tmp_path), "--whois-server", "127.0.0.1:4343"])
    assert result.exit_code == 2
    assert "--whois-server is used only with --whois" in result.output


def test_without_enrichment_options_no_socket_is_opened(tmp_path: Path) -> None:
    evidence = write_evidence(tmp_path / "evidence")
    with socket_events() as events:
        result = runner.invoke(
            app, ["analyze", str(evidence), *LEGIT, "--out", str(tmp_path / "case")]
        )
        assert events == []
        socket.getaddrinfo("127.0.0.1", 43)  # the hook does see sockets
        assert events == ["socket.getaddrinfo"]
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "case" / "enrichment-cache").exists()


def test_a_creation_date_that_is_no_date_is_said_so_in_the_finding(
    corpus_dir: Path, tmp_path: Path
) -> None:
    record = _lookup(corpus_dir, tmp_path, "amazon.co.uk")
    finding = Finding(
        rule_id="lookalike-domain",
        rule_name="Lookalike domain",
        severity="high",
        reason="amazon.co.uk imitates amaz0n.co.uk",
        key="amazon.co.uk",
        first_seen=_utc(2024, 4, 8, 13, 37),
    )
    tell_age(finding, record, None)
    assert finding.severity == "high"
    assert finding.reason == (
        "amazon.co.uk imitates amaz0n.co.uk; WHOIS creation date not a date (before Aug-1996)"
    )
    assert finding.evidence["whois"] == {
        "registrar": "Amazon.com, Inc. t/a Amazon.com, Inc. [Tag = AMAZON-COM]",
        "creation_date": None,
        "creation_date_raw": ["before Aug-1996"],
        "creation_date_state": "not a date",
        "age_days_at_first_message": None,
        "young": False,
    }
