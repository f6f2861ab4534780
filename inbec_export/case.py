"""What a case knows before reading evidence: its id, legitimate domains and rule settings."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import regex

from inbec_export import TOOL_NAME
from inbec_export.domains import (
    LookalikeDetector,
    LookalikeMatch,
    is_usable_domain,
    registrable,
    to_ascii,
)
from inbec_export.errors import UsageError

logger = logging.getLogger(__name__)

#: Authentication results that count as failures unless the case says otherwise.
DEFAULT_AUTH_FAILURES: dict[str, frozenset[str]] = {
    "spf": frozenset({"fail", "softfail"}),
    "dkim": frozenset({"fail"}),
    "dmarc": frozenset({"fail"}),
    "compauth": frozenset({"fail"}),
}

#: Results each method can have (RFC 8601 section 2.7, RFC 7489, Microsoft compauth).
AUTH_RESULTS: dict[str, frozenset[str]] = {
    "spf": frozenset(
        {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy"}
    ),
    "dkim": frozenset({"pass", "fail", "neutral", "none", "temperror", "permerror", "policy"}),
    "dmarc": frozenset({"pass", "fail", "none", "temperror", "permerror", "bestguesspass"}),
    "compauth": frozenset({"pass", "fail", "softpass", "none"}),
    "arc": frozenset({"pass", "fail", "none"}),
}

_CASE_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")


@lru_cache(maxsize=1)
def freemail_domains() -> frozenset[str]:
    """The bundled list of free webmail domains."""
    text = resources.files("inbec_export").joinpath("data/freemail.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and line[0] != "#"
    )


def validate_case_id(case_id: str) -> str:
    """Lower-case ``case_id`` and check it is usable in index names and file names."""
    normalised = case_id.strip().lower()
    if not _CASE_ID.match(normalised):
        raise UsageError(
            f"case id {case_id!r} is not valid: use 1 to 63 characters a-z, 0-9, '-' or '_', "
            "starting with a letter or digit"
        )
    return normalised


def clean_domain(text: str) -> str:
    """The domain in what a user typed: ``https://acme.com/x``, ``bob@acme.com``, ``acme.com.``."""
    value = text.strip()
    if "://" in value:
        value = value.split("://", 1)[1]
    value = value.split("/", 1)[0].rpartition("@")[2]
    return value.split(":", 1)[0].strip().rstrip(".").lower()


def parse_auth_failures(specs: list[str]) -> dict[str, frozenset[str]]:
    """Parse ``method=result[,result...]`` settings (``spf=fail,softfail``)."""
    policy: dict[str, set[str]] = {}
    for spec in specs:
        method, sep, values = spec.partition("=")
        if not sep or not method.strip() or not values.strip():
            raise UsageError(f"--auth-fail {spec!r}: write it as method=result[,result...]")
        results = {value.strip().lower() for value in values.split(",") if value.strip()}
        method_name = method.strip().lower()
        if method_name not in AUTH_RESULTS:
            raise UsageError(
                f"--auth-fail {spec!r}: unknown method {method_name!r} "
                f"(one of {', '.join(sorted(AUTH_RESULTS))})"
            )
        unknown = sorted(results - AUTH_RESULTS[method_name])
        if unknown:
            raise UsageError(
                f"--auth-fail {spec!r}: unknown {method_name} result {unknown[0]!r} "
                f"(one of {', '.join(sorted(AUTH_RESULTS[method_name]))})"
            )
        policy.setdefault(method.strip().lower(), set()).update(results)
    return {method: frozenset(results) for method, results in policy.items()}


@dataclass
class CaseContext:
    """Settings shared by every rule of one analysis run."""

    case_id: str = "case"
    legit_domains: tuple[str, ...] = ()
    allowlist: tuple[str, ...] = ()
    auth_failures: dict[str, frozenset[str]] = field(
        default_factory=lambda: dict(DEFAULT_AUTH_FAILURES)
    )
    subject_pattern: regex.Pattern[str] | None = None
    freemail: frozenset[str] = field(default_factory=freemail_domains)

    def __post_init__(self) -> None:
        self.legit_domains = tuple(clean_domain(d) for d in self.legit_domains)
        self.allowlist = tuple(clean_domain(d) for d in self.allowlist)
        for option, domains in (("legitimate", self.legit_domains), ("allowlist", self.allowlist)):
            bad = [d for d in domains if not is_usable_domain(d)]
            if bad:
                raise UsageError(
                    f"{option} domain {bad[0]!r} is not a domain name: give the registrable "
                    "domain with its suffix, e.g. acme-corp.com"
                )
            for domain in domains:
                whole = registrable(domain)
                if whole != to_ascii(domain):
                    logger.warning(
                        "%s domain %s is under %s: %s and every name under it count as %s",
                        option,
                        domain,
                        whole,
                        whole,
                        option,
                    )
        self.legit_domains = tuple(sorted({registrable(d) for d in self.legit_domains}))
        self.allowlist = tuple(sorted({registrable(d) for d in self.allowlist}))
        self._legit = frozenset(self.legit_domains)
        self._trusted = self._legit | frozenset(self.allowlist)
        self._detector = LookalikeDetector(self.legit_domains, self.allowlist)

    def is_legit(self, domain: str | None) -> bool:
        """True for a legitimate domain or any of its subdomains."""
        return bool(domain) and registrable(domain or "") in self._legit

    def is_trusted(self, domain: str | None) -> bool:
        """True for a legitimate or allowlisted domain (or a subdomain of one)."""
        return bool(domain) and registrable(domain or "") in self._trusted

    def lookalike(self, domain: str | None) -> LookalikeMatch | None:
        """The lookalike match of ``domain`` against the legitimate domains, or None."""
        if not domain:
            return None
        return self._detector.match(domain)

    def is_freemail(self, domain: str | None) -> bool:
        """True when ``domain`` belongs to a free webmail provider."""
        return bool(domain) and registrable(domain or "") in self.freemail


def compile_subject_pattern(text: str) -> regex.Pattern[str]:
    """The analyst's ``--subject-pattern``, case-insensitive, in Python's ``re`` syntax.

    Compiled with the ``regex`` module, whose matches take a time limit (see
    :data:`~inbec_export.detections.subject_match.MATCH_TIMEOUT_SECONDS`).

    Raises:
        UsageError: the pattern does not compile (syntax, sizes, nesting).
    """
    try:
        return regex.compile(text, regex.IGNORECASE | regex.VERSION0)
    except (regex.error, OverflowError, RecursionError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        raise UsageError(f"--subject-pattern is not a valid regular expression: {reason}") from None


#: Largest ``summary.json`` read to tell whether a folder is a case folder, in bytes.
MAX_SUMMARY_BYTES = 64 * 1024 * 1024


def is_case_folder(folder: Path, files: Iterable[str]) -> bool:
    """True when ``folder`` is a case folder this tool wrote: its ``summary.json`` says so
    (complete or not) and its messages file is there (complete or not). A lone
    ``summary.json`` that names the tool does not make a folder of evidence a case folder.
    """
    names = set(files)
    if "summary.json" not in names or not names & {"messages.ndjson", "messages.ndjson.partial"}:
        return False
    path = folder / "summary.json"
    try:
        if path.stat().st_size > MAX_SUMMARY_BYTES:
            return False
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    tool = summary.get("tool") if isinstance(summary, dict) else None
    return isinstance(tool, dict) and tool.get("name") == TOOL_NAME
