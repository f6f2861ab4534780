"""The project's own sample case: a deterministic invoice-fraud evidence set."""

from __future__ import annotations

from inbec_export.sample.generator import SampleCase, SampleMessage, generate_sample_case

__all__ = ["SampleCase", "SampleMessage", "generate_sample_case"]
