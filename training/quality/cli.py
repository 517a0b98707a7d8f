"""``latentserve eval-samples``: sample-quality scores of generated MNIST digits,
Fashion-MNIST items and shapes scenes.

Only argparse at module level: torch, the SDK and the classifier load inside the command.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from latentserve.clients.cli import add_connection_options
from latentserve.training.quality import CLASSIFIER_DIRS, DEFAULT_SCENE_CLASSIFIER_DIR

if TYPE_CHECKING:
    import numpy as np

DEFAULT_N = 500  # the size of the MNIST test split the FID is measured against

_HELP = (
    "Score generated 28x28 digits (or, with --dataset fashion-mnist, clothing) with the "
    "in-project classifier of that dataset (a small CNN trained on its training split, cached "
    "in --classifier-dir and trained there on first use: about a minute for MNIST, several "
    "for Fashion-MNIST). Reports classifier-FID against the test split next to the "
    "real-vs-real floor (training vs test digits, same count), the share of samples "
    "classified with p >= 0.9 next to that of real test digits, the predicted-digit "
    "histogram (dropped modes show there) and, with --class-labels, the share labelled as "
    "requested. classifier-FID is NOT Inception FID: compare it only with numbers from "
    "this command."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval-samples`` to the ``latentserve`` command."""
    parser = subparsers.add_parser(
        "eval-samples",
        help="score generated digits: classifier-FID (not Inception FID), confidence, modes",
        description=_HELP,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, metavar="DIR", help="score the images in DIR")
    source.add_argument(
        "--url", help="draw from a running server: http://host:port (REST) or grpc://host:port"
    )
    parser.add_argument("--model", help="served model name or name@version (with --url)")
    parser.add_argument(
        "-n", type=int, help=f"images to draw (default {DEFAULT_N}); with --images, the first n"
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed of the draws (default 0)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="sampler parameter passed to the server, typed int/float/str (repeatable)",
    )
    parser.add_argument(
        "--class-labels",
        action="store_true",
        help="draw n/10 per class (class_label=k) and report conditional accuracy",
    )
    parser.add_argument(
        "--prompt-template",
        metavar="TEMPLATE",
        help="text-to-image models, with --class-labels: ask for each class by this prompt; "
        'mnist: {n} the digit, {w} its word, {a_n} "a 7" / "an 8" (e.g. "the digit {w}"); '
        'fashion-mnist: {item}, {a_item} ("a pair of trousers"), {attribute}, {category} '
        '(e.g. "a photo of {a_item}")',
    )
    parser.add_argument(
        "--dataset",
        choices=("mnist", "fashion-mnist", "shapes"),
        default="mnist",
        help="mnist: score digits (default); fashion-mnist: score clothing with the "
        "Fashion-MNIST classifier (cached in runs/classifiers/fashion-mnist); shapes: draw "
        "one scene per caption of --captions "
        "from a text-to-image model and score prompt accuracy and shapes-FID with the "
        "in-project shape + colour classifier (cached in runs/classifiers/shapes)",
    )
    parser.add_argument(
        "--captions",
        choices=("test", "heldout"),
        default="test",
        help="with --dataset shapes: the test split's captions (in-distribution) or the "
        "held-out colour-shape pairs (default test)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="requests in flight (--dataset shapes)"
    )
    parser.add_argument("--grid", type=Path, metavar="PATH", help="save the first 64 as a PNG grid")
    parser.add_argument("--table", type=Path, metavar="PATH", help="append a Markdown table row")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.add_argument(
        "--classifier-dir",
        type=Path,
        help=f"classifier cache folder (default {CLASSIFIER_DIRS['mnist']}, with --dataset "
        f"fashion-mnist {CLASSIFIER_DIRS['fashion-mnist']}, with --dataset shapes "
        f"{DEFAULT_SCENE_CLASSIFIER_DIR})",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: up to 2)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    add_connection_options(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from latentserve.training.quality.classifier import load_or_train_classifier
    from latentserve.training.quality.report import format_report, score_images
    from latentserve.training.trainer import set_threads

    set_threads(args.threads)
    if args.dataset == "shapes":
        return _run_shapes(args)
    if args.images is not None:
        if args.model or args.param or args.class_labels or args.prompt_template:
            raise ValueError(
                "--model, --param, --class-labels and --prompt-template need --url, not --images"
            )
        images, labels, name, params = _read_folder(args.images, args.n), None, str(args.images), ""
    else:
        from latentserve.clients import LatentServeError

        if not args.model:
            raise ValueError("--url needs --model NAME")
        try:
            images, labels, params = _draw(args)
        except LatentServeError as exc:
            print(f"latentserve eval-samples: {exc}", file=sys.stderr)
            return 1
        name = args.model
    classifier = load_or_train_classifier(
        args.classifier_dir or CLASSIFIER_DIRS[args.dataset], dataset=args.dataset
    )
    report = score_images(images, classifier, labels)
    if args.grid is not None:
        _save_grid(images[:64], args.grid)
    if args.table is not None:
        from latentserve.training.quality.report import TABLE_HEADER, markdown_row

        _append_row(args.table, TABLE_HEADER, markdown_row(report, name, params))
    if args.json:
        print(json.dumps({"source": name, "params": params, **asdict(report)}, indent=2))
    else:
        print(format_report(report, name))
        for path in (args.grid, args.table):
            if path is not None:
                print(f"wrote {path}")
    return 0


def _run_shapes(args: argparse.Namespace) -> int:
    from latentserve.clients import LatentServeError
    from latentserve.clients.cli import connect_from_args, quiet_http_logs
    from latentserve.training.quality.draw import draw_scenes, parse_params
    from latentserve.training.quality.scene_report import (
        SCENE_TABLE_HEADER,
        format_scene_report,
        scene_markdown_row,
        score_scenes,
    )
    from latentserve.training.quality.scenes import load_or_train_scene_classifier
    from latentserve.training.shapes import load_shapes

    if args.url is None or not args.model:
        raise ValueError("--dataset shapes draws from a server: give --url and --model")
    if args.class_labels or args.prompt_template:
        raise ValueError(
            "--dataset shapes prompts with captions: no --class-labels/--prompt-template"
        )
    quiet_http_logs()
    data = load_shapes()
    prompts = data.heldout if args.captions == "heldout" else data.test_split
    n = min(args.n or DEFAULT_N, len(prompts.captions))
    params = parse_params(args.param)
    try:
        with connect_from_args(args) as client:
            images = draw_scenes(
                client, args.model, prompts.captions[:n], args.seed, params, args.concurrency
            )
    except LatentServeError as exc:
        print(f"latentserve eval-samples: {exc}", file=sys.stderr)
        return 1
    classifier = load_or_train_scene_classifier(args.classifier_dir or DEFAULT_SCENE_CLASSIFIER_DIR)
    report = score_scenes(
        images, prompts, args.captions, classifier, data.train_split, data.test_split
    )
    shown = " ".join([f"{k}={v}" for k, v in params.items()] + [f"seed={args.seed}"])
    if args.grid is not None:
        _save_grid(images[:64], args.grid)
    if args.table is not None:
        _append_row(args.table, SCENE_TABLE_HEADER, scene_markdown_row(report, args.model, shown))
    if args.json:
        print(json.dumps({"source": args.model, "params": shown, **asdict(report)}, indent=2))
    else:
        print(format_scene_report(report, f"{args.model} ({shown})"))
    return 0


def _read_folder(folder: Path, n: int | None) -> np.ndarray:
    import numpy as np
    from latentserve.training.data import find_images, read_image

    files = find_images(folder)[:n]
    return np.stack([read_image(path, 28, 28, 1) for path in files])


def _draw(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray | None, str]:
    from latentserve.clients.cli import connect_from_args, quiet_http_logs
    from latentserve.training.captions import digit_caption
    from latentserve.training.fashion import item_caption
    from latentserve.training.quality.draw import draw_samples, parse_params

    quiet_http_logs()
    params = parse_params(args.param)
    n = args.n or DEFAULT_N
    caption = item_caption if args.dataset == "fashion-mnist" else digit_caption
    with connect_from_args(args) as client:
        images, labels = draw_samples(
            client,
            args.model,
            n,
            args.seed,
            params,
            args.class_labels,
            args.prompt_template,
            caption,
        )
    shown = [f"{k}={v}" for k, v in params.items()] + [f"seed={args.seed}"]
    if args.prompt_template:
        shown.append(f'prompt="{args.prompt_template}" for classes 0..9')
    elif args.class_labels:
        shown.append("class_label=0..9")
    return images, labels, " ".join(shown)


def _save_grid(images: np.ndarray, path: Path) -> None:
    from latentserve.clients.grid import make_grid
    from PIL import Image

    tiles = [
        Image.fromarray(image[0] if len(image) == 1 else image.transpose(1, 2, 0))
        for image in images
    ]
    make_grid(tiles, columns=8).save(path)


def _append_row(path: Path, header: str, row: str) -> None:
    """Append a Markdown table row, with the table's header when the file is new or empty."""
    new = not path.is_file() or path.stat().st_size == 0
    with path.open("a") as f:
        f.write((header if new else "") + row)
