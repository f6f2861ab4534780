"""Opt-in enrichment of findings: WHOIS, VirusTotal reputation and offline GeoIP.

Nothing here runs unless asked for (``--whois``, ``--virustotal``, ``--geoip-db``);
without those options a run opens no network connection.
"""

from __future__ import annotations

from inbec_export.enrichment.run import Enricher, EnrichmentConfig

__all__ = ["Enricher", "EnrichmentConfig"]
