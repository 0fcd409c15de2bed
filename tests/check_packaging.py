"""Build the sdist and the wheel, check them, and run the demo from the wheel alone in a fresh venv.

Run by tox's ``packaging`` environment (``python tests/check_packaging.py``); exits non-zero on
the first problem.  Not a pytest module: it builds and installs, which takes a minute.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*command: str | Path, cwd: Path = ROOT) -> str:
    print("$", " ".join(map(str, command)), flush=True)
    result = subprocess.run(list(map(str, command)), cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result.stdout


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="simple-segment-packaging-") as tmp:
        dist = Path(tmp) / "dist"
        run(sys.executable, "-m", "build", "--outdir", dist, ROOT)
        wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
        if len(wheels) != 1 or len(sdists) != 1:
            sys.exit(f"expected one wheel and one sdist, got {[p.name for p in dist.iterdir()]}")
        run(sys.executable, "-m", "twine", "check", "--strict", wheels[0], sdists[0])
        names = zipfile.ZipFile(wheels[0]).namelist()
        for required in ("simple_segment/py.typed", "simple_segment/__init__.py", "simple_segment/testing/__init__.py"):
            if required not in names:
                sys.exit(f"the wheel lacks {required}")
        if any(name.startswith(("tests/", "bench/")) for name in names):
            sys.exit("the wheel ships tests or benchmarks")
        env = Path(tmp) / "venv"
        venv.create(env, with_pip=True)
        python = env / "bin" / "python"
        run(python, "-m", "pip", "install", "--quiet", wheels[0])
        installed = run(python, "-m", "pip", "list", "--format=freeze")
        for absent in ("pytest", "celery", "rq", "segment-analytics-python"):
            if absent in installed.lower():
                sys.exit(f"installing the wheel alone pulled in {absent}")
        demo = run(python, "-m", "simple_segment", "demo", cwd=Path(tmp))
        if "server recorded 1006 messages" not in demo:
            sys.exit(f"the demo did not deliver everything:\n{demo}")
        version = run(python, "-c", "import simple_segment; print(simple_segment.__file__)", cwd=Path(tmp))
        if str(env) not in version:
            sys.exit(f"the demo ran simple_segment from {version.strip()}, not the installed wheel")
    print("packaging: sdist and wheel build, pass twine check, and the wheel alone runs the demo")


if __name__ == "__main__":
    main()
