"""The one `latentserve` command. Each part of the project registers its own subcommands.

Subcommand modules import only argparse at module level: `latentserve serve` must not pay
for (or require) torch, and `latentserve train` must not pay for gRPC.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from latentserve import __version__


def build_parser() -> argparse.ArgumentParser:
    from latentserve.clients import cli as client_cli
    from latentserve.clients import interpolate_cli
    from latentserve.exporters import cli as export_cli
    from latentserve.server import cli as server_cli
    from latentserve.training import cli as train_cli

    parser = argparse.ArgumentParser(prog="latentserve", description=__doc__)
    parser.add_argument("--version", action="version", version=f"latentserve {__version__}")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (train_cli, export_cli, server_cli, client_cli, interpolate_cli):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError) as exc:
        # User errors (bad paths, bad configs) get one clear line, not a traceback.
        print(f"latentserve {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
