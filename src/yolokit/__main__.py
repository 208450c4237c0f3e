"""``python -m yolokit MODE key=value ...``: the same command line as the ``yolokit`` script (``yolokit.cli``)."""

import sys

from yolokit.cli import main

if __name__ == "__main__":
    sys.exit(main())
