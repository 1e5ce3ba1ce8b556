"""``python -m provkit``: the same as the ``provkit`` command."""

import sys

from provkit.cli.main import main

sys.exit(main())
