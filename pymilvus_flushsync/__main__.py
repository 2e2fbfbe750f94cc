"""``python -m pymilvus_flushsync``: the command line."""

import sys

from ._cli import main

sys.exit(main())
