"""Send a case folder's timeline to a Timesketch server.

The events are the case folder's ``timeline.jsonl``: one per time a message carries
(sent, delivered, submitted) and one per finding, each with ``message``, ``datetime``
(an ISO 8601 string with offset: the import client turns datetime objects into empty
strings, and the server reads naive times in its own zone), ``timestamp`` (integer
microseconds), ``timestamp_desc``, flat field names and ``inbec_doc_id``, the id of the
ECS document it comes from.

Uploading the same case into the same sketch under the same timeline name does not make
a second timeline: when the sketch already holds a timeline of that name with exactly the
case's events, nothing is sent and the export says so; with a different count it stops
and asks for another timeline name. The Timesketch clients are an optional extra
(``pip install 'inbec-export[timesketch]'``).
"""

from __future__ import annotations

import configparser
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inbec_export.errors import UsageError, check_server_url
from inbec_export.sinks.case_folder import TIMELINE_JSONL
from inbec_export.sinks.search import (
    ExportError,
    check_case_folder,
    error_texts,
    scrub_secrets,
    speaks_plain_http,
    tls_message,
)

logger = logging.getLogger(__name__)

#: Seconds to wait for Timesketch to index an uploaded timeline (its worker does it).
READY_TIMEOUT_SECONDS = 600.0

#: Seconds between two polls of the timeline's status.
POLL_SECONDS = 2.0

#: Longest timeline name Timesketch shows well.
MAX_TIMELINE_NAME = 120

#: The Timesketch clients' own configuration file, in the user's home folder.
CLIENT_CONFIG_NAME = ".timesketchrc"

#: The page a Timesketch server logs local users in on, and seconds to wait for it when
#: a login fails and the server is asked whether it is Timesketch at all.
LOGIN_PATH = "/login/?local_auth=1"
PROBE_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class ClientConfig:
    """What the Timesketch clients' configuration file says about the server."""

    url: str | None = None
    username: str | None = None
    verify_tls: bool | None = None


def read_client_config(path: Path, section: str = "timesketch") -> ClientConfig:
    """The server URL, user and TLS setting of a ``.timesketchrc`` file.

    The file is the one ``timesketch_importer`` and the API client write (INI format,
    keys ``host_uri``, ``username``, ``auth_mode``, ``verify``). Only ``userpass``
    authentication is supported; the password still comes from ``--password`` or the
    environment, never from the clients' encrypted token file.

    Raises:
        UsageError: the file is missing, unreadable, lacks the section, or asks for OAuth.
    """
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        reason = " ".join(str(exc).split())
        raise UsageError(f"Timesketch client config {path}: cannot read it ({reason})") from None
    if not parser.has_section(section):
        raise UsageError(f"Timesketch client config {path}: no [{section}] section")
    values = parser[section]
    mode = values.get("auth_mode", "userpass").strip().lower()
    if mode != "userpass":
        raise UsageError(
            f"Timesketch client config {path}: auth_mode {mode!r} is not supported; "
            "use a local user (userpass)"
        )
    verify: bool | None = None
    if "verify" in values:
        try:
            verify = values.getboolean("verify")
        except ValueError:
            raise UsageError(
                f"Timesketch client config {path}: verify must be true or false"
            ) from None
    return ClientConfig(
        url=values.get("host_uri", "").strip() or None,
        username=values.get("username", "").strip() or None,
        verify_tls=verify,
    )


@dataclass(frozen=True)
class TimesketchTarget:
    """Server, login and where the events go. The password never appears in its repr."""

    url: str
    username: str
    password: str = field(default="", repr=False)
    sketch_id: int | None = None
    sketch_name: str | None = None
    timeline_name: str | None = None
    verify_tls: bool = True

    def __post_init__(self) -> None:
        check_server_url(self.url)
        if not self.password:
            raise UsageError(
                "give the password of --user with --password or $INBEC_TIMESKETCH_PASSWORD"
            )
        if self.sketch_id is not None and self.sketch_name is not None:
            raise UsageError("give --sketch or --sketch-name, not both")
        if self.sketch_id is None and self.sketch_name is None:
            raise UsageError("give --sketch ID or --sketch-name NAME (created if missing)")


@dataclass
class TimesketchResult:
    """What an upload did."""

    sketch_id: int
    sketch_name: str
    timeline_name: str
    events: int
    held: int
    uploaded: bool

    def line(self) -> str:
        """The final line of the export."""
        action = "sent" if self.uploaded else "already there, nothing sent:"
        return (
            f"timeline {self.timeline_name!r} in sketch {self.sketch_id} "
            f"({self.sketch_name}): {action} {self.events} events, the server holds "
            f"{self.held}"
        )


def default_timeline_name(summary: dict[str, Any]) -> str:
    """``<case>: <evidence file>`` (``+N more`` for several): says what the events are."""
    case_id = str(summary.get("case", {}).get("id") or "case")
    names = sorted(Path(str(e.get("path", ""))).name for e in summary.get("evidence", []))
    if not names:
        return case_id
    text = f"{case_id}: {names[0]}" + (f" +{len(names) - 1} more" if len(names) > 1 else "")
    return text[:MAX_TIMELINE_NAME]


def timeline_events(case_dir: Path) -> Iterator[dict[str, Any]]:
    """The events of ``timeline.jsonl``, streamed."""
    with (case_dir / TIMELINE_JSONL).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                event: dict[str, Any] = json.loads(line)
                yield event


def count_events(case_dir: Path) -> int:
    """Events in the case folder's timeline."""
    with (case_dir / TIMELINE_JSONL).open(encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def _clients() -> tuple[Any, Any]:
    try:
        from timesketch_api_client import client
        from timesketch_import_client import importer
    except ImportError as exc:
        raise UsageError(
            "the Timesketch clients are not installed: pip install 'inbec-export[timesketch]' "
            "(in a checkout: pip install -e '.[timesketch]')"
        ) from exc
    return client, importer


def _login(target: TimesketchTarget) -> Any:
    client, _ = _clients()
    try:
        return client.TimesketchApi(
            target.url, target.username, target.password, verify=target.verify_tls
        )
    except Exception as exc:
        raise ExportError(_explain_login(target, exc)) from None


def _explain_login(target: TimesketchTarget, exc: Exception) -> str:
    text = " ".join(error_texts(exc))
    if "invalid username or password" in text or "authentication" in text:
        reason = _not_timesketch(target)
        if reason is not None:
            return f"{target.url} does not look like a Timesketch server ({reason}): check --url"
        return (
            f"Timesketch at {target.url} refused the login of {target.username!r}: check "
            "--user and the password (--password or $INBEC_TIMESKETCH_PASSWORD)"
        )
    if speaks_plain_http(exc):
        return tls_message(target.url, target.verify_tls, exc)
    if "certificate" in text or "ssl" in text:
        return tls_message(
            target.url, target.verify_tls, exc, ca_hint="install its CA in the system store"
        )
    if isinstance(exc, ConnectionError) or "unreachable" in text or "connect" in text:
        return (
            f"cannot connect to Timesketch at {target.url}: is the server running, and "
            "are the host and port right?"
        )
    message = f"Timesketch login at {target.url} failed: {type(exc).__name__}: {exc}"
    return scrub_secrets(message, [target.password])


def _not_timesketch(target: TimesketchTarget) -> str | None:
    """Why the server at ``target.url`` is not Timesketch, or None when its login page is
    Timesketch's (a form with a CSRF token, naming Timesketch) or cannot be fetched.

    A login that fails the way a wrong password does is also what any other web server
    gives (it has no login form to post to), so the page is looked at before the
    password is blamed.
    """
    import requests

    url = target.url.rstrip("/") + LOGIN_PATH
    try:
        response = requests.get(
            url, timeout=PROBE_TIMEOUT_SECONDS, verify=target.verify_tls, allow_redirects=True
        )
    except requests.RequestException as exc:
        logger.debug("Timesketch login page unreadable: %s", scrub_secrets(str(exc), []))
        return None
    page = response.text.lower()
    has_form = "csrf_token" in page or 'name="csrf-token"' in page
    if response.status_code == 200 and has_form and "timesketch" in page:
        return None
    kind = response.headers.get("Content-Type", "no content type").split(";")[0].strip()
    product = response.headers.get("X-Elastic-Product")
    said = f"{product}, " if product else ""
    return f"{said}its login page answered {response.status_code} {kind}, not Timesketch's form"


def _sketch(api: Any, target: TimesketchTarget) -> Any:
    try:
        if target.sketch_id is not None:
            sketch = api.get_sketch(target.sketch_id)
            _ = sketch.name  # loads it: a missing sketch or no read access fails here
            return sketch
        matches = [s for s in api.list_sketches() if s.name == target.sketch_name]
        if matches:
            return matches[0]
        return api.create_sketch(target.sketch_name, description="created by inbec-export")
    except ExportError:
        raise
    except Exception as exc:
        which = target.sketch_id if target.sketch_id is not None else repr(target.sketch_name)
        reason = scrub_secrets(str(exc), [target.password])
        raise ExportError(
            f"sketch {which} cannot be opened or created at {target.url} ({reason}): check "
            "the sketch id and that the user may read it"
        ) from None


def _check_write(sketch: Any, target: TimesketchTarget) -> None:
    try:
        acl = sketch.my_acl
    except Exception as exc:
        logger.debug("sketch ACL unreadable: %s", exc)
        return
    if acl and "write" not in acl:
        raise ExportError(
            f"user {target.username!r} may not write to sketch {sketch.id} ({sketch.name}): "
            "ask its owner for write permission, or use another sketch"
        )


def held_events(sketch: Any, timeline: Any) -> int:
    """Events the server holds for ``timeline`` (a search restricted to it)."""
    result = sketch.explore(
        query_string="*",
        query_filter={"indices": [timeline.id], "size": 1},
        return_fields="inbec_doc_id",
    )
    return int(result.get("meta", {}).get("es_total_count", 0))


def _wait_ready(timeline: Any, timeout: float, progress: Callable[[str], None] | None) -> None:
    # The timeline's status first: asking for the search index's status before the
    # worker has created the index makes Timesketch mark it failed for good.
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = str(timeline.status)
        if progress is not None:
            progress(f"indexing: timeline {status}")
        if status in {"ready", "fail"}:
            break
        time.sleep(POLL_SECONDS)
    else:
        raise ExportError(
            f"Timesketch did not finish indexing within {timeout:.0f} s (timeline {status}): "
            "is its worker running?"
        )
    index_status = str(timeline.index.status)
    if (status, index_status) != ("ready", "ready"):
        raise ExportError(
            f"Timesketch could not index the timeline (timeline {status}, index "
            f"{index_status}): see the server's worker log"
        )


def export_timesketch(
    target: TimesketchTarget,
    case_dir: Path,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
    progress: Callable[[str], None] | None = None,
) -> TimesketchResult:
    """Upload the case's timeline, wait until Timesketch has indexed it, count it back.

    Raises:
        ExportError: login, sketch, permission or indexing problems, and a count back
            that differs from what was sent; the message says what to do.
    """
    summary = check_case_folder(case_dir)
    events = count_events(case_dir)
    name = target.timeline_name or default_timeline_name(summary)
    api = _login(target)
    sketch = _sketch(api, target)
    _check_write(sketch, target)
    existing = [t for t in sketch.list_timelines() if t.name == name]
    if existing:
        held = held_events(sketch, existing[0])
        if held != events:
            raise ExportError(
                f"sketch {sketch.id} already has a timeline {name!r} with {held} events, the "
                f"case has {events}: give --timeline-name for a new timeline"
            )
        return TimesketchResult(sketch.id, sketch.name, name, events, held, uploaded=False)
    timeline = _upload(sketch, name, case_dir, events, progress, target.password)
    _wait_ready(timeline, ready_timeout, progress)
    held = held_events(sketch, timeline)
    result = TimesketchResult(sketch.id, sketch.name, name, events, held, uploaded=True)
    if held != events:
        raise ExportError(f"{result.line()}: the counts differ; see the server's worker log")
    return result


def _upload(
    sketch: Any,
    name: str,
    case_dir: Path,
    events: int,
    progress: Callable[[str], None] | None,
    password: str = "",
) -> Any:
    _, importer = _clients()
    sent = 0
    try:
        with importer.ImportStreamer() as streamer:
            streamer.set_sketch(sketch)
            streamer.set_timeline_name(name)
            streamer.set_provider("inbec-export")
            for event in timeline_events(case_dir):
                streamer.add_dict(event)
                sent += 1
                if progress is not None and sent % 500 == 0:
                    progress(f"uploading: {sent}/{events} events")
        timeline = streamer.timeline
    except ExportError:
        raise
    except Exception as exc:
        reason = scrub_secrets(str(exc), [password])
        raise ExportError(f"upload to Timesketch failed after {sent} events: {reason}") from None
    if timeline is None:
        raise ExportError("Timesketch created no timeline for the upload")
    return timeline
