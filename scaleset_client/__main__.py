"""``python -m scaleset_client``: the same as the ``scaleset-listen`` command."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
