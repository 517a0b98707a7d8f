"""Parts of hot reload: admin tokens (who may reload), the warm-up a new version passes
before it serves, and a reload that finds no repository changing nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from latentserve.server.errors import PermissionDenied, Unauthenticated, Unavailable
from latentserve.server.repository.warmup import WarmUpFailed, warm_up
from latentserve.server.security.admin import AdminTokens
from test_service import make_service


def test_admin_tokens_come_from_a_file_one_a_line(tmp_path: Path) -> None:
    path = tmp_path / "admins"
    path.write_text("# operators\n\n  first-token  \nsecond-token\n")
    admins = AdminTokens.from_file(path)
    admins.check("Bearer first-token")
    admins.check("bearer second-token")
    with pytest.raises(PermissionDenied, match="not an admin token"):
        admins.check("Bearer # operators")
    with pytest.raises(Unauthenticated):
        admins.check(None)
    with pytest.raises(Unauthenticated):
        admins.check("Basic first-token")


def test_without_admin_tokens_every_admin_call_is_refused() -> None:
    with pytest.raises(PermissionDenied, match="no admin tokens"):
        AdminTokens.from_file(None).check("Bearer anything")


def test_an_admin_tokens_file_that_is_missing_or_empty_stops_startup(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        AdminTokens.from_file(tmp_path / "missing")
    (tmp_path / "empty").write_text("# nobody\n")
    with pytest.raises(ValueError, match="holds no tokens"):
        AdminTokens.from_file(tmp_path / "empty")


def test_warm_up_runs_every_capability_and_refuses_non_finite_outputs(tmp_path: Path) -> None:
    service, graphs = make_service(tmp_path)
    model = service._repository.resolve("fake-vae@2")
    fakes = graphs["fake-vae@2"]

    async def main() -> None:
        await warm_up(model)
        assert {role: len(f.batch_sizes) for role, f in fakes.items()} == {
            "sampler": 1,
            "encoder": 2,  # encode, and reconstruct's encoding
            "decoder": 1,
        }
        run = fakes["sampler"].run
        fakes["sampler"].run = lambda inputs: {k: v * np.nan for k, v in run(inputs).items()}
        with pytest.raises(WarmUpFailed, match="sample gave non-finite values"):
            await warm_up(model)
        await service.close()

    asyncio.run(main())


def test_a_reload_that_finds_no_repository_folder_unloads_nothing(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path)
    (tmp_path / "repo").rename(tmp_path / "elsewhere")  # unmounted, say

    async def main() -> None:
        with pytest.raises(Unavailable, match="model repository not found"):
            await service._reloader.reload()
        assert [m.label for m in service._repository.models()] == [
            "fake-ae@1",
            "fake-vae@1",
            "fake-vae@2",
        ]
        await service.close()

    asyncio.run(main())
