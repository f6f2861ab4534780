"""The Timesketch test server takes a timeline through the official clients and serves it back."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from servers.fixtures import in_ci
from servers.timesketch_node import TimesketchServer

try:
    from timesketch_api_client import client as api_client
    from timesketch_import_client import importer
except ImportError as error:
    # The test command installs them (the dev extra): there, a missing client is a failure.
    if in_ci():
        raise
    pytest.skip(
        f"Timesketch clients unusable ({error}): pip install 'inbec-export[timesketch]'",
        allow_module_level=True,
    )

pytestmark = pytest.mark.server

#: Seconds the celery worker may take to index five events (it takes a few).
INDEX_TIMEOUT_S = 120.0

#: Seconds between two status polls.
POLL_INTERVAL_S = 1.0

#: Five mail events, in Paris time (+01:00 in winter) so the offset must survive.
EVENT_TIMES = [
    "2024-02-12T09:15:00+01:00",
    "2024-02-12T09:16:30+01:00",
    "2024-02-12T10:02:05+01:00",
    "2024-02-12T11:45:59+01:00",
    "2024-02-13T08:00:00+01:00",
]


def _events() -> list[dict[str, Any]]:
    events = []
    for number, when in enumerate(EVENT_TIMES, start=1):
        moment = datetime.fromisoformat(when)
        events.append(
            {
                "message": f"Message {number} received by finance@example.com",
                # An ISO 8601 string: the import client blanks datetime objects.
                "datetime": when,
                # Microseconds since the epoch, as an int (a string breaks the mapping).
                "timestamp": int(moment.timestamp() * 1_000_000),
                "timestamp_desc": "Message Received",
                "event_number": number,
            }
        )
    return events


def _poll(read: Any, done: set[str], what: str, deadline: float) -> str:
    """Reads a status until it is one of ``done``; fails the test at ``deadline``."""
    status = ""
    while time.monotonic() < deadline:
        status = read()
        if status in done:
            return str(status)
        time.sleep(POLL_INTERVAL_S)
    pytest.fail(f"{what} still {status!r} after {INDEX_TIMEOUT_S:.0f}s")


def _wait_until_ready(timeline: Any) -> None:
    """Polls until the timeline, then its search index, are ``ready``.

    The index is read only once the timeline is done: reading the search index resource
    before OpenSearch has the index marks it ``fail`` (Timesketch 20261014), even though
    the worker then indexes the events.
    """
    deadline = time.monotonic() + INDEX_TIMEOUT_S
    status = _poll(lambda: timeline.status, {"ready", "fail"}, "timeline", deadline)
    assert status == "ready", "Timesketch failed to index the timeline"
    # timeline.index is a fresh object on each read, so its status is fresh too.
    status = _poll(lambda: timeline.index.status, {"ready", "fail"}, "search index", deadline)
    assert status == "ready", "Timesketch marked the timeline's search index failed"


def test_timesketch_import_and_read_back(
    timesketch_server: TimesketchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The clients use requests, which would send even 127.0.0.1 through a configured proxy.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    api = api_client.TimesketchApi(
        timesketch_server.url, timesketch_server.username, timesketch_server.password
    )
    sketch = api.create_sketch(f"inbec smoke {datetime.now(UTC):%Y%m%dT%H%M%S%f}")

    with importer.ImportStreamer() as streamer:
        streamer.set_sketch(sketch)
        streamer.set_timeline_name("inbec smoke mail")
        for event in _events():
            streamer.add_dict(event)
    timeline = streamer.timeline
    assert timeline is not None, "the upload created no timeline"
    _wait_until_ready(timeline)

    result = sketch.explore(
        query_string="*", return_fields="message,datetime,timestamp,timestamp_desc,event_number"
    )
    sources = {hit["_source"]["event_number"]: hit["_source"] for hit in result["objects"]}
    assert result["meta"]["es_total_count"] == 5
    assert sorted(sources) == [1, 2, 3, 4, 5]

    third = sources[3]
    assert third["timestamp"] == 1_707_728_525_000_000
    assert third["timestamp_desc"] == "Message Received"
    assert third["message"] == "Message 3 received by finance@example.com"
    # Kept as sent, offset included; the timestamp carries the instant for sorting.
    assert third["datetime"] == "2024-02-12T10:02:05+01:00"
