"""``python -m fastembed``: the command line."""

import sys

from fastembed.app.cli import main

sys.exit(main())
