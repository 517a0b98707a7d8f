"""Parts of hot reload: admin tokens (who may reload), the warm-up a new version passes
before it serves, a reload that finds no repository changing nothing, a refused version
tried again once its files change, polling that outlives a failed scan, and no reload
while draining. New versions open fake graphs (the service's injected opener)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from helpers.fakes import fake_manifest
from helpers.fakes import vae_service as make_service
from latentserve.server.errors import PermissionDenied, Unauthenticated, Unavailable
from latentserve.server.repository.warmup import WarmUpFailed, warm_up
from latentserve.server.security.admin import AdminTokens


def publish(tmp_path: Path, version: str) -> Path:
    """A new ``fake-vae`` version folder in the service's repository."""
    folder = tmp_path / "repo" / "fake-vae" / version
    folder.mkdir()
    fake_manifest("fake-vae", version).save(folder)
    return folder


def reloads(service: object, model: str, outcome: str) -> float:
    labels = {"model": model, "outcome": outcome}
    value = service.metrics.registry.get_sample_value("latentserve_model_reloads_total", labels)
    return value or 0.0


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


def test_a_refused_version_is_tried_again_once_its_files_change(tmp_path: Path) -> None:
    service, graphs = make_service(tmp_path)
    folder = publish(tmp_path, "3")
    manifest = folder / "manifest.json"
    good = manifest.read_text()
    manifest.write_text(good.replace('"family"', '"no_such_field"'))  # fails validation

    async def main() -> list:
        first = await service.reload_repository("test")
        again = await service.reload_repository("test")
        manifest.write_text(good)  # the copy finished: other bytes, other size
        fixed = await service.reload_repository("test")
        served = service.get_model("fake-vae").version
        await service.close()
        return [first, again, fixed, served]

    first, again, fixed, served = asyncio.run(main())
    assert [r.model for r in first.refused] == ["fake-vae@3"] and not first.loaded
    assert again.refused == first.refused  # unchanged files: the same answer, not retried
    assert reloads(service, "fake-vae@3", "refused") == 1
    assert fixed.loaded == ["fake-vae@3"] and not fixed.refused
    assert served == "3" and "fake-vae@3" in graphs  # opened by the injected fake opener


def test_polling_survives_a_failed_scan(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    service, _ = make_service(tmp_path, repository_poll_interval_s=0.01)
    repository = tmp_path / "repo"

    async def until(condition: object, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + 20
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, what
            await asyncio.sleep(0.01)

    async def main() -> str:
        repository.rename(tmp_path / "unmounted")  # the next scans fail
        polling = asyncio.get_running_loop().create_task(service._reloader.poll(0.01))
        await until(lambda: "repository reload failed" in caplog.text, "no scan failed")
        (tmp_path / "unmounted").rename(repository)
        publish(tmp_path, "3")
        await until(lambda: service._repository.served() >= {("fake-vae", "3")}, "not polled")
        assert not polling.done()  # still polling after the failure
        polling.cancel()
        version = service.get_model("fake-vae").version
        await service.close()
        return version

    assert asyncio.run(main()) == "3"


def test_no_reload_while_draining(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path)
    publish(tmp_path, "3")

    async def main() -> None:
        service.start_draining()
        with pytest.raises(Unavailable, match="shutting down"):
            await service.reload_repository("test")
        assert ("fake-vae", "3") not in service._repository.served()
        await service.close()

    asyncio.run(main())


def test_a_description_is_made_once_per_version_and_again_when_versions_change(
    tmp_path: Path,
) -> None:
    """The Open Inference Protocol reads a model's description on every request, so it is
    kept; a reload that adds a version gives the older ones' descriptions the new list."""
    service, _ = make_service(tmp_path)

    async def main() -> None:
        first = service.get_model("fake-vae@2")
        assert service.get_model("fake-vae@2") is first
        assert first.versions == ["1", "2"]
        publish(tmp_path, "3")
        await service.reload_repository("test")
        assert service.get_model("fake-vae@2").versions == ["1", "2", "3"]
        assert service.get_model("fake-vae").version == "3"
        await service.close()

    asyncio.run(main())
