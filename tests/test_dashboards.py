"""The dashboard saved objects: built from dashboards/, checked as Kibana's import reads them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from inbec_export.case import CaseContext
from inbec_export.cli import app
from inbec_export.dashboards import SOURCE_DIR, build_objects, data_view_fields, to_ndjson
from inbec_export.dashboards_check import (
    KIBANA,
    OPENSEARCH_DASHBOARDS,
    TemplateField,
    check_ndjson,
    template_fields,
)
from inbec_export.ecs.documents import finding_document
from inbec_export.ecs.mappings import index_templates, unmapped_fields
from inbec_export.model import Finding, Indicator, MessageRef

runner = CliRunner()

Objects = list[dict[str, Any]]


def _objects(target: str = KIBANA) -> Objects:
    return build_objects(target)


def _find(objects: Objects, kind: str, object_id: str) -> dict[str, Any]:
    return next(o for o in objects if o["type"] == kind and o["id"] == object_id)


def test_built_kibana_objects_pass_the_checker() -> None:
    objects = _objects()
    assert [f"{o['type']}:{o['id']}" for o in objects] == [
        "index-pattern:inbec-findings",
        "index-pattern:inbec-messages",
        "search:inbec-suspicious-messages",
        "lens:inbec-auth-failures",
        "lens:inbec-findings-by-rule",
        "lens:inbec-lookalike-domains",
        "lens:inbec-messages-over-time",
        "lens:inbec-originating-ips",
        "lens:inbec-suspicious-mailboxes",
        "dashboard:inbec-overview",
    ]
    assert check_ndjson(to_ndjson(objects), KIBANA) == []


def test_built_opensearch_dashboards_objects_pass_the_checker() -> None:
    objects = _objects(OPENSEARCH_DASHBOARDS)
    assert [o["type"] for o in objects].count("visualization") == 7
    assert not [o for o in objects if o["type"] == "lens"]
    assert check_ndjson(to_ndjson(objects), OPENSEARCH_DASHBOARDS) == []
    # Lens is not registered there: the Kibana file fails on every Lens object.
    problems = check_ndjson(to_ndjson(_objects()), OPENSEARCH_DASHBOARDS)
    assert problems[0] == (
        "line 4: lens:inbec-auth-failures: unsupported type 'lens' (not registered in "
        "opensearch-dashboards)"
    )
    assert len(problems) == 6 + 6  # six Lens lines, and the dashboard's reference to each


def test_data_view_patterns_are_templated_by_case_and_prefix() -> None:
    objects = build_objects(KIBANA, case="bec-7", prefix="acme")
    assert _find(objects, "index-pattern", "inbec-messages")["attributes"]["title"] == (
        "acme-messages-bec-7"
    )
    assert _find(objects, "index-pattern", "inbec-findings")["attributes"]["title"] == (
        "acme-findings-bec-7"
    )
    every = _find(_objects(OPENSEARCH_DASHBOARDS), "index-pattern", "inbec-messages")
    assert every["attributes"]["title"] == "inbec-messages-*"


def test_stringified_attributes_are_built_from_the_readable_sources() -> None:
    source = json.loads((SOURCE_DIR / "kibana/dashboard/inbec-overview.json").read_text("utf-8"))
    built = _find(_objects(), "dashboard", "inbec-overview")["attributes"]
    assert isinstance(built["panelsJSON"], str)
    assert json.loads(built["panelsJSON"]) == source["attributes"]["panelsJSON"]
    controls = json.loads(built["controlGroupInput"]["panelsJSON"])
    assert [c["explicitInput"]["fieldName"] for c in controls.values()] == [
        "inbec.case.id",
        "rule.id",
    ]
    lens = _find(_objects(), "lens", "inbec-messages-over-time")["attributes"]
    assert isinstance(lens["state"], dict)  # Lens keeps its state as an object


def test_overview_dashboard_shows_every_panel() -> None:
    dashboard = _find(_objects(), "dashboard", "inbec-overview")
    assert [(r["type"], r["id"]) for r in dashboard["references"] if "panel_" in r["name"]] == [
        ("lens", "inbec-messages-over-time"),
        ("lens", "inbec-findings-by-rule"),
        ("lens", "inbec-lookalike-domains"),
        ("lens", "inbec-suspicious-mailboxes"),
        ("lens", "inbec-auth-failures"),
        ("lens", "inbec-originating-ips"),
        ("search", "inbec-suspicious-messages"),
    ]
    osd = _find(_objects(OPENSEARCH_DASHBOARDS), "dashboard", "inbec-overview")
    assert [r["id"] for r in osd["references"]] == [
        "inbec-controls",
        "inbec-messages-over-time",
        "inbec-findings-by-rule",
        "inbec-lookalike-domains",
        "inbec-suspicious-mailboxes",
        "inbec-auth-failures",
        "inbec-originating-ips",
        "inbec-suspicious-messages",
    ]


def test_lookalike_table_joins_findings_and_whois_enrichment_by_host() -> None:
    state = _find(_objects(), "lens", "inbec-lookalike-domains")["attributes"]["state"]
    columns = state["datasourceStates"]["formBased"]["layers"]["layer1"]["columns"]
    assert [(c["label"], c["operationType"], c["sourceField"]) for c in columns.values()] == [
        ("Lookalike domain", "terms", "related.hosts"),
        ("Imitates", "last_value", "inbec.finding.lookalike.legit_domain"),
        ("Technique", "last_value", "inbec.finding.lookalike.techniques"),
        ("WHOIS created", "min", "inbec.whois.creation_date"),
        ("Messages", "max", "inbec.finding.message_count"),
    ]
    assert state["query"]["query"] == (
        'rule.id : "lookalike-domain" or inbec.enrichment.source : "whois"'
    )


def test_template_fields_know_text_and_nested() -> None:
    fields = template_fields("messages")
    assert fields["inbec.sender_type"] == TemplateField("keyword")
    assert fields["email.subject.text"] == TemplateField("text")
    assert fields["email.attachments.file.name"] == TemplateField("keyword", "email.attachments")
    assert not fields["email.attachments.file.name"].aggregatable
    assert fields["inbec.originating_ip"].aggregatable


def test_opensearch_data_view_fields_come_from_the_templates() -> None:
    fields = {f["name"]: f for f in data_view_fields("messages")}
    assert fields["email.subject.text"] == {
        "name": "email.subject.text",
        "type": "string",
        "esTypes": ["text"],
        "count": 0,
        "scripted": False,
        "searchable": True,
        "aggregatable": False,
        "readFromDocValues": False,
        "subType": {"multi": {"parent": "email.subject"}},
    }
    assert fields["email.attachments.file.size"]["subType"] == {
        "nested": {"path": "email.attachments"}
    }
    assert fields["source.ip"]["type"] == "ip"
    assert "email.attachments" not in fields  # the nested object itself is no field


def test_finding_documents_carry_flat_keyword_copies_for_charts() -> None:
    when = datetime(2024, 3, 5, 9, 12, tzinfo=UTC)
    finding = Finding(
        rule_id="suspicious-mailbox",
        rule_name="Mailbox on a lookalike domain",
        severity="high",
        reason="marco@globex-lnd.com on globex-lnd.com",
        key="marco@globex-lnd.com",
        evidence={
            "domain": "globex-lnd.com",
            "legit_domain": "globex-ind.com",
            "techniques": ["replacement"],
            "fields": {"from": 2, "reply_to": 1},
            "failures": [{"method": "dmarc", "result": "fail"}],
        },
        messages=[MessageRef("abc", "m1@x", "RE: Invoice", when, "marco@globex-lnd.com")],
        indicators=[Indicator("email-addr", "marco@globex-lnd.com")],
        first_seen=when,
        last_seen=when,
    )
    document = finding_document(finding, CaseContext(case_id="c1"))
    flat = {k: document["inbec"]["finding"][k] for k in ("lookalike", "seen_in", "auth_failures")}
    assert flat == {
        "lookalike": {
            "domain": "globex-lnd.com",
            "legit_domain": "globex-ind.com",
            "techniques": ["replacement"],
        },
        "seen_in": ["from", "reply_to"],
        "auth_failures": ["dmarc=fail"],
    }
    assert unmapped_fields(document, index_templates()["findings"]["template"]["mappings"]) == set()


# Each break of a copy of the built file, and the exact problem the checker reports.
Break = Callable[[Objects], None]


def _lens_layer(objects: Objects, lens_id: str) -> dict[str, Any]:
    state = _find(objects, "lens", lens_id)["attributes"]["state"]
    layer: dict[str, Any] = state["datasourceStates"]["formBased"]["layers"]["layer1"]
    return layer


def _set_field(objects: Objects, field_name: str) -> None:
    _lens_layer(objects, "inbec-messages-over-time")["columns"]["sender"]["sourceField"] = (
        field_name
    )


def _dashboard(objects: Objects) -> dict[str, Any]:
    return _find(objects, "dashboard", "inbec-overview")


def _unregistered(objects: Objects) -> None:
    _find(objects, "search", "inbec-suspicious-messages")["type"] = "saved-query"


def _duplicate(objects: Objects) -> None:
    objects.append(json.loads(json.dumps(_find(objects, "lens", "inbec-auth-failures"))))


def _dangling(objects: Objects) -> None:
    _dashboard(objects)["references"][0]["id"] = "inbec-gone"


def _bad_panels(objects: Objects) -> None:
    _dashboard(objects)["attributes"]["panelsJSON"] = '[{"panelIndex": "p1",}]'


def _bad_options(objects: Objects) -> None:
    _dashboard(objects)["attributes"]["optionsJSON"] = "{useMargins: true}"


def _bad_search_source(objects: Objects) -> None:
    meta = _find(objects, "search", "inbec-suspicious-messages")["attributes"]
    meta["kibanaSavedObjectMeta"]["searchSourceJSON"] = '{"query": '


def _bad_fields(objects: Objects) -> None:
    _find(objects, "index-pattern", "inbec-messages")["attributes"]["fields"] = "[{]"


def _bad_lens_state(objects: Objects) -> None:
    _find(objects, "lens", "inbec-auth-failures")["attributes"]["state"] = "{'visualization'"


def _unencoded_options(objects: Objects) -> None:
    _dashboard(objects)["attributes"]["optionsJSON"] = {"useMargins": True}


def _panel_ref(objects: Objects) -> None:
    attributes = _dashboard(objects)["attributes"]
    panels = json.loads(attributes["panelsJSON"])
    panels[2]["panelRefName"] = "panel_p9"
    attributes["panelsJSON"] = json.dumps(panels)


def _index_ref(objects: Objects) -> None:
    search = _find(objects, "search", "inbec-suspicious-messages")
    search["references"][0]["name"] = "index"


def _missing_field(objects: Objects) -> None:
    _set_field(objects, "inbec.sender_kind")


def _text_field(objects: Objects) -> None:
    _set_field(objects, "email.subject.text")


def _nested_field(objects: Objects) -> None:
    _set_field(objects, "email.attachments.file.name")


def _nested_object(objects: Objects) -> None:
    _set_field(objects, "email.attachments")


def _disabled_object(objects: Objects) -> None:
    layer = _lens_layer(objects, "inbec-findings-by-rule")
    layer["columns"]["rule"]["sourceField"] = "inbec.finding.evidence"


def _wrong_index(objects: Objects) -> None:
    # rule.id is a finding field; messages do not have it.
    _set_field(objects, "rule.id")


def _control_field(objects: Objects) -> None:
    control_group = _dashboard(objects)["attributes"]["controlGroupInput"]
    controls = json.loads(control_group["panelsJSON"])
    controls["inbec-case"]["explicitInput"]["fieldName"] = "message"
    control_group["panelsJSON"] = json.dumps(controls)


def _search_column(objects: Objects) -> None:
    _find(objects, "search", "inbec-suspicious-messages")["attributes"]["columns"].append(
        "inbec.body"
    )


def _data_view_title(objects: Objects) -> None:
    _find(objects, "index-pattern", "inbec-messages")["attributes"]["title"] = "mail-*"


BREAKS: dict[str, tuple[Break, list[str]]] = {
    "unregistered type": (
        _unregistered,
        [
            "line 3: saved-query:inbec-suspicious-messages: unsupported type 'saved-query' "
            "(not registered in kibana)",
            "dashboard:inbec-overview: reference 'p7:panel_p7' -> "
            "search:inbec-suspicious-messages is not in the file",
        ],
    ),
    "duplicate type:id": (
        _duplicate,
        [
            "line 11: duplicate object lens:inbec-auth-failures (first on line 4): the whole "
            "import is rejected"
        ],
    ),
    "dangling reference": (
        _dangling,
        ["dashboard:inbec-overview: reference 'p1:panel_p1' -> lens:inbec-gone is not in the file"],
    ),
    "panelsJSON": (
        _bad_panels,
        [
            "dashboard:inbec-overview: attribute panelsJSON is not valid JSON (Expecting "
            "property name enclosed in double quotes, column 22)"
        ],
    ),
    "optionsJSON": (
        _bad_options,
        [
            "dashboard:inbec-overview: attribute optionsJSON is not valid JSON (Expecting "
            "property name enclosed in double quotes, column 2)"
        ],
    ),
    "searchSourceJSON": (
        _bad_search_source,
        [
            "search:inbec-suspicious-messages: attribute "
            "kibanaSavedObjectMeta.searchSourceJSON is not valid JSON (Expecting value, "
            "column 11)"
        ],
    ),
    "fields": (
        _bad_fields,
        [
            "index-pattern:inbec-messages: attribute fields is not valid JSON (Expecting "
            "property name enclosed in double quotes, column 3)"
        ],
    ),
    "Lens state": (
        _bad_lens_state,
        [
            "lens:inbec-auth-failures: attribute state is not valid JSON (Expecting property "
            "name enclosed in double quotes, column 2)"
        ],
    ),
    "attribute left unencoded": (
        _unencoded_options,
        ["dashboard:inbec-overview: attribute optionsJSON must be a JSON string"],
    ),
    "panelRefName": (
        _panel_ref,
        ["dashboard:inbec-overview: panelRefName 'panel_p9' is not in references"],
    ),
    "indexRefName": (
        _index_ref,
        [
            "search:inbec-suspicious-messages: indexRefName "
            "'kibanaSavedObjectMeta.searchSourceJSON.index' is not in references",
            "search:inbec-suspicious-messages: field 'email.from.address' has no data view "
            "reference",
        ],
    ),
    "field not in the template": (
        _missing_field,
        [
            "lens:inbec-messages-over-time: field 'inbec.sender_kind' is not in the messages "
            "index template"
        ],
    ),
    "text field": (
        _text_field,
        [
            "lens:inbec-messages-over-time: field 'email.subject.text' is text in the messages "
            "index template, not aggregatable"
        ],
    ),
    "field inside nested": (
        _nested_field,
        [
            "lens:inbec-messages-over-time: field 'email.attachments.file.name' is inside "
            "nested 'email.attachments' (not chartable)"
        ],
    ),
    "nested object": (
        _nested_object,
        [
            "lens:inbec-messages-over-time: field 'email.attachments' is nested in the "
            "messages index template, not aggregatable"
        ],
    ),
    "stored-only object": (
        _disabled_object,
        [
            "lens:inbec-findings-by-rule: field 'inbec.finding.evidence' is object in the "
            "findings index template, not aggregatable"
        ],
    ),
    "field of the other index": (
        _wrong_index,
        ["lens:inbec-messages-over-time: field 'rule.id' is not in the messages index template"],
    ),
    "control field": (
        _control_field,
        [
            "dashboard:inbec-overview: field 'message' is text in the findings index "
            "template, not aggregatable"
        ],
    ),
    "saved search column": (
        _search_column,
        [
            "search:inbec-suspicious-messages: field 'inbec.body' is text in the messages "
            "index template, not aggregatable"
        ],
    ),
    "data view title": (
        _data_view_title,
        [
            "index-pattern:inbec-messages: title 'mail-*' matches no index template "
            "(<prefix>-messages|findings-<case>)",
            "search:inbec-suspicious-messages: field 'email.from.address': data view "
            "'inbec-messages' has no index template",
        ],
    ),
}


@pytest.mark.parametrize("rule", list(BREAKS))
def test_each_checker_rule_catches_its_break(rule: str) -> None:
    objects = _objects()
    breaker, expected = BREAKS[rule]
    breaker(objects)
    problems = check_ndjson(to_ndjson(objects), KIBANA)
    assert problems[: len(expected)] == expected


def test_lines_that_are_not_objects_are_reported_with_their_number() -> None:
    text = to_ndjson(_objects()[:2]) + "not json\n[1, 2]\n\n" + '{"id": "x"}\n'
    assert check_ndjson(text) == [
        "line 3: not valid JSON (Expecting value, column 1)",
        "line 4: not a JSON object",
        "line 6: an object needs a string type and id",
    ]


def test_check_command_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.ndjson"
    good.write_text(to_ndjson(_objects()), encoding="utf-8")
    result = runner.invoke(app, ["dashboards", "check", str(good)])
    assert result.exit_code == 0
    assert result.output == f"{good}: 10 objects, no problems\n"

    objects = _objects()
    _duplicate(objects)
    bad = tmp_path / "bad.ndjson"
    bad.write_text(to_ndjson(objects), encoding="utf-8")
    result = runner.invoke(app, ["dashboards", "check", str(bad)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "line 11: duplicate object lens:inbec-auth-failures (first on line 4): the whole "
        "import is rejected",
        f"{bad}: 1 problem(s)",
    ]


def test_build_command_writes_the_checked_file(tmp_path: Path) -> None:
    out = tmp_path / "osd.ndjson"
    result = runner.invoke(
        app,
        ["dashboards", "build", "--opensearch-dashboards", "--case", "bec-7", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote 11 saved objects to {out}\n"
    lines = out.read_text("utf-8").splitlines()
    assert json.loads(lines[0])["attributes"]["title"] == "inbec-findings-bec-7"
    assert check_ndjson(out.read_text("utf-8"), OPENSEARCH_DASHBOARDS) == []

    result = runner.invoke(app, ["dashboards", "build", "--prefix", "logs", "-o", str(out)])
    assert result.exit_code == 2
