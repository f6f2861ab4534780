"""Installing the Debian packages a test server needs (PostgreSQL, Redis) when they are missing."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping

from .base import ServerUnavailable

logger = logging.getLogger(__name__)

#: Seconds one ``apt-get`` call may take.
APT_TIMEOUT_S = 600.0

#: Lines of apt-get's output quoted in an error.
APT_TAIL_LINES = 20


def ensure_packages(wanted: Mapping[str, Callable[[], bool]]) -> None:
    """Installs each Debian package whose check says it is missing.

    ``apt-get update`` runs only when the first install fails, since a fresh machine may
    have no package lists while a used one has current lists.

    Args:
        wanted: package name to a callable that is True when the package's programs are
            already there.

    Raises:
        ServerUnavailable: a package is missing and cannot be installed (not root, no
            ``apt-get``, or apt-get failed).
    """
    missing = sorted(name for name, present in wanted.items() if not present())
    if not missing:
        return
    apt_get = shutil.which("apt-get")
    if os.geteuid() != 0 or apt_get is None:
        raise ServerUnavailable(
            f"missing Debian packages {', '.join(missing)}: apt-get install {' '.join(missing)}"
        )

    logger.info("installing Debian packages %s", ", ".join(missing))
    install = [apt_get, "install", "-y", "--no-install-recommends", *missing]
    if _apt(install) is None:
        return
    update_error = _apt([apt_get, "update"])
    if update_error is not None:
        raise ServerUnavailable(f"apt-get update failed:\n{update_error}")
    install_error = _apt(install)
    if install_error is not None:
        raise ServerUnavailable(f"apt-get install {' '.join(missing)} failed:\n{install_error}")


def _apt(command: list[str]) -> str | None:
    """Runs an apt-get command; returns None on success, else the tail of its output."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=APT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {APT_TIMEOUT_S:.0f}s"
    if result.returncode == 0:
        return None
    output = (result.stdout + result.stderr).splitlines()
    return "\n".join(output[-APT_TAIL_LINES:])
