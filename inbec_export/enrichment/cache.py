"""The on-disk cache of lookup answers, kept in the case folder so re-runs ask no one again.

Each answer is one JSON file, ``<case>/enrichment-cache/<source>/<key>.json``, written under
a temporary name and moved into place, so an interrupted run leaves no half-written entry.
Only real answers are cached (a WHOIS response, a VirusTotal report or its "not found");
errors such as timeouts, refused keys or quotas are not, so the next run tries again.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from inbec_export.errors import OutputError

logger = logging.getLogger(__name__)

#: Folder of the case folder that holds the cache.
CACHE_DIR = "enrichment-cache"

#: Characters a cache file name keeps; others (``:`` of IPv6, ``/``) become ``_``.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class ResponseCache:
    """Answers of one source (``whois``, ``virustotal``), one JSON file per key."""

    def __init__(self, case_dir: Path, source: str) -> None:
        self.folder = case_dir / CACHE_DIR / source

    def _path(self, key: str) -> Path:
        return self.folder / f"{_UNSAFE.sub('_', key.lower())}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached answer for ``key``, or None (also when the entry is unreadable)."""
        path = self._path(key)
        try:
            value = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning("cache entry %s is unreadable, asking again: %s", path, exc)
            return None
        return value if isinstance(value, dict) and value.get("key") == key else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store the answer for ``key``."""
        path = self._path(key)
        partial = path.with_name(path.name + ".partial")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            text = json.dumps({**value, "key": key}, ensure_ascii=False, sort_keys=True)
            partial.write_text(text + "\n", encoding="utf-8")
            os.replace(partial, path)
        except OSError as exc:
            raise OutputError(f"cannot write the lookup cache {path}: {exc.strerror}") from exc
