"""Install the lowest versions of simple-segment's runtime dependencies that its metadata allows.

Run by tox's ``mindeps`` env after it installed the package: reads the installed distribution's
``Requires-Dist`` (so ``pyproject.toml`` stays the one place the floors are written), pins each
runtime dependency to its ``>=`` floor, and has pip check that everything installed still agrees.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import requires


def main() -> int:
    """Pin every runtime requirement to its floor; a requirement without one is an error."""
    pins = []
    for requirement in requires("simple-segment") or []:
        if ";" in requirement:  # an extra's requirement: markers say which; not a runtime one
            continue
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        floor = re.search(r">=\s*([0-9][^,;\s]*)", requirement)
        if name is None or floor is None:
            print(f"mindeps: {requirement!r} has no >= floor to test", file=sys.stderr)
            return 1
        pins.append(f"{name.group(0)}=={floor.group(1)}")
    print("mindeps: installing", " ".join(pins), flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *pins], check=True)
    subprocess.run([sys.executable, "-m", "pip", "check"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
