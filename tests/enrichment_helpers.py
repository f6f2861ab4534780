"""Loopback servers and evidence for the enrichment tests: a WHOIS server speaking the
port-43 protocol and a VirusTotal API v3 lookalike, both on 127.0.0.1, ephemeral ports."""

from __future__ import annotations

import json
import socket
import socketserver
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: Seconds a test server waits for a client's query line.
READ_TIMEOUT_SECONDS = 5.0


@dataclass
class WhoisAnswers:
    """What the WHOIS server answers: query name -> response text; queries it saw."""

    responses: dict[str, str]
    queries: list[str] = field(default_factory=list)
    #: Queries answered by holding the connection open without a word (timeouts).
    silent: set[str] = field(default_factory=set)


class _WhoisHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        answers: WhoisAnswers = self.server.answers  # type: ignore[attr-defined]
        self.request.settimeout(READ_TIMEOUT_SECONDS)
        line = b""
        while not line.endswith(b"\r\n"):
            chunk = self.request.recv(1)
            if not chunk:
                return
            line += chunk
        query = line[:-2].decode("utf-8").strip().lower()
        answers.queries.append(query)
        if query in answers.silent:
            self.request.recv(1)  # until the client gives up and closes
            return
        text = answers.responses.get(query, f'No match for "{query.upper()}".\r\n')
        self.request.sendall(text.encode("utf-8"))


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def whois_server(answers: WhoisAnswers) -> Iterator[tuple[str, int]]:
    """A WHOIS server (RFC 3912: one query line ending CRLF, the answer, close)."""
    server = _TcpServer(("127.0.0.1", 0), _WhoisHandler)
    server.answers = answers  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[0], server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def recorded(corpus_dir: Path, name: str) -> str:
    """A recorded WHOIS response of the shared corpus, read as the server would send it."""
    return (corpus_dir / "whois" / f"{name}.txt").read_text("utf-8", errors="replace")


@dataclass
class ApiAnswers:
    """What the VirusTotal lookalike answers per path: a queue of (status, body), the
    last one repeated; the requests it saw (path and x-apikey header)."""

    routes: dict[str, list[tuple[int, dict[str, Any]]]]
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class _ApiHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        answers: ApiAnswers = self.server.answers  # type: ignore[attr-defined]
        answers.requests.append((self.path, self.headers.get("x-apikey")))
        queue = answers.routes.get(self.path)
        if not queue:
            status, body = 404, not_found_error(self.path.rsplit("/", 1)[-1])
        else:
            status, body = queue[0] if len(queue) == 1 else queue.pop(0)
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests assert on ``requests``."""


@contextmanager
def virustotal_server(answers: ApiAnswers) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 answering like VirusTotal API v3; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ApiHandler)
    server.daemon_threads = True
    server.answers = answers  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def ip_report(
    ip: str, malicious: int, reputation: int, as_owner: str, asn: int, country: str
) -> dict[str, Any]:
    """An IP address report shaped as API v3 returns it."""
    return {
        "data": {
            "id": ip,
            "type": "ip_address",
            "links": {"self": f"https://www.virustotal.com/api/v3/ip_addresses/{ip}"},
            "attributes": {
                "last_analysis_stats": {
                    "harmless": 60,
                    "malicious": malicious,
                    "suspicious": 1,
                    "undetected": 27,
                    "timeout": 0,
                },
                "reputation": reputation,
                "as_owner": as_owner,
                "asn": asn,
                "country": country,
                "network": f"{ip.rsplit('.', 1)[0]}.0/24",
                "last_analysis_date": 1712582400,
                "tags": [],
            },
        }
    }


def domain_report(domain: str, malicious: int, reputation: int) -> dict[str, Any]:
    """A domain report shaped as API v3 returns it."""
    return {
        "data": {
            "id": domain,
            "type": "domain",
            "links": {"self": f"https://www.virustotal.com/api/v3/domains/{domain}"},
            "attributes": {
                "last_analysis_stats": {
                    "harmless": 55,
                    "malicious": malicious,
                    "suspicious": 0,
                    "undetected": 30,
                    "timeout": 0,
                },
                "reputation": reputation,
                "registrar": "NameCheap, Inc.",
                "creation_date": 1712136000,
                "last_analysis_date": 1712755200,
                "categories": {"Forcepoint ThreatSeeker": "phishing", "BitDefender": "phishing"},
                "tags": [],
            },
        }
    }


def api_error(code: str, message: str) -> dict[str, Any]:
    """The API v3 error shape."""
    return {"error": {"code": code, "message": message}}


def not_found_error(value: str) -> dict[str, Any]:
    """API v3's answer for an object it does not know."""
    return api_error("NotFoundError", f'Resource "{value}" not found')


#: A small case: a legitimate invoice thread, then a reply from a lookalike domain (in
#: Reply-To only, so the lookalike-domain finding starts at "high"), sent from a global
#: client IP through a global relay.
EVIDENCE = {
    "01-invoice.eml": (
        "From: Marco Bellini <marco.bellini@globex-ind.com>\r\n"
        "To: Priya Shah <priya.shah@acme-corp.com>\r\n"
        "Subject: Invoice 4471\r\n"
        "Date: Mon, 01 Apr 2024 09:00:00 +0000\r\n"
        "Message-ID: <inv-4471@globex-ind.com>\r\n"
        "Received: from mail.globex-ind.com (mail.globex-ind.com [192.0.2.25])\r\n"
        " by mx.acme-corp.com with ESMTPS; Mon, 01 Apr 2024 09:00:02 +0000\r\n"
        "\r\n"
        "Please find invoice 4471 attached.\r\n"
    ),
    "02-bank-change.eml": (
        "From: Marco Bellini <marco.bellini@globex-ind.com>\r\n"
        "Reply-To: Marco Bellini <marco.bellini@gl0bex-ind.com>\r\n"
        "To: Priya Shah <priya.shah@acme-corp.com>\r\n"
        "Subject: RE: Invoice 4471\r\n"
        "Date: Mon, 08 Apr 2024 13:37:42 +0000\r\n"
        "Message-ID: <bank-4471@gl0bex-ind.com>\r\n"
        "In-Reply-To: <inv-4471@globex-ind.com>\r\n"
        "X-Originating-IP: [185.220.101.4]\r\n"
        "Received: from relay.example.net (relay.example.net [45.95.147.236])\r\n"
        " by mx.acme-corp.com with ESMTPS; Mon, 08 Apr 2024 13:37:45 +0000\r\n"
        "\r\n"
        "Our bank details have changed, please pay to the new account.\r\n"
    ),
}


def write_evidence(folder: Path) -> Path:
    """Write :data:`EVIDENCE` into ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in EVIDENCE.items():
        (folder / name).write_bytes(text.encode("utf-8"))
    return folder


def documents(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(id, document) pairs of a ``_bulk`` file of the case folder."""
    lines = path.read_text("utf-8").splitlines()
    return [
        (json.loads(action)["create"]["_id"], json.loads(document))
        for action, document in zip(lines[0::2], lines[1::2], strict=True)
    ]


#: Audit events of a program that reaches for the network.
SOCKET_EVENTS = frozenset({"socket.connect", "socket.getaddrinfo", "socket.bind"})


@contextmanager
def socket_events() -> Iterator[list[str]]:
    """The socket audit events raised inside the block (an audit hook cannot be removed,
    so it stops listening when the block ends)."""
    events: list[str] = []
    watching = [True]

    def hook(event: str, _args: object) -> None:
        if watching[0] and event in SOCKET_EVENTS:
            events.append(event)

    sys.addaudithook(hook)
    try:
        yield events
    finally:
        watching[0] = False
