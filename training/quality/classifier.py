"""The in-project classifiers that sample-quality scores are measured with: one small CNN
per 28×28 grayscale labelled dataset (MNIST digits, Fashion-MNIST items), one code path.

A small CNN trained on the dataset's *training* split only, so that the test split it
is scored against stays unseen. It is cached as safetensors plus a JSON of its config,
data split and test accuracy: scores stay comparable across runs only while the same
classifier measures them, so it is trained once, deterministically, and reused.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from latentserve.training.data import SPLIT_SEED, ImageDataset, load_mnist
from latentserve.training.fashion import load_fashion_mnist
from latentserve.training.quality import DEFAULT_CLASSIFIER_DIR
from latentserve.training.seeds import DATA_ORDER, TRAIN_NOISE, derive_seed, torch_generator
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

WEIGHTS = "classifier.safetensors"
INFO = "classifier.json"
FORMAT_VERSION = 1
#: The datasets a classifier is trained for: their loader and pixel mean and std (of the
#: training split), which make the CNN's inputs roughly unit-scale.
LABELLED_DATASETS: dict[str, tuple[Callable[[], ImageDataset], float, float]] = {
    "mnist": (load_mnist, 0.1307, 0.3081),
    "fashion-mnist": (load_fashion_mnist, 0.2860, 0.3530),
}
_INIT, _SUBSET = 3, 4  # seed purposes beside seeds.DATA_ORDER and seeds.TRAIN_NOISE


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture and schedule; the defaults train in about a minute on one core."""

    widths: tuple[int, int] = (32, 64)
    hidden: int = 128  # penultimate width: the feature dimension of classifier-FID
    epochs: int = 15
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_shift: int = 2  # random translation (pixels): more varied digits out of 4,500
    train_limit: int | None = None  # a seeded subset of the training split (tests)
    seed: int = 0
    dataset: str = "mnist"  # a LABELLED_DATASETS key

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ClassifierConfig:
        return cls(**{**values, "widths": tuple(values["widths"])})


def default_config(dataset: str = "mnist") -> ClassifierConfig:
    """The classifier each dataset is scored with: Fashion-MNIST's 60,000 images need fewer
    epochs than MNIST's 4,500 and less translation (its items are centred and fill the
    frame)."""
    if dataset == "fashion-mnist":
        return ClassifierConfig(dataset=dataset, epochs=4, max_shift=1)
    if dataset not in LABELLED_DATASETS:
        raise ValueError(f"no classifier for dataset {dataset!r}: {', '.join(LABELLED_DATASETS)}")
    return ClassifierConfig(dataset=dataset)


def labelled_dataset(name: str) -> ImageDataset:
    """The labelled dataset a classifier of ``name`` is trained and scored on."""
    return LABELLED_DATASETS[name][0]()


class DigitCNN(nn.Module):
    """Two conv blocks, then a hidden layer whose activations are the features (for
    digits or clothing alike: the dataset sets only the input normalisation)."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        _, self.mean, self.std = LABELLED_DATASETS[config.dataset]
        c1, c2 = config.widths
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.hidden = nn.Linear(c2 * 7 * 7, config.hidden)
        self.head = nn.Linear(config.hidden, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations of images in [0, 1], (N, hidden)."""
        x = (x - self.mean) / self.std
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.hidden(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def as_unit_images(
    images: np.ndarray | torch.Tensor, shape: tuple[int, int, int] = (1, 28, 28)
) -> torch.Tensor:
    """uint8 (N, *shape) in 0..255, or float in [0, 1], as a float32 tensor in [0, 1]."""
    x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
    if x.ndim != 4 or tuple(x.shape[1:]) != shape:
        raise ValueError(
            f"expected images of shape (N, {', '.join(map(str, shape))}), got {tuple(x.shape)}"
        )
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not x.is_floating_point():
        raise ValueError(f"expected uint8 or float images, got {x.dtype}")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError("float images must lie in [0, 1]")
    return x.float()


@dataclass
class DigitClassifier:
    """A trained CNN and what it was trained on; scores images in batches, no grad."""

    model: DigitCNN
    config: ClassifierConfig
    info: dict[str, Any]  # data split, test accuracy, training time

    @property
    def test_accuracy(self) -> float:
        return float(self.info["test_accuracy"])

    def features(self, images: np.ndarray | torch.Tensor, batch_size: int = 500) -> np.ndarray:
        """Penultimate-layer activations, float64 (N, hidden): the space FID is measured in."""
        return self._batched(self.model.features, images, batch_size).astype(np.float64)

    def probabilities(self, images: np.ndarray | torch.Tensor, batch_size: int = 500) -> np.ndarray:
        """Softmax class probabilities, (N, 10)."""
        logits = self._batched(self.model, images, batch_size)
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy()

    def _batched(self, fn: Any, images: np.ndarray | torch.Tensor, batch_size: int) -> np.ndarray:
        return run_batched(self.model, fn, as_unit_images(images), batch_size)


def run_batched(model: nn.Module, fn: Any, x: torch.Tensor, batch_size: int) -> np.ndarray:
    """``fn`` over ``x`` in batches, in eval mode and without gradients, as one array."""
    model.eval()
    with torch.no_grad():
        parts = [fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, 0), np.float32)


def _shift(batch: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero fill), a cheap augmentation."""
    if max_shift == 0:
        return batch
    n, size = len(batch), batch.shape[-1]
    padded = F.pad(batch[:, 0], (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n, 1), generator=generator)
    rows, cols = dy + torch.arange(size), dx + torch.arange(size)  # (n, size) each
    return padded[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]][:, None]


def _training_images(
    config: ClassifierConfig, data: ImageDataset
) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = data.train, data.train_labels
    assert labels is not None  # classifier datasets are labelled
    if config.train_limit is not None:
        keep = torch.randperm(len(images), generator=torch_generator(config.seed, _SUBSET))
        images, labels = images[keep[: config.train_limit]], labels[keep[: config.train_limit]]
    return images, labels


class FitSchedule(Protocol):
    """What :func:`fit` reads of a classifier config."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int


def seeded_init(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` under a seed derived from ``seed``, leaving the caller's RNG untouched."""
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(seed, _INIT))
        return build()


def fit(
    model: nn.Module,
    images: torch.Tensor,
    loss_of: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    schedule: FitSchedule,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> None:
    """AdamW + one-cycle over uint8 ``images`` for ``schedule.epochs``, deterministically.

    ``loss_of(model, x, idx)`` gets the batch in [0, 1] (augmented) and its indices.
    """
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay
    )
    steps_per_epoch = -(-len(images) // schedule.batch_size)
    one_cycle = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, schedule.lr, total_steps=schedule.epochs * steps_per_epoch
    )
    order_gen = torch_generator(schedule.seed, DATA_ORDER)
    noise_gen = torch_generator(schedule.seed, TRAIN_NOISE)
    model.train()
    for epoch in range(schedule.epochs):
        order = torch.randperm(len(images), generator=order_gen)
        for i in range(0, len(order), schedule.batch_size):
            idx = order[i : i + schedule.batch_size]
            x = images[idx].float() / 255.0
            loss = loss_of(model, x if augment is None else augment(x, noise_gen), idx)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            one_cycle.step()
        log.info("classifier epoch %d/%d: loss %.4f", epoch + 1, schedule.epochs, loss.item())
    model.eval()


def train_classifier(config: ClassifierConfig = ClassifierConfig()) -> DigitClassifier:
    """Train on the dataset's training split (deterministic given ``config.seed``)."""
    start = time.perf_counter()
    data = labelled_dataset(config.dataset)
    train_x, train_y = _training_images(config, data)
    model = seeded_init(config.seed, lambda: DigitCNN(config))
    fit(
        model,
        train_x,
        lambda net, x, idx: F.cross_entropy(net(x), train_y[idx]),
        config,
        augment=lambda x, gen: _shift(x, config.max_shift, gen),
    )
    classifier = DigitClassifier(model, config, {})
    assert data.test_labels is not None
    predicted = classifier.probabilities(data.test).argmax(1)
    accuracy = float((predicted == data.test_labels.numpy()).mean())
    classifier.info = {
        "format_version": FORMAT_VERSION,
        "config": asdict(config),
        "data": {
            "dataset": config.dataset,
            "trained_on": "train",
            "train_images": len(train_x),
            "evaluated_on": "test",
            "test_images": len(data.test),
            "split_seed": SPLIT_SEED if config.dataset == "mnist" else "published split",
        },
        "test_accuracy": accuracy,
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    return classifier


def save_weights(model: nn.Module, info: dict[str, Any], folder: Path) -> None:
    """Weights as safetensors and the config/split/accuracy as JSON (never a pickle)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    tmp = folder / (WEIGHTS + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(folder / WEIGHTS)
    (folder / INFO).write_text(json.dumps(info, indent=2) + "\n")


def read_info(folder: Path, format_version: int) -> dict[str, Any] | None:
    """The JSON written beside cached weights; None when the folder holds none yet."""
    if not ((folder / WEIGHTS).is_file() and (folder / INFO).is_file()):
        return None
    info = json.loads((folder / INFO).read_text())
    if info.get("format_version") != format_version:
        raise ValueError(f"{folder / INFO}: unknown classifier format, delete the folder")
    return info


def load_weights(model: nn.Module, folder: Path) -> nn.Module:
    """``model`` with the safetensors weights saved in ``folder``, in eval mode."""
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    return model.eval()


def save_classifier(classifier: DigitClassifier, folder: Path) -> None:
    """The digit classifier's weights and info, see :func:`save_weights`."""
    save_weights(classifier.model, classifier.info, folder)


def load_classifier(folder: Path) -> DigitClassifier:
    """A classifier written by :func:`save_classifier`."""
    info = read_info(folder, FORMAT_VERSION)
    if info is None:
        raise FileNotFoundError(f"no classifier in {folder}")
    config = ClassifierConfig.from_dict(info["config"])
    return DigitClassifier(load_weights(DigitCNN(config), folder), config, info)


def load_or_train_classifier(
    folder: Path = DEFAULT_CLASSIFIER_DIR,
    config: ClassifierConfig | None = None,
    dataset: str = "mnist",
) -> DigitClassifier:
    """The cached classifier in ``folder``; trained and saved there when absent.

    With a ``config`` that differs from the cached one, the cache is retrained: a score
    is only meaningful together with the classifier that produced it. Without one, the
    ``dataset``'s default config is trained, and a cache of another dataset is refused.
    """
    if read_info(folder, FORMAT_VERSION) is not None:
        cached = load_classifier(folder)
        if config is None and cached.config.dataset != dataset:
            raise ValueError(
                f"{folder} holds a {cached.config.dataset} classifier, not a {dataset} one"
            )
        if config is None or cached.config == config:
            return cached
        log.info("cached classifier in %s has another config: retraining", folder)
    config = config or default_config(dataset)
    log.info("training the %s classifier into %s", config.dataset, folder)
    classifier = train_classifier(config)
    save_classifier(classifier, folder)
    return classifier
