"""Offline checks of a saved objects NDJSON file, the way Kibana's import reads it.

Kibana (and OpenSearch Dashboards) import a file of one JSON object per line. The import
refuses the whole file when two lines carry the same ``type:id``; otherwise it answers
per object: an unregistered type, a reference to an object that exists neither in the
file nor on the server, or an attribute stored as a JSON string that does not parse each
fail that object. A dashboard panel or a search names its references by ``panelRefName``
and ``indexRefName``; a name missing from ``references`` breaks the object when opened.

Beyond the import, every field a panel charts, a control filters on or a saved search
lists must exist in the index templates (:mod:`inbec_export.ecs.mappings`) of the data
view's document kind, with a type that aggregates (keyword, numeric, date, ip, boolean).
Text fields do not aggregate, and neither Lens nor the classic visualizations chart
fields of a ``nested`` object.

Limitations: fields named inside KQL query strings are not checked; references are
resolved within the file only (a file relying on objects already on the server fails).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from inbec_export.ecs.mappings import KINDS, Mapping, index_templates

logger = logging.getLogger(__name__)

#: The two targets: their folder under ``dashboards/`` and their import API differ.
KIBANA = "kibana"
OPENSEARCH_DASHBOARDS = "opensearch-dashboards"
TARGETS = (KIBANA, OPENSEARCH_DASHBOARDS)

#: Saved object types each target registers (those a dashboard of ours may use).
REGISTERED_TYPES: dict[str, frozenset[str]] = {
    KIBANA: frozenset(
        {"config", "dashboard", "index-pattern", "lens", "map", "query", "search", "tag"}
        | {"visualization"}
    ),
    OPENSEARCH_DASHBOARDS: frozenset(
        {"augment-vis", "config", "dashboard", "index-pattern", "query", "search"}
        | {"visualization", "visualization-visbuilder"}
    ),
}

#: Attributes that Kibana stores as JSON text, wherever they sit in ``attributes``.
STRINGIFIED_ATTRIBUTES = frozenset(
    {
        "panelsJSON",
        "optionsJSON",
        "searchSourceJSON",
        "visState",
        "uiStateJSON",
        "fields",
        "fieldAttrs",
        "fieldFormatMap",
        "runtimeFieldMap",
        "ignoreParentSettingsJSON",
        "typeMeta",
    }
)

#: Lens keeps its ``state`` as an object; a string there must still parse.
LENS_STATE = "state"

#: Field types whose values aggregate (doc values); ``text`` and objects do not.
AGGREGATABLE_TYPES = frozenset(
    {
        "keyword",
        "constant_keyword",
        "long",
        "integer",
        "short",
        "byte",
        "double",
        "float",
        "half_float",
        "scaled_float",
        "unsigned_long",
        "date",
        "date_nanos",
        "ip",
        "boolean",
    }
)

#: Lens's pseudo field of the record count.
LENS_RECORDS = "___records___"


@dataclass(frozen=True)
class TemplateField:
    """A field of an index template: its type and the nested object it sits in, if any."""

    type: str
    nested: str | None = None

    @property
    def aggregatable(self) -> bool:
        """True when charts can group or measure the field."""
        return self.nested is None and self.type in AGGREGATABLE_TYPES


def template_fields(kind: str) -> dict[str, TemplateField]:
    """Every field of a document kind's index template, multi-fields included."""
    mapping = index_templates()[kind]["template"]["mappings"]
    return dict(_walk(mapping, "", None))


def _walk(mapping: Mapping, prefix: str, nested: str | None) -> Iterator[tuple[str, TemplateField]]:
    for name, spec in mapping.get("properties", {}).items():
        path = f"{prefix}{name}"
        kind = spec.get("type", "object")
        yield path, TemplateField(kind, nested)
        if "properties" in spec:
            inner = path if kind == "nested" else nested
            yield from _walk(spec, path + ".", inner)
        for sub, sub_spec in spec.get("fields", {}).items():
            yield f"{path}.{sub}", TemplateField(sub_spec.get("type", "object"), nested)


@dataclass
class _Object:
    line: int
    value: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.value['type']}:{self.value['id']}"

    @property
    def attributes(self) -> dict[str, Any]:
        attributes = self.value.get("attributes")
        return attributes if isinstance(attributes, dict) else {}

    @property
    def references(self) -> list[dict[str, Any]]:
        references = self.value.get("references")
        if not isinstance(references, list):
            return []
        return [r for r in references if isinstance(r, dict)]

    def reference(self, name: str) -> dict[str, Any] | None:
        return next((r for r in self.references if r.get("name") == name), None)


def check_ndjson(text: str, target: str = KIBANA) -> list[str]:
    """Every problem of a saved objects NDJSON file, one line each (empty when none).

    Args:
        text: the file's content.
        target: ``kibana`` or ``opensearch-dashboards`` (their registered types differ).

    Returns:
        Problems in file order; a duplicate ``type:id`` is reported alone, since the
        import then rejects the whole file.
    """
    problems: list[str] = []
    objects = _parse_lines(text, target, problems)
    if not objects and not problems:
        return ["no saved object in the file: nothing to import"]
    duplicates = _duplicates(objects)
    if duplicates:
        return problems + duplicates
    known = {(o.value["type"], o.value["id"]) for o in objects}
    views = _data_view_kinds(objects, problems)
    fields = {kind: template_fields(kind) for kind in KINDS}
    for obj in objects:
        problems.extend(_reference_problems(obj, known))
        parsed, attribute_problems = _parse_attributes(obj)
        problems.extend(attribute_problems)
        problems.extend(_ref_name_problems(obj, parsed))
        for field_name, view_id in _used_fields(obj, parsed):
            problems.extend(_field_problems(obj, field_name, view_id, views, fields))
    return problems


def _parse_lines(text: str, target: str, problems: list[str]) -> list[_Object]:
    objects: list[_Object] = []
    registered = REGISTERED_TYPES[target]
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not valid JSON ({exc.msg}, column {exc.colno})")
            continue
        if not isinstance(value, dict):
            problems.append(f"line {number}: not a JSON object")
            continue
        if "exportedCount" in value and "type" not in value:
            continue  # the summary line Kibana's export appends
        if not isinstance(value.get("type"), str) or not isinstance(value.get("id"), str):
            problems.append(f"line {number}: an object needs a string type and id")
            continue
        if value["type"] not in registered:
            problems.append(
                f"line {number}: {value['type']}:{value['id']}: unsupported type "
                f"{value['type']!r} (not registered in {target})"
            )
            continue
        objects.append(_Object(number, value))
    return objects


def _duplicates(objects: list[_Object]) -> list[str]:
    first: dict[str, int] = {}
    problems = []
    for obj in objects:
        if obj.key in first:
            problems.append(
                f"line {obj.line}: duplicate object {obj.key} (first on line "
                f"{first[obj.key]}): the whole import is rejected"
            )
        else:
            first[obj.key] = obj.line
    return problems


def _data_view_kinds(objects: list[_Object], problems: list[str]) -> dict[str, str]:
    """The document kind of each data view, from its title ``<prefix>-<kind>-<case>``."""
    kinds: dict[str, str] = {}
    for obj in objects:
        if obj.value["type"] != "index-pattern":
            continue
        title = str(obj.attributes.get("title", ""))
        kind = next((k for k in KINDS if f"-{k}-" in title), None)
        if kind is None:
            problems.append(
                f"{obj.key}: title {title!r} matches no index template "
                f"(<prefix>-{'|'.join(KINDS)}-<case>)"
            )
        else:
            kinds[obj.value["id"]] = kind
    return kinds


def _reference_problems(obj: _Object, known: set[tuple[str, str]]) -> Iterator[str]:
    for reference in obj.references:
        target = (str(reference.get("type")), str(reference.get("id")))
        if target not in known:
            yield (
                f"{obj.key}: reference {reference.get('name')!r} -> {target[0]}:{target[1]} "
                "is not in the file"
            )


def _parse_attributes(obj: _Object) -> tuple[dict[str, Any], list[str]]:
    """The stringified attributes parsed, by dotted path, and the ones that do not parse."""
    parsed: dict[str, Any] = {}
    problems: list[str] = []

    def visit(value: dict[str, Any], prefix: str) -> None:
        for key, item in value.items():
            path = f"{prefix}{key}"
            stringified = key in STRINGIFIED_ATTRIBUTES or (
                key == LENS_STATE and obj.value["type"] == "lens" and not prefix
            )
            if stringified and isinstance(item, str):
                try:
                    parsed[path] = json.loads(item)
                except json.JSONDecodeError as exc:
                    problems.append(
                        f"{obj.key}: attribute {path} is not valid JSON "
                        f"({exc.msg}, column {exc.colno})"
                    )
            elif key in STRINGIFIED_ATTRIBUTES:
                problems.append(f"{obj.key}: attribute {path} must be a JSON string")
            elif stringified:
                parsed[path] = item
            elif isinstance(item, dict):
                visit(item, path + ".")

    visit(obj.attributes, "")
    return parsed, problems


def _ref_name_problems(obj: _Object, parsed: dict[str, Any]) -> Iterator[str]:
    names = {str(r.get("name")) for r in obj.references}
    for panel in _list(parsed.get("panelsJSON")):
        ref_name = panel.get("panelRefName")
        if ref_name is None:
            continue
        # Kibana 8 prefixes the reference with the panel index; 7.x-style files do not.
        if ref_name not in names and f"{panel.get('panelIndex')}:{ref_name}" not in names:
            yield f"{obj.key}: panelRefName {ref_name!r} is not in references"
    index_ref = _dict(parsed.get("kibanaSavedObjectMeta.searchSourceJSON")).get("indexRefName")
    if index_ref is not None and index_ref not in names:
        yield f"{obj.key}: indexRefName {index_ref!r} is not in references"
    for control in _controls(parsed):
        ref_name = control.get("indexPatternRefName")
        if ref_name is not None and ref_name not in names:
            yield f"{obj.key}: indexPatternRefName {ref_name!r} is not in references"


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _controls(parsed: dict[str, Any]) -> list[dict[str, Any]]:
    return _list(_dict(_dict(parsed.get("visState")).get("params")).get("controls"))


def _source_view(obj: _Object, parsed: dict[str, Any]) -> str | None:
    source = _dict(parsed.get("kibanaSavedObjectMeta.searchSourceJSON"))
    reference = obj.reference(str(source.get("indexRefName")))
    return str(reference["id"]) if reference else None


def _used_fields(obj: _Object, parsed: dict[str, Any]) -> Iterator[tuple[str, str | None]]:
    """Each field the object charts, filters on or lists, with its data view id."""
    kind = obj.value["type"]
    if kind == "lens":
        yield from _lens_fields(obj, _dict(parsed.get(LENS_STATE)))
    elif kind == "visualization":
        view = _source_view(obj, parsed)
        for agg in _list(_dict(parsed.get("visState")).get("aggs")):
            params = _dict(agg.get("params"))
            for key in ("field", "sortField"):
                if isinstance(params.get(key), str):
                    yield params[key], view
        for control in _controls(parsed):
            reference = obj.reference(str(control.get("indexPatternRefName")))
            yield str(control.get("fieldName")), str(reference["id"]) if reference else None
    elif kind == "search":
        view = _source_view(obj, parsed)
        for column in obj.attributes.get("columns") or []:
            yield str(column), view
        for sort in obj.attributes.get("sort") or []:
            if isinstance(sort, list) and sort:
                yield str(sort[0]), view
    elif kind == "dashboard":
        controls = _dict(parsed.get("controlGroupInput.panelsJSON"))
        for control_id, control in controls.items():
            explicit = _dict(_dict(control).get("explicitInput"))
            reference = obj.reference(f"controlGroup_{control_id}:optionsListDataView")
            view = reference["id"] if reference else explicit.get("dataViewId")
            yield str(explicit.get("fieldName")), str(view) if view else None


def _lens_fields(obj: _Object, state: dict[str, Any]) -> Iterator[tuple[str, str | None]]:
    layers = _dict(_dict(_dict(state.get("datasourceStates")).get("formBased")).get("layers"))
    for layer_id, layer in layers.items():
        reference = obj.reference(f"indexpattern-datasource-layer-{layer_id}")
        view = str(reference["id"]) if reference else None
        for column in _dict(_dict(layer).get("columns")).values():
            source = _dict(column).get("sourceField")
            if isinstance(source, str) and source != LENS_RECORDS:
                yield source, view
            sort = _dict(_dict(column).get("params")).get("sortField")
            if isinstance(sort, str):
                yield sort, view


def _field_problems(
    obj: _Object,
    field_name: str,
    view_id: str | None,
    views: dict[str, str],
    fields: dict[str, dict[str, TemplateField]],
) -> Iterator[str]:
    if view_id is None:
        yield f"{obj.key}: field {field_name!r} has no data view reference"
        return
    kind = views.get(view_id)
    if kind is None:
        yield f"{obj.key}: field {field_name!r}: data view {view_id!r} has no index template"
        return
    spec = fields[kind].get(field_name)
    if spec is None:
        yield f"{obj.key}: field {field_name!r} is not in the {kind} index template"
    elif spec.nested is not None:
        yield f"{obj.key}: field {field_name!r} is inside nested {spec.nested!r} (not chartable)"
    elif spec.type not in AGGREGATABLE_TYPES:
        yield (
            f"{obj.key}: field {field_name!r} is {spec.type} in the {kind} index template, "
            "not aggregatable"
        )
