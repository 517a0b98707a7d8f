"""The iteration-level benchmark's parts: the flat device cost model, the synthetic
denoiser it serves, and a seconds-long run of both batching modes under it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import onnx_session

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from flat_cost import FlatCost, FlatCostRuntime  # noqa: E402
from iteration import static_batch_ceiling  # noqa: E402
from synthetic_denoiser import write_synthetic  # noqa: E402

from latentserve.manifest import Manifest  # noqa: E402


class Echo:
    """A graph that returns its input at once."""

    backend = "echo"
    providers = ["cpu"]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"prediction": inputs["sample"]}


def rows(n: int) -> dict[str, np.ndarray]:
    return {"sample": np.arange(n, dtype=np.float32)}


def test_flat_cost_is_flat_up_to_its_rows_then_per_chunk() -> None:
    cost = FlatCost(base_s=0.03, flat_rows=32)
    assert cost.seconds(1) == cost.seconds(32) == pytest.approx(0.03)
    assert cost.seconds(33) == cost.seconds(64) == pytest.approx(0.06)
    with pytest.raises(ValueError):
        FlatCost(base_s=0.0, flat_rows=32)


def test_runtime_takes_the_modelled_time_one_call_at_a_time() -> None:
    runtime = FlatCostRuntime(Echo(), FlatCost(base_s=0.05, flat_rows=4), threading.Lock())
    started = time.perf_counter()
    out = runtime.run(rows(4))
    assert time.perf_counter() - started >= 0.05
    np.testing.assert_array_equal(out["prediction"], rows(4)["sample"])
    started = time.perf_counter()
    runtime.run(rows(5))  # two chunks
    assert time.perf_counter() - started >= 0.1
    # Two calls at once share the one device: they queue, as kernels do.
    started = time.perf_counter()
    threads = [threading.Thread(target=runtime.run, args=(rows(2),)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - started >= 0.1
    assert runtime.calls == 4 and runtime.overruns == 0


def test_static_batch_ceiling() -> None:
    assert static_batch_ceiling([10, 25, 50], 1) == pytest.approx(1.0)
    assert static_batch_ceiling([20, 20], 16) == pytest.approx(1.0)
    # Two jobs from {10, 50}: the batch lasts 50 unless both drew 10 (1 in 4).
    assert static_batch_ceiling([10, 50], 2) == pytest.approx((0.25 * 10 + 0.75 * 50) / 30)


def test_synthetic_denoiser_serves_the_template_manifest(
    diffusion_repository: Path, tmp_path: Path
) -> None:
    version_dir = write_synthetic(diffusion_repository / "ddpm-tiny" / "1", tmp_path, "ddpm-flat")
    manifest = Manifest.load(version_dir)
    template = Manifest.load(diffusion_repository / "ddpm-tiny" / "1")
    assert (manifest.name, manifest.version) == ("ddpm-flat", "1")
    assert manifest.noise_schedule == template.noise_schedule
    assert manifest.conditioning == template.conditioning
    sample = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    feed = {
        "sample": sample,
        "timestep": np.full(3, 5.0, np.float32),
        "class_label": np.arange(3, dtype=np.int64),
    }
    (prediction,) = onnx_session(version_dir, "denoiser").run(None, feed)
    np.testing.assert_allclose(prediction, 0.5 * sample)


@pytest.mark.slow
def test_iteration_bench_quick(diffusion_repository: Path, tmp_path: Path) -> None:
    out, plot = tmp_path / "iteration.json", tmp_path / "iteration.png"
    command = [
        sys.executable, str(BENCH / "iteration.py"), "--repository", str(diffusion_repository),
        "--model", "ddpm-tiny", "--regimes", "flat", "--quick", "--json", str(out),
        "--plot", str(plot), "--workdir", str(tmp_path / "work"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert results["regimes"] == ["flat"] and results["steps"] == [10, 25, 50]
    flat = results["flat"]
    assert flat["model"] == "ddpm-flat" and flat["max_running_jobs"] == 16
    assert flat["cost_model"].startswith("30 ms per call of up to 32 rows")
    for mode in ("request", "iteration"):
        assert flat[mode]["capacity"]["completed"] > 0, mode
        (row,) = flat[mode]["rates"]
        assert row["errors"] == 0 and row["completed"] == row["requests"] > 0, row
        assert row["images_per_s"] > 0 and row["p50_ms"] > 0, row
        assert 'step_batching = "' + mode + '"' in flat[mode]["settings_toml"]
    # The servers ran under the cost model, and the synthetic graph stayed within it.
    log = (tmp_path / "work" / "server-flat-iteration.log").read_text()
    assert "every graph call costs 30 ms per call of up to 32 rows" in log
    assert "over the modelled" not in log
    assert plot.stat().st_size > 0
    assert "**flat** (ddpm-flat" in done.stdout
