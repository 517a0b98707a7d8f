"""Scoring generated shapes scenes: slot targets, the object rule, the cached slot
classifier, the report against real scenes, and drawing one scene per caption."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from latentserve.training import shapes
from latentserve.training.quality import scenes as scenes_module
from latentserve.training.quality.draw import draw_scenes
from latentserve.training.quality.scene_report import judge_objects, names_place, score_scenes
from latentserve.training.quality.scenes import (
    EMPTY_COLOUR,
    EMPTY_SHAPE,
    SceneClassifierConfig,
    SlotPredictions,
    load_or_train_scene_classifier,
    slot_targets,
)
from latentserve.training.seeds import derive_seed
from PIL import Image

# About 15 s of one core: enough to read most real scenes, not to measure anything.
TINY = SceneClassifierConfig(epochs=4, train_limit=4000, batch_size=32)
CIRCLE, SQUARE = shapes.SHAPES.index("circle"), shapes.SHAPES.index("square")
RED, BLUE = shapes.COLOURS.index("red"), shapes.COLOURS.index("blue")
LEFT, RIGHT = shapes.POSITIONS.index("left"), shapes.POSITIONS.index("right")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scene_classifier")
    load_or_train_scene_classifier(folder, TINY)
    return folder


def scene(*objects: tuple[int, int, int]) -> np.ndarray:
    """One label row from (shape, colour, place) triples (small objects)."""
    row = np.full((shapes.MAX_OBJECTS, 4), -1, dtype=np.int64)
    for k, (shape, colour, place) in enumerate(objects):
        row[k] = (shape, colour, 0, place)
    return row


def predictions(*slots: dict[int, tuple[int, int]]) -> SlotPredictions:
    """Per image, {place: (shape, colour)}; every other slot empty."""
    shape_ids = np.full((len(slots), scenes_module.SLOTS), EMPTY_SHAPE)
    colour_ids = np.full((len(slots), scenes_module.SLOTS), EMPTY_COLOUR)
    for i, found in enumerate(slots):
        for place, (shape, colour) in found.items():
            shape_ids[i, place], colour_ids[i, place] = shape, colour
    return SlotPredictions(shape_ids, colour_ids)


def test_slot_targets_put_each_object_in_the_slot_of_its_place() -> None:
    labels = torch.from_numpy(np.stack([scene((CIRCLE, RED, LEFT), (SQUARE, BLUE, RIGHT))]))
    shape_t, colour_t = slot_targets(labels)
    assert shape_t.tolist() == [[CIRCLE, SQUARE, EMPTY_SHAPE, EMPTY_SHAPE, EMPTY_SHAPE]]
    assert colour_t.tolist() == [[RED, BLUE, EMPTY_COLOUR, EMPTY_COLOUR, EMPTY_COLOUR]]


def test_an_object_counts_with_shape_and_colour_right_and_its_place_apart() -> None:
    labels = np.stack([scene((CIRCLE, RED, LEFT))] * 4 + [scene((CIRCLE, RED, LEFT))] * 2)
    captions = ["a small red circle on the left"] * 4 + ["a small red circle"] * 2
    found = predictions(
        {LEFT: (CIRCLE, RED)},  # right
        {RIGHT: (CIRCLE, RED)},  # drawn, at the wrong one of its named places
        {LEFT: (CIRCLE, BLUE)},  # wrong colour
        {LEFT: (SQUARE, RED)},  # wrong shape
        {RIGHT: (CIRCLE, RED)},  # drawn, no place named
        {},  # nothing drawn
    )
    verdicts = judge_objects(found, labels, captions)
    assert verdicts.drawn[:, 0].tolist() == [True, True, False, False, True, False]
    assert verdicts.drawn[:, 1].all()  # no second object asked for
    assert verdicts.object_share == verdicts.prompt_share == 0.5
    assert verdicts.place_share == 0.25  # of the four objects whose caption names a place
    assert names_place(captions[0]) and not names_place(captions[4])


def test_a_prompt_counts_only_with_all_its_objects() -> None:
    labels = np.stack([scene((CIRCLE, RED, LEFT), (SQUARE, BLUE, RIGHT))] * 2)
    captions = ["a red circle and a blue square"] * 2
    found = predictions({LEFT: (CIRCLE, RED), RIGHT: (SQUARE, BLUE)}, {LEFT: (CIRCLE, RED)})
    verdicts = judge_objects(found, labels, captions)
    assert verdicts.drawn.all(axis=1).tolist() == [True, False]
    assert verdicts.prompt_share == 0.5 and verdicts.object_share == 0.75
    assert verdicts.place_share is None


def test_the_scorer_split_has_every_pair_and_training_none_held_out() -> None:
    def pairs(split: shapes.CaptionedSplit) -> set[tuple[int, int]]:
        rows = split.labels.reshape(-1, 4).numpy()
        return {(int(s), int(c)) for s, c, _, _ in rows if s >= 0}

    held = {
        (shapes.SHAPES.index(s), shapes.COLOURS.index(c)) for s, c in shapes.HELDOUT_COMBINATIONS
    }
    assert len(pairs(shapes.make_split("scorer"))) == len(shapes.SHAPES) * len(shapes.COLOURS)
    assert not pairs(shapes.load_shapes().train_split) & held


def test_tiny_classifier_reads_real_scenes_and_is_reused(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scenes_module, "train_scene_classifier", pytest.fail)
    classifier = load_or_train_scene_classifier(tiny_dir)
    assert classifier.config == TINY and classifier.info["data"]["trained_on"] == "scorer"
    assert classifier.test_accuracy > 0.5  # every slot of the scene right, five slots
    assert classifier.info["heldout_scene_accuracy"] > 0.5  # pairs the generator never saw
    assert classifier.features(shapes.load_shapes().test[:3]).shape == (3, TINY.hidden)


def test_real_scenes_score_as_their_reference_and_noise_does_not(tiny_dir: Path) -> None:
    classifier = load_or_train_scene_classifier(tiny_dir)
    data = shapes.load_shapes()
    heldout = data.heldout
    real = score_scenes(
        heldout.images[:200].numpy(),
        heldout,
        "heldout",
        classifier,
        data.train_split,
        data.test_split,
    )
    assert real.n == 200 and real.prompt_accuracy == real.real_prompt_accuracy > 0.5
    assert real.object_accuracy > 0.5 and real.place_accuracy == real.real_place_accuracy
    noise = np.random.default_rng(0).integers(0, 256, (200, 3, 32, 32), dtype=np.uint8)
    scored = score_scenes(noise, heldout, "heldout", classifier, data.train_split, data.test_split)
    assert scored.prompt_accuracy < 0.1 and scored.fid > 2 * real.fid
    assert scored.floor_fid == real.floor_fid and scored.reference_n == len(data.test_split.images)


@dataclass
class _Result:
    images: list[Image.Image]


class RecordingClient:
    """Answers each prompt with a grey 32x32 scene whose level is the seed modulo 256."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def text_to_image(self, model: str, prompt: str, n: int = 1, seed: int | None = None, **params):
        self.calls.append({"prompt": prompt, "n": n, "seed": seed, **params})
        return _Result([Image.new("RGB", (32, 32), (seed % 256,) * 3)])


def test_draw_scenes_asks_once_per_caption_with_derived_seeds() -> None:
    client = RecordingClient()
    captions = ("a red circle", "a blue square on the left", "a red circle")
    images = draw_scenes(client, "m", captions, seed=5, params={"steps": 7}, concurrency=3)
    assert images.shape == (3, 3, 32, 32) and images.dtype == np.uint8
    assert images[:, 0, 0, 0].tolist() == [derive_seed(5, i) % 256 for i in range(3)]
    assert sorted(c["prompt"] for c in client.calls) == sorted(captions)
    assert all(c["n"] == 1 and c["steps"] == 7 for c in client.calls)
