"""``python -m mowe <command>``: the same as the ``mowe`` console script."""

import sys

from mowe.cli import main

if __name__ == "__main__":
    sys.exit(main())
