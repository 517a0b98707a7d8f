"""A synthetic device cost model for graph calls, and ``latentserve serve`` run under it.

On a GPU a denoiser call costs about the same for one row as for a few dozen, up to a
limit; on a CPU core it costs the same per row. Iteration-level step batching only pays in
the first regime, which this machine does not have, so the benchmark models it: every
graph call of the served process takes

    base_s × ceil(rows / flat_rows)

of wall time — flat up to ``flat_rows`` rows, then one more ``base_s`` per further chunk —
and calls wait for one another, as kernels queue on one device. The real graph still runs
(its outputs are what the server returns); the wrapper then sleeps what is left of the
modelled time. Sleeping releases the GIL, as waiting on a GPU kernel does, so the event
loop keeps serving meanwhile. A call whose real compute already exceeds the modelled time
is counted and logged: the model is only faithful while the graph is cheap next to
``base_s`` (the synthetic denoiser of ``synthetic_denoiser`` is).

Run as a program it is ``latentserve serve`` with that cost on every graph:

    python bench/flat_cost.py --base-ms 30 --flat-rows 32 serve --repository REPO ...

(every ``serve`` flag and setting works as usual). Nothing in the server knows about it:
it passes its own graph opener through the opener parameter the server already takes.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from latentserve.server.repository.runtime import Runtime, open_graph
from latentserve.server.repository.store import GraphOpener

from latentserve.manifest import GraphSpec

log = logging.getLogger("bench.flat_cost")


@dataclass(frozen=True)
class FlatCost:
    """Wall time of one graph call: ``base_s`` per started chunk of ``flat_rows`` rows."""

    base_s: float
    flat_rows: int

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.flat_rows < 1:
            raise ValueError(f"need base_s > 0 and flat_rows >= 1, not {self}")

    def seconds(self, rows: int) -> float:
        return self.base_s * math.ceil(rows / self.flat_rows)

    def describe(self) -> str:
        return (
            f"{self.base_s * 1000:g} ms per call of up to {self.flat_rows} rows, "
            f"+{self.base_s * 1000:g} ms per further {self.flat_rows}"
        )


class FlatCostRuntime:
    """A runtime whose calls take the modelled time, one at a time on a shared device."""

    def __init__(self, inner: Runtime, cost: FlatCost, device: threading.Lock) -> None:
        self._inner = inner
        self._cost = cost
        self._device = device
        self.backend = inner.backend
        self.providers = list(inner.providers)
        self.calls = 0
        self.overruns = 0  # calls whose real compute alone took longer than the model

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = next(iter(inputs.values())).shape[0]
        with self._device:
            started = time.perf_counter()
            outputs = self._inner.run(inputs)
            modelled = self._cost.seconds(rows)
            left = modelled - (time.perf_counter() - started)
            self.calls += 1
            if left > 0:
                time.sleep(left)
            else:
                self.overruns += 1
                log.warning(
                    "graph call of %d rows took %.1f ms of compute, over the modelled %.1f ms "
                    "(%d of %d calls so far)",
                    rows, (modelled - left) * 1000, modelled * 1000, self.overruns, self.calls,
                )  # fmt: skip
        return outputs


def flat_cost_opener(cost: FlatCost, opener: GraphOpener = open_graph) -> GraphOpener:
    """Open graphs as ``opener`` does, each wrapped in ``cost`` on one shared device."""
    device = threading.Lock()

    def open_with_cost(version_dir: Path, spec: GraphSpec, backend: str, threads: int) -> Runtime:
        return FlatCostRuntime(opener(version_dir, spec, backend, threads), cost, device)

    return open_with_cost


def launcher(cost: FlatCost) -> list[str]:
    """The command that runs ``latentserve serve`` under ``cost`` (``LocalServer``'s
    ``launcher``)."""
    return [
        sys.executable, str(Path(__file__).resolve()),
        "--base-ms", f"{cost.base_s * 1000:g}", "--flat-rows", str(cost.flat_rows),
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    from latentserve.server import cli as server_cli

    from latentserve.cli import build_parser

    own = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    own.add_argument("--base-ms", type=float, required=True, help="time of a call, ms")
    own.add_argument("--flat-rows", type=int, required=True, help="rows a call costs base-ms")
    known, rest = own.parse_known_args(argv)
    args = build_parser().parse_args(rest)
    if args.command != "serve":
        own.error("only the serve command runs under a cost model")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cost = FlatCost(known.base_ms / 1000.0, known.flat_rows)
    log.info("every graph call costs %s (synthetic device model)", cost.describe())
    return server_cli.serve(args, flat_cost_opener(cost))


if __name__ == "__main__":
    sys.exit(main())
