"""``python -m inbec_export``: the same as the ``inbec`` command."""

from inbec_export.entry import main

main()
