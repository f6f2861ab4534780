"""Country and autonomous system of IP addresses from MaxMind databases, offline.

The user supplies GeoLite2 or GeoIP2 database files (City or Country, and ASN); nothing
is downloaded and no network is used. geoip2 is an optional dependency (the ``geoip``
extra), imported only when a database is given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inbec_export.errors import UsageError

logger = logging.getLogger(__name__)

#: Database kinds understood, by what their ``database_type`` metadata contains.
CITY, COUNTRY, ASN = "City", "Country", "ASN"


@dataclass(frozen=True)
class GeoResult:
    """What the databases say about one IP address (None: not in any database)."""

    ip: str
    country_iso_code: str | None = None
    country_name: str | None = None
    city_name: str | None = None
    asn: int | None = None
    as_organization: str | None = None

    @property
    def found(self) -> bool:
        """True when any database knows the address."""
        return any(
            v is not None
            for v in (self.country_iso_code, self.city_name, self.asn, self.as_organization)
        )


class GeoIpDatabases:
    """The opened databases; use :meth:`lookup`, then :meth:`close`."""

    def __init__(self, paths: list[Path]) -> None:
        try:
            import geoip2.database
            from maxminddb.errors import InvalidDatabaseError
        except ImportError as exc:
            raise UsageError(
                "--geoip-db needs the geoip2 package: pip install 'inbec-export[geoip]' "
                "(in a checkout: pip install -e '.[geoip]')"
            ) from exc
        self._readers: list[tuple[str, Any]] = []
        self.names: list[str] = []
        for path in paths:
            try:
                reader = geoip2.database.Reader(str(path))
            except OSError as exc:
                self.close()
                raise UsageError(f"--geoip-db {path}: cannot read it: {exc.strerror}") from exc
            except (InvalidDatabaseError, ValueError) as exc:
                self.close()
                raise UsageError(f"--geoip-db {path}: not a readable MaxMind database") from exc
            kind = _kind(str(reader.metadata().database_type))
            if kind is None:
                reader.close()
                self.close()
                raise UsageError(
                    f"--geoip-db {path}: a {reader.metadata().database_type} database; "
                    "give a City, Country or ASN one"
                )
            self._readers.append((kind, reader))
            self.names.append(str(reader.metadata().database_type))

    def lookup(self, ip: str) -> GeoResult:
        """Country, city and AS of ``ip`` from every database that knows it."""
        import geoip2.errors

        values: dict[str, Any] = {}
        for kind, reader in self._readers:
            try:
                if kind == ASN:
                    asn = reader.asn(ip)
                    values.setdefault("asn", asn.autonomous_system_number)
                    values.setdefault("as_organization", asn.autonomous_system_organization)
                    continue
                place = reader.city(ip) if kind == CITY else reader.country(ip)
            except (geoip2.errors.AddressNotFoundError, ValueError):
                continue
            values.setdefault("country_iso_code", place.country.iso_code)
            values.setdefault("country_name", place.country.name)
            if kind == CITY:
                values.setdefault("city_name", place.city.name)
        return GeoResult(ip, **{k: v for k, v in values.items() if v is not None})

    def close(self) -> None:
        """Close every database file."""
        for _, reader in self._readers:
            reader.close()
        self._readers = []


def _kind(database_type: str) -> str | None:
    for kind in (ASN, CITY, COUNTRY):
        if kind in database_type:
            return kind
    return None
