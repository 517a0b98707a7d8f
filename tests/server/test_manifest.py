"""The manifest schema: version 1 files (before latent groups and log-prob) still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.fakes import fake_manifest
from pydantic import ValidationError

from latentserve.manifest import SCHEMA_VERSION, Manifest


def test_a_version_1_manifest_loads_as_a_single_group_model(tmp_path: Path) -> None:
    data = fake_manifest().model_dump(mode="json")
    for field in ("codes", "likelihood"):
        del data[field]
    del data["latent"]["groups"]
    data["schema_version"] = 1
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    manifest = Manifest.load(tmp_path)
    assert manifest.schema_version == 1 and manifest.likelihood is None
    assert [(g.name, g.shape) for g in manifest.latent.encoded()] == [("latent", [3])]


def test_a_version_2_manifest_loads_without_the_version_3_sections(tmp_path: Path) -> None:
    data = fake_manifest().model_dump(mode="json")
    for field in ("scheduler", "conditioning", "assets"):
        del data[field]
    data["schema_version"] = 2
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    manifest = Manifest.load(tmp_path)
    assert manifest.schema_version == 2 and manifest.scheduler is None and manifest.assets == {}


def test_new_manifests_say_version_3_and_unknown_versions_are_refused() -> None:
    assert fake_manifest().schema_version == SCHEMA_VERSION == 3
    data = fake_manifest().model_dump(mode="json") | {"schema_version": 4}
    with pytest.raises(ValidationError, match="schema_version"):
        Manifest.model_validate(data)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pipeline", "teleporter", "unknown pipeline kind 'teleporter'"),
        ("capabilities", ["sample", "telepathy"], "unknown capability 'telepathy'"),
    ],
)
def test_unregistered_names_are_refused(field: str, value: object, message: str) -> None:
    data = fake_manifest().model_dump(mode="json") | {field: value}
    with pytest.raises(ValidationError, match=message):
        Manifest.model_validate(data)


def test_an_unregistered_graph_role_is_refused() -> None:
    data = fake_manifest().model_dump(mode="json")
    data["graphs"]["oracle"] = data["graphs"]["decoder"]
    with pytest.raises(ValidationError, match="unknown graph role 'oracle'"):
        Manifest.model_validate(data)


def test_a_diffusion_manifest_needs_its_scheduler_and_only_it_has_one() -> None:
    data = fake_manifest().model_dump(mode="json") | {"pipeline": "diffusion"}
    with pytest.raises(ValidationError, match="scheduler section is required"):
        Manifest.model_validate(data)
    schedule = {"beta_schedule": "cosine", "num_train_timesteps": 1000}
    data = fake_manifest().model_dump(mode="json") | {"scheduler": schedule}
    with pytest.raises(ValidationError, match="scheduler section is required"):
        Manifest.model_validate(data)


def test_a_missing_or_altered_asset_is_refused_at_load(tmp_path: Path) -> None:
    from latentserve.server.repository.store import verify_assets

    from latentserve.manifest import AssetFile, sha256_file

    (tmp_path / "tokenizer.json").write_text("{}")
    asset = AssetFile(path="tokenizer.json", sha256=sha256_file(tmp_path / "tokenizer.json"))
    manifest = fake_manifest().model_copy(update={"assets": {"tokenizer": asset}})
    verify_assets(tmp_path, manifest)  # intact: accepted
    (tmp_path / "tokenizer.json").write_text('{"tampered": true}')
    with pytest.raises(ValueError, match="tokenizer.json: sha256 .* does not match manifest"):
        verify_assets(tmp_path, manifest)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match="asset 'tokenizer' is missing"):
        verify_assets(tmp_path, manifest)


def test_a_graph_off_its_pipeline_contract_is_refused_at_load() -> None:
    from helpers.fakes import FakeDecoder, _spec
    from latentserve.server.pipelines import LatentDecoderPipeline
    from latentserve.server.settings import ServingOptions

    manifest = fake_manifest()
    odd = _spec({"image": ["batch", 1, 8, 8], "junk": ["batch"]}, {"bits_per_dim": ["batch"]}, "lp")
    broken = manifest.model_copy(update={"graphs": {**manifest.graphs, "log_prob": odd}})
    graphs = {role: FakeDecoder() for role in broken.graphs}
    with pytest.raises(ValueError, match="graph 'log_prob' has inputs \\['image', 'junk'\\]"):
        LatentDecoderPipeline(broken, graphs, ServingOptions())
