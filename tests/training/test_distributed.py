"""Data-parallel training under ``torchrun``: two CPU processes (gloo) against one.

Two processes split every global batch in halves and average their gradients, which is
the gradient of the whole batch: their weights must be identical to each other (they
apply the same averaged update) and match one process trained on the same global batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from latentserve.training.config import RunConfig
from latentserve.training.trainer import train
from safetensors.torch import load_file
from tiny_runs import tiny_config

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("ddp_worker.py")
REPO = Path(__file__).resolve().parents[2]
# The two-process weights may differ from one process's only by float32 rounding: the
# full-batch mean gradient is computed as the mean of two half-batch means (another
# summation order), about 1e-7 relative per gradient. Adam divides by sqrt(v), which
# keeps those differences at the size of the lr times a relative rounding error per step;
# over 6 steps at lr 3e-3 that is orders of magnitude below 1e-5 (observed: 4e-7). A
# sharding or averaging mistake (each rank on the wrong half, gradients summed, not
# averaged) moves weights by about lr per step, 1e-3: the tolerance tells them apart.
ATOL = 1e-5


def run_torchrun(config: RunConfig, out: Path, stop_at: int | None = None) -> None:
    """``torchrun --standalone --nproc_per_node 2 ddp_worker.py`` on CPU processes."""
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "config.json"
    config_path.write_text(json.dumps(config.to_dict()))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(WORKER),
        str(config_path),
        str(out),
    ]
    if stop_at is not None:
        command.append(str(stop_at))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def replicas(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return load_file(str(run_dir / "rank0.safetensors")), load_file(
        str(run_dir / "rank1.safetensors")
    )


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    differing = [name for name in a if not torch.equal(a[name], b[name])]
    assert not differing, f"replicas differ in {differing[:5]}"


def test_two_processes_match_one_process_at_the_same_global_batch(tmp_path: Path) -> None:
    # one intra-op thread in every process (train() otherwise sets two), so no reduction is
    # split across threads and what is left is how the batch's gradient is summed: one mean,
    # or two half means all-reduced. With two threads one full-suite run measured 3.0e-5.
    config = tiny_config("ae-tiny", steps=6, log_every=3, num_threads=1)
    run_torchrun(config, tmp_path / "ddp")
    rank0, rank1 = replicas(tmp_path / "ddp" / "full")
    assert_identical(rank0, rank1)

    single = train(config, tmp_path / "single", progress=False).model
    assert single is not None
    worst = max((single.state_dict()[k] - rank0[k]).abs().max().item() for k in rank0)
    assert worst < ATOL, f"2 processes vs 1: max weight difference {worst:.3g} >= {ATOL}"
    logged = [json.loads(line) for line in (tmp_path / "ddp" / "full" / "metrics.jsonl").open()]
    assert [r["step"] for r in logged if r["event"] == "train"] == [3, 6]  # rank 0 logs, once


def test_gan_phases_and_ema_stay_identical_across_ranks_and_resume_exactly(
    tmp_path: Path,
) -> None:
    # R1 every 4 steps and an EMA generator: 5 steps cross one lazy R1 step after the resume
    config = tiny_config("stylegan2-tiny", steps=5)
    run_torchrun(config, tmp_path, stop_at=2)
    full0, full1 = replicas(tmp_path / "full")
    assert_identical(full0, full1)
    assert int(full0["steps_done"]) == 5
    ema = [k for k in full0 if k.startswith("ema.shadow.")]
    assert ema and any(
        not torch.equal(full0[k], full0[k.replace("ema.shadow.", "generator.")]) for k in ema
    )
    resumed0, resumed1 = replicas(tmp_path / "resumed")
    assert_identical(resumed0, resumed1)
    assert_identical(full0, resumed0)
