"""Client subcommands: ``latentserve sample`` (a PNG grid of samples) and ``latentserve models``.

Only argparse at module level: the SDK (httpx, grpcio, Pillow) loads inside the commands.
"""

from __future__ import annotations

import argparse
import sys

DEFAULT_URL = "http://127.0.0.1:8000"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sample`` and ``models`` to the ``latentserve`` command."""
    url_help = "server URL: http://host:port (REST) or grpc://host:port (default %(default)s)"

    sample = subparsers.add_parser(
        "sample", help="draw images from a served model and save them as a PNG grid"
    )
    sample.add_argument("--url", default=DEFAULT_URL, help=url_help)
    sample.add_argument("--model", required=True, help="model name, or name@version")
    sample.add_argument("-n", type=int, default=16, help="number of images (default 16)")
    sample.add_argument("--seed", type=int, default=None, help="seed (default: server draws one)")
    sample.add_argument("--temperature", type=float, default=1.0, help="prior scale (default 1)")
    sample.add_argument("--columns", type=int, default=None, help="grid columns (default ~sqrt n)")
    sample.add_argument("--scale", type=int, default=1, help="upscale factor of the grid")
    sample.add_argument("--out", default="grid.png", help="output PNG (default %(default)s)")
    sample.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    sample.set_defaults(func=_run_sample)

    models = subparsers.add_parser("models", help="list the models a server serves")
    models.add_argument("--url", default=DEFAULT_URL, help=url_help)
    models.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    models.set_defaults(func=_run_models)


def quiet_http_logs() -> None:
    """httpx logs every request at INFO; a one-shot command should print only its result."""
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)


def _run_sample(args: argparse.Namespace) -> int:
    from latentserve.clients import LatentServeError, connect
    from latentserve.clients.grid import make_grid
    from PIL import Image

    quiet_http_logs()
    try:
        with connect(args.url, timeout=args.timeout) as client:
            result = client.sample(args.model, args.n, seed=args.seed, temperature=args.temperature)
    except LatentServeError as exc:
        print(f"latentserve sample: {exc}", file=sys.stderr)
        return 1
    grid = make_grid(result.images, columns=args.columns)
    if args.scale > 1:
        grid = grid.resize((grid.width * args.scale, grid.height * args.scale), Image.NEAREST)
    grid.save(args.out)
    print(f"{len(result.images)} images from {result.model} (seed {result.seed}) -> {args.out}")
    return 0


def _run_models(args: argparse.Namespace) -> int:
    from latentserve.clients import LatentServeError, connect

    quiet_http_logs()
    try:
        with connect(args.url, timeout=args.timeout) as client:
            models = client.list_models()
    except LatentServeError as exc:
        print(f"latentserve models: {exc}", file=sys.stderr)
        return 1
    rows = [("MODEL", "FAMILY", "IMAGE", "LATENT", "CAPABILITIES", "VERSIONS")]
    for m in models:
        rows.append(
            (
                f"{m.name}@{m.version}",
                m.family,
                f"{m.image.height}x{m.image.width}x{m.image.channels}",
                "x".join(str(d) for d in m.latent_shape),
                ",".join(m.capabilities),
                ",".join(m.versions),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0
