"""Settings precedence: defaults < TOML file < LATENTSERVE_* environment < explicit flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from latentserve.server.settings import ServingOptions, load_settings
from pydantic import ValidationError

from latentserve.manifest import ServingDefaults

TOML = """
http_port = 9000
backend = "onnxruntime"
max_body_bytes = 1024

[models.vae-tiny]
max_batch_size = 8
max_queue_delay_ms = 0.5
max_concurrent_batches = 3
backend = "torchscript"
"""


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LATENTSERVE_HTTP_PORT", "LATENTSERVE_REPOSITORY", "LATENTSERVE_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.host, settings.http_port, settings.grpc_port) == ("127.0.0.1", 8000, 50051)
    assert settings.repository == Path("models") and settings.backend == "onnxruntime"


def test_toml_env_and_flags_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "server.toml"
    config.write_text(TOML)
    settings = load_settings(config)
    assert settings.http_port == 9000 and settings.max_body_bytes == 1024
    monkeypatch.setenv("LATENTSERVE_HTTP_PORT", "9100")
    monkeypatch.setenv("LATENTSERVE_MODELS__AE_TINY__MAX_N", "3")
    settings = load_settings(config)
    assert settings.http_port == 9100
    # Environment names cannot hold "-": a per-model override there reaches names spelled
    # with "_" (lower-cased); hyphenated model names are overridden in the TOML file.
    assert settings.models["ae_tiny"].max_n == 3
    assert settings.models["vae-tiny"].max_batch_size == 8
    settings = load_settings(config, http_port=9200, grpc_port=None)
    assert settings.http_port == 9200 and settings.grpc_port == 50051


def test_per_model_overrides_apply_on_top_of_the_manifest(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text(TOML)
    settings = load_settings(config)
    manifest_defaults = ServingDefaults(max_batch_size=32, max_n=64)
    tuned = settings.serving_for("vae-tiny", manifest_defaults)
    assert (tuned.max_batch_size, tuned.max_queue_delay_ms, tuned.max_n) == (8, 0.5, 64)
    assert tuned.max_concurrent_batches == 3
    other = settings.serving_for("other", manifest_defaults)
    server_level = set(ServingOptions.model_fields) - set(ServingDefaults.model_fields)
    assert other.model_dump(exclude=server_level) == manifest_defaults.model_dump()
    assert other.max_concurrent_batches == settings.max_concurrent_batches
    assert settings.backend_for("vae-tiny") == "torchscript"
    assert settings.backend_for("other") == "onnxruntime"


def test_concurrent_batches_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATENTSERVE_MAX_CONCURRENT_BATCHES", "4")
    monkeypatch.setenv("LATENTSERVE_MODELS__WIDE__MAX_CONCURRENT_BATCHES", "1")
    settings = load_settings()
    assert settings.serving_for("other", ServingDefaults()).max_concurrent_batches == 4
    assert settings.serving_for("wide", ServingDefaults()).max_concurrent_batches == 1


def test_mistakes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[models.vae-tiny]\nmax_batch_size = 0\n")
    with pytest.raises(ValidationError, match="max_batch_size"):
        load_settings(bad)
    bad.write_text("max_concurrent_batches = 0\n")
    with pytest.raises(ValidationError, match="max_concurrent_batches"):
        load_settings(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text("htp_port = 1\n")
    with pytest.raises(ValidationError, match="htp_port"):
        load_settings(typo)
