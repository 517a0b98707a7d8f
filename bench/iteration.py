"""Benchmark: iteration-level vs request-level step batching in two cost regimes.

- ``flat``: the regime iteration-level batching is built for (a GPU's): a synthetic DDPM
  (``synthetic_denoiser``: a real DDPM's manifest over a near-free denoiser graph) served
  under the ``flat_cost`` device model, where a denoiser call costs ``--base-ms`` for up
  to ``--flat-rows`` rows. ``max_running_jobs`` is set so that every running job's rows
  (two per guided job) fit one flat call. A synthetic cost model, stated as such.
- ``cpu``: the same jobs on a real DDPM's denoiser on this CPU, where a call's cost is
  linear in its rows (``bench/diffusion.py``'s settings).

Per regime, two real servers differ only in ``step_batching`` (as ``bench/diffusion.py``
starts them); each gets a closed-loop capacity run, then open-loop Poisson arrivals of
``Sample(n=1, ddim)`` jobs with steps drawn from ``--steps``, at ``--rate-factors`` × the
request-level capacity, the same seeded schedule for both modes, alternating mode by mode.

    python bench/iteration.py --repository runs/bench-repository --model ddpm-mnist \
        --json out/bench-iteration.json --plot bench/iteration.png
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory

import diffusion
from diffusion_load import STEP_CHOICES, schedule
from diffusion_report import poisson_table, ratio_table
from diffusion_sections import Target, capacity, poisson_rate
from flat_cost import FlatCost, launcher
from latentserve.clients.local import LocalServer
from synthetic_denoiser import write_synthetic

MODES = diffusion.MODES
REGIMES = ("flat", "cpu")
FLAT_MODEL = "ddpm-flat"


def regime_args(args: argparse.Namespace, regime: str, work: Path) -> argparse.Namespace:
    """The per-regime settings ``diffusion.settings_toml`` and ``model_target`` read."""
    common = {"method": "sample", "prompts": None, "timeout": args.timeout, "threads": 1}
    if regime == "cpu":
        return argparse.Namespace(
            **common, repository=args.repository, model=args.model,
            max_batch_size=16, concurrent_batches=2, max_running_jobs=args.cpu_running_jobs,
        )  # fmt: skip
    repository = work / "flat-repository"
    template = args.repository / args.model
    versions = sorted((p for p in template.iterdir() if p.is_dir()), key=lambda p: int(p.name))
    write_synthetic(versions[-1], repository, FLAT_MODEL)
    return argparse.Namespace(
        **common, repository=repository, model=FLAT_MODEL, max_batch_size=args.flat_rows,
        concurrent_batches=1, max_running_jobs=args.flat_rows // 2,  # two rows per guided job
    )  # fmt: skip


async def measure(args: argparse.Namespace, targets: dict[str, Target]) -> dict:
    """Capacity per mode, then each Poisson rate for both modes in turn."""
    out: dict = {mode: {"rates": []} for mode in MODES}
    for mode in MODES:
        cap = await capacity(
            targets[mode], args.capacity_clients, args.capacity_duration, args.seed
        )
        out[mode]["capacity"] = cap
        print(f"  [{mode:>9}] capacity {cap['images_per_s']:.2f} jobs/s", flush=True)
    rates = [round(f * out["request"]["capacity"]["images_per_s"], 2) for f in args.rate_factors]
    choices = targets["request"].workload.choices
    for i, rate in enumerate(rates):
        arrivals = schedule(
            rate, args.duration, choices, args.seed + i, args.max_requests, args.steps
        )
        for mode in MODES:
            row = await poisson_rate(targets[mode], rate, arrivals)
            out[mode]["rates"].append(row)
            diffusion.report(mode, row)
    return out


def run_regime(args: argparse.Namespace, regime: str, work: Path) -> dict:
    """Start both servers of one regime, measure, stop them."""
    settings = regime_args(args, regime, work)
    cost = FlatCost(args.base_ms / 1000.0, args.flat_rows)
    with ExitStack() as stack:
        targets = {}
        for mode in MODES:
            config = work / f"settings-{regime}-{mode}.toml"
            config.write_text(diffusion.settings_toml(settings, mode))
            log = work / f"server-{regime}-{mode}.log"
            print(f"[{regime}/{mode}] starting server (log {log})", flush=True)
            kwargs = {"launcher": launcher(cost)} if regime == "flat" else {}
            server = stack.enter_context(
                LocalServer(settings.repository, ["--config", str(config)], log_path=log, **kwargs)
            )
            target = diffusion.model_target(server, settings)
            workload = dataclasses.replace(target.workload, steps=tuple(args.steps))
            targets[mode] = dataclasses.replace(target, workload=workload)
        results = asyncio.run(measure(args, targets))
    for mode in MODES:
        results[mode]["settings_toml"] = (work / f"settings-{regime}-{mode}.toml").read_text()
    results["model"] = settings.model
    results["max_running_jobs"] = settings.max_running_jobs
    results["cost_model"] = cost.describe() if regime == "flat" else "this CPU (linear in rows)"
    if regime == "flat":
        results["ceiling"] = static_batch_ceiling(args.steps, settings.max_running_jobs)
    return results


def static_batch_ceiling(steps: list[int], jobs: int) -> float:
    """Iteration- over request-level throughput when both keep ``jobs`` jobs running and a
    call costs the same whatever its rows: a request-level batch lasts as long as its
    longest job, so the ratio is E[max of ``jobs`` draws] / E[steps] (steps uniform over
    ``steps``)."""
    values = sorted(set(steps))
    share = [steps.count(v) / len(steps) for v in values]
    below, expected_max = 0.0, 0.0
    for value, p in zip(values, share, strict=True):
        expected_max += value * ((below + p) ** jobs - below**jobs)
        below += p
    return expected_max / (sum(steps) / len(steps))


def markdown(results: dict) -> str:
    parts = []
    for regime in results["regimes"]:
        r = results[regime]
        ceiling = (
            f"; throughput ceiling at equal running jobs {r['ceiling']:.2f}x"
            if regime == "flat"
            else ""
        )
        parts.append(
            f"**{regime}** ({r['model']}, {r['cost_model']}, max_running_jobs "
            f"{r['max_running_jobs']}{ceiling}):\n\n{poisson_table(r)}\n\n{ratio_table(r)}"
        )
    return "\n\n".join(parts) + "\n"


def plot(results: dict, path: Path) -> None:
    """Jobs/s and p50 against the offered rate, per regime and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = results["regimes"]
    fig, axes = plt.subplots(
        2, len(regimes), figsize=(max(6.5, 5.5 * len(regimes)), 7), squeeze=False
    )
    for col, regime in enumerate(regimes):
        for mode, marker, color in zip(MODES, "os", ("C0", "C1"), strict=True):
            rows = results[regime][mode]["rates"]
            offered = [r["rate"] for r in rows]
            done = [r["images_per_s"] for r in rows]
            axes[0][col].plot(offered, done, marker=marker, color=color, label=mode)
            capacity = results[regime][mode]["capacity"]["images_per_s"]
            axes[0][col].axhline(
                capacity, color=color, ls="--", lw=0.8, label=f"{mode}, closed loop"
            )
            axes[1][col].plot(
                offered, [r["p50_ms"] for r in rows], marker=marker, color=color, label=mode
            )
        axes[0][col].set_title(f"{regime}: {results[regime]['cost_model']}", fontsize=9)
        axes[0][col].set_ylabel("completed jobs/s")
        axes[1][col].set_ylabel("p50 latency, ms")
        axes[1][col].set_xlabel("offered Poisson rate, jobs/s")
        axes[1][col].set_yscale("log")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
            ax.legend()
    fig.suptitle(
        f"Iteration- vs request-level step batching, steps from {results['steps']}", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", type=Path, required=True, help="holds --model")
    p.add_argument("--model", default="ddpm-mnist", help="a class-conditional DDPM")
    p.add_argument("--regimes", nargs="+", choices=REGIMES, default=list(REGIMES))
    p.add_argument("--steps", type=int, nargs="+", default=list(STEP_CHOICES))
    p.add_argument("--base-ms", type=float, default=30.0, help="flat: one call's time")
    p.add_argument("--flat-rows", type=int, default=32, help="flat: rows a call costs base-ms")
    p.add_argument("--cpu-running-jobs", type=int, default=64, help="cpu: max_running_jobs")
    p.add_argument("--rate-factors", type=float, nargs="+", default=[0.5, 1.0, 2.0, 3.0])
    p.add_argument("--duration", type=float, default=20.0, help="seconds of arrivals per rate")
    p.add_argument("--max-requests", type=int, default=2000, help="cap per rate")
    p.add_argument("--capacity-clients", type=int, default=32)
    p.add_argument("--capacity-duration", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=300.0, help="deadline of each request, s")
    p.add_argument("--json", type=Path, help="write every figure as JSON")
    p.add_argument("--plot", type=Path, help="write the plot here (needs matplotlib)")
    p.add_argument("--workdir", type=Path, help="keep settings, server logs, flat repository")
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.capacity_duration, args.capacity_clients = 1.5, 1.5, 8
        args.rate_factors, args.max_requests = [1.0], 60
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with TemporaryDirectory(prefix="bench-iteration-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results: dict = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "cpu_count": os.cpu_count(),
            "steps": args.steps,
            "regimes": args.regimes,
        }
        for regime in args.regimes:
            results[regime] = run_regime(args, regime, work)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        plot(results, args.plot)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
