"""Bulk export speed: ``export_case`` against a plain ``_bulk`` of the same NDJSON.

Starts a real OpenSearch 2.19 and Elasticsearch 8 node on 127.0.0.1 (the test suite's
``tests/servers`` classes, which fetch them from Maven Central and pick free ports),
analyzes a generated mbox into a case folder, and indexes that case folder into each
node twice per round: with a plain ``_bulk`` client (the case folder's own NDJSON, cut
beforehand into requests of the same size as ours and sent as they are over one
keep-alive connection; the practical limit) and with our exporter (templates, streamed
reading, per-document outcome, retries). The indices are deleted before every run. The
best time of ``--rounds`` is kept for each.

Run: ``python benchmarks/bench_bulk.py [--messages 20000] [--rounds 3] [--servers
opensearch,elasticsearch]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from inbec_export.case import CaseContext
from inbec_export.ecs.mappings import KINDS
from inbec_export.pipeline import analyze
from inbec_export.sample.generator import LEGIT_DOMAINS, write_large_mbox
from inbec_export.sinks.search import (
    CHUNK_DOCUMENTS,
    FLAVOURS,
    Connection,
    export_case,
    index_name,
    install_templates,
)

# The server classes of the test suite.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers.elasticsearch_node import ElasticsearchNode
from servers.opensearch_node import OpenSearchNode

CASE_ID = "bench"
PREFIX = "bench"

#: Target: our documents per second over the plain ``_bulk``'s.
TARGET_RATIO = 0.8


def prebuilt_requests(case_dir: Path) -> list[tuple[str, bytes]]:
    """The case folder's NDJSON cut into ``(path, body)`` bulk requests of
    CHUNK_DOCUMENTS documents, built before any timing."""
    requests: list[tuple[str, bytes]] = []
    for kind in KINDS:
        lines = (case_dir / f"{kind}.ndjson").read_bytes().splitlines(keepends=True)
        path = f"/{index_name(PREFIX, kind, CASE_ID)}/_bulk"
        step = 2 * CHUNK_DOCUMENTS
        for start in range(0, len(lines), step):
            requests.append((path, b"".join(lines[start : start + step])))
    return requests


def plain_bulk(url: str, requests: list[tuple[str, bytes]]) -> int:
    """Send the requests one after the other; return the documents the server created."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    created = 0
    for path, body in requests:
        connection.request(
            "POST", path, body=body, headers={"Content-Type": "application/x-ndjson"}
        )
        answer = json.loads(connection.getresponse().read())
        created += sum(1 for item in answer["items"] if item["create"]["status"] == 201)
    connection.close()
    return created


def reset(client: Any) -> None:
    """Delete the benchmark's indices and refresh nothing else."""
    for kind in KINDS:
        client.indices.delete(index=index_name(PREFIX, kind, CASE_ID), ignore_unavailable=True)


def timed(action: Callable[[], int]) -> tuple[float, int]:
    """Seconds ``action`` took and the count it returned."""
    start = time.perf_counter()
    count = action()
    return time.perf_counter() - start, count


def bench_server(flavour: str, url: str, case_dir: Path, documents: int, rounds: int) -> None:
    """Time both ways into one server and print the figures."""
    connection = Connection(url)
    client = FLAVOURS[flavour].client(connection)
    requests = prebuilt_requests(case_dir)
    plain_times: list[float] = []
    ours_times: list[float] = []

    def run_plain() -> None:
        reset(client)
        install_templates(client, PREFIX)
        seconds, created = timed(lambda: plain_bulk(url, requests))
        assert created == documents, f"plain _bulk created {created} of {documents}"
        plain_times.append(seconds)

    def run_ours() -> None:
        reset(client)
        seconds, created = timed(
            lambda: export_case(FLAVOURS[flavour], connection, case_dir, CASE_ID, PREFIX).created
        )
        assert created == documents, f"export created {created} of {documents}"
        ours_times.append(seconds)

    for number in range(rounds):
        # Each goes first in every other round, so that neither has the warmer server.
        for run in (run_plain, run_ours) if number % 2 == 0 else (run_ours, run_plain):
            run()
    reset(client)
    plain, ours = documents / min(plain_times), documents / min(ours_times)
    # Each round's own ratio, from two runs next to each other in time: the median of
    # these is steadier than the best times when other load comes and goes.
    paired = statistics.median(p / o for p, o in zip(plain_times, ours_times, strict=True))
    print(
        f"{flavour}: plain _bulk {plain:.0f} documents/s, export_case {ours:.0f} "
        f"documents/s, ratio {ours / plain:.2f} of the best times, {paired:.2f} median of "
        f"{rounds} rounds (target {TARGET_RATIO})"
    )


def main() -> None:
    """Start the nodes, build the case folder, time the exports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default="opensearch,elasticsearch")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="inbec-bench-") as folder:
        root = Path(folder)
        mbox = root / "generated.mbox"
        write_large_mbox(mbox, args.messages)
        case = CaseContext(case_id=CASE_ID, legit_domains=LEGIT_DOMAINS)
        summary = analyze([mbox], case, root / "case")
        documents = int(summary["totals"]["messages_written"]) + int(summary["totals"]["findings"])
        print(f"case folder: {documents} documents")
        makers = {"opensearch": OpenSearchNode, "elasticsearch": ElasticsearchNode}
        for flavour in args.servers.split(","):
            node = makers[flavour]()
            url = node.start()
            try:
                bench_server(flavour, url, root / "case", documents, args.rounds)
            finally:
                node.stop()


if __name__ == "__main__":
    main()
