"""Kibana and OpenSearch Dashboards saved objects: built from ``dashboards/``, imported.

The repository keeps one readable JSON file per saved object under
``dashboards/<target>/<type>/<id>.json``, with stable ids. Attributes that Kibana stores as
JSON text (``panelsJSON``, ``visState``, ``searchSourceJSON`` and the others of
:data:`~inbec_export.dashboards_check.STRINGIFIED_ATTRIBUTES`) are written there as nested
JSON; :func:`build_objects` encodes them, fills the data views' index patterns with the
prefix and case (``${prefix}``, ``${case}``) and, where a data view asks for
``{"from_template": KIND}``, lists the fields of that kind's index template.

:func:`import_objects` posts the result to the saved objects import API
(``POST [/s/<space>]/api/saved_objects/_import?overwrite=true``, multipart field ``file``,
header ``kbn-xsrf``, or ``osd-xsrf`` for OpenSearch Dashboards). The API answers 200 even
when single objects fail, so the body's ``success``, ``successCount`` and ``errors`` are
read object by object.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import ssl
import string
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inbec_export.dashboards_check import (
    KIBANA,
    OPENSEARCH_DASHBOARDS,
    STRINGIFIED_ATTRIBUTES,
    template_fields,
)
from inbec_export.ecs.mappings import DEFAULT_PREFIX, KINDS
from inbec_export.errors import InbecError, UsageError
from inbec_export.sinks.search import Connection, scrub_secrets, tls_message

logger = logging.getLogger(__name__)

#: The per-object sources, at the top of the repository checkout.
SOURCE_DIR = Path(__file__).resolve().parent.parent / "dashboards"

#: The case part of index patterns when no case is given: every case.
ALL_CASES = "*"

#: Order of the objects in the NDJSON: what is referenced comes first.
TYPE_ORDER = ("index-pattern", "search", "visualization", "lens", "dashboard")

#: Display names and the header each import API requires against cross-site requests.
PRODUCTS = {KIBANA: "Kibana", OPENSEARCH_DASHBOARDS: "OpenSearch Dashboards"}
XSRF_HEADERS = {KIBANA: "kbn-xsrf", OPENSEARCH_DASHBOARDS: "osd-xsrf"}

#: The import API, below the base URL (and the space's ``/s/<space>``).
IMPORT_PATH = "/api/saved_objects/_import?overwrite=true"

#: Seconds to wait for the import to answer (it validates and writes every object).
IMPORT_TIMEOUT_SECONDS = 120.0

#: Space ids Kibana accepts: lower-case letters, digits, ``_`` and ``-``.
_SPACE = re.compile(r"^[a-z0-9_\-]+$")

#: Field types of index templates as data view field types (OpenSearch Dashboards).
_FIELD_TYPES = {
    "keyword": "string",
    "text": "string",
    "long": "number",
    "float": "number",
    "date": "date",
    "ip": "ip",
    "boolean": "boolean",
}


class DashboardError(InbecError):
    """The dashboards cannot be built or imported; the message says what to fix."""


def build_objects(
    target: str = KIBANA,
    case: str = ALL_CASES,
    prefix: str = DEFAULT_PREFIX,
    source_dir: Path = SOURCE_DIR,
) -> list[dict[str, Any]]:
    """The saved objects of ``target``, ready to import, in dependency order.

    Args:
        target: ``kibana`` or ``opensearch-dashboards``.
        case: the case id the data views cover, or ``*`` for every case.
        prefix: the index name prefix.
        source_dir: the ``dashboards`` folder.

    Raises:
        DashboardError: a source file is missing or not valid JSON.
    """
    folder = source_dir / target
    if not folder.is_dir():
        raise DashboardError(
            f"dashboard sources not found in {folder}: run from a checkout of inbec-export"
        )
    objects = []
    for path in sorted(folder.glob("*/*.json")):
        try:
            source = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DashboardError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
        objects.append(_encode(source, case, prefix))
    return sorted(objects, key=_order)


def _order(obj: dict[str, Any]) -> tuple[int, str]:
    kind = str(obj.get("type"))
    rank = TYPE_ORDER.index(kind) if kind in TYPE_ORDER else len(TYPE_ORDER)
    return rank, str(obj.get("id"))


def _encode(source: dict[str, Any], case: str, prefix: str) -> dict[str, Any]:
    obj = json.loads(json.dumps(source))
    attributes = obj.get("attributes", {})
    if obj.get("type") == "index-pattern":
        for key in ("title", "name"):
            if isinstance(attributes.get(key), str):
                template = string.Template(attributes[key])
                attributes[key] = template.substitute(prefix=prefix, case=case)
        wanted = attributes.get("fields")
        if isinstance(wanted, dict) and wanted.get("from_template") in KINDS:
            attributes["fields"] = data_view_fields(str(wanted["from_template"]))
    _stringify(attributes)
    return dict(obj)


def _stringify(attributes: dict[str, Any]) -> None:
    for key, value in attributes.items():
        if key in STRINGIFIED_ATTRIBUTES and not isinstance(value, str):
            attributes[key] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        elif isinstance(value, dict) and key != "state":
            _stringify(value)


def data_view_fields(kind: str) -> list[dict[str, Any]]:
    """The field list of a data view over ``kind``'s indices, from its index template."""
    fields = []
    for name, spec in sorted(template_fields(kind).items()):
        if spec.type not in _FIELD_TYPES:
            continue
        entry: dict[str, Any] = {
            "name": name,
            "type": _FIELD_TYPES[spec.type],
            "esTypes": [spec.type],
            "count": 0,
            "scripted": False,
            "searchable": True,
            "aggregatable": spec.aggregatable,
            "readFromDocValues": spec.aggregatable,
        }
        if spec.nested is not None:
            entry["subType"] = {"nested": {"path": spec.nested}}
        elif name.endswith(".text"):
            entry["subType"] = {"multi": {"parent": name.rsplit(".", 1)[0]}}
        fields.append(entry)
    return fields


def to_ndjson(objects: list[dict[str, Any]]) -> str:
    """One compact JSON object per line, as the import API reads them."""
    return "".join(json.dumps(o, ensure_ascii=False, separators=(",", ":")) + "\n" for o in objects)


@dataclass(frozen=True)
class ImportFailure:
    """One object the server did not import, and why."""

    type: str
    id: str
    title: str
    reason: str

    def line(self) -> str:
        """The line printed for it."""
        title = f" {self.title!r}" if self.title else ""
        return f"failed: {self.type}:{self.id}{title}: {self.reason}"


@dataclass
class ImportResult:
    """What the import API answered for the file."""

    product: str
    total: int
    success_count: int = 0
    failures: list[ImportFailure] = field(default_factory=list)

    def line(self) -> str:
        """The final line of the install."""
        return (
            f"{self.product}: imported {self.success_count} of {self.total} objects, "
            f"{len(self.failures)} failed"
        )


def validate_space(space: str | None) -> str | None:
    """Check a space id (None and ``default`` mean the default space)."""
    if space is None or space == "default":
        return None
    if not _SPACE.match(space):
        raise UsageError(f"--space {space!r}: a space id is lower-case letters, digits, '_' or '-'")
    return space


def import_url(base_url: str, space: str | None) -> str:
    """The import API's URL, in ``space`` when given."""
    space_path = f"/s/{space}" if space else ""
    return base_url.rstrip("/") + space_path + IMPORT_PATH


def import_objects(
    target: str,
    connection: Connection,
    objects: list[dict[str, Any]],
    space: str | None = None,
) -> ImportResult:
    """Import ``objects`` with overwrite, and read the answer object by object.

    Args:
        target: ``kibana`` or ``opensearch-dashboards``.
        connection: the server URL, credentials and TLS settings.
        objects: the saved objects (see :func:`build_objects`).
        space: the Kibana space id, None for the default space.

    Raises:
        DashboardError: the server could not be reached or refused the whole request.
    """
    url = import_url(connection.url, space)
    boundary = "inbec-" + secrets.token_hex(12)
    body = _multipart(boundary, to_ndjson(objects).encode("utf-8"))
    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        XSRF_HEADERS[target]: "true",
        **_auth_headers(connection),
    }
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    logger.info("importing %d saved objects into %s", len(objects), url)
    answer = _send(request, connection, space)
    return _result(PRODUCTS[target], len(objects), answer)


def _multipart(boundary: str, content: bytes) -> bytes:
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="inbec-dashboards.ndjson"\r\n'
        "Content-Type: application/ndjson\r\n\r\n"
    )
    return head.encode("ascii") + content + f"\r\n--{boundary}--\r\n".encode("ascii")


def _auth_headers(connection: Connection) -> dict[str, str]:
    if connection.api_key:
        return {"Authorization": f"ApiKey {connection.api_key}"}
    if connection.user:
        pair = f"{connection.user}:{connection.password or ''}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
    if connection.bearer_token:
        return {"Authorization": f"Bearer {connection.bearer_token}"}
    return {}


def _tls_context(connection: Connection) -> ssl.SSLContext:
    if not connection.verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    cafile = str(connection.ca_cert) if connection.ca_cert is not None else None
    return ssl.create_default_context(cafile=cafile)


def _send(request: urllib.request.Request, connection: Connection, space: str | None) -> Any:
    base = connection.url
    context = _tls_context(connection) if base.startswith("https://") else None
    try:
        with urllib.request.urlopen(
            request, timeout=IMPORT_TIMEOUT_SECONDS, context=context
        ) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        raise DashboardError(_scrub(_http_message(base, exc, space), connection)) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLError):
            raise DashboardError(tls_message(base, connection.verify_tls, exc)) from None
        raise DashboardError(
            f"cannot connect to {base}: is the server running, and are the host and port right?"
        ) from None
    except TimeoutError:
        raise DashboardError(
            f"{base} did not answer within {IMPORT_TIMEOUT_SECONDS:.0f} s"
        ) from None
    try:
        return json.loads(payload)
    except json.JSONDecodeError:
        raise DashboardError(f"{base} answered 200 but not with JSON: is it Kibana?") from None


def _http_message(base: str, exc: urllib.error.HTTPError, space: str | None) -> str:
    if exc.code == 401:
        return (
            f"{base} refused the credentials (401): check --user/--password, --api-key or "
            "--bearer-token (or their environment variables)"
        )
    if exc.code == 403:
        return f"{base} denied the import (403): the user needs rights to manage saved objects"
    if exc.code == 404 and space:
        return f"{base} answered 404: is there a space {space!r}?"
    try:
        body = json.loads(exc.read())
        message = body.get("message") if isinstance(body, dict) else None
    except (json.JSONDecodeError, OSError):
        message = None
    return f"{base} answered {exc.code}: {message or exc.reason}"


def _scrub(text: str, connection: Connection) -> str:
    return scrub_secrets(text, connection.secrets())


def _result(product: str, total: int, answer: Any) -> ImportResult:
    if not isinstance(answer, dict) or "success" not in answer:
        raise DashboardError(f"{product} answered without a 'success' field: is it {product}?")
    failures = [_failure(error) for error in answer.get("errors") or [] if isinstance(error, dict)]
    return ImportResult(product, total, int(answer.get("successCount") or 0), failures)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _failure(error: dict[str, Any]) -> ImportFailure:
    meta = _dict(error.get("meta"))
    title = str(error.get("title") or meta.get("title") or "")
    return ImportFailure(str(error.get("type")), str(error.get("id")), title, _reason(error))


def _reason(error: dict[str, Any]) -> str:
    detail = _dict(error.get("error"))
    kind = str(detail.get("type", "unknown"))
    if kind == "missing_references":
        missing = [
            f"{r.get('type')}:{r.get('id')}"
            for r in detail.get("references") or []
            if isinstance(r, dict)
        ]
        return "missing references " + ", ".join(missing)
    if kind == "conflict":
        return "conflict with an existing object"
    if kind == "ambiguous_conflict":
        return "ambiguous conflict with existing objects"
    if kind == "unsupported_type":
        return "unsupported type"
    message = detail.get("message")
    status = detail.get("statusCode")
    reason = kind.replace("_", " ")
    if status:
        reason += f" ({status})"
    return f"{reason}: {message}" if message else reason
