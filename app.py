"""`python app.py` starts the studio; same as `dgx-pixels serve` (flags pass through)."""

import sys

from studio.frontends.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
