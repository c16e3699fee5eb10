"""``python -m scaleset_client``: the same as the ``scaleset-listen`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
