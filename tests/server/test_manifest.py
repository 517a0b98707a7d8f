"""The manifest schema: files of every earlier version still load (version 1 before latent
groups and log-prob, 3 with a named ``scheduler`` instead of a written-out
``noise_schedule``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.fakes import TRAIN_STEPS, fake_diffusion_manifest, fake_manifest
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
    for field in ("noise_schedule", "conditioning", "assets"):
        del data[field]
    data["schema_version"] = 2
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    manifest = Manifest.load(tmp_path)
    assert manifest.schema_version == 2 and manifest.noise_schedule is None
    assert manifest.assets == {}


def test_new_manifests_say_version_5_and_unknown_versions_are_refused() -> None:
    assert fake_manifest().schema_version == SCHEMA_VERSION == 5
    data = fake_manifest().model_dump(mode="json") | {"schema_version": 6}
    with pytest.raises(ValidationError, match="schema_version"):
        Manifest.model_validate(data)


def test_a_schema_4_latent_without_a_default_temperature_loads_as_1() -> None:
    data = fake_manifest().model_dump(mode="json") | {"schema_version": 4}
    del data["latent"]["default_temperature"]
    manifest = Manifest.model_validate(data)
    assert manifest.schema_version == 4 and manifest.latent.default_temperature == 1.0
    data["latent"]["default_temperature"] = 0.0
    with pytest.raises(ValidationError, match="default_temperature"):
        Manifest.model_validate(data)


# A diffusion model's ``scheduler`` section as schema 3 exporters wrote it.
SCHEMA_3_SCHEDULER = {
    "beta_schedule": "linear",
    "num_train_timesteps": TRAIN_STEPS,
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "prediction_type": "v_prediction",
    "sample_range": [-1.0, 1.0],
    "clip_sample": False,
    "latent_scale": 1.0,
    "default_sampler": "ddpm",
    "default_steps": 10,
}


def schema_3_diffusion(scheduler: dict) -> dict:
    data = fake_diffusion_manifest("old-ddpm").model_dump(mode="json")
    del data["noise_schedule"]
    return data | {"schema_version": 3, "scheduler": scheduler}


def test_a_version_3_scheduler_loads_as_the_noise_schedule_it_names(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(schema_3_diffusion(SCHEMA_3_SCHEDULER)))
    manifest = Manifest.load(tmp_path)
    assert manifest.schema_version == 3
    schedule = manifest.noise_schedule
    np.testing.assert_allclose(
        schedule.alphas_cumprod, np.cumprod(1 - np.linspace(1e-4, 0.02, TRAIN_STEPS)), rtol=1e-12
    )
    assert (schedule.prediction_type, schedule.clip_sample) == ("v_prediction", False)
    assert (schedule.default_sampler, schedule.default_steps) == ("ddpm", 10)
    cosine = Manifest.model_validate(
        schema_3_diffusion(SCHEMA_3_SCHEDULER | {"beta_schedule": "cosine"})
    )
    assert cosine.noise_schedule.alphas_cumprod != schedule.alphas_cumprod


def test_each_schema_takes_its_own_schedule_section_only() -> None:
    with pytest.raises(ValidationError, match="scheduler is a schema 3 section"):
        Manifest.model_validate(schema_3_diffusion(SCHEMA_3_SCHEDULER) | {"schema_version": 4})
    both = schema_3_diffusion(SCHEMA_3_SCHEDULER)
    both["noise_schedule"] = fake_diffusion_manifest().model_dump(mode="json")["noise_schedule"]
    with pytest.raises(ValidationError, match="not both"):
        Manifest.model_validate(both)
    bad = SCHEMA_3_SCHEDULER | {"beta_schedule": "sqrt"}
    with pytest.raises(ValidationError, match="beta_schedule"):
        Manifest.model_validate(schema_3_diffusion(bad))


@pytest.mark.parametrize(
    ("alphas_cumprod", "message"),
    [
        ([0.9, 0.95, 0.5], "must decrease"),
        ([0.9, 0.9], "must decrease"),
        ([1.0, 0.5], r"in \(0, 1\)"),
        ([0.5, 0.0], r"in \(0, 1\)"),
        ([0.5], "at least 2"),
    ],
)
def test_a_noise_schedule_must_decrease_inside_0_1(alphas_cumprod: list, message: str) -> None:
    data = fake_diffusion_manifest().model_dump(mode="json")
    data["noise_schedule"]["alphas_cumprod"] = alphas_cumprod
    with pytest.raises(ValidationError, match=message):
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


def test_a_diffusion_manifest_needs_its_noise_schedule_and_only_it_has_one() -> None:
    data = fake_manifest().model_dump(mode="json") | {"pipeline": "diffusion"}
    with pytest.raises(ValidationError, match="noise_schedule section is required"):
        Manifest.model_validate(data)
    schedule = fake_diffusion_manifest().model_dump(mode="json")["noise_schedule"]
    data = fake_manifest().model_dump(mode="json") | {"noise_schedule": schedule}
    with pytest.raises(ValidationError, match="noise_schedule section is required"):
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
