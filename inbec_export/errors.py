"""The one exception hierarchy of inbec-export; messages say what to do."""

from __future__ import annotations

import urllib.parse


class InbecError(Exception):
    """Base of every error the tool raises on purpose."""


class UsageError(InbecError):
    """The command line or its inputs are wrong (exit code 2)."""


class EvidenceError(InbecError):
    """An evidence file or item cannot be read."""


class OutputError(InbecError):
    """The case folder or another output cannot be written."""


def check_server_url(url: str, option: str = "--url") -> str:
    """A server URL as the tool accepts it: http(s), a host, and no credentials in it.

    A password written into the URL (``https://user:pw@host``) would show in process
    lists, shell history and every message that names the server, so it is refused; the
    message does not repeat the URL.

    Raises:
        UsageError: the URL is not http(s), has no host, or carries a user or password.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises ValueError on a port out of range or not a number
    except ValueError as exc:
        where = "" if "@" in url else f" {url!r}"
        raise UsageError(f"{option}{where}: not a valid URL ({exc})") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        if "@" in parts.netloc:
            raise UsageError(f"{option}: give http:// or https:// and the host")
        raise UsageError(f"{option} {url!r}: give http:// or https:// and the host")
    if "@" in parts.netloc:
        raise UsageError(
            f"{option}: leave the user and password out of the URL; give --user, and the "
            "password with --password or the environment"
        )
    return url
