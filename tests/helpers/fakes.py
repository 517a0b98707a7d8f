"""Small fake graphs and models for unit tests of the batcher, pipeline and service.

Each fake computes every item from that item alone (as real graphs do), so any change of
results under batching is a real bug, not an artefact of the fake.
"""

from __future__ import annotations

import shutil
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
from latentserve.server.codecs import PNG_SIGNATURE
from latentserve.server.engine.service import GenerativeService
from latentserve.server.metrics import ServerMetrics
from latentserve.server.pipelines import build_pipeline
from latentserve.server.repository.store import GraphOpener, ModelRepository
from latentserve.server.settings import Settings
from prometheus_client import CollectorRegistry

from latentserve.manifest import (
    ClassConditioning,
    GraphFile,
    GraphSpec,
    ImageSpec,
    LatentSpec,
    Manifest,
    NoiseScheduleSpec,
    Provenance,
    ServingDefaults,
    TensorSpec,
)
from latentserve.noise_schedule import alphas_cumprod

SIZE = 8  # tiny 8x8 grayscale images
LATENT = 3
POISON = 13.0  # a temperature that makes FakeSampler raise: the failing-batch trigger
# What a failing fake graph raises: text no client may ever see (it stands for a runtime's
# message, which names files, tensors and shapes).
GRAPH_SECRET = "graph exploded at /srv/models/secret.onnx"


class Recorder:
    """Counts calls and batch sizes; can be slowed down, held at a gate, or made to raise
    ``GRAPH_SECRET`` on chosen calls (``fail_calls``, numbered from 1)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batch_sizes: list[int] = []
        self.delay_s = delay_s
        self.gate: threading.Event | None = None
        self.entered = threading.Event()  # set once a batch is inside the graph
        self.lock = threading.Lock()
        self.fail_calls: set[int] = set()
        self.calls = 0

    def record(self, n: int) -> None:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.delay_s:
            time.sleep(self.delay_s)
        with self.lock:
            self.calls += 1
            if self.calls in self.fail_calls:
                raise RuntimeError(GRAPH_SECRET)
            self.batch_sizes.append(n)


class EchoGraph(Recorder):
    backend = "fake"
    providers = ["FakeProvider"]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        self.record(x.shape[0])
        return {"y": x * 2}


class FakeSampler(Recorder):
    backend = "fake"
    providers = ["FakeProvider"]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        noise, temperature = inputs["noise"], inputs["temperature"]
        self.record(noise.shape[0])
        if np.any(temperature == POISON):
            raise RuntimeError("poisoned batch")
        index = np.arange(SIZE * SIZE) % LATENT
        flat = 1 / (1 + np.exp(-noise[:, index] * temperature[:, None]))
        return {"image": flat.reshape(-1, 1, SIZE, SIZE).astype(np.float32)}


class FakeEncoder(Recorder):
    backend = "fake"
    providers = ["FakeProvider"]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        image = inputs["image"]
        self.record(image.shape[0])
        flat = image.reshape(image.shape[0], -1)
        latent = np.stack([flat[:, j::LATENT].mean(axis=1) for j in range(LATENT)], axis=1)
        return {"latent": latent.astype(np.float32), "logvar": np.zeros_like(latent)}


class FakeDecoder(Recorder):
    backend = "fake"
    providers = ["FakeProvider"]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        latent = inputs["latent"]
        self.record(latent.shape[0])
        index = np.arange(SIZE * SIZE) % LATENT
        return {"image": latent[:, index].reshape(-1, 1, SIZE, SIZE).astype(np.float32)}


class FakeDenoiser(Recorder):
    """The exact noise prediction for data drawn per pixel from N(mean, DATA_STD^2), where
    the mean depends on the class label (``null`` label: 0). Records what each call saw."""

    backend = "fake"
    providers = ["FakeProvider"]

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(delay_s)
        self.alphas_cumprod = alphas_cumprod("linear", TRAIN_STEPS)
        self.timesteps: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x, t = inputs["sample"].astype(np.float64), inputs["timestep"]
        self.record(x.shape[0])
        with self.lock:
            self.timesteps.append(t.copy())
        mean = np.zeros(x.shape[0])
        if "encoder_attention_mask" in inputs:  # text: 0.1 per word of the prompt
            mask = inputs["encoder_attention_mask"]
            with self.lock:
                self.masks.append(mask.copy())
            mean = 0.1 * (mask.sum(axis=1) - 2)  # [CLS] ... [SEP]
        if "class_label" in inputs:
            labels = inputs["class_label"]
            with self.lock:
                self.labels.append(labels.copy())
            mean = np.where(labels == CLASSES, 0.0, (labels - 1) * 0.2)
        ab = self.alphas_cumprod[t.astype(np.int64)].reshape(-1, 1, 1, 1)
        mu = mean.reshape(-1, 1, 1, 1)
        eps = np.sqrt(1 - ab) * (x - np.sqrt(ab) * mu) / (ab * DATA_STD**2 + 1 - ab)
        return {"prediction": eps.astype(np.float32)}


TRAIN_STEPS = 1000
DATA_STD = 0.3
CLASSES = 4


def fake_diffusion_manifest(
    name: str = "fake-ddpm", conditional: bool = False, **serving: float
) -> Manifest:
    """A pixel diffusion model over 8x8 images whose denoiser is ``FakeDenoiser``."""
    shape = ["batch", 1, SIZE, SIZE]
    inputs = [
        TensorSpec(name="sample", dtype="float32", shape=shape),
        TensorSpec(name="timestep", dtype="float32", shape=["batch"]),
    ]
    if conditional:
        inputs.append(TensorSpec(name="class_label", dtype="int64", shape=["batch"]))
    denoiser = GraphSpec(
        inputs=inputs,
        outputs=[TensorSpec(name="prediction", dtype="float32", shape=shape)],
        files={"onnx": GraphFile(path="denoiser.onnx", sha256="0" * 64)},
    )
    return Manifest(
        name=name,
        version="1",
        family="ddpm",
        pipeline="diffusion",
        capabilities=["sample"],
        image=ImageSpec(height=SIZE, width=SIZE, channels=1),
        latent=LatentSpec(shape=[1, SIZE, SIZE]),
        graphs={"denoiser": denoiser},
        noise_schedule=NoiseScheduleSpec(
            alphas_cumprod=alphas_cumprod("linear", TRAIN_STEPS).tolist(), default_steps=10
        ),
        conditioning=(
            ClassConditioning(num_classes=CLASSES, null_label=CLASSES, default_guidance_scale=2.0)
            if conditional
            else None
        ),
        serving=ServingDefaults(**serving),
        provenance=Provenance(
            config={}, dataset="none", created_at="2026-01-01T00:00:00Z", latentserve_version="0"
        ),
    )


def _spec(inputs: dict[str, list], outputs: dict[str, list], role: str) -> GraphSpec:
    return GraphSpec(
        inputs=[TensorSpec(name=k, dtype="float32", shape=v) for k, v in inputs.items()],
        outputs=[TensorSpec(name=k, dtype="float32", shape=v) for k, v in outputs.items()],
        files={"onnx": GraphFile(path=f"{role}.onnx", sha256="0" * 64)},
    )


def fake_manifest(
    name: str = "fake-vae", version: str = "1", sampler: bool = True, **serving: float
) -> Manifest:
    image = ["batch", 1, SIZE, SIZE]
    latent = ["batch", LATENT]
    graphs = {
        "encoder": _spec({"image": image}, {"latent": latent, "logvar": latent}, "encoder"),
        "decoder": _spec({"latent": latent}, {"image": image}, "decoder"),
    }
    if sampler:
        graphs["sampler"] = _spec(
            {"noise": latent, "temperature": ["batch"]}, {"image": image}, "sampler"
        )
    return Manifest(
        name=name,
        version=version,
        family="vae" if sampler else "autoencoder",
        pipeline="latent_decoder",
        capabilities=(["sample"] if sampler else []) + ["encode", "reconstruct"],
        image=ImageSpec(height=SIZE, width=SIZE, channels=1),
        latent=LatentSpec(shape=[LATENT]),
        graphs=graphs,
        serving=ServingDefaults(**serving),
        provenance=Provenance(
            config={}, dataset="none", created_at="2026-01-01T00:00:00Z", latentserve_version="0"
        ),
    )


class FakeTextEncoder(Recorder):
    """Token states that spell each token's id (what the denoiser reads is the mask)."""

    backend = "fake"
    providers = ["FakeProvider"]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = inputs["input_ids"]
        self.record(ids.shape[0])
        return {"hidden_states": np.repeat(ids[..., None], TEXT_HIDDEN, -1).astype(np.float32)}


class FakePixelEncoder(Recorder):
    """image in [0, 1] -> its "latent" in [-1, 1], for latent diffusion over pixels."""

    backend = "fake"
    providers = ["FakeProvider"]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.record(inputs["image"].shape[0])
        return {"latent": inputs["image"] * 2 - 1}


class FakePixelDecoder(Recorder):
    backend = "fake"
    providers = ["FakeProvider"]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.record(inputs["latent"].shape[0])
        return {"image": np.clip((inputs["latent"] + 1) / 2, 0, 1).astype(np.float32)}


TEXT_HIDDEN = 4
TEXT_TOKENS = 8

FAKES = {
    "sampler": FakeSampler,
    "encoder": FakeEncoder,
    "decoder": FakeDecoder,
    "denoiser": FakeDenoiser,
    "text_encoder": FakeTextEncoder,
    "pixel_encoder": FakePixelEncoder,
    "pixel_decoder": FakePixelDecoder,
}


def fake_opener(graphs: dict[str, dict[str, Recorder]], delay_s: float = 0.0) -> GraphOpener:
    """Opens a fake graph for each graph file by its role (the file's stem), and files it
    in ``graphs`` by ``name@version``: for loads and reloads alike."""

    def opener(version_dir: Path, spec: GraphSpec, backend: str, threads: int) -> Recorder:
        role = Path(spec.files["onnx"].path).stem
        fake = FAKES[role](delay_s)
        graphs.setdefault(f"{version_dir.parent.name}@{version_dir.name}", {})[role] = fake
        return fake

    return opener


def fake_repository(
    settings: Settings,
    metrics: ServerMetrics,
    manifests: list[Manifest],
    delay_s: float = 0.0,
    files: dict[str, Path] | None = None,
) -> tuple[ModelRepository, dict[str, dict[str, Recorder]]]:
    """Write ``manifests`` under ``settings.repository`` (with ``files`` copied into each
    version folder by name) and load them with the real loader, opening fake graphs instead
    of ONNX files. Also returns the fakes by ``name@version``."""
    graphs: dict[str, dict[str, Recorder]] = {}
    opener = fake_opener(graphs, delay_s)
    for manifest in manifests:
        version_dir = settings.repository / manifest.name / manifest.version
        version_dir.mkdir(parents=True)
        manifest.save(version_dir)
        for name, source in (files or {}).items():
            shutil.copyfile(source, version_dir / name)
    return ModelRepository.load(
        settings.repository, settings, build_pipeline, metrics, opener
    ), graphs


def fake_service(
    tmp_path: Path,
    manifests: list[Manifest],
    delay_s: float = 0.0,
    files: dict[str, Path] | None = None,
    **settings: object,
) -> tuple[GenerativeService, dict[str, dict[str, Recorder]]]:
    """The real service over ``manifests`` served by fake graphs (see ``fake_repository``),
    with ``settings`` and a fresh metrics registry; also returns the fakes by
    ``name@version``."""
    config = Settings(repository=tmp_path / "repo", **settings)
    metrics = ServerMetrics(CollectorRegistry())
    repository, graphs = fake_repository(config, metrics, manifests, delay_s, files)
    service = GenerativeService(config, metrics, repository, fake_opener(graphs, delay_s))
    return service, graphs


def vae_service(
    tmp_path: Path, delay_s: float = 0.0, **settings: object
) -> tuple[GenerativeService, dict[str, dict[str, Recorder]]]:
    """The service over ``fake-vae`` versions 1 and 2 (sample, encode, reconstruct) and
    ``fake-ae`` version 1 (no sampler): the common fixture of the service-level tests."""
    manifests = [
        fake_manifest("fake-vae", "1", max_n=16, max_queue_delay_ms=5),
        fake_manifest("fake-vae", "2", max_n=16, max_queue_delay_ms=5),
        fake_manifest("fake-ae", "1", sampler=False),
    ]
    return fake_service(tmp_path, manifests, delay_s, **settings)


def header_only_png(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge image: what a decompression bomb looks like."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def items(start: int, n: int) -> dict[str, np.ndarray]:
    """``n`` one-feature items numbered from ``start``: easy to trace through a batch."""
    return {"x": np.arange(start, start + n, dtype=np.float32).reshape(n, 1)}


def sample_params(n: int, seed: int | None = None, temperature: float | None = None) -> dict:
    """A sample request's parameters as a client sends them (unset ones left out)."""
    params: dict = {"n": n, "seed": seed, "temperature": temperature}
    return {k: v for k, v in params.items() if v is not None}
