"""Benchmark: interpolation frames/s per model, against sampling the same number of images,
measured in one run against one real server.

For each model with the ``interpolate`` capability, ``--frames`` frames between two seeds
over REST and over gRPC (streamed frame by frame), and ``sample`` with n = frames over gRPC
as the baseline (the same graph calls without the slerp, the per-frame messages or, for
diffusion, the fixed DDIM sampler). Medians of ``--repeats`` requests; extra parameters
(``--param steps=20``) go to both calls.

    python bench/interpolate.py --repository runs/families-repository --param steps=20
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from latentserve.clients import GrpcClient, RestClient
from latentserve.clients.cli import key_value
from latentserve.clients.local import LocalServer
from timing import median_seconds


def _streamed(client: GrpcClient, model: str, frames: int, params: dict) -> list:
    return list(client.stream_interpolate(model, 1, 2, frames, **params))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--models", nargs="*", help="names to measure (default: every one)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--param", action="append", type=key_value, default=[])
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    rows = []
    with (
        LocalServer(args.repository) as server,
        GrpcClient(server.grpc_target, timeout=3600) as grpc,
        RestClient(server.http_url, timeout=3600) as rest,
    ):
        models = [m for m in grpc.list_models() if "interpolate" in m.capabilities]
        for info in models:
            if args.models and info.name not in args.models:
                continue
            params = {k: v for k, v in args.param if k in info.sample_parameters}
            frames = args.frames
            calls = {
                "interpolate_grpc": partial(_streamed, grpc, info.name, frames, params),
                "interpolate_rest": partial(rest.interpolate, info.name, 1, 2, frames, **params),
                "sample_grpc": partial(grpc.sample, info.name, frames, seed=1, **params),
            }
            row = {"model": f"{info.name}@{info.version}", "frames": frames, "params": params}
            for name, call in calls.items():
                row[name] = frames / median_seconds(call, args.repeats)
            rows.append(row)
            print(row, flush=True)
    print("| model | frames | interpolate gRPC frames/s | REST frames/s | sample gRPC images/s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} {r['params'] or ''} | {r['frames']} | {r['interpolate_grpc']:.1f} "
            f"| {r['interpolate_rest']:.1f} | {r['sample_grpc']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
