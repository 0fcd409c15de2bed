"""``python -m simple_segment``: the same program as the ``simple-segment`` command."""

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
