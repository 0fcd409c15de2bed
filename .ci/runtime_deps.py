"""Install the lowest, or the newest, versions of simple-segment's runtime dependencies its metadata allows.

``python .ci/runtime_deps.py lowest`` (tox's ``mindeps`` env) pins each runtime requirement to its
``>=`` floor; ``python .ci/runtime_deps.py newest`` (``py313-newest``) upgrades each to the newest
release its specifier allows, also in a tox env made before that release.  Both read the installed
distribution's ``Requires-Dist``, so ``pyproject.toml`` stays the one place floors and caps are
written, then have pip check that everything installed still agrees and print what is installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import requires, version


def main(which: str) -> int:
    """Install the ``lowest`` or ``newest`` runtime requirements; a requirement without a floor is an error."""
    names, wanted = [], []
    for requirement in requires("simple-segment") or []:
        if ";" in requirement:  # an extra's requirement (its marker names the extra): not a runtime one
            continue
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        floor = re.search(r">=\s*([0-9][^,;\s]*)", requirement)
        if name is None or floor is None:
            print(f"runtime_deps: {requirement!r} has no >= floor to test", file=sys.stderr)
            return 1
        names.append(name.group(0))
        wanted.append(f"{name.group(0)}=={floor.group(1)}" if which == "lowest" else requirement)
    upgrade = ["--upgrade"] if which == "newest" else []
    print(f"runtime_deps: installing the {which}:", " ".join(wanted), flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *upgrade, *wanted], check=True)
    subprocess.run([sys.executable, "-m", "pip", "check"], check=True)
    print(f"runtime_deps: testing on the {which}:", ", ".join(f"{name} {version(name)}" for name in names))
    return 0


if __name__ == "__main__":
    if sys.argv[1:] not in (["lowest"], ["newest"]):
        sys.exit("usage: python .ci/runtime_deps.py lowest|newest")
    sys.exit(main(sys.argv[1]))
