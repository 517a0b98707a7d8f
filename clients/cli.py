"""Client subcommands: ``latentserve sample`` (a PNG grid of samples) and ``latentserve models``.

Only argparse at module level: the SDK (httpx, grpcio, Pillow) loads inside the commands.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from latentserve.clients.params import typed_value

if TYPE_CHECKING:
    from latentserve.clients import Client, SampleResult

DEFAULT_URL = "http://127.0.0.1:8000"
ADMIN_TOKEN_ENV = "LATENTSERVE_ADMIN_TOKEN"
# Sample parameters with an option of their own; --param KEY=VALUE reaches every other.
SHORTCUTS = ("temperature", "steps", "sampler", "guidance_scale", "class_label")


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
    sample.add_argument(
        "--prompt", help="text-to-image models: what to draw (runs text-to-image, not sample)"
    )
    sample.add_argument("--temperature", type=float, help="prior scale (VAE-like models)")
    sample.add_argument("--steps", type=int, help="denoiser steps (diffusion models)")
    sample.add_argument("--sampler", help="ddpm, ddim, dpmpp_2m or euler_a (diffusion models)")
    sample.add_argument("--guidance-scale", type=float, help="classifier-free guidance scale")
    sample.add_argument("--class-label", type=int, help="class to draw (conditional models)")
    sample.add_argument(
        "--param",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="any sample parameter of the model's kind (repeatable; int, float or text)",
    )
    sample.add_argument(
        "--progress", action="store_true", help="follow the job and show its progress"
    )
    sample.add_argument("--columns", type=int, default=None, help="grid columns (default ~sqrt n)")
    sample.add_argument("--scale", type=int, default=1, help="upscale factor of the grid")
    sample.add_argument("--out", default="grid.png", help="output PNG (default %(default)s)")
    sample.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    add_connection_options(sample)
    sample.set_defaults(func=_run_sample)

    models = subparsers.add_parser("models", help="list the models a server serves")
    models.add_argument("--url", default=DEFAULT_URL, help=url_help)
    models.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    add_connection_options(models)
    models.set_defaults(func=_run_models)

    reload = subparsers.add_parser(
        "reload",
        help="have a server serve what its model repository holds now (admin token)",
        description="Load new versions, unload removed ones, report broken ones. The admin "
        f"token comes from --admin-token-file or ${ADMIN_TOKEN_ENV}. Exits 1 if a version "
        "was refused.",
    )
    reload.add_argument("--url", default=DEFAULT_URL, help=url_help)
    reload.add_argument("--admin-token-file", type=Path, help="file holding the admin token")
    reload.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")
    reload.set_defaults(func=_run_reload)


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """The bearer token and TLS files of ``--url``, each defaulting to its environment
    variable (the token's value is never shown in --help)."""
    env = os.environ.get
    parser.add_argument(
        "--token",
        default=env("LATENTSERVE_TOKEN"),
        help="bearer token for a server that requires one (default $LATENTSERVE_TOKEN, "
        "which other users cannot read in the process list)",
    )
    parser.add_argument(
        "--ca-file",
        default=env("LATENTSERVE_CA_FILE"),
        help="CA certificate that signed an https:// or grpcs:// server's certificate "
        "(default $LATENTSERVE_CA_FILE, else the system's trusted CAs)",
    )
    parser.add_argument(
        "--client-cert",
        default=env("LATENTSERVE_CLIENT_CERT"),
        help="client certificate for a server that requires one (default $LATENTSERVE_CLIENT_CERT)",
    )
    parser.add_argument(
        "--client-key",
        default=env("LATENTSERVE_CLIENT_KEY"),
        help="key of --client-cert (default $LATENTSERVE_CLIENT_KEY)",
    )


def connect_from_args(args: argparse.Namespace) -> Client:
    """The SDK client for ``--url`` with the options of :func:`add_connection_options`."""
    from latentserve.clients import connect

    return connect(
        args.url,
        timeout=args.timeout,
        token=args.token,
        ca_file=args.ca_file,
        client_cert=args.client_cert,
        client_key=args.client_key,
    )


def key_value(text: str) -> tuple[str, int | float | str]:
    """``steps=20`` -> ``("steps", 20)``: an int if it reads as one, else a float, else text."""
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, typed_value(value)


def sample_params(args: argparse.Namespace) -> dict[str, int | float | str]:
    """The ``--param`` pairs and the shortcut options given; a name given twice is refused
    rather than one of its values silently winning."""
    shortcuts = [(name, getattr(args, name)) for name in SHORTCUTS]
    params: dict[str, int | float | str] = {}
    for name, value in [*args.param, *shortcuts]:
        if value is None:
            continue
        if name in ("n", "seed"):
            raise ValueError(f"--param {name}=...: use -n and --seed")
        if name in params:
            raise ValueError(f"sample parameter {name!r} is given twice")
        params[name] = value
    return params


class ProgressDisplay:
    """A tqdm bar when tqdm is installed, plain lines on stderr otherwise: tqdm comes with
    the train extra, and a serving install must not need it."""

    def __init__(self) -> None:
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        self._tqdm = tqdm
        self._bar = None

    def queued(self, position: int) -> None:
        print(f"queued at position {position}", file=sys.stderr)

    def step(self, step: int, steps: int) -> None:
        if self._tqdm is None:
            print(f"step {step}/{steps}", file=sys.stderr)
            return
        if self._bar is None:
            self._bar = self._tqdm(total=steps, unit="step", file=sys.stderr)
        self._bar.update(step - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _sample_with_progress(
    client: Client, model: str, n: int, seed: int | None, params: dict, prompt: str | None
) -> SampleResult:
    from latentserve.clients import Progress, Queued, Result

    display = ProgressDisplay()
    if prompt is None:
        events = client.sample_events(model, n, seed, **params)
    else:
        events = client.text_to_image_events(model, prompt, n, seed, **params)
    try:
        for event in events:
            if isinstance(event, Queued):
                display.queued(event.position)
            elif isinstance(event, Progress):
                display.step(event.step, event.steps)
            elif isinstance(event, Result):
                return event.result
    finally:
        display.close()
    raise AssertionError("sample_events ends with a Result or raises")


def quiet_http_logs() -> None:
    """httpx logs every request at INFO; a one-shot command should print only its result."""
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)


def _run_sample(args: argparse.Namespace) -> int:
    from latentserve.clients import LatentServeError
    from latentserve.clients.grid import make_grid
    from PIL import Image

    params = sample_params(args)
    quiet_http_logs()
    try:
        with connect_from_args(args) as client:
            if args.progress:
                result = _sample_with_progress(
                    client, args.model, args.n, args.seed, params, args.prompt
                )
            elif args.prompt is not None:
                result = client.text_to_image(args.model, args.prompt, args.n, args.seed, **params)
            else:
                result = client.sample(args.model, args.n, args.seed, **params)
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
    from latentserve.clients import LatentServeError

    quiet_http_logs()
    try:
        with connect_from_args(args) as client:
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


def _run_reload(args: argparse.Namespace) -> int:
    from latentserve.clients import LatentServeError, connect

    if args.admin_token_file is not None:
        token = args.admin_token_file.read_text().strip()
    else:
        token = os.environ.get(ADMIN_TOKEN_ENV, "")
    if not token:
        print(f"latentserve reload: give --admin-token-file or ${ADMIN_TOKEN_ENV}", file=sys.stderr)
        return 2
    quiet_http_logs()
    try:
        with connect(args.url, timeout=args.timeout) as client:
            result = client.reload_repository(token)
    except LatentServeError as exc:
        print(f"latentserve reload: {exc}", file=sys.stderr)
        return 1
    for label in result.loaded:
        print(f"loaded   {label}")
    for label in result.removed:
        print(f"removed  {label} (unloaded once its requests finish)")
    for label, error in result.refused.items():
        print(f"refused  {label}: {error}")
    if not (result.loaded or result.removed or result.refused):
        print("nothing changed")
    return 1 if result.refused else 0
