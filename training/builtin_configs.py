"""The training configs shipped with the package, found without importing torch
(the CLI lists them in its help, and every ``latentserve`` command builds that help)."""

from __future__ import annotations

from pathlib import Path


def configs_dir() -> Path:
    import latentserve

    return Path(latentserve.__file__).parent / "configs"


def builtin_config_names() -> list[str]:
    return sorted(p.stem for p in configs_dir().glob("*.toml"))
