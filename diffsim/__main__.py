"""``python -m diffsim``: the same as the ``diffsim`` command."""

import sys

from diffsim.cli import main

sys.exit(main())
