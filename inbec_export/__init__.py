"""inbec-export: business email compromise evidence to ECS documents, findings and timelines."""

from __future__ import annotations

__version__ = "0.1.0"

#: ECS version the documents follow.
ECS_VERSION = "8.17.0"

#: The tool's name, as ``summary.json`` gives it (it also marks a folder as a case folder).
TOOL_NAME = "inbec-export"

__all__ = ["ECS_VERSION", "TOOL_NAME", "__version__"]
