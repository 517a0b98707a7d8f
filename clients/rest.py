"""REST client (httpx): the JSON/base64 face of the server.

Prefer :class:`~latentserve.clients.grpc_client.GrpcClient` for throughput; REST is for
curl-level simplicity and places where gRPC cannot go.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import numpy as np
from latentserve.clients.errors import UnavailableError, from_http
from latentserve.clients.images import ImageInput, from_png, to_pngs
from latentserve.clients.results import (
    ImageShape,
    LogProbResult,
    ModelInfo,
    SampleChunk,
    SampleResult,
    single_group,
)
from PIL import Image


class RestClient:
    """Synchronous client for ``http(s)://host:port``; reuse one instance (keep-alive)."""

    def __init__(self, base_url: str, *, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def list_models(self) -> list[ModelInfo]:
        """Every model the server serves (latest version of each)."""
        body = self._call("GET", "/v1/models")
        return [model_info_from_json(item) for item in body["models"]]

    def get_model(self, model: str) -> ModelInfo:
        """One model; ``model`` is ``name`` (latest version) or ``name@version``."""
        return model_info_from_json(self._call("GET", f"/v1/models/{model}"))

    def sample(
        self, model: str, n: int, seed: int | None = None, temperature: float = 1.0
    ) -> SampleResult:
        """Draw ``n`` images; the returned seed reproduces them."""
        payload: dict[str, Any] = {"n": n, "temperature": temperature}
        if seed is not None:
            payload["seed"] = seed
        body = self._call("POST", f"/v1/models/{model}/sample", json=payload)
        return SampleResult(
            model=body["model"], seed=int(body["seed"]), images=_decode_images(body["images"])
        )

    def stream_sample(
        self, model: str, n: int, seed: int | None = None, temperature: float = 1.0
    ) -> Iterator[SampleChunk]:
        """REST has no streaming endpoint: this yields the whole result as one chunk.

        It exists so code written against :func:`connect` runs on either transport; use
        gRPC when the first images must arrive before the last are computed.
        """
        result = self.sample(model, n, seed=seed, temperature=temperature)
        yield SampleChunk(model=result.model, seed=result.seed, offset=0, images=result.images)

    def encode(self, model: str, images: Iterable[ImageInput]) -> np.ndarray:
        """Latents of ``images`` for a model with one latent group, ``(len(images), ...)``."""
        return single_group(model, self.encode_groups(model, images))

    def encode_groups(self, model: str, images: Iterable[ImageInput]) -> dict[str, np.ndarray]:
        """Every latent group of ``images`` by name (NVAE groups, flow scales, VQ codes)."""
        body = self._call("POST", f"/v1/models/{model}/encode", json=_images_payload(images))
        return {name: _array(rows) for name, rows in body["groups"].items()}

    def log_prob(
        self,
        model: str,
        images: Iterable[ImageInput],
        samples: int | None = None,
        seed: int | None = None,
    ) -> LogProbResult:
        """Bits/dim of each image; ``samples`` > 1 asks for an importance-weighted bound."""
        payload = _images_payload(images)
        if samples is not None:
            payload["samples"] = samples
        if seed is not None:
            payload["seed"] = seed
        body = self._call("POST", f"/v1/models/{model}/log-prob", json=payload)
        return LogProbResult(
            model=body["model"],
            bits_per_dim=[float(b) for b in body["bits_per_dim"]],
            bound=body["bound"],
            samples=int(body["samples"]),
            seed=body.get("seed"),
        )

    def reconstruct(self, model: str, images: Iterable[ImageInput]) -> list[Image.Image]:
        """Encode then decode ``images`` (what the model keeps of them)."""
        body = self._call("POST", f"/v1/models/{model}/reconstruct", json=_images_payload(images))
        return _decode_images(body["images"])

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, json: dict | None = None) -> dict:
        try:
            response = self._http.request(method, path, json=json)
        except httpx.TransportError as exc:
            raise UnavailableError(f"{self.base_url}: {exc}", code="unavailable") from exc
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.is_error:
            raise from_http(response.status_code, body, response.headers.get("retry-after"))
        return body


def model_info_from_json(item: dict) -> ModelInfo:
    """The REST form of a model (same field names as the gRPC ``ModelInfo``)."""
    image = item["image"]
    return ModelInfo(
        name=item["name"],
        version=str(item["version"]),
        family=item["family"],
        description=item.get("description", ""),
        capabilities=list(item["capabilities"]),
        image=ImageShape(int(image["height"]), int(image["width"]), int(image["channels"])),
        latent_shape=[int(d) for d in item["latent_shape"]],
        backend=item.get("backend", ""),
        execution_providers=list(item.get("execution_providers", [])),
        max_batch_size=int(item.get("max_batch_size", 0)),
        max_n=int(item.get("max_n", 0)),
        versions=[str(v) for v in item.get("versions", [])],
        likelihood=item.get("likelihood"),
    )


def _images_payload(images: Iterable[ImageInput]) -> dict:
    return {"images": [base64.b64encode(png).decode("ascii") for png in to_pngs(images)]}


def _decode_images(items: list[str]) -> list[Image.Image]:
    return [from_png(base64.b64decode(item)) for item in items]


def _array(rows: list) -> np.ndarray:
    """JSON numbers back to the server's dtypes: int64 codes stay ints, latents are float32."""
    array = np.asarray(rows)
    return array.astype(np.float32) if array.dtype.kind == "f" else array
