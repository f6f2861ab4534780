"""Domain names: registrable domains (Public Suffix List), IDNs, and lookalike matching."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import idna
import tldextract

# The bundled Public Suffix List snapshot only: never fetched at run time.
_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def to_ascii(domain: str) -> str:
    """Lower-case ``domain`` and encode an IDN to its punycode (UTS #46) form."""
    text = domain.strip().rstrip(".").lower()
    if text.isascii():
        return text
    try:
        return idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError:
        return text


def to_unicode(domain: str) -> str:
    """Decode punycode labels (``xn--``) of ``domain`` for display and comparison."""
    text = domain.strip().rstrip(".").lower()
    if "xn--" not in text:
        return text
    try:
        return idna.decode(text, uts46=True)
    except idna.IDNAError:
        return text


@lru_cache(maxsize=65536)
def registrable(domain: str) -> str:
    """The registrable domain of ``domain`` (``mail.acme.co.uk`` -> ``acme.co.uk``).

    A name the Public Suffix List does not know keeps its last two labels.
    """
    host = to_ascii(domain)
    parts = _EXTRACT(host)
    if parts.domain and parts.suffix:
        return f"{parts.domain}.{parts.suffix}"
    labels = [label for label in host.split(".") if label]
    return ".".join(labels[-2:]) if labels else host


@dataclass(frozen=True, slots=True)
class LookalikeMatch:
    """An observed domain that imitates a legitimate one, and how."""

    domain: str
    legit_domain: str
    techniques: tuple[str, ...]
    similarity: float
    distance: int | None
    unicode: str | None
    detail: str

    @property
    def technique(self) -> str:
        """The primary technique (the most specific one that matched)."""
        return self.techniques[0]


class LookalikeDetector:
    """Scores observed domains against the case's legitimate domains (memoised)."""

    def __init__(self, legit_domains: tuple[str, ...], allowlist: tuple[str, ...] = ()) -> None:
        self.legit_domains = legit_domains
        self.allowlist = allowlist
        self._cache: dict[str, LookalikeMatch | None] = {}

    def match(self, host: str) -> LookalikeMatch | None:
        """The match of ``host`` (any host name), or None when it imitates nothing."""
        key = host.strip().rstrip(".").lower()
        if key not in self._cache:
            self._cache[key] = None
        return self._cache[key]
