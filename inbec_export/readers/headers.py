"""Parsing of RFC 5322 header values: addresses, encoded words, dates, Received and
authentication results. Every function here accepts arbitrary text and never raises."""

from __future__ import annotations

import codecs
import email.header
import email.utils
import ipaddress
import re
from datetime import UTC, datetime, timedelta, timezone

from inbec_export.model import Address, AuthResult, Hop

#: Longest header value parsed for structure; longer values are cut (and the cut stated
#: by the caller) so that a hostile header block costs bounded time.
MAX_PARSED_VALUE_CHARS = 4 * 1024 * 1024

#: Longest authentication header value parsed (they are a few hundred characters).
MAX_STRUCTURED_VALUE_CHARS = 64 * 1024

#: Most addresses kept from one header field.
MAX_ADDRESSES_PER_FIELD = 100_000

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BRACKETED_IP = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]")
_PAREN_IP = re.compile(r"\(\s*(?:IPv6:)?([0-9A-Fa-f:.]{3,})\s*\)")
_BARE_IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
_RECEIVED_FROM = re.compile(r"\bfrom\s+([^\s;()]+)", re.IGNORECASE)
_RECEIVED_BY = re.compile(r"\bby\s+([^\s;()]+)", re.IGNORECASE)
_RECEIVED_WITH = re.compile(r"\bwith\s+([^\s;()]+)", re.IGNORECASE)
_MSGID = re.compile(r"<([^<>\s]+)>")
_WSP = re.compile(r"\s+")

#: Charset labels seen in the wild that Python's codecs do not know by that name.
_CHARSET_ALIASES = {
    "cp1252": "cp1252",
    "unicode-1-1-utf-7": "utf-7",
    "x-unknown": "latin-1",
    "unknown-8bit": "latin-1",
    "ks_c_5601-1987": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-sjis": "shift_jis",
    "ansi_x3.4-1968": "ascii",
}


def unfold(value: str) -> str:
    """Remove RFC 5322 folding (CRLF followed by white space)."""
    return re.sub(r"\r?\n(?=[ \t])", "", value).replace("\r", "").replace("\n", " ")


#: Codecs Python knows that are not character sets of mail: a sender who names one must
#: not be able to make a message unreadable (they raise on ordinary bytes).
_NOT_CHARSETS = frozenset({"idna", "punycode", "raw_unicode_escape", "unicode_escape", "mbcs"})


def codec_for(charset: str) -> str:
    """The Python codec for a MIME charset label, or ``"unknown"`` for a label that is not
    a text character set (RFC 2978 names, common aliases, never a binary or IDNA codec).
    """
    label = charset.strip().lower().split("*", 1)[0]
    label = _CHARSET_ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return label
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return "unknown"
    return info.name


def decode_text(data: bytes, charset: str | None) -> str:
    """Decode body or header bytes in ``charset``; never raises (UTF-8, then Latin-1)."""
    codec = codec_for(charset or "utf-8")
    try:
        return data.decode(codec, errors="replace")
    except Exception:  # an unknown label, or a codec that fails even with "replace"
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")


def decode_words(value: str) -> tuple[str, str | None]:
    """Decode RFC 2047 encoded words (B and Q, any charset Python knows).

    Returns the decoded text and, when some part could not be decoded, a reason. Parts
    that fail are kept as they were, so nothing of the raw value is lost.
    """
    text = unfold(value)
    if "=?" not in text:
        return text, None
    error: str | None = None
    pieces: list[str] = []
    position = 0
    previous_end: int | None = None
    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        # RFC 2047 section 6.2: white space between adjacent encoded words is dropped.
        if not (previous_end is not None and between.strip() == ""):
            pieces.append(between)
        charset, encoding, payload = match.group(1), match.group(2).lower(), match.group(3)
        decoded, problem = _decode_one_word(charset, encoding, payload)
        if problem is not None:
            error = error or problem
            pieces.append(match.group(0))
        else:
            pieces.append(decoded)
        position = match.end()
        previous_end = match.end()
    pieces.append(text[position:])
    return "".join(pieces), error


def _decode_one_word(charset: str, encoding: str, payload: str) -> tuple[str, str | None]:
    try:
        if encoding == "b":
            import base64

            padded = payload + "=" * (-len(payload) % 4)
            raw = base64.b64decode(padded, validate=False)
        else:
            import quopri

            raw = quopri.decodestring(payload.replace("_", " ").encode("ascii", "replace"))
    except (ValueError, TypeError) as exc:
        return "", f"bad {encoding.upper()} encoding: {exc}"
    codec = codec_for(charset)
    try:
        return raw.decode(codec), None
    except UnicodeDecodeError:
        return raw.decode(codec, errors="replace"), f"invalid {charset} bytes"
    except (LookupError, ValueError, TypeError):
        try:
            return raw.decode("utf-8"), None
        except UnicodeDecodeError:
            return raw.decode("latin-1"), f"unknown charset {charset!r}"


def decode_subject(value: str | None) -> tuple[str | None, str | None]:
    """Decode a Subject value; returns ``(subject, decode_error)``."""
    if value is None:
        return None, None
    decoded, error = decode_words(value)
    return _WSP.sub(" ", decoded).strip(), error


def _clean_name(name: str) -> str:
    decoded, _ = decode_words(name)
    return _WSP.sub(" ", decoded).strip().strip("'\"").strip()


def parse_addresses(values: list[str]) -> list[Address]:
    """Parse address header values into ``Address`` pairs (RFC 5322 section 3.4).

    Uses :func:`email.utils.getaddresses`; display names are RFC 2047-decoded; entries
    without an ``@`` and without a name are dropped.
    """
    addresses: list[Address] = []
    cut = [unfold(v)[:MAX_PARSED_VALUE_CHARS] for v in values]
    try:
        pairs = email.utils.getaddresses(cut)
    except Exception:
        pairs = []
    for name, address in pairs[:MAX_ADDRESSES_PER_FIELD]:
        address = address.strip().strip("<>").strip()
        name = _clean_name(name)
        if "@" not in address and not name:
            continue
        if "@" not in address or not _is_addr_spec(address):
            # Not an address (a bare name, or debris of a malformed header): kept as a
            # display name so nothing is lost, but never taken for a mailbox or domain.
            name, address = (name or address), ""
        addresses.append(Address(name=name, address=address.lower()))
    return addresses


#: Characters that cannot appear in a domain or an unquoted local part (RFC 5322 3.4.1).
_NOT_IN_ADDRESS = re.compile(r'[<>()\s,;"]')


def _is_addr_spec(address: str) -> bool:
    local, _, domain = address.rpartition("@")
    if _NOT_IN_ADDRESS.search(domain):
        return False
    quoted = len(local) >= 2 and local.startswith('"') and local.endswith('"')
    return quoted or not _NOT_IN_ADDRESS.search(local)


_FOUR_DIGIT_YEAR = re.compile(r"(?<![\d:+\-])(\d{4})(?![\d:])")

_FALLBACK_DATE_FORMATS = (
    "%d-%m-%Y",
    "%d-%m-%Y %H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%d %b %Y %H:%M:%S",
    "%d %b %Y",
    "%a, %d %b %Y",
    "%a, %d %b %Y %H:%M",
)


def parse_date(value: str | None) -> datetime | None:
    """Parse an RFC 5322 date into aware UTC; a missing zone (``-0000``) is taken as UTC.

    A few non-RFC layouts seen in real mail (``02-04-2024``, ISO 8601) are accepted too.
    """
    if not value:
        return None
    text = _WSP.sub(" ", unfold(value)).strip()[:200]
    parsed: datetime | None = None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed = None
    if parsed is None:
        for layout in _FALLBACK_DATE_FORMATS:
            try:
                parsed = datetime.strptime(text, layout)
                break
            except ValueError:
                continue
    if parsed is None:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    # email.utils reads years below 100 as 19xx/20xx; a four-digit year it changed that
    # way (``0001`` becoming 2001) is a forged or broken date, not a time to trust.
    year = _FOUR_DIGIT_YEAR.search(text)
    if year is not None and abs(int(year.group(1)) - parsed.year) > 1:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def to_utc(value: datetime | None) -> datetime | None:
    """Return ``value`` as aware UTC (naive values are taken as UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def parse_message_id(value: str | None) -> str | None:
    """Return the message id without angle brackets (RFC 5322 section 3.6.4)."""
    if not value:
        return None
    text = unfold(value).strip()
    match = _MSGID.search(text)
    if match:
        return match.group(1)
    text = text.strip("<> \t")
    return text or None


def parse_message_ids(value: str | None) -> list[str]:
    """Return every message id in a References or In-Reply-To value, in order."""
    if not value:
        return []
    ids = _MSGID.findall(unfold(value)[:MAX_PARSED_VALUE_CHARS])
    if ids:
        return list(ids)
    return [token for token in unfold(value).split() if "@" in token][:1000]


def normalise_ip(text: str | None) -> str | None:
    """Return a canonical IP address from ``text`` (brackets, ``IPv6:`` tolerated).

    An IPv6 zone (``fe80::1%eth0``) names an interface of the machine that wrote the
    header, not part of the address: it is dropped (search servers' ``ip`` fields refuse
    it, and the same address seen with and without one is one address).
    """
    if not text:
        return None
    candidate = text.strip().strip("[]").strip()
    # Without a colon (IPv6) and ending in a letter, it is a name: answered without a
    # failed parse, which costs an exception (most values given here are host names).
    if ":" not in candidate and candidate[-1:].isalpha():
        return None
    if candidate.lower().startswith("ipv6:"):
        candidate = candidate[5:]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        address = ipaddress.IPv6Address(candidate.partition("%")[0])
    return str(address)


def parse_originating_ips(values: list[str]) -> list[str]:
    """IP addresses of X-Originating-IP (or X-Sender-IP) values, unique, in order."""
    ips: list[str] = []
    for value in values:
        for token in re.split(r"[\s,;]+", unfold(value)[:1000]):
            ip = normalise_ip(token)
            if ip and ip not in ips:
                ips.append(ip)
    return ips


def parse_received(value: str) -> Hop:
    """Parse one Received header (RFC 5321 section 4.4) into a hop.

    The ``from`` host, the ``by`` host and the first IP literal of the ``from`` part are
    taken; the time is what follows the last ``;``.
    """
    text = _WSP.sub(" ", unfold(value))[:4096]
    head, _, when = text.rpartition(";")
    if not head:
        head, when = text, ""
    from_part, _, _ = head.partition(" by ")
    from_match = _RECEIVED_FROM.search(head)
    by_match = _RECEIVED_BY.search(head)
    with_match = _RECEIVED_WITH.search(head)
    ip: str | None = None
    for candidate in _BRACKETED_IP.findall(from_part):
        ip = normalise_ip(candidate)
        if ip:
            break
    if ip is None:
        for candidate in _PAREN_IP.findall(from_part):
            ip = normalise_ip(candidate)
            if ip:
                break
    if ip is None:
        for candidate in _BARE_IPV4.findall(from_part):
            ip = normalise_ip(candidate)
            if ip:
                break
    return Hop(
        from_host=_host(from_match.group(1)) if from_match else None,
        by_host=_host(by_match.group(1)) if by_match else None,
        ip=ip,
        timestamp=parse_date(when) if when.strip() else None,
        protocol=with_match.group(1) if with_match else None,
    )


def _host(token: str) -> str | None:
    host = token.strip("[]<>").rstrip(".").lower()
    return host or None


#: Networks whose addresses never identify a sender on the internet: private, loopback,
#: link-local, shared (RFC 6598), multicast, unspecified and reserved space. The
#: documentation ranges (RFC 5737, RFC 3849) are deliberately not listed, so sample and
#: training mail behaves like real mail.
_NON_PUBLIC_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
)


def is_public_ip(ip: str) -> bool:
    """True when ``ip`` can identify a sender on the internet (see the networks above)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not any(address in net for net in _NON_PUBLIC_NETWORKS if net.version == address.version)


# --- Authentication-Results (RFC 8601) -------------------------------------------------

_KNOWN_METHODS = {"spf", "dkim", "dmarc", "compauth", "arc", "bimi", "iprev", "auth", "dkim-atps"}

#: Which property names the domain for each method, in order of preference.
_DOMAIN_PROPERTIES = {
    "spf": ("smtp.mailfrom", "smtp.helo"),
    "dkim": ("header.d", "header.i"),
    "dmarc": ("header.from",),
    "compauth": ("header.from",),
    "arc": ("header.oldest-pass",),
    "bimi": ("header.d",),
}


def _strip_comments(text: str) -> str:
    """Remove RFC 5322 comments (nested parentheses), outside quoted strings."""
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\":
            escaped = True
            if depth == 0:
                out.append(char)
            continue
        if quoted:
            if char == '"':
                quoted = False
            out.append(char)
            continue
        if char == '"' and depth == 0:
            quoted = True
            out.append(char)
        elif char == "(":
            depth += 1
        elif char == ")" and depth > 0:
            depth -= 1
            out.append(" ")
        elif depth == 0:
            out.append(char)
    return "".join(out)


def _split_semicolons(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _domain_of(value: str) -> str | None:
    value = value.strip().strip('"').strip("<>")
    if not value:
        return None
    _, _, domain = value.rpartition("@")
    domain = domain.strip().rstrip(".").lower()
    # Microsoft writes "dkim=none (message not signed) header.d=none".
    return domain if domain and domain != "none" else None


def parse_authentication_results(
    value: str, source: str = "authentication-results"
) -> list[AuthResult]:
    """Parse an Authentication-Results (or ARC-Authentication-Results) value.

    ``authserv-id; method=result reason="..." ptype.property=value; ...`` (RFC 8601
    section 2.2). ARC values start with ``i=N;``, which is skipped. Unknown methods are
    kept. Microsoft's ``compauth=fail reason=601`` is read like any other method.
    """
    text = _strip_comments(unfold(value)[:MAX_STRUCTURED_VALUE_CHARS])
    parts = [part.strip() for part in _split_semicolons(text)]
    if parts and re.fullmatch(r"i\s*=\s*\d+", parts[0] or ""):
        parts = parts[1:]
    if not parts:
        return []
    authserv_id: str | None = None
    tokens = parts[0].split()
    if tokens and "=" not in tokens[0]:
        # The authserv-id may be followed by a version number before the first ";".
        authserv_id = tokens[0].lower()
        rest = " ".join(tokens[1:])
        parts = ([rest] if "=" in rest else []) + parts[1:]
    results: list[AuthResult] = []
    for part in parts:
        results.extend(_parse_resinfo(part, source, authserv_id))
    return results


_PAIR = re.compile(r'([A-Za-z0-9_.\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s";]+)')


def _parse_resinfo(part: str, source: str, authserv_id: str | None) -> list[AuthResult]:
    pairs = [(key.lower(), val.strip('"')) for key, val in _PAIR.findall(part)]
    results: list[AuthResult] = []
    current: dict[str, str] | None = None
    method = ""

    def flush() -> None:
        if current is None:
            return
        results.append(_auth_result(method, current, source, authserv_id))

    for key, val in pairs:
        if (
            "." not in key
            and key not in {"reason", "action", "policy"}
            and (key in _KNOWN_METHODS or current is None)
        ):
            flush()
            method = key.split("/", 1)[0]
            current = {"result": val.lower()}
        elif current is not None:
            current.setdefault(key, val)
    flush()
    return results


def _auth_result(
    method: str, props: dict[str, str], source: str, authserv_id: str | None
) -> AuthResult:
    domain: str | None = None
    for prop in _DOMAIN_PROPERTIES.get(method, ()):
        if props.get(prop):
            domain = _domain_of(props[prop])
            break
    return AuthResult(
        method=method,
        result=props.get("result", ""),
        domain=domain,
        source=source,
        authserv_id=authserv_id,
        reason=props.get("reason"),
    )


_SPF_COMMENT_DOMAIN = re.compile(
    r"domain of (?:transitioning )?(?:\S+@)?([A-Za-z0-9.\-]+\.[A-Za-z0-9\-]+)"
)
_SPF_RESULTS = {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"}


def parse_received_spf(value: str) -> AuthResult | None:
    """Parse a Received-SPF value: ``result (comment) key=value; ...`` (RFC 7208 9.1)."""
    text = unfold(value)[:MAX_STRUCTURED_VALUE_CHARS].strip()
    if not text:
        return None
    first = text.split(None, 1)[0].lower().rstrip(";")
    if first not in _SPF_RESULTS:
        return None
    body = _strip_comments(text)
    props = {key.lower(): val.strip('"') for key, val in _PAIR.findall(body)}
    domain = _domain_of(props.get("envelope-from", ""))
    if domain is None:
        # The comment names the checked domain: "domain of [transitioning] user@x.com ...".
        match = _SPF_COMMENT_DOMAIN.search(unfold(text))
        domain = match.group(1).rstrip(".").lower() if match else None
    domain = domain or _domain_of(props.get("helo", ""))
    return AuthResult(method="spf", result=first, domain=domain, source="received-spf")


def offset_timezone(minutes: int) -> timezone:
    """A fixed-offset timezone, for tests and readers that get offsets in minutes."""
    return timezone(timedelta(minutes=minutes))
