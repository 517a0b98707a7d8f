"""Sample-quality scores: the cached classifier, FID, the report, drawing and the CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from latentserve.training.data import load_mnist
from latentserve.training.quality import classifier as classifier_module
from latentserve.training.quality.classifier import (
    ClassifierConfig,
    as_unit_images,
    load_classifier,
    load_or_train_classifier,
    train_classifier,
)
from latentserve.training.quality.draw import draw_samples, parse_params, plan_chunks
from latentserve.training.quality.fid import fid, frechet_distance, psd_sqrt
from latentserve.training.quality.report import (
    class_histogram,
    conditional_accuracy,
    confident_share,
)
from latentserve.training.seeds import derive_seed
from PIL import Image

from latentserve.cli import main

# A few seconds of training: good enough to tell digits apart, not to measure anything.
TINY = ClassifierConfig(widths=(8, 16), hidden=32, epochs=4, train_limit=3000, lr=5e-3, max_shift=1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("classifier")
    load_or_train_classifier(folder, TINY)
    return folder


# --- classifier ---------------------------------------------------------------------------


def test_classifier_round_trip_and_deterministic_retrain(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sorted(p.name for p in tiny_dir.iterdir()) == [
        "classifier.json",
        "classifier.safetensors",
    ]
    loaded = load_classifier(tiny_dir)
    assert loaded.config == TINY
    assert loaded.info["data"]["trained_on"] == "train"
    assert loaded.info["data"]["train_images"] == TINY.train_limit
    assert loaded.info["data"]["test_images"] == 500
    assert 0.8 < loaded.test_accuracy <= 1.0

    retrained = train_classifier(TINY)
    assert retrained.test_accuracy == loaded.test_accuracy
    for name, tensor in retrained.model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name

    # Present: reused, never retrained.
    monkeypatch.setattr(classifier_module, "train_classifier", pytest.fail)
    assert load_or_train_classifier(tiny_dir).config == TINY


def test_features_and_probabilities(tiny_dir: Path) -> None:
    classifier = load_classifier(tiny_dir)
    images = load_mnist().test[::50].numpy()  # one of each digit
    probabilities = classifier.probabilities(images)
    assert probabilities.shape == (10, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    features = classifier.features(images)
    assert features.shape == (10, TINY.hidden) and features.dtype == np.float64
    as_float = images.astype(np.float32) / 255.0  # uint8 and [0, 1] floats are the same input
    np.testing.assert_allclose(classifier.features(as_float), features, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((2, 28, 28), np.uint8),
        np.zeros((2, 1, 28, 28), np.int32),
        np.full((1, 1, 28, 28), 2.0),
    ],
)
def test_bad_images_are_refused(images: np.ndarray) -> None:
    with pytest.raises(ValueError):
        as_unit_images(images)


# --- FID ----------------------------------------------------------------------------------


def _two_gaussians() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # Covariances that do not commute, so sqrt(S1 S2) is not just elementwise.
    return (
        np.array([0.0, 1.0]),
        np.array([[2.0, 0.5], [0.5, 1.0]]),
        np.array([1.0, -1.0]),
        np.array([[1.0, -0.3], [-0.3, 0.5]]),
    )


def test_fid_matches_closed_form_for_two_gaussians() -> None:
    m1, s1, m2, s2 = _two_gaussians()
    # For 2x2 matrices, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)), with M = S1 S2.
    product = s1 @ s2
    trace_sqrt = np.sqrt(np.trace(product) + 2 * np.sqrt(np.linalg.det(product)))
    expected = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-10)

    rng = np.random.default_rng(0)
    a = rng.multivariate_normal(m1, s1, size=200_000)
    b = rng.multivariate_normal(m2, s2, size=200_000)
    assert fid(a, b) == pytest.approx(expected, rel=0.02)


def test_fid_is_zero_for_identical_sets_symmetric_and_grows_with_shift() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 32))
    b = rng.normal(size=(400, 32)) * 1.1
    assert fid(a, a) == pytest.approx(0.0, abs=1e-8)
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-9)
    distances = [fid(a, b + shift) for shift in (0.0, 0.25, 0.5, 1.0)]
    assert distances == sorted(distances) and distances[0] < distances[-1]


def test_psd_sqrt_is_real_and_stable_on_singular_covariances() -> None:
    rng = np.random.default_rng(2)
    few = rng.normal(size=(5, 20))  # fewer samples than dimensions: rank-deficient covariance
    cov = np.cov(few, rowvar=False)
    root = psd_sqrt(cov)
    assert np.isrealobj(root)
    np.testing.assert_allclose(root @ root, cov, atol=1e-9)
    assert np.isfinite(fid(few, rng.normal(size=(5, 20))))


# --- report -------------------------------------------------------------------------------


def test_confident_share_histogram_and_conditional_accuracy() -> None:
    probabilities = np.full((4, 10), 0.01)
    probabilities[0, 3] = 0.91  # confident 3
    probabilities[1, 3] = 0.90  # exactly at the threshold counts
    probabilities[2, 7] = 0.5  # unsure 7
    probabilities[3, 0] = 0.89  # just below
    assert confident_share(probabilities) == 0.5
    assert confident_share(probabilities, threshold=0.5) == 1.0
    assert class_histogram(probabilities) == [1, 0, 0, 2, 0, 0, 0, 1, 0, 0]
    assert conditional_accuracy(probabilities, np.array([3, 3, 1, 0])) == 0.75


# --- drawing from a server (a fake client) --------------------------------------------------


@dataclass
class _Info:
    max_n: int


@dataclass
class _Result:
    images: list[Image.Image]


class FakeClient:
    """Records requests; each image's pixels hold the request's seed modulo 256."""

    def __init__(self, max_n: int = 4) -> None:
        self.max_n = max_n
        self.calls: list[dict] = []

    def get_model(self, model: str) -> _Info:
        return _Info(self.max_n)

    def sample(self, model: str, n: int, seed: int | None = None, **params: object) -> _Result:
        self.calls.append({"n": n, "seed": seed, **params})
        return _Result([Image.new("L", (28, 28), seed % 256) for _ in range(n)])

    def text_to_image(
        self, model: str, prompt: str, n: int = 1, seed: int | None = None, **params: object
    ) -> _Result:
        self.calls.append({"prompt": prompt, "n": n, "seed": seed, **params})
        return _Result([Image.new("L", (28, 28), seed % 256) for _ in range(n)])


class OldClient(FakeClient):
    def sample(self, model: str, n: int, seed: int | None = None, temperature: float = 1.0):  # type: ignore[override]
        return super().sample(model, n, seed, temperature=temperature)


def test_parse_params_types_values() -> None:
    params = parse_params(["steps=50", "eta=0.0", "sampler=ddim", "guidance_scale=3", "x=1e-3"])
    assert params == {"steps": 50, "eta": 0.0, "sampler": "ddim", "guidance_scale": 3, "x": 1e-3}
    assert isinstance(params["eta"], float) and isinstance(params["steps"], int)
    with pytest.raises(ValueError, match="key=value"):
        parse_params(["steps"])


def test_plan_chunks_respects_max_n_and_derives_seeds() -> None:
    chunks = plan_chunks(10, 4, seed=7)
    assert [c.n for c in chunks] == [4, 4, 2]
    assert [c.seed for c in chunks] == [derive_seed(7, i) for i in range(3)]
    labelled = plan_chunks(30, 2, seed=7, class_labels=True)
    assert [c.n for c in labelled] == [2, 1] * 10
    assert [c.class_label for c in labelled] == [d for d in range(10) for _ in range(2)]
    assert len({c.seed for c in labelled}) == 20
    with pytest.raises(ValueError, match="multiple of 10"):
        plan_chunks(15, 4, seed=0, class_labels=True)


def test_draw_samples_chunks_passes_params_and_labels() -> None:
    client = FakeClient(max_n=4)
    images, labels = draw_samples(client, "m", 10, seed=7, params={"steps": 50})
    assert images.shape == (10, 1, 28, 28) and images.dtype == np.uint8 and labels is None
    assert [c["n"] for c in client.calls] == [4, 4, 2]
    assert all(c["steps"] == 50 for c in client.calls)
    assert images[4, 0, 0, 0] == derive_seed(7, 1) % 256  # second chunk, second seed

    client = FakeClient(max_n=64)
    images, labels = draw_samples(client, "m", 20, seed=0, params={}, class_labels=True)
    assert [c["class_label"] for c in client.calls] == list(range(10))
    assert labels.tolist() == [d for d in range(10) for _ in range(2)]


def test_draw_samples_asks_a_text_to_image_model_for_each_digit_by_prompt() -> None:
    client = FakeClient(max_n=64)
    images, labels = draw_samples(
        client, "m", 20, 0, {"steps": 20}, class_labels=True, prompt_template="the digit {w}"
    )
    assert [c["prompt"] for c in client.calls][:3] == [
        "the digit zero",
        "the digit one",
        "the digit two",
    ]
    assert all(c["steps"] == 20 for c in client.calls) and len(images) == 20
    assert labels.tolist() == [d for d in range(10) for _ in range(2)]
    with pytest.raises(ValueError, match="with --class-labels"):
        draw_samples(client, "m", 20, 0, {}, prompt_template="a {n}")


def test_draw_samples_refuses_params_the_sdk_cannot_pass() -> None:
    with pytest.raises(ValueError, match=r"does not take \['steps'\].*temperature"):
        draw_samples(OldClient(), "m", 4, seed=0, params={"steps": 50})
    images, _ = draw_samples(OldClient(), "m", 4, seed=0, params={"temperature": 0.5})
    assert len(images) == 4


# --- CLI ----------------------------------------------------------------------------------


def test_cli_scores_a_folder_of_real_digits(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = load_mnist()
    folder = tmp_path / "digits"
    folder.mkdir()
    pick = np.random.default_rng(123).permutation(len(data.train))[:500]
    for i, image in enumerate(data.train[pick].numpy()):
        Image.fromarray(image[0]).save(folder / f"{i:04d}.png")
    table, grid = tmp_path / "quality.md", tmp_path / "grid.png"
    common = ["eval-samples", "--images", str(folder), "--classifier-dir", str(tiny_dir)]
    common += ["--threads", "1"]
    assert main([*common, "--json", "--table", str(table), "--grid", str(grid)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == metrics["floor_n"] == 500 and metrics["reference_n"] == 500
    assert metrics["fid"] < 2 * metrics["floor_fid"]  # real digits score like the floor
    assert metrics["confident_share"] > 0.7
    assert abs(metrics["confident_share"] - metrics["real_confident_share"]) < 0.1
    assert sum(metrics["histogram"]) == 500 and min(metrics["histogram"]) > 30
    assert metrics["conditional_accuracy"] is None
    assert "NOT Inception FID" in metrics["note"]
    assert Image.open(grid).size == (8 * 30 + 2, 8 * 30 + 2)  # 64 tiles of 28 + padding

    assert main([*common, "-n", "100", "--table", str(table)]) == 0
    out = capsys.readouterr().out
    assert "100 images from" in out and "NOT Inception FID" in out
    rows = table.read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("| model |")
    assert [r.split("|")[3].strip() for r in rows[2:]] == ["500", "100"]

    assert main([*common, "--param", "steps=5"]) == 2  # sampler params need --url
