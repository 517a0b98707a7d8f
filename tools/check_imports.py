"""Check the import contracts in ``.importlinter`` (``make lint``).

import-linter finds a package's modules by walking its folder, but latentserve's
subpackages live in top-level folders mapped by ``[tool.setuptools] package-dir``
(``server/`` is ``latentserve.server``). So the sources are first laid out as the
installed package in a temporary folder, which is put first on the import path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = (
    "import sys; from importlinter.cli import lint_imports_command; "
    "sys.exit(lint_imports_command())"
)


def lay_out(target: Path) -> None:
    """Copy every mapped package's ``.py`` files to where the installed package has them."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {package: ROOT / folder for package, folder in setuptools["package-dir"].items()}
    for package, source in folders.items():
        nested = [f for f in folders.values() if f != source and f.is_relative_to(source)]
        for path in source.rglob("*.py"):
            if any(path.is_relative_to(f) for f in nested):
                continue  # another package's folder inside this one: laid out on its own
            destination = target.joinpath(*package.split("."), path.relative_to(source))
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="latentserve-imports-") as tmp:
        lay_out(Path(tmp))
        command = [sys.executable, "-c", LINT, "--no-cache", str(ROOT / ".importlinter")]
        env = {**os.environ, "PYTHONPATH": tmp}
        return subprocess.run(command, cwd=tmp, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
