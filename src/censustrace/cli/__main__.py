"""``python -m censustrace.cli``: the ``censustrace`` command."""

import sys

from censustrace.cli import main

sys.exit(main())
