"""``python -m QuantReportLib``: the same as the ``quantreport`` command."""

import sys

from .cli import main

sys.exit(main())
