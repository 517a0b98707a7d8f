"""``latentserve train`` and ``latentserve eval``.

Only argparse at module level: heavy imports (torch) happen inside the commands.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from latentserve.training.quality import cli as quality_cli


def register(subparsers: argparse._SubParsersAction) -> None:
    from latentserve.training.builtin_configs import builtin_config_names

    train = subparsers.add_parser(
        "train",
        help="train a model from a TOML config into a run folder",
        description="Train a model. CONFIG is a TOML file or the name of a built-in config "
        f"({', '.join(builtin_config_names())}).",
    )
    train.add_argument("config", nargs="?", help="TOML config file or built-in config name")
    train.add_argument("--run-dir", type=Path, help="run folder to write (default runs/<name>)")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run folder")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument(
        "--device",
        default="auto",
        help="auto (a GPU when present, default), cpu, cuda or cuda:N; under torchrun, "
        "auto/cuda give each process the GPU of its LOCAL_RANK",
    )
    train.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="forward passes in mixed precision (autocast; fp16 adds loss scaling). "
        "auto: bf16 on a GPU that has it, else fp16 on a GPU, fp32 on a CPU",
    )
    train.set_defaults(func=_train)

    evaluate = subparsers.add_parser(
        "eval", help="print runs' test-split bits/dim (and a table)", description=_EVAL_HELP
    )
    evaluate.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    evaluate.add_argument(
        "--iw-k", type=int, default=1, help="also report the k-sample importance-weighted bound"
    )
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument(
        "--table", type=Path, metavar="PATH", help="also write a Markdown table of every run"
    )
    evaluate.set_defaults(func=_eval)
    quality_cli.register(subparsers)


_EVAL_HELP = (
    "Evaluate runs on their test split. bits_per_dim is an upper bound on the model's "
    "code length for the 8-bit images (not binarized), in bits per dimension: the negative "
    "ELBO (VAE, NVAE), the exact flow likelihood of the uniformly dequantized images (Glow), "
    "or reconstruction + prior code length (VQ-VAE, VQ-VAE-2: a point-mass posterior). "
    "recon_bits_per_dim is the reconstruction term alone; for an autoencoder it is not a "
    "likelihood bound, since its code costs nothing. Families without a cheap likelihood "
    "(DDPM) report no bits/dim, only their own test scores (denoising_mse)."
)

# What each family's bits_per_dim is, and how the 8-bit data is modelled, for the table.
BOUNDS = {
    "vae": ("negative ELBO", "8-bit, discretized logistic"),
    "nvae": ("negative ELBO", "8-bit, discretized logistic"),
    "glow": ("exact NLL of dequantized data (bound)", "8-bit, uniform dequantization"),
    "vqvae": ("recon + PixelCNN prior (ELBO)", "8-bit, discretized logistic"),
    "vqvae2": ("recon + two priors (ELBO)", "8-bit, discretized logistic"),
    "pixelcnn": ("exact NLL (no bound)", "8-bit, 256-way softmax per pixel"),
    "autoencoder": ("none (reconstruction cost only)", "8-bit, discretized logistic"),
    "ddpm": ("none (no likelihood; denoising MSE only)", "8-bit mapped to [-1, 1]"),
}
NO_LIKELIHOOD = "no likelihood: this family reports no bits/dim"


def _train(args: argparse.Namespace) -> int:
    from latentserve.training import distributed
    from latentserve.training.config import load_config, resolve_config_arg
    from latentserve.training.devices import Compute
    from latentserve.training.evaluate import is_code_length
    from latentserve.training.trainer import resume, train

    if args.resume is not None and args.config is not None:
        raise ValueError("give either a CONFIG or --resume RUN_DIR, not both")
    if args.resume is None and args.config is None:
        raise ValueError("give a CONFIG (file or built-in name) or --resume RUN_DIR")
    ranks = distributed.ranks_from_env()
    compute = Compute.from_args(args.device, args.precision, ranks.local_rank)
    try:
        if args.resume is not None:
            result = resume(args.resume, progress=not args.no_progress, compute=compute)
        else:
            path = resolve_config_arg(args.config)
            run_dir = args.run_dir or Path("runs") / path.stem
            result = train(
                load_config(path), run_dir, progress=not args.no_progress, compute=compute
            )
    finally:
        distributed.shutdown()
    if not ranks.is_main:
        return 0
    where = f"{compute.device}, {compute.precision}"
    if ranks.distributed:
        where += f", {ranks.world_size} processes"
    print(f"trained on {where}")
    print(f"run folder: {result.run_dir} (step {result.step}, {result.seconds:.1f}s)")
    for name, value in result.test_metrics.items():
        print(f"test {name}: {value:.4f}")
    if not any(is_code_length(name) for name in result.test_metrics):
        print(f"({NO_LIKELIHOOD})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    rows = [_eval_one(run_dir, args) for run_dir in args.run_dirs]
    if args.json:
        print(json.dumps({str(r["run"]): r["metrics"] for r in rows}, indent=2))
    if args.table is not None:
        args.table.write_text(eval_table(rows, args.iw_k))
        print(f"table written to {args.table}")
    return 0


def _eval_one(run_dir: Path, args: argparse.Namespace) -> dict:
    from latentserve.training.checkpoint import load_run
    from latentserve.training.data import captions_of, load_dataset
    from latentserve.training.evaluate import evaluate_model, is_code_length
    from latentserve.training.trainer import set_threads

    run = load_run(run_dir)
    set_threads(run.config.train.num_threads)
    image = run.config.image
    data = load_dataset(run.config.dataset, image.height, image.width, image.channels)
    metrics = evaluate_model(
        run.model,
        data.test,
        seed=run.config.seed,
        batch_size=run.config.train.eval_batch_size,
        iw_k=args.iw_k,
        labels=data.test_labels,
        captions=captions_of(data, "test"),
    )
    row = {
        "run": run_dir,
        "family": run.config.family,
        "step": run.step,
        "test_images": len(data.test),
        "metrics": metrics,
    }
    if not args.json:
        print(f"{row['family']} run {run_dir} (step {run.step}), {len(data.test)} test images")
        for name, value in metrics.items():
            print(f"  {name:>24}: {value:.4f}")
        if not any(is_code_length(name) for name in metrics):
            print(f"  ({NO_LIKELIHOOD})")
        elif not run.model.has_prior:
            print(
                "  (no prior: recon_bits_per_dim is a reconstruction cost, not a likelihood bound)"
            )
    return row


def eval_table(rows: list[dict], iw_k: int) -> str:
    """Markdown: one row per run, the bound it reports and how the data was modelled."""
    iw = f"iw{iw_k}_bits_per_dim"
    lines = [
        f"| run | family | steps | test bits/dim | IW k={iw_k} | what bits/dim is | data | parts |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["metrics"]
        bound, data = BOUNDS.get(r["family"], ("?", "?"))
        parts = ", ".join(
            f"{k.removesuffix('_bits_per_dim')} {v:.3f}"
            for k, v in m.items()
            if k not in ("bits_per_dim", iw) and k.endswith("bits_per_dim")
        )
        iw_value = f"{m[iw]:.3f}" if iw in m else "-"
        bpd = f"{m['bits_per_dim']:.3f}" if "bits_per_dim" in m else "-"
        lines.append(
            f"| {Path(r['run']).name} | {r['family']} | {r['step']} | {bpd} "
            f"| {iw_value} | {bound} | {data} | {parts} |"
        )
    return "\n".join(lines) + "\n"
