"""``python -m inbec_export``: the same as the ``inbec`` command."""

from inbec_export.cli import main

main()
