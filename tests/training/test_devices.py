"""Devices and mixed precision: --device parsing (CUDA faked where no GPU exists), the
precision each device gets, and the autocast / loss-scaler paths run on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from latentserve.training.devices import Compute, parse_device, resolve_precision
from latentserve.training.trainer import train
from tiny_runs import tiny_config

from latentserve.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """What torch reports on a machine with two CUDA GPUs (no GPU is touched)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_cpu_and_auto_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        parse_device("cuda")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cuda:-1", "tpu:0", ""])
def test_malformed_devices_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="--device must be"):
        parse_device(spec)


@pytest.mark.usefixtures("two_gpus")
def test_cuda_devices_with_gpus() -> None:
    assert parse_device("auto") == torch.device("cuda", 0)
    assert parse_device("cuda") == torch.device("cuda", 0)
    assert parse_device("CUDA:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="only 2 GPU"):
        parse_device("cuda:2")


@pytest.mark.usefixtures("two_gpus")
def test_under_torchrun_each_process_takes_its_local_rank_gpu() -> None:
    assert parse_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert parse_device("cuda", local_rank=0) == torch.device("cuda", 0)
    assert parse_device("cpu", local_rank=1) == torch.device("cpu")
    with pytest.raises(ValueError, match="LOCAL_RANK"):
        parse_device("cuda:0", local_rank=1)


def test_precision_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ValueError, match="--precision must be"):
        resolve_precision("fp8", cpu)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", gpu) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", gpu) == "fp16"  # pre-Ampere GPUs: fp16 + loss scaling
    assert resolve_precision("fp32", gpu) == "fp32"


def test_autocast_and_the_scaler_follow_the_precision() -> None:
    layer = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with Compute(torch.device("cpu"), "bf16").autocast():
        assert layer(x).dtype == torch.bfloat16
    with Compute(torch.device("cpu"), "fp32").autocast():
        assert layer(x).dtype == torch.float32
    assert not Compute(torch.device("cpu"), "bf16").grad_scaler().is_enabled()
    assert Compute(torch.device("cpu"), "fp16").grad_scaler().is_enabled()


def test_bf16_training_runs_its_forward_in_bfloat16(tmp_path: Path) -> None:
    config = tiny_config("ae-tiny", steps=3, log_every=1)
    fp32 = train(config, tmp_path / "fp32", progress=False).model
    bf16 = train(
        config, tmp_path / "bf16", progress=False, compute=Compute(torch.device("cpu"), "bf16")
    ).model
    assert fp32 is not None and bf16 is not None
    weights32, weights16 = fp32.state_dict(), bf16.state_dict()
    # weights stay float32 (mixed precision), close to the fp32 run's but not the same:
    # the forward passes really ran in bfloat16
    assert all(w.dtype == torch.float32 for w in weights16.values() if w.is_floating_point())
    gap = max((weights32[k] - weights16[k]).abs().max().item() for k in weights32)
    assert 0 < gap < 1e-2


def test_fp16_loss_scaling_with_clipping_keeps_a_gan_finite(tmp_path: Path) -> None:
    """The loss scaler skips a step whose gradients overflowed; clipping must then not
    spread that step's infinities into the other phase's optimiser (fp16 autocast runs
    on a CPU too, so the GPU's path is exercised here)."""
    config = tiny_config("dcgan-tiny", steps=4, grad_clip=1.0, log_every=1)
    compute = Compute(torch.device("cpu"), "fp16")  # past resolve_precision, for the test
    result = train(config, tmp_path / "fp16", progress=False, compute=compute)
    assert result.model is not None
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_the_cli_refuses_a_device_it_does_not_have(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["train", "ae-tiny", "--run-dir", str(tmp_path / "run"), "--device", "cuda:1"])
    assert code != 0
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
