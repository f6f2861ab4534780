"""WHOIS lookups of lookalike domains: registration dates, registrar and name servers.

The WHOIS protocol (RFC 3912) is one query line ending CRLF on TCP port 43, answered with
free text, after which the server closes the connection. Without a configured server,
python-whois's ``NICClient`` picks the registry's server and follows its referral; with
``--whois-server HOST:PORT`` the exchange is done here, with that server only.

Responses are parsed by python-whois (``WhoisEntry.load`` chooses the registry's layout).
Dates are not taken from its parsed values, which guess: "before Aug-1996" becomes
1 August 1996 and an unknown layout fails the whole record. Instead the raw date strings
its patterns (and a few common registrar-block patterns) capture are kept, each parsed
with the explicit formats of :data:`DATE_FORMATS`, and the earliest date is used. A
value that is no exact date is kept raw and said to be so.

Limitations: numeric dates with slashes are read day first (``05/04/2020`` is 5 April);
some registries list contact records' dates under the same key as the domain's (registro
.br), so the earliest date can be a contact's; time zone abbreviations other than those
of :data:`TZ_OFFSETS` leave the value unparsed.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from whois.exceptions import WhoisDomainNotFoundError, WhoisError
from whois.parser import WhoisEntry
from whois.whois import NICClient

from inbec_export.enrichment.cache import ResponseCache
from inbec_export.errors import UsageError

logger = logging.getLogger(__name__)

#: The WHOIS port (RFC 3912).
WHOIS_PORT = 43

#: Seconds to wait for a WHOIS server to connect and to answer.
WHOIS_TIMEOUT_SECONDS = 10.0

#: Attempts per domain when the connection fails or times out.
WHOIS_ATTEMPTS = 3

#: Seconds to wait before the second attempt (doubled before each further one).
WHOIS_RETRY_DELAY_SECONDS = 2.0

#: Domains looked up at the same time (registries throttle eager clients).
WHOIS_CONCURRENCY = 4

#: Largest answer read, in bytes (real answers are a few KiB).
MAX_RESPONSE_BYTES = 1024 * 1024

#: Offsets of the time zone abbreviations WHOIS servers write after a time.
TZ_OFFSETS: dict[str, timedelta] = {
    "UTC": timedelta(0),
    "GMT": timedelta(0),
    "Z": timedelta(0),
    "CET": timedelta(hours=1),
    "CEST": timedelta(hours=2),
    "EET": timedelta(hours=2),
    "EEST": timedelta(hours=3),
    "JST": timedelta(hours=9),
    "KST": timedelta(hours=9),
    "CLT": timedelta(hours=-4),
    "CLST": timedelta(hours=-3),
    "EST": timedelta(hours=-5),
    "EDT": timedelta(hours=-4),
    "PST": timedelta(hours=-8),
    "PDT": timedelta(hours=-7),
}

#: Exact date layouts seen in WHOIS answers (``%y`` reads 00-68 as 20xx, 69-99 as 19xx).
DATE_FORMATS = (
    "%d-%b-%Y",  # 15-sep-1997 (Verisign registry)
    "%d-%b-%y",  # 29-APR-05 (older registrar blocks)
    "%d-%b-%Y %H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S %z",
    "%d.%m.%Y",  # 18.04.2002, 18.7.2012 (NIC.CR, Traficom: day first)
    "%d.%m.%Y %H:%M:%S",
    "%Y.%m.%d",  # 1999.10.27 (NASK)
    "%Y.%m.%d %H:%M:%S",
    "%Y/%m/%d",  # 2019/09/27 (JPRS)
    "%Y/%m/%d %H:%M:%S",
    "%d/%m/%Y",  # 30/10/2002 (DNS.PT)
    "%d/%m/%Y %H:%M:%S",
    "%a %b %d %H:%M:%S %Y",  # Tue Feb 10 09:42:42 2004 (ctime)
    "%d %b %Y",
    "%d %B %Y",
    "%B %d %Y",
)

#: Patterns of registrar blocks that python-whois's per-registry patterns leave out.
EXTRA_DATE_PATTERNS: dict[str, tuple[str, ...]] = {
    "creation_date": (
        r"^\s*Created on\.*:\s*(.+)$",
        r"^\s*Record created on\s*:?\s*(.+)$",
        r"^\s*Domain Registration Date\.*:\s*(.+)$",
    ),
    "updated_date": (
        r"^\s*Last Updated on\.*:\s*(.+)$",
        r"^\s*Record last updated on\.*:\s*(.+)$",
    ),
    "expiration_date": (
        r"^\s*Expires on\.*:\s*(.+)$",
        r"^\s*Record expires on\s*:?\s*(.+)$",
        r"^\s*Registrar Registration Expiration Date:\s*(.+)$",
    ),
}

#: Values that stand for withheld data (GDPR redaction, privacy services).
_REDACTED = re.compile(
    r"redacted|privacy|not disclosed|withheld|data protected|gdpr|please query the rdds",
    re.IGNORECASE,
)

#: The fields whose absence or redaction a record states.
STATED_FIELDS = (
    "registrar",
    "creation_date",
    "updated_date",
    "expiration_date",
    "name_servers",
    "registrant_name",
    "registrant_organization",
    "registrant_country",
)

#: python-whois's pattern names of the registrant fields.
_REGISTRANT_KEYS = {
    "registrant_name": "name",
    "registrant_organization": "org",
    "registrant_country": "country",
}

_TZ_SUFFIX = re.compile(r"^(.*?)\s*\(?([A-Z]{1,5})\)?$")
_FORMAT_HINT = re.compile(r"\s*\([A-Za-z]{2,4}[-./][A-Za-z]{2}[-./][A-Za-z]{2,4}\)$")
_HANDLE_SUFFIX = re.compile(r"\s+#\S*$")


class WhoisLookupError(Exception):
    """A WHOIS server could not be reached or gave no answer."""


def parse_server(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``; the port defaults to 43) of ``--whois-server``."""
    text = value.strip()
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", text)
    if not match:
        raise UsageError(f"--whois-server {value!r} is not HOST:PORT")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4) or WHOIS_PORT)
    if not 0 < port < 65536:
        raise UsageError(f"--whois-server {value!r}: the port must be 1 to 65535")
    return host, port


def parse_whois_date(raw: str) -> datetime | None:
    """The exact date and time ``raw`` states (UTC when it names no zone), else None.

    Formats are tried in the order of :data:`DATE_FORMATS` after ISO 8601; hints such as
    ``(YYYY-MM-DD)``, a trailing ``.`` and registro.br's ``#id`` are dropped first. A value
    such as "before Aug-1996" is no exact date and gives None.
    """
    text = " ".join(raw.split()).lstrip(":. ").strip()
    text = _HANDLE_SUFFIX.sub("", _FORMAT_HINT.sub("", text)).rstrip(".")
    if not text or text.lower().startswith(("before", "after")):
        return None
    offset: timedelta | None = None
    zone = _TZ_SUFFIX.match(text)
    if zone and zone.group(2) in TZ_OFFSETS and zone.group(1):
        text, offset = zone.group(1), TZ_OFFSETS[zone.group(2)]
    parsed = _parse_layout(text)
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone(offset) if offset is not None else UTC)
    return parsed


def _parse_layout(text: str) -> datetime | None:
    if re.fullmatch(
        r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?", text
    ):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None
    for layout in DATE_FORMATS:
        try:
            return datetime.strptime(text, layout)
        except ValueError:
            continue
    if re.fullmatch(r"\d{8}", text):
        try:
            return datetime.strptime(text, "%Y%m%d")
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class WhoisDate:
    """One kind of date of a record: the earliest exact date and every raw value."""

    value: datetime | None
    raw: tuple[str, ...] = ()
    unparsed: tuple[str, ...] = ()

    @classmethod
    def of(cls, raw: Iterable[str]) -> WhoisDate:
        """The earliest exact date among ``raw``; values that are no date are listed."""
        values = tuple(raw)
        parsed = {value: parse_whois_date(value) for value in values}
        dates = [d for d in parsed.values() if d is not None]
        unparsed = tuple(v for v, d in parsed.items() if d is None)
        return cls(min(dates) if dates else None, values, unparsed)

    def state(self) -> str:
        """``date``, ``not a date`` (only raw values that are none), ``redacted`` or
        ``missing``."""
        if self.value is not None:
            return "date"
        if any(_REDACTED.search(v) for v in self.raw):
            return "redacted"
        return "not a date" if self.raw else "missing"


@dataclass(frozen=True)
class WhoisRecord:
    """What a WHOIS answer says about a domain."""

    domain: str
    server: str
    creation: WhoisDate
    updated: WhoisDate
    expiration: WhoisDate
    registrar: str | None = None
    name_servers: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    registrant: dict[str, str | None] = field(default_factory=dict)
    redacted: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    #: The server says it holds no record of the domain (free, or deleted).
    not_found: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON values for documents and the summary (dates in ISO 8601 with offset)."""

        def date(value: WhoisDate) -> str | None:
            return value.value.isoformat() if value.value else None

        return {
            "domain": self.domain,
            "server": self.server,
            "not_found": self.not_found,
            "registrar": self.registrar,
            "name_servers": list(self.name_servers),
            "status": list(self.status),
            "creation_date": date(self.creation),
            "updated_date": date(self.updated),
            "expiration_date": date(self.expiration),
            "creation_date_raw": list(self.creation.raw),
            "updated_date_raw": list(self.updated.raw),
            "expiration_date_raw": list(self.expiration.raw),
            "unparsed_dates": [
                *self.creation.unparsed,
                *self.updated.unparsed,
                *self.expiration.unparsed,
            ],
            "registrant": {k: v for k, v in self.registrant.items() if v},
            "redacted": list(self.redacted),
            "missing": list(self.missing),
        }


def _entry_patterns(domain: str, text: str) -> tuple[WhoisEntry | None, dict[str, str | None]]:
    """python-whois's parsed entry (None when it fails) and its registry's patterns."""
    try:
        entry = WhoisEntry.load(domain, text)
        return entry, dict(entry._regex)
    except WhoisDomainNotFoundError:
        raise
    except (WhoisError, ValueError, OverflowError) as exc:
        # Its date casting fails on some layouts: the patterns alone are still good.
        logger.debug("python-whois could not parse %s (%s); reading the raw values", domain, exc)
    try:
        return None, dict(WhoisEntry.load(domain, "")._regex)
    except (WhoisError, ValueError):
        return None, dict(WhoisEntry._regex)


def _captured(text: str, patterns: Iterable[str | None]) -> list[str]:
    values: dict[str, None] = {}
    for pattern in patterns:
        if not pattern:
            continue
        for found in re.findall(pattern, text, re.IGNORECASE | re.MULTILINE):
            for value in found if isinstance(found, tuple) else (found,):
                if value.strip():
                    values.setdefault(value.strip(), None)
    return list(values)


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    return [str(item).strip() for item in items if str(item).strip()]


def _name_servers(values: list[str]) -> tuple[str, ...]:
    names: dict[str, None] = {}
    for value in values:
        for word in value.split():
            if "." in word:
                names.setdefault(word.lower().rstrip("."), None)
    return tuple(names)


def parse_response(domain: str, text: str, server: str) -> WhoisRecord:
    """Parse the WHOIS answer ``text`` about ``domain`` (see the module's notes on dates)."""
    try:
        entry, patterns = _entry_patterns(domain, text)
    except WhoisDomainNotFoundError:
        empty = WhoisDate(None)
        return WhoisRecord(domain, server, empty, empty, empty, not_found=True)
    base: dict[str, str | None] = dict(WhoisEntry._regex)

    def raw(key: str, extra: tuple[str, ...] = ()) -> list[str]:
        return _captured(text, [patterns.get(key), *extra]) or _captured(text, [base.get(key)])

    dates = {key: WhoisDate.of(raw(key, EXTRA_DATE_PATTERNS[key])) for key in EXTRA_DATE_PATTERNS}
    if entry is not None:
        registrars = _as_list(entry.get("registrar")) or raw("registrar")
        servers = _as_list(entry.get("name_servers")) or raw("name_servers")
        status = _as_list(entry.get("status"))
    else:
        registrars, servers, status = raw("registrar"), raw("name_servers"), raw("status")
    registrar = registrars[-1] if registrars else None
    name_servers = _name_servers(servers)
    registrant = {name: next(iter(raw(key)), None) for name, key in _REGISTRANT_KEYS.items()}
    values: dict[str, object] = {
        "registrar": registrar,
        "name_servers": name_servers,
        **registrant,
    }
    redacted, missing = _stated(values, dates)
    return WhoisRecord(
        domain=domain,
        server=server,
        creation=dates["creation_date"],
        updated=dates["updated_date"],
        expiration=dates["expiration_date"],
        registrar=None if "registrar" in redacted else registrar,
        name_servers=name_servers,
        status=tuple(dict.fromkeys(s.split()[0] for s in status if s.split())),
        registrant={k: (None if k in redacted else v) for k, v in registrant.items()},
        redacted=redacted,
        missing=missing,
    )


def _stated(
    values: dict[str, object], dates: dict[str, WhoisDate]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The fields of :data:`STATED_FIELDS` that are redacted, and those that are missing."""
    redacted: list[str] = []
    missing: list[str] = []
    for name in STATED_FIELDS:
        if name in dates:
            state = dates[name].state()
            if state == "redacted":
                redacted.append(name)
            elif state == "missing":
                missing.append(name)
            continue
        value = values.get(name)
        if not value:
            missing.append(name)
        elif isinstance(value, str) and _REDACTED.search(value):
            redacted.append(name)
    return tuple(redacted), tuple(missing)


@dataclass(frozen=True)
class WhoisConfig:
    """How to look domains up (``server`` None: python-whois picks the registry's)."""

    server: tuple[str, int] | None = None
    timeout: float = WHOIS_TIMEOUT_SECONDS
    attempts: int = WHOIS_ATTEMPTS
    retry_delay: float = WHOIS_RETRY_DELAY_SECONDS
    concurrency: int = WHOIS_CONCURRENCY
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


@dataclass(frozen=True)
class WhoisResult:
    """The outcome of one domain's lookup: a record, or why there is none."""

    domain: str
    record: WhoisRecord | None = None
    error: str | None = None
    retrieved: str | None = None


def query_server(query: str, host: str, port: int, timeout: float) -> str:
    """One WHOIS exchange (RFC 3912): send ``query`` CRLF, read until the server closes."""
    chunks: list[bytes] = []
    size = 0
    with socket.create_connection((host, port), timeout=timeout) as connection:
        connection.sendall(query.encode("idna") + b"\r\n")
        while size < MAX_RESPONSE_BYTES:
            chunk = connection.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def _describe(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return exc.strerror or str(exc) or type(exc).__name__


class WhoisClient:
    """Looks domains up, at most ``concurrency`` at a time, through the case's cache."""

    def __init__(self, config: WhoisConfig, cache: ResponseCache) -> None:
        self.config = config
        self.cache = cache

    def _server_name(self, domain: str) -> str:
        if self.config.server is not None:
            host, port = self.config.server
            return f"{host}:{port}"
        return str(NICClient().choose_server(domain) or "")

    def _exchange(self, domain: str) -> str:
        if self.config.server is not None:
            host, port = self.config.server
            return query_server(domain, host, port, self.config.timeout)
        # python-whois raises socket errors only when asked to (it returns them as text).
        text = NICClient().whois_lookup(
            None,
            domain,
            0,
            quiet=True,
            ignore_socket_errors=False,
            timeout=max(1, round(self.config.timeout)),
        )
        return str(text or "")

    def _fetch(self, domain: str, server: str) -> str:
        delay = self.config.retry_delay
        for attempt in range(1, self.config.attempts + 1):
            try:
                text = self._exchange(domain)
            except OSError as exc:
                reason = _describe(exc)
                logger.debug("WHOIS %s at %s, attempt %d: %s", domain, server, attempt, reason)
                if attempt == self.config.attempts:
                    raise WhoisLookupError(
                        f"WHOIS server {server} failed for {domain} after {attempt} "
                        f"attempt{'s' if attempt > 1 else ''}: {reason}"
                    ) from exc
                self.config.sleep(delay)
                delay *= 2
                continue
            if not text.strip():
                raise WhoisLookupError(f"WHOIS server {server} gave an empty answer for {domain}")
            return text
        raise AssertionError("unreachable")

    def lookup(self, domain: str) -> WhoisResult:
        """The record of ``domain``, from the cache or its WHOIS server."""
        cached = self.cache.get(domain)
        if cached is not None:
            record = parse_response(domain, str(cached["text"]), str(cached["server"]))
            return WhoisResult(domain, record, retrieved=str(cached["retrieved"]))
        server = self._server_name(domain)
        if not server:
            return WhoisResult(domain, error=f"no WHOIS server is known for {domain}")
        try:
            text = self._fetch(domain, server)
        except WhoisLookupError as exc:
            return WhoisResult(domain, error=str(exc))
        retrieved = self.config.now().isoformat(timespec="seconds")
        self.cache.put(domain, {"server": server, "text": text, "retrieved": retrieved})
        return WhoisResult(domain, parse_response(domain, text, server), retrieved=retrieved)

    def lookup_all(self, domains: Iterable[str]) -> dict[str, WhoisResult]:
        """Look every domain up (in parallel, capped); results in the order given."""
        names = list(dict.fromkeys(domains))
        if not names:
            return {}
        workers = max(1, min(self.config.concurrency, len(names)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="whois") as pool:
            results = list(pool.map(self.lookup, names))
        return {result.domain: result for result in results}
