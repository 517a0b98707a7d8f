"""Every family in the family table, end to end at its smallest: it has a ``*-tiny``
config and an export recipe row, and that config trains, exports, loads in the server
(every graph's I/O checked against its pipeline's contract) and passes the server's
warm-up (each capability it declares runs once and gives finite numbers).

A family added to the table without one of these fails here, by name. Runs come from the
session's tiny-run cache, so a config other fixtures train is trained once.
"""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest
from latentserve.exporters.export import export_run
from latentserve.exporters.recipes import RECIPES
from latentserve.server.pipelines import build_pipeline
from latentserve.server.repository.store import load_model
from latentserve.server.repository.warmup import warm_up
from latentserve.server.settings import Settings
from latentserve.training.builtin_configs import builtin_config_names
from latentserve.training.config import builtin_config_path
from latentserve.training.families.registry import FAMILIES
from tiny_runs import TinyRuns

from latentserve.manifest import Manifest


def tiny_configs() -> dict[str, str]:
    """Built-in ``*-tiny`` config → the family it names (read from the file alone)."""
    families = {}
    for name in builtin_config_names():
        if name.endswith("-tiny"):
            with builtin_config_path(name).open("rb") as f:
                families[name] = tomllib.load(f)["family"]
    return families


def tiny_config_of(family: str) -> str:
    """``<family>-tiny`` where it exists, else the first ``*-tiny`` config of the family."""
    configs = sorted(name for name, of in tiny_configs().items() if of == family)
    if not configs:
        pytest.fail(
            f"family {family!r} has no *-tiny config: add latentserve/configs/{family}-tiny.toml"
        )
    return f"{family}-tiny" if f"{family}-tiny" in configs else configs[0]


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES.names())
def test_family_trains_exports_loads_and_warms_up(
    family: str, tiny_runs: TinyRuns, tmp_path: Path
) -> None:
    config_name = tiny_config_of(family)
    if family not in RECIPES:
        pytest.fail(
            f"family {family!r} has no export recipe: add its row to "
            "latentserve.exporters.recipes (the recipe table)"
        )
    version_dir = export_run(tiny_runs.run(config_name), tmp_path, config_name, "1")
    manifest = Manifest.load(version_dir)
    assert (manifest.family, manifest.capabilities) == (family, RECIPES.get(family).capabilities)

    async def load_and_warm_up() -> None:
        model = load_model(
            version_dir, Settings(), build_pipeline
        )  # refuses graphs off the contract
        try:
            await warm_up(model)  # every declared capability, finite outputs
        finally:
            await model.pipeline.close()

    asyncio.run(load_and_warm_up())


def test_every_recipe_and_tiny_config_names_a_family_in_the_table() -> None:
    families = set(FAMILIES.names())
    assert set(RECIPES.names()) - families == set(), "recipes for families not in the table"
    strays = {name: of for name, of in tiny_configs().items() if of not in families}
    assert strays == {}, "tiny configs of families not in the table"
