"""Asyncio REST client (httpx.AsyncClient): :class:`~latentserve.clients.rest.RestClient`'s
methods as coroutines and async iterators, sharing its request building and parsing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
import numpy as np
from latentserve.clients.errors import (
    DeadlineExceededError,
    JobNotFoundError,
    LatentServeError,
    ModelNotFoundError,
    UnavailableError,
)
from latentserve.clients.images import ImageInput
from latentserve.clients.params import sample_params
from latentserve.clients.rest import (
    EVENT_STREAM,
    TIMEOUT_HEADER,
    decode_images,
    error_from_response,
    event_from_sse,
    groups_from_json,
    http_options,
    images_payload,
    interpolate_payload,
    interpolation_from_json,
    job_info_from_json,
    job_payload,
    json_or_text,
    log_prob_from_json,
    log_prob_payload,
    model_info_from_json,
    reload_from_json,
    sample_from_json,
    text_payload,
)
from latentserve.clients.results import (
    InterpolationResult,
    JobEvent,
    JobInfo,
    LogProbResult,
    ModelInfo,
    ReloadResult,
    Result,
    SampleResult,
    single_group,
)
from latentserve.clients.retry import DEFAULT_RETRY, Retry
from latentserve.clients.sse import parse_sse_async
from latentserve.clients.tls import ClientTLS
from PIL import Image


class AsyncRestClient:
    """Asyncio client for ``http(s)://host:port``; each method is the awaitable form of
    :class:`~latentserve.clients.rest.RestClient`'s of the same name."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 60.0,
        token: str | None = None,
        tls: ClientTLS | None = None,
        retry: Retry = DEFAULT_RETRY,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry
        self._http = httpx.AsyncClient(**http_options(self.base_url, timeout, token, tls))

    async def list_models(self) -> list[ModelInfo]:
        body = await self._call("GET", "/v1/models")
        return [model_info_from_json(item) for item in body["models"]]

    async def get_model(self, model: str) -> ModelInfo:
        return model_info_from_json(await self._call("GET", f"/v1/models/{model}"))

    async def sample(
        self, model: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> SampleResult:
        payload = sample_params(n, seed, params)
        return sample_from_json(await self._compute(f"/v1/models/{model}/sample", payload))

    def sample_events(
        self, model: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> AsyncIterator[JobEvent]:
        payload = sample_params(n, seed, params)
        return self._events("POST", f"/v1/models/{model}/sample", payload, ModelNotFoundError)

    async def text_to_image(
        self, model: str, prompt: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> SampleResult:
        payload = text_payload(prompt, n, seed, params)
        return sample_from_json(await self._compute(f"/v1/models/{model}/text-to-image", payload))

    def text_to_image_events(
        self, model: str, prompt: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> AsyncIterator[JobEvent]:
        payload = text_payload(prompt, n, seed, params)
        path = f"/v1/models/{model}/text-to-image"
        return self._events("POST", path, payload, ModelNotFoundError)

    async def interpolate(
        self,
        model: str,
        seed_a: int | None = None,
        seed_b: int | None = None,
        frames: int | None = None,
        *,
        image_a: ImageInput | None = None,
        image_b: ImageInput | None = None,
        **params: Any,
    ) -> InterpolationResult:
        payload = interpolate_payload(seed_a, seed_b, frames, image_a, image_b, params)
        body = await self._call("POST", f"/v1/models/{model}/interpolate", payload)
        return interpolation_from_json(body)

    async def submit_job(
        self,
        model: str,
        n: int = 1,
        seed: int | None = None,
        *,
        method: str = "sample",
        **params: Any,
    ) -> JobInfo:
        payload = job_payload(model, n, seed, method, params)
        return job_info_from_json(await self._call("POST", "/v1/jobs", payload))

    async def get_job(self, job_id: str) -> JobInfo:
        body = await self._call("GET", f"/v1/jobs/{job_id}", None, JobNotFoundError)
        return job_info_from_json(body)

    async def cancel_job(self, job_id: str) -> JobInfo:
        body = await self._call("DELETE", f"/v1/jobs/{job_id}", None, JobNotFoundError)
        return job_info_from_json(body)

    def watch_job(self, job_id: str) -> AsyncIterator[JobEvent]:
        return self._events("GET", f"/v1/jobs/{job_id}/events", None, JobNotFoundError)

    async def encode(self, model: str, images: Iterable[ImageInput]) -> np.ndarray:
        return single_group(model, await self.encode_groups(model, images))

    async def encode_groups(
        self, model: str, images: Iterable[ImageInput]
    ) -> dict[str, np.ndarray]:
        body = await self._compute(f"/v1/models/{model}/encode", images_payload(images))
        return groups_from_json(body)

    async def log_prob(
        self,
        model: str,
        images: Iterable[ImageInput],
        samples: int | None = None,
        seed: int | None = None,
    ) -> LogProbResult:
        payload = log_prob_payload(images, samples, seed)
        return log_prob_from_json(await self._compute(f"/v1/models/{model}/log-prob", payload))

    async def reconstruct(self, model: str, images: Iterable[ImageInput]) -> list[Image.Image]:
        body = await self._compute(f"/v1/models/{model}/reconstruct", images_payload(images))
        return decode_images(body["images"])

    async def reload_repository(self, admin_token: str) -> ReloadResult:
        headers = {"Authorization": f"Bearer {admin_token}"}
        body = await self._call("POST", "/v1/repository/reload", None, headers=headers)
        return reload_from_json(body)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncRestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _compute(self, path: str, payload: dict) -> dict:
        return await self._call(
            "POST", path, payload, headers={TIMEOUT_HEADER: f"{self.timeout:g}"}
        )

    async def _call(
        self,
        method: str,
        path: str,
        payload: dict | None = None,
        not_found: type[LatentServeError] = ModelNotFoundError,
        headers: dict[str, str] | None = None,
    ) -> dict:
        async def once() -> dict:
            try:
                response = await self._http.request(method, path, json=payload, headers=headers)
            except httpx.TimeoutException as exc:
                message = f"{self.base_url}: no answer in {self.timeout:g}s"
                raise DeadlineExceededError(message) from exc
            except httpx.TransportError as exc:
                raise self._unavailable(exc) from exc
            body = json_or_text(response)
            if response.is_error:
                raise error_from_response(response, body, not_found)
            return body

        return await self.retry.call_async(once)

    async def _events(
        self,
        method: str,
        path: str,
        payload: dict | None,
        not_found: type[LatentServeError],
    ) -> AsyncIterator[JobEvent]:
        response = await self.retry.call_async(
            lambda: self._open_events(method, path, payload, not_found)
        )
        try:
            async for sse in parse_sse_async(response.aiter_lines()):
                event = event_from_sse(sse)
                if event is not None:
                    yield event
                if isinstance(event, Result):
                    return
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        finally:
            await response.aclose()
        raise UnavailableError(f"{self.base_url}: event stream ended before the job did")

    async def _open_events(
        self, method: str, path: str, payload: dict | None, not_found: type[LatentServeError]
    ) -> httpx.Response:
        request = self._http.build_request(method, path, json=payload, headers=EVENT_STREAM)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        if response.is_error:
            await response.aread()
            await response.aclose()
            raise error_from_response(response, json_or_text(response), not_found)
        return response

    def _unavailable(self, exc: httpx.TransportError) -> UnavailableError:
        return UnavailableError(f"{self.base_url}: {exc}", code="unavailable")
