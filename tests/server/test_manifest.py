"""The manifest schema: version 1 files (before latent groups and log-prob) still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from server_fakes import fake_manifest

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


def test_new_manifests_say_version_2_and_unknown_versions_are_refused() -> None:
    assert fake_manifest().schema_version == SCHEMA_VERSION == 2
    data = fake_manifest().model_dump(mode="json") | {"schema_version": 3}
    with pytest.raises(ValidationError, match="schema_version"):
        Manifest.model_validate(data)


def test_a_graph_off_its_pipeline_contract_is_refused_at_load() -> None:
    from latentserve.server.pipelines import LatentDecoderPipeline
    from latentserve.server.settings import ServingOptions
    from server_fakes import FakeDecoder, _spec

    manifest = fake_manifest()
    odd = _spec({"image": ["batch", 1, 8, 8], "junk": ["batch"]}, {"bits_per_dim": ["batch"]}, "lp")
    broken = manifest.model_copy(update={"graphs": {**manifest.graphs, "log_prob": odd}})
    graphs = {role: FakeDecoder() for role in broken.graphs}
    with pytest.raises(ValueError, match="graph 'log_prob' has inputs \\['image', 'junk'\\]"):
        LatentDecoderPipeline(broken, graphs, ServingOptions())
