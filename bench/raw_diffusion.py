"""The ceiling for diffusion jobs: their graphs called in this process, no server around.

Graphs are opened with the server's own ``OnnxRuntime`` class, so the session options
(threads, no spinning, optimisation level) are the server's. With ``slots`` > 1 a call's
rows are split over that many threads on the one session, in parts of ``ceil(rows /
slots)`` rows, as the server's balanced batcher shares an iteration among its
``max_concurrent_batches`` slots: then "the same batch" means the same graph calls.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from diffusion_sections import loadavg
from latentserve.server.repository.runtime import OnnxRuntime

from latentserve.manifest import Manifest
from latentserve.text_tokens import PromptTokenizer

Arrays = dict[str, np.ndarray]


class RawGraph:
    """One of a model's graphs, called back to back; rows split over ``slots`` threads."""

    def __init__(self, version_dir: Path, role: str, threads: int, slots: int = 1) -> None:
        manifest = Manifest.load(version_dir)
        self.runtime = OnnxRuntime(version_dir / manifest.graphs[role].files["onnx"].path, threads)
        self.slots = slots
        self._pool = ThreadPoolExecutor(slots) if slots > 1 else None

    def run(self, feeds: Arrays) -> None:
        rows = next(iter(feeds.values())).shape[0]
        size = math.ceil(rows / self.slots)
        if self._pool is None or size >= rows:
            self.runtime.run(feeds)
            return
        parts = [
            self._pool.submit(
                self.runtime.run, {k: v[start : start + size] for k, v in feeds.items()}
            )
            for start in range(0, rows, size)
        ]
        for part in parts:
            part.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


def raw_denoiser(
    version_dir: Path,
    threads: int,
    jobs: int,
    guided: bool,
    duration: float,
    seed: int,
    slots: int = 1,
) -> dict:
    """Back-to-back denoiser calls with the rows ``jobs`` running jobs give the server (two
    per job with guidance): the ceiling for the server's job-steps/s."""
    manifest = Manifest.load(version_dir)
    graph = RawGraph(version_dir, "denoiser", threads, slots)
    feeds = denoiser_rows(manifest, jobs, guided, np.random.default_rng(seed))
    for _ in range(3):
        graph.run(feeds)
    times, start, load_start = [], time.perf_counter(), loadavg()
    while (now := time.perf_counter()) - start < duration:
        graph.run(feeds)
        times.append(time.perf_counter() - now)
    elapsed = time.perf_counter() - start
    graph.close()
    return {
        "jobs": jobs,
        "rows": int(feeds["sample"].shape[0]),
        "threads": threads,
        "slots": slots,
        "calls": len(times),
        "job_steps_per_s": len(times) * jobs / elapsed,
        "ms_per_call_p50": float(np.median(times) * 1000.0),
        "loadavg": [load_start, loadavg()],
    }


class RawJobs:
    """``jobs`` guided text-to-image jobs of ``steps`` steps done together by hand, as the
    server does them: one text encoder call for their prompts (the empty negative prompt is
    cached on the server), ``steps`` denoiser calls of 2 × ``jobs`` rows split over
    ``slots``, one decoder call."""

    def __init__(
        self, version_dir: Path, threads: int, slots: int, jobs: int, steps: int, seed: int
    ) -> None:
        manifest = Manifest.load(version_dir)
        assert manifest.text is not None, "RawJobs needs a text-to-image model"
        self.tokenizer = PromptTokenizer(
            version_dir / manifest.assets[manifest.text.tokenizer].path, manifest.text.max_tokens
        )
        # Only the denoiser's calls are split: the server balances that graph alone.
        self.graphs = {
            role: RawGraph(version_dir, role, threads, slots if role == "denoiser" else 1)
            for role in ("text_encoder", "denoiser", "decoder")
        }
        rng = np.random.default_rng(seed)
        self.jobs, self.steps, self.slots = jobs, steps, slots
        self.denoise = denoiser_rows(manifest, jobs, True, rng)
        latent = rng.standard_normal((jobs, *manifest.latent.shape)).astype(np.float32)
        self.decode = {"latent": latent}

    def once(self, prompts: list[str]) -> dict[str, float]:
        """Milliseconds per stage for ``prompts`` (one per job)."""
        ids, mask = self.tokenizer.encode(prompts)
        seconds = {
            "text_encode": _timed(
                self.graphs["text_encoder"].run, {"input_ids": ids, "attention_mask": mask}, 1
            ),
            "denoise": _timed(self.graphs["denoiser"].run, self.denoise, self.steps),
            "decode": _timed(self.graphs["decoder"].run, self.decode, 1),
        }
        return {stage: s * 1000.0 for stage, s in seconds.items()}

    def close(self) -> None:
        for graph in self.graphs.values():
            graph.close()


def _timed(run: Callable[[Arrays], None], feeds: Arrays, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        run(feeds)
    return time.perf_counter() - start


def denoiser_rows(
    manifest: Manifest, jobs: int, guided: bool, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One iteration's denoiser inputs for ``jobs`` jobs of n=1, as the pipeline builds them:
    the graph's declared inputs, class labels then null labels when guided, token states
    of unit variance with a full mask for a prompt."""
    assert manifest.noise_schedule is not None
    rows = jobs * (2 if guided else 1)
    feeds: Arrays = {}
    for tensor in manifest.graphs["denoiser"].inputs:
        shape = [rows if isinstance(d, str) else d for d in tensor.shape]
        if tensor.name == "timestep":
            values = rng.integers(0, manifest.noise_schedule.num_train_timesteps, rows)
        elif tensor.name == "class_label":
            cond = manifest.conditioning
            assert cond is not None
            labels = rng.integers(cond.num_classes, size=jobs)
            values = np.concatenate(
                [labels, np.full(jobs, cond.null_label)] if guided else [labels]
            )
        elif tensor.name == "encoder_attention_mask":
            values = np.ones(shape)
        else:
            values = rng.standard_normal(shape)
        feeds[tensor.name] = values.astype(tensor.dtype)
    return feeds
