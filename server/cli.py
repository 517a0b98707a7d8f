"""``latentserve serve``: the batched inference server.

Only argparse at module level: the heavy imports (ONNX Runtime, gRPC, FastAPI) happen when
the command runs, and torch only for ``--build-default`` or a TorchScript backend.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from latentserve.server.repository.store import GraphOpener


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model repository over REST and gRPC",
        description="Serve every model under a repository folder over REST and gRPC "
        "from one process (or --workers N on the same ports). Settings: defaults < --config "
        "TOML < LATENTSERVE_* env < flags.",
    )
    p.add_argument("--repository", type=Path, help="model repository folder (default models)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--http-port", type=int, help="REST port (default 8000)")
    p.add_argument("--grpc-port", type=int, help="gRPC port (default 50051)")
    p.add_argument(
        "--port-file",
        type=Path,
        help='once listening, write the actual ports here as JSON {"http": N, "grpc": N} '
        "(with --http-port 0 --grpc-port 0 the system picks free ones)",
    )
    p.add_argument("--config", type=Path, help="TOML settings file ([models.NAME] tables)")
    p.add_argument(
        "--workers",
        type=int,
        help="serving processes sharing the ports (default 1; more need job_store = "
        '"redis"; see docs/workers.md)',
    )
    p.add_argument(
        "--backend",
        choices=["onnxruntime", "torchscript"],
        help="graph runtime for models without a per-model override (default onnxruntime)",
    )
    p.add_argument(
        "--auth-tokens-file",
        type=Path,
        help="require a bearer token from this file (one a line) on every non-exempt call",
    )
    p.add_argument("--tls-cert", type=Path, help="TLS certificate chain (PEM) for REST and gRPC")
    p.add_argument("--tls-key", type=Path, help="TLS private key (PEM) of --tls-cert")
    p.add_argument(
        "--tls-client-ca", type=Path, help="gRPC: require client certificates signed by this CA"
    )
    p.add_argument(
        "--repository-poll-interval",
        type=float,
        metavar="SECONDS",
        help="reload the repository this often: serve new versions, unload removed ones "
        "(default: only on POST /v1/repository/reload)",
    )
    p.add_argument(
        "--admin-tokens-file",
        type=Path,
        help="file of admin bearer tokens, one a line, allowed to reload the repository",
    )
    p.add_argument(
        "--build-default",
        action="store_true",
        help="if the repository is missing or empty, train and export the default models "
        "into it first (needs the train extra: torch)",
    )
    p.set_defaults(func=_serve)

    h = subparsers.add_parser(
        "healthcheck",
        help="exit 0 if the local server's /healthz answers (a container HEALTHCHECK)",
        description="GET /healthz of the server on this host, over https when TLS is "
        "configured. Reads the same settings as `serve` (--config, LATENTSERVE_* env), so "
        "it follows the server's port and TLS without flags of its own.",
    )
    h.add_argument("--config", type=Path, help="TOML settings file of the server")
    h.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    h.set_defaults(func=_healthcheck)


def _serve(args: argparse.Namespace) -> int:
    return serve(args)


def serve(args: argparse.Namespace, opener: GraphOpener | None = None) -> int:
    """Serve with the parsed ``serve`` flags. ``opener`` opens the graph files (default the
    runtime's ``open_graph``); a program that wraps sessions, such as the benchmark's device
    cost model, passes its own and keeps every flag and setting of ``latentserve serve``."""
    from latentserve.server.app import run
    from latentserve.server.repository.runtime import open_graph
    from latentserve.server.settings import load_settings

    settings = load_settings(
        args.config,
        repository=args.repository,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        backend=args.backend,
        auth_tokens_file=args.auth_tokens_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        repository_poll_interval_s=args.repository_poll_interval,
        admin_tokens_file=args.admin_tokens_file,
        workers=args.workers,
    )
    if args.build_default and not _has_models(settings.repository):
        from latentserve.exporters.default_repository import build_default_repository

        build_default_repository(settings.repository)
    if settings.workers > 1:
        from latentserve.server.workers import run_workers

        return run_workers(settings, args.port_file, opener or open_graph)
    run(settings, args.port_file, opener or open_graph)
    return 0


def _healthcheck(args: argparse.Namespace) -> int:
    import ssl
    import sys
    import urllib.error
    import urllib.request

    from latentserve.server.settings import load_settings

    settings = load_settings(args.config)
    # A wildcard listen address is reached on loopback.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host, settings.host)
    host = f"[{host}]" if ":" in host else host
    context = None
    if settings.tls_cert is not None:
        # The check talks to its own server: the certificate names the public host, not
        # the loopback address, so it is not verified here.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    scheme = "https" if context else "http"
    url = f"{scheme}://{host}:{settings.http_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout, context=context) as response:
            healthy = response.status == 200
    except (OSError, urllib.error.URLError) as exc:
        print(f"latentserve healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


def _has_models(repository: Path) -> bool:
    return repository.is_dir() and any(repository.glob("*/*/manifest.json"))
