"""``latentserve interpolate``: frames between two seeds (or two images) as a PNG strip.

Only argparse at module level, like the other client subcommands.
"""

from __future__ import annotations

import argparse
import sys

from latentserve.clients.cli import DEFAULT_URL, key_value, quiet_http_logs


def register(subparsers: argparse._SubParsersAction) -> None:
    command = subparsers.add_parser(
        "interpolate",
        help="frames along a spherical interpolation between two seeds (or two images)",
    )
    command.add_argument("--url", default=DEFAULT_URL, help="http://host:port or grpc://host:port")
    command.add_argument("--model", required=True, help="model name, or name@version")
    command.add_argument("--seed-a", type=int, help="first frame's seed (default: server draws)")
    command.add_argument("--seed-b", type=int, help="last frame's seed (default: server draws)")
    command.add_argument("--image-a", help="models that encode: start from this image file")
    command.add_argument("--image-b", help="models that encode: end at this image file")
    command.add_argument("--frames", type=int, default=8, help="frames, ends included (2..64)")
    command.add_argument(
        "--param",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="temperature=0.8, steps=20, class_label=3, ... (repeatable)",
    )
    command.add_argument("--scale", type=int, default=1, help="upscale factor of the strip")
    command.add_argument("--out", default="interpolation.png", help="output PNG strip")
    command.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    command.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from latentserve.clients import LatentServeError, connect
    from latentserve.clients.grid import make_grid
    from PIL import Image

    quiet_http_logs()
    try:
        with connect(args.url, timeout=args.timeout) as client:
            result = client.interpolate(
                args.model,
                args.seed_a,
                args.seed_b,
                args.frames,
                image_a=args.image_a,
                image_b=args.image_b,
                **dict(args.param),
            )
    except LatentServeError as exc:
        print(f"latentserve interpolate: {exc}", file=sys.stderr)
        return 1
    strip = make_grid(result.images, columns=len(result.images))
    if args.scale > 1:
        strip = strip.resize((strip.width * args.scale, strip.height * args.scale), Image.NEAREST)
    strip.save(args.out)
    ends = "images" if result.seed_a is None else f"seeds {result.seed_a} -> {result.seed_b}"
    print(f"{len(result.images)} frames from {result.model} ({ends}) -> {args.out}")
    return 0
