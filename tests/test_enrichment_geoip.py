"""Offline GeoIP enrichment from MaxMind databases the test writes itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from enrichment_helpers import documents, socket_events, write_evidence
from typer.testing import CliRunner

from inbec_export.cli import app
from inbec_export.ecs.mappings import index_templates, unmapped_fields
from inbec_export.enrichment.geoip import GeoIpDatabases, GeoResult
from inbec_export.model import stable_id

mmdb_writer = pytest.importorskip("mmdb_writer", reason="mmdb-writer writes the test databases")
netaddr = pytest.importorskip("netaddr", reason="mmdb-writer takes netaddr networks")

runner = CliRunner()
LEGIT = ["--legit", "acme-corp.com", "--legit", "globex-ind.com"]


def _write(path: Path, database_type: str, networks: dict[str, dict[str, object]]) -> Path:
    writer = mmdb_writer.MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=database_type)
    for network, data in networks.items():
        writer.insert_network(netaddr.IPSet([network]), data)
    writer.to_db_file(str(path))
    return path


@pytest.fixture()
def databases(tmp_path: Path) -> list[Path]:
    city = _write(
        tmp_path / "GeoLite2-City.mmdb",
        "GeoLite2-City",
        {
            "185.220.101.0/24": {
                "country": {"iso_code": "DE", "names": {"en": "Germany"}},
                "city": {"names": {"en": "Berlin"}},
            }
        },
    )
    asn = _write(
        tmp_path / "GeoLite2-ASN.mmdb",
        "GeoLite2-ASN",
        {
            "185.220.101.0/24": {
                "autonomous_system_number": mmdb_writer.MmdbU32(60729),
                "autonomous_system_organization": "Stiftung Erneuerbare Freiheit",
            },
            "45.95.147.0/24": {
                "autonomous_system_number": mmdb_writer.MmdbU32(208312),
                "autonomous_system_organization": "Red Byte LLC",
            },
        },
    )
    return [city, asn]


def test_lookup_in_city_and_asn_databases(databases: list[Path]) -> None:
    opened = GeoIpDatabases(databases)
    try:
        assert opened.names == ["GeoLite2-City", "GeoLite2-ASN"]
        assert opened.lookup("185.220.101.4") == GeoResult(
            "185.220.101.4", "DE", "Germany", "Berlin", 60729, "Stiftung Erneuerbare Freiheit"
        )
        assert opened.lookup("45.95.147.236") == GeoResult(
            "45.95.147.236", asn=208312, as_organization="Red Byte LLC"
        )
        assert opened.lookup("8.8.8.8") == GeoResult("8.8.8.8")
        assert not opened.lookup("8.8.8.8").found
    finally:
        opened.close()


def test_analyze_with_geoip_uses_no_network(databases: list[Path], tmp_path: Path) -> None:
    evidence = write_evidence(tmp_path / "evidence")
    with socket_events() as events:
        result = runner.invoke(
            app,
            [
                "analyze",
                str(evidence),
                *LEGIT,
                "--out",
                str(tmp_path / "case"),
                "--geoip-db",
                str(databases[0]),
                "--geoip-db",
                str(databases[1]),
            ],
        )
    assert result.exit_code == 0, result.output
    assert events == []
    summary = json.loads((tmp_path / "case" / "summary.json").read_text("utf-8"))
    assert summary["enrichment"] == {
        "geoip": {
            "databases": ["GeoLite2-City", "GeoLite2-ASN"],
            "ips": 2,
            "found": [
                {
                    "ip": "185.220.101.4",
                    "country_iso_code": "DE",
                    "city_name": "Berlin",
                    "asn": 60729,
                    "as_organization": "Stiftung Erneuerbare Freiheit",
                },
                {
                    "ip": "45.95.147.236",
                    "country_iso_code": None,
                    "city_name": None,
                    "asn": 208312,
                    "as_organization": "Red Byte LLC",
                },
            ],
        }
    }
    findings = dict(documents(tmp_path / "case" / "findings.ndjson"))
    mapping = index_templates()["findings"]["template"]["mappings"]
    assert all(unmapped_fields(d, mapping) == set() for d in findings.values())
    document = findings[stable_id("enrichment", "geoip", "185.220.101.4")]
    assert document["message"] == (
        "GeoIP: 185.220.101.4; Berlin, Germany (DE); AS60729 Stiftung Erneuerbare Freiheit"
    )
    assert document["threat"]["enrichments"][0]["indicator"]["geo"] == {
        "country_iso_code": "DE",
        "country_name": "Germany",
        "city_name": "Berlin",
    }
    ip_finding = next(
        d for d in findings.values() if d.get("rule", {}).get("id") == "originating-ip"
    )
    assert ip_finding["threat"]["enrichments"][0]["indicator"]["as"] == {
        "number": 60729,
        "organization": {"name": "Stiftung Erneuerbare Freiheit"},
    }


def test_a_file_that_is_no_database_is_a_usage_error(tmp_path: Path) -> None:
    evidence = write_evidence(tmp_path / "evidence")
    bogus = tmp_path / "GeoLite2-City.mmdb"
    bogus.write_bytes(b"not a database")
    result = runner.invoke(
        app,
        [
            "analyze",
            str(evidence),
            *LEGIT,
            "--out",
            str(tmp_path / "case"),
            "--geoip-db",
            str(bogus),
        ],
    )
    assert result.exit_code == 2
    assert f"--geoip-db {bogus}: not a readable MaxMind database" in " ".join(result.output.split())
