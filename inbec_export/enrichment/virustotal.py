"""VirusTotal API v3 reputation lookups of lookalike domains and global IP addresses.

Only reports are read (``GET /api/v3/domains/{domain}``, ``GET /api/v3/ip_addresses/{ip}``
with the ``x-apikey`` header): nothing from the evidence is ever submitted for scanning,
since a submission shares it with every VirusTotal subscriber.

The public API allows 4 requests a minute and 500 a day; both limits are configurable
for premium keys. Requests are spaced so that no 60-second window holds more than the
minute's allowance, the day's requests are counted in the case folder's cache, a 429
answer is followed by a back-off and at most :data:`VT_429_RETRIES` retries, and a key
the server refuses (401) stops the lookups. Answers (reports and "not found") are cached
in the case folder; what could not be looked up is returned with the reason.

The API key is sent in the request header only: it is never logged, cached or written,
and any text from the server is scrubbed of it before it is shown.

Limitations: the day's count is per case folder, so lookups made with the same key
elsewhere are not counted (the server's 429 still stops the run's lookups).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from inbec_export.enrichment.cache import ResponseCache

if TYPE_CHECKING:
    import requests

logger = logging.getLogger(__name__)

#: The public API's address (``--virustotal-url`` replaces it).
VT_URL = "https://www.virustotal.com"

#: Requests a public key may make in any 60 seconds.
VT_REQUESTS_PER_MINUTE = 4

#: Requests a public key may make in a day (UTC).
VT_REQUESTS_PER_DAY = 500

#: Length of the rate window, in seconds.
VT_WINDOW_SECONDS = 60.0

#: Seconds to wait after a 429 answer before trying again (doubled each time).
VT_BACKOFF_SECONDS = 60.0

#: Retries of one lookup after 429 answers; then the quota is taken as used up.
VT_429_RETRIES = 3

#: Seconds to wait for the server to connect and to answer.
VT_TIMEOUT_SECONDS = 30.0

#: Cache key of the day's request count.
_USAGE_KEY = "requests-per-day"

ObjectKind = Literal["domain", "ip_address"]

_COLLECTIONS: dict[str, str] = {"domain": "domains", "ip_address": "ip_addresses"}


@dataclass(frozen=True)
class VirusTotalConfig:
    """Key, address and limits of the VirusTotal lookups (the key is never shown)."""

    api_key: str = field(repr=False)
    url: str = VT_URL
    per_minute: int = VT_REQUESTS_PER_MINUTE
    per_day: int = VT_REQUESTS_PER_DAY
    timeout: float = VT_TIMEOUT_SECONDS
    backoff: float = VT_BACKOFF_SECONDS
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


@dataclass(frozen=True)
class VirusTotalResult:
    """One object's report, its absence from VirusTotal, or why it was not looked up."""

    kind: ObjectKind
    value: str
    attributes: dict[str, Any] | None = None
    not_found: bool = False
    error: str | None = None
    retrieved: str | None = None

    def stats(self) -> dict[str, int]:
        """``last_analysis_stats``: engines per verdict (malicious, suspicious, ...)."""
        raw = (self.attributes or {}).get("last_analysis_stats") or {}
        return {k: v for k, v in sorted(raw.items()) if isinstance(v, int)}

    def summary(self) -> dict[str, Any]:
        """The report's fields the tool keeps (JSON values; dates in ISO 8601)."""
        attributes = self.attributes or {}
        categories = attributes.get("categories")
        return {
            "type": self.kind,
            "id": self.value,
            "not_found": self.not_found,
            "last_analysis_stats": self.stats(),
            "reputation": _int(attributes.get("reputation")),
            "as_owner": attributes.get("as_owner"),
            "asn": _int(attributes.get("asn")),
            "country": attributes.get("country"),
            "network": attributes.get("network"),
            "registrar": attributes.get("registrar"),
            "creation_date": _epoch(attributes.get("creation_date")),
            "last_analysis_date": _epoch(attributes.get("last_analysis_date")),
            "categories": sorted(
                {str(v) for v in categories.values()} if isinstance(categories, dict) else []
            ),
            "tags": sorted(str(t) for t in attributes.get("tags") or []),
        }


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _epoch(value: object) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return datetime.fromtimestamp(value, UTC).isoformat()


class RateLimiter:
    """At most ``per_minute`` requests in any window of :data:`VT_WINDOW_SECONDS`."""

    def __init__(
        self, per_minute: int, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.sleep = sleep
        self._sent: deque[float] = deque()

    def wait(self) -> None:
        """Sleep until one more request fits in the window, then count it."""
        now = self.clock()
        while self._sent and now - self._sent[0] >= VT_WINDOW_SECONDS:
            self._sent.popleft()
        if len(self._sent) >= self.per_minute:
            pause = self._sent[0] + VT_WINDOW_SECONDS - now
            logger.info("VirusTotal: waiting %.0f s for the rate limit", pause)
            self.sleep(pause)
            self._sent.popleft()
            now = self.clock()
        self._sent.append(now)


class _Stop(Exception):
    """The lookups cannot go on (refused key, quota used up): the reason for all."""


class _Failed(Exception):
    """One lookup failed (server error, connection): the others go on."""


class VirusTotalClient:
    """Looks objects up one at a time, within the limits, through the case's cache."""

    def __init__(self, config: VirusTotalConfig, cache: ResponseCache) -> None:
        self.config = config
        self.cache = cache
        # Imported when a lookup is asked for: a run without --virustotal never needs it.
        import requests

        self.limiter = RateLimiter(config.per_minute, config.clock, config.sleep)
        self.session = requests.Session()
        self.session.headers.update({"x-apikey": config.api_key, "accept": "application/json"})
        self._stopped: str | None = None

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    def scrub(self, text: str) -> str:
        """``text`` without the API key (server messages are shown to the user)."""
        return text.replace(self.config.api_key, "***") if self.config.api_key else text

    def _day(self) -> str:
        return self.config.now().date().isoformat()

    def _used_today(self) -> int:
        usage = self.cache.get(_USAGE_KEY) or {}
        return int(usage.get("requests", 0)) if usage.get("day") == self._day() else 0

    def _count_request(self) -> None:
        self.cache.put(_USAGE_KEY, {"day": self._day(), "requests": self._used_today() + 1})

    def lookup_all(self, objects: Iterable[tuple[ObjectKind, str]]) -> list[VirusTotalResult]:
        """Look every ``(kind, value)`` up, in the order given (most important first)."""
        return [self.lookup(kind, value) for kind, value in dict.fromkeys(objects)]

    def lookup(self, kind: ObjectKind, value: str) -> VirusTotalResult:
        """The report of one domain or IP address, from the cache or the API."""
        key = f"{kind}-{value}"
        cached = self.cache.get(key)
        if cached is not None:
            return self._result(kind, value, cached)
        if self._stopped is not None:
            return VirusTotalResult(kind, value, error=self._stopped)
        if self._used_today() >= self.config.per_day:
            self._stopped = f"daily quota of {self.config.per_day} requests used up"
            return VirusTotalResult(kind, value, error=self._stopped)
        try:
            answer = self._request(kind, value)
        except _Stop as stop:
            self._stopped = str(stop)
            logger.warning("VirusTotal lookups stopped: %s", stop)
            return VirusTotalResult(kind, value, error=self._stopped)
        except _Failed as failed:
            logger.warning("VirusTotal %s %s not looked up: %s", kind, value, failed)
            return VirusTotalResult(kind, value, error=str(failed))
        self.cache.put(key, answer)
        return self._result(kind, value, answer)

    @staticmethod
    def _result(kind: ObjectKind, value: str, answer: dict[str, Any]) -> VirusTotalResult:
        retrieved = str(answer.get("retrieved"))
        if answer.get("status") == 404:
            return VirusTotalResult(kind, value, not_found=True, retrieved=retrieved)
        data = answer.get("body", {}).get("data") or {}
        return VirusTotalResult(kind, value, data.get("attributes") or {}, retrieved=retrieved)

    def _request(self, kind: ObjectKind, value: str) -> dict[str, Any]:
        url = f"{self.config.url.rstrip('/')}/api/v3/{_COLLECTIONS[kind]}/{value}"
        import requests

        backoff = self.config.backoff
        for attempt in range(VT_429_RETRIES + 1):
            self.limiter.wait()
            try:
                response = self.session.get(url, timeout=self.config.timeout)
            except requests.RequestException as exc:
                raise _Failed(f"cannot reach {self.config.url}: {type(exc).__name__}") from None
            self._count_request()
            code, message = _error(response)
            if response.status_code == 429 and attempt < VT_429_RETRIES:
                logger.info("VirusTotal answered 429 (%s): waiting %.0f s", code, backoff)
                self.config.sleep(backoff)
                backoff *= 2
                continue
            return self._answer(response, code, message, attempt)
        raise AssertionError("unreachable")

    def _answer(
        self, response: requests.Response, code: str, message: str, attempt: int
    ) -> dict[str, Any]:
        retrieved = self.config.now().isoformat(timespec="seconds")
        status = response.status_code
        said = self.scrub(f"{status} {code}: {message}" if message else f"{status} {code}")
        if status == 200:
            try:
                body = response.json()
            except ValueError:
                raise _Failed(f"VirusTotal answered 200 with no JSON from {response.url}") from None
            return {"status": 200, "body": body, "retrieved": retrieved}
        if status == 404:
            return {"status": 404, "retrieved": retrieved}
        if status == 401:
            raise _Stop(f"VirusTotal refused the API key ({said}): check VT_API_KEY")
        if status == 429:
            raise _Stop(f"VirusTotal quota used up after {attempt} retries ({said})")
        if status == 403:
            raise _Stop(f"VirusTotal denied access ({said}): the key lacks the permission")
        raise _Failed(f"VirusTotal answered {said}")


def _error(response: requests.Response) -> tuple[str, str]:
    """The v3 error ``code`` and ``message`` of an answer (``{"error": {...}}``)."""
    if response.status_code < 400:
        return "", ""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return response.reason or "", ""
    return str(error.get("code") or response.reason or ""), str(error.get("message") or "")
