"""``latentserve train`` and ``latentserve eval``.

Only argparse at module level: heavy imports (torch) happen inside the commands.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a model from a TOML config into a run folder",
        description="Train a model. CONFIG is a TOML file or the name of a built-in config "
        "(vae-mnist, ae-mnist, vae-mnist-wide, glow-mnist, vae-tiny, ae-tiny, glow-tiny).",
    )
    train.add_argument("config", nargs="?", help="TOML config file or built-in config name")
    train.add_argument("--run-dir", type=Path, help="run folder to write (default runs/<name>)")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run folder")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(func=_train)

    evaluate = subparsers.add_parser(
        "eval", help="print a run's test-split bits/dim", description=_EVAL_HELP
    )
    evaluate.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    evaluate.add_argument(
        "--iw-k", type=int, default=1, help="also report the k-sample importance-weighted bound"
    )
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(func=_eval)


_EVAL_HELP = (
    "Evaluate a run on its test split. bits_per_dim is an upper bound on the model's "
    "code length for the 8-bit images, in bits per dimension: the negative ELBO (VAE) or "
    "the exact flow likelihood of the uniformly dequantized images (Glow). "
    "recon_bits_per_dim is the reconstruction term alone; for an autoencoder it is not a "
    "likelihood bound, since its code costs nothing."
)


def _train(args: argparse.Namespace) -> int:
    from latentserve.training.config import load_config, resolve_config_arg
    from latentserve.training.trainer import resume, train

    if args.resume is not None:
        if args.config is not None:
            raise ValueError("give either a CONFIG or --resume RUN_DIR, not both")
        result = resume(args.resume, progress=not args.no_progress)
    else:
        if args.config is None:
            raise ValueError("give a CONFIG (file or built-in name) or --resume RUN_DIR")
        path = resolve_config_arg(args.config)
        run_dir = args.run_dir or Path("runs") / path.stem
        result = train(load_config(path), run_dir, progress=not args.no_progress)
    print(f"run folder: {result.run_dir} (step {result.step}, {result.seconds:.1f}s)")
    for name, value in result.test_metrics.items():
        print(f"test {name}: {value:.4f}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from latentserve.training.checkpoint import load_run
    from latentserve.training.data import load_dataset
    from latentserve.training.evaluate import evaluate_model
    from latentserve.training.trainer import set_threads

    run = load_run(args.run_dir)
    set_threads(run.config.train.num_threads)
    image = run.config.image
    data = load_dataset(run.config.dataset, image.height, image.width, image.channels)
    metrics = evaluate_model(
        run.model,
        data.test,
        seed=run.config.seed,
        batch_size=run.config.train.eval_batch_size,
        iw_k=args.iw_k,
    )
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    print(f"{run.config.family} run {args.run_dir} (step {run.step}), {len(data.test)} test images")
    for name, value in metrics.items():
        print(f"  {name:>24}: {value:.4f}")
    if not run.model.has_prior:
        print("  (no prior: recon_bits_per_dim is a reconstruction cost, not a likelihood bound)")
    return 0
