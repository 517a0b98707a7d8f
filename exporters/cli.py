"""``latentserve export`` and ``latentserve build-default``.

Only argparse at module level: heavy imports (torch, onnx) happen inside the commands.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export",
        help="export a trained run into a model repository (ONNX + TorchScript)",
        description="Export RUN_DIR as <repository>/<name>/<version>/ with its graphs and "
        "manifest.json; every graph is parity-checked against eager PyTorch first.",
    )
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    export.add_argument("--repository", type=Path, default=Path("models"))
    export.add_argument("--name", required=True, help="model name, e.g. vae-mnist")
    export.add_argument("--version", help="integer version (default: next free one)")
    export.set_defaults(func=_export)

    default = subparsers.add_parser(
        "build-default",
        help="train and export the default model repository (vae-mnist, ldm-mnist)",
        description="Train the built-in vae-mnist and ldm-mnist configs on the bundled MNIST "
        "digits and export them. Models already present are kept unless --rebuild.",
    )
    default.add_argument("--repository", type=Path, default=Path("models"))
    default.add_argument("--runs-dir", type=Path, help="keep the training runs here")
    default.add_argument("--rebuild", action="store_true", help="add a new version anyway")
    default.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    default.add_argument(
        "--with-families",
        action="store_true",
        help="also the other families' MNIST models (about an hour on a CPU) and the "
        "Fashion-MNIST ones (ddpm-, stylegan2-, ldm-fashion: sized for a GPU)",
    )
    default.add_argument(
        "--device", default="auto", help="train on auto (a GPU when present), cpu, cuda[:N]"
    )
    default.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="training precision (see latentserve train --help)",
    )
    default.set_defaults(func=_build_default)


def _export(args: argparse.Namespace) -> int:
    from latentserve.exporters.export import export_run

    folder = export_run(args.run_dir, args.repository, args.name, args.version)
    print(f"exported {folder}")
    return 0


def _build_default(args: argparse.Namespace) -> int:
    import time

    from latentserve.exporters.default_repository import build_default_repository
    from latentserve.training.devices import Compute

    start = time.perf_counter()
    written = build_default_repository(
        args.repository,
        runs_dir=args.runs_dir,
        rebuild=args.rebuild,
        progress=not args.no_progress,
        with_families=args.with_families,
        compute=Compute.from_args(args.device, args.precision),
    )
    for folder in written:
        print(f"built {folder}")
    if not written:
        print(f"default models already present in {args.repository}")
    print(f"done in {time.perf_counter() - start:.1f}s")
    return 0
