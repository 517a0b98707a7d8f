"""REST client (httpx): the JSON/base64 face of the server.

Prefer :class:`~latentserve.clients.grpc_client.GrpcClient` for throughput; REST is for
curl-level simplicity and places where gRPC cannot go.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import numpy as np
from latentserve.clients.errors import (
    DeadlineExceededError,
    JobNotFoundError,
    LatentServeError,
    ModelNotFoundError,
    UnavailableError,
    from_code,
    from_http,
)
from latentserve.clients.images import ImageInput, from_png, to_png, to_pngs
from latentserve.clients.params import interpolate_params, sample_params
from latentserve.clients.results import (
    Accepted,
    ImageShape,
    InterpolationFrame,
    InterpolationResult,
    JobEvent,
    JobInfo,
    LogProbResult,
    ModelInfo,
    Preview,
    Progress,
    Queued,
    ReloadResult,
    Result,
    SampleChunk,
    SampleResult,
    single_group,
)
from latentserve.clients.retry import DEFAULT_RETRY, Retry
from latentserve.clients.sse import ServerSentEvent, parse_sse
from latentserve.clients.tls import ClientTLS, bearer
from PIL import Image

EVENT_STREAM = {"Accept": "text/event-stream"}
TIMEOUT_HEADER = "X-Request-Timeout"


def http_options(
    base_url: str, timeout: float, token: str | None, tls: ClientTLS | None
) -> dict[str, Any]:
    """The httpx client settings of both REST clients (sync and async)."""
    if tls is not None and not base_url.startswith("https://"):
        raise ValueError(f"TLS options need an https:// URL, got {base_url!r}")
    verify = tls.ssl_context() if tls is not None else True
    return {"base_url": base_url, "timeout": timeout, "headers": bearer(token), "verify": verify}


class RestClient:
    """Synchronous client for ``http(s)://host:port``; reuse one instance (keep-alive)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 60.0,
        token: str | None = None,
        tls: ClientTLS | None = None,
        retry: Retry = DEFAULT_RETRY,
    ) -> None:
        """``token`` is sent as ``Authorization: Bearer``; ``tls`` says which CA signed an
        ``https://`` server's certificate (default: the system's trusted CAs); ``retry``
        says how calls the server refused for now are tried again (``NO_RETRY``: never)."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry
        self._http = httpx.Client(**http_options(self.base_url, timeout, token, tls))

    def list_models(self) -> list[ModelInfo]:
        """Every model the server serves (latest version of each)."""
        body = self._call("GET", "/v1/models")
        return [model_info_from_json(item) for item in body["models"]]

    def get_model(self, model: str) -> ModelInfo:
        """One model; ``model`` is ``name`` (latest version) or ``name@version``."""
        return model_info_from_json(self._call("GET", f"/v1/models/{model}"))

    def sample(
        self, model: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> SampleResult:
        """Draw ``n`` images; the returned seed reproduces them.

        ``params`` are the model kind's other sample parameters (``temperature``,
        ``steps``, ``sampler``, ...); one the model does not take raises
        :class:`InvalidArgumentError` naming it.
        """
        body = self._compute(f"/v1/models/{model}/sample", sample_params(n, seed, params))
        return sample_from_json(body)

    def stream_sample(
        self, model: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> Iterator[SampleChunk]:
        """REST has no streaming endpoint: this yields the whole result as one chunk.

        It exists so code written against :func:`connect` runs on either transport; use
        gRPC when the first images must arrive before the last are computed.
        """
        result = self.sample(model, n, seed, **params)
        yield SampleChunk(model=result.model, seed=result.seed, offset=0, images=result.images)

    def sample_events(
        self, model: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> Iterator[JobEvent]:
        """Run a sample job and yield its events, ending with its :class:`Result`.

        A failed job raises its error. Closing the iterator early (``break``, ``close()``)
        closes the connection, and the server cancels the job.
        """
        payload = sample_params(n, seed, params)
        yield from self._events("POST", f"/v1/models/{model}/sample", payload, ModelNotFoundError)

    def text_to_image(
        self, model: str, prompt: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> SampleResult:
        """Images for ``prompt`` from a text-to-image model. ``params``: ``negative_prompt``,
        ``steps``, ``sampler``, ``eta``, ``guidance_scale``, and for img2img ``image`` (PIL,
        numpy, PNG bytes or a path) with ``strength``."""
        payload = text_payload(prompt, n, seed, params)
        return sample_from_json(self._compute(f"/v1/models/{model}/text-to-image", payload))

    def text_to_image_events(
        self, model: str, prompt: str, n: int = 1, seed: int | None = None, **params: Any
    ) -> Iterator[JobEvent]:
        """Run a text-to-image job and yield its events, as :meth:`sample_events` does."""
        payload = text_payload(prompt, n, seed, params)
        path = f"/v1/models/{model}/text-to-image"
        yield from self._events("POST", path, payload, ModelNotFoundError)

    def interpolate(
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
        """Frames along a spherical interpolation between the latents of ``seed_a`` and
        ``seed_b`` (unset: the server draws them and returns them); the first and last
        frames are what :meth:`sample` gives for n = 1 with each seed. Models that encode
        take ``image_a`` and ``image_b`` instead. ``params`` are the model kind's own
        (``temperature``; diffusion ``steps``, ``class_label``, ``guidance_scale``).
        """
        payload = interpolate_payload(seed_a, seed_b, frames, image_a, image_b, params)
        return interpolation_from_json(
            self._call("POST", f"/v1/models/{model}/interpolate", payload)
        )

    def stream_interpolate(
        self, model: str, *args: Any, **kwargs: Any
    ) -> Iterator[InterpolationFrame]:
        """REST answers with every frame at once: this yields them from one response (gRPC
        streams each frame as it is made)."""
        result = self.interpolate(model, *args, **kwargs)
        for index, image in enumerate(result.images):
            yield InterpolationFrame(result.model, index, image, result.seed_a, result.seed_b)

    def submit_job(
        self,
        model: str,
        n: int = 1,
        seed: int | None = None,
        *,
        method: str = "sample",
        **params: Any,
    ) -> JobInfo:
        """Admit a job (``sample`` or ``text_to_image``, whose ``prompt`` goes in
        ``params``) that outlives this call; follow it with :meth:`watch_job`."""
        payload = job_payload(model, n, seed, method, params)
        return job_info_from_json(self._call("POST", "/v1/jobs", payload))

    def get_job(self, job_id: str) -> JobInfo:
        """The job's state now (a finished job stays readable for the server's job TTL)."""
        return job_info_from_json(self._call("GET", f"/v1/jobs/{job_id}", None, JobNotFoundError))

    def cancel_job(self, job_id: str) -> JobInfo:
        """Ask the server to stop the job at its next step; its state says when it has."""
        body = self._call("DELETE", f"/v1/jobs/{job_id}", None, JobNotFoundError)
        return job_info_from_json(body)

    def watch_job(self, job_id: str) -> Iterator[JobEvent]:
        """The job's latest events so far, then live ones up to its :class:`Result`.

        A failed or cancelled job raises its error; closing this iterator leaves the job
        running.
        """
        yield from self._events("GET", f"/v1/jobs/{job_id}/events", None, JobNotFoundError)

    def encode(self, model: str, images: Iterable[ImageInput]) -> np.ndarray:
        """Latents of ``images`` for a model with one latent group, ``(len(images), ...)``."""
        return single_group(model, self.encode_groups(model, images))

    def encode_groups(self, model: str, images: Iterable[ImageInput]) -> dict[str, np.ndarray]:
        """Every latent group of ``images`` by name (NVAE groups, flow scales, VQ codes)."""
        body = self._compute(f"/v1/models/{model}/encode", images_payload(images))
        return groups_from_json(body)

    def log_prob(
        self,
        model: str,
        images: Iterable[ImageInput],
        samples: int | None = None,
        seed: int | None = None,
    ) -> LogProbResult:
        """Bits/dim of each image; ``samples`` > 1 asks for an importance-weighted bound."""
        payload = log_prob_payload(images, samples, seed)
        return log_prob_from_json(self._compute(f"/v1/models/{model}/log-prob", payload))

    def reconstruct(self, model: str, images: Iterable[ImageInput]) -> list[Image.Image]:
        """Encode then decode ``images`` (what the model keeps of them)."""
        body = self._compute(f"/v1/models/{model}/reconstruct", images_payload(images))
        return decode_images(body["images"])

    def reload_repository(self, admin_token: str) -> ReloadResult:
        """Have the server serve what its model repository holds now (an admin call)."""
        headers = {"Authorization": f"Bearer {admin_token}"}
        body = self._call("POST", "/v1/repository/reload", None, headers=headers)
        return reload_from_json(body)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _compute(self, path: str, payload: dict) -> dict:
        """A call whose answer the client waits for: the server is told how long
        (``X-Request-Timeout``), so it drops the work if it is still queued by then."""
        return self._call("POST", path, payload, headers={TIMEOUT_HEADER: f"{self.timeout:g}"})

    def _call(
        self,
        method: str,
        path: str,
        payload: dict | None = None,
        not_found: type[LatentServeError] = ModelNotFoundError,
        headers: dict[str, str] | None = None,
    ) -> dict:
        return self.retry.call(lambda: self._call_once(method, path, payload, not_found, headers))

    def _call_once(
        self,
        method: str,
        path: str,
        payload: dict | None,
        not_found: type[LatentServeError],
        headers: dict[str, str] | None,
    ) -> dict:
        try:
            response = self._http.request(method, path, json=payload, headers=headers)
        except httpx.TimeoutException as exc:
            raise DeadlineExceededError(f"{self.base_url}: no answer in {self.timeout:g}s") from exc
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        body = json_or_text(response)
        if response.is_error:
            raise error_from_response(response, body, not_found)
        return body

    def _events(
        self,
        method: str,
        path: str,
        payload: dict | None,
        not_found: type[LatentServeError],
    ) -> Iterator[JobEvent]:
        # A refusal comes before the first event, so opening the stream is what is retried.
        response = self.retry.call(lambda: self._open_events(method, path, payload, not_found))
        try:
            for sse in parse_sse(response.iter_lines()):
                event = event_from_sse(sse)
                if event is not None:
                    yield event
                if isinstance(event, Result):
                    return
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        finally:
            response.close()
        raise UnavailableError(f"{self.base_url}: event stream ended before the job did")

    def _open_events(
        self, method: str, path: str, payload: dict | None, not_found: type[LatentServeError]
    ) -> httpx.Response:
        request = self._http.build_request(method, path, json=payload, headers=EVENT_STREAM)
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        if response.is_error:
            response.read()
            response.close()
            raise error_from_response(response, json_or_text(response), not_found)
        return response

    def _unavailable(self, exc: httpx.TransportError) -> UnavailableError:
        return UnavailableError(f"{self.base_url}: {exc}", code="unavailable")


def event_from_sse(sse: ServerSentEvent) -> JobEvent | None:
    """One job event of the REST event stream; an ``error`` event is raised as the SDK's
    exception, and an event this SDK does not know (a newer server's) is ``None``."""
    data = json.loads(sse.data)
    if sse.event == "accepted":
        params = {k: v for k, v in data.items() if k not in ("job_id", "model")}
        return Accepted(data["job_id"], data["model"], int(data["seed"]), params)
    if sse.event == "queued":
        return Queued(int(data["position"]))
    if sse.event == "progress":
        return Progress(int(data["step"]), int(data["steps"]))
    if sse.event == "preview":
        return Preview(int(data["step"]), decode_images(data["images"]))
    if sse.event == "result":
        return Result(sample_from_json(data))
    if sse.event == "error":
        raise from_code(data["code"], data["message"], data.get("field"))
    return None


def job_info_from_json(item: dict) -> JobInfo:
    """The REST form of a job (``GET /v1/jobs/{id}``)."""
    error = item.get("error")
    return JobInfo(
        job_id=item["job_id"],
        model=item["model"],
        method=item["method"],
        state=item["state"],
        step=int(item["step"]),
        steps=int(item["steps"]),
        params=dict(item["params"]),
        created_at=float(item["created_at"]),
        position=item.get("position"),
        seed=item.get("seed"),
        preview=decode_images(item.get("preview") or []),
        images=decode_images(item.get("images") or []),
        error=from_code(error["code"], error["message"], error.get("field")) if error else None,
    )


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
        pipeline=item.get("pipeline", ""),
        sample_parameters=list(item.get("sample_parameters", [])),
        sample_defaults=dict(item.get("sample_defaults", {})),
    )


def text_payload(prompt: str, n: int, seed: int | None, params: dict[str, Any]) -> dict:
    if params.get("image") is not None:
        params["image"] = base64.b64encode(to_png(params["image"])).decode()
    return sample_params(n, seed, params) | {"prompt": prompt}


def sample_from_json(body: dict) -> SampleResult:
    return SampleResult(
        model=body["model"], seed=int(body["seed"]), images=decode_images(body["images"])
    )


def error_from_response(
    response: httpx.Response, body: object, not_found: type[LatentServeError]
) -> LatentServeError:
    retry_after = response.headers.get("retry-after")
    return from_http(response.status_code, body, retry_after, not_found=not_found)


def json_or_text(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return response.text


def images_payload(images: Iterable[ImageInput]) -> dict:
    return {"images": [base64.b64encode(png).decode("ascii") for png in to_pngs(images)]}


def decode_images(items: list[str]) -> list[Image.Image]:
    return [from_png(base64.b64decode(item)) for item in items]


def _array(rows: list) -> np.ndarray:
    """JSON numbers back to the server's dtypes: int64 codes stay ints, latents are float32."""
    array = np.asarray(rows)
    return array.astype(np.float32) if array.dtype.kind == "f" else array


def interpolate_payload(
    seed_a: int | None,
    seed_b: int | None,
    frames: int | None,
    image_a: ImageInput | None,
    image_b: ImageInput | None,
    params: dict[str, Any],
) -> dict:
    given = interpolate_params(seed_a, seed_b, frames, image_a, image_b, params)
    return {
        k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in given.items()
    }


def interpolation_from_json(body: dict) -> InterpolationResult:
    return InterpolationResult(
        model=body["model"],
        seed_a=body.get("seed_a"),
        seed_b=body.get("seed_b"),
        images=decode_images(body["images"]),
    )


def job_payload(model: str, n: int, seed: int | None, method: str, params: dict[str, Any]) -> dict:
    """``POST /v1/jobs``: a ``text_to_image`` job's ``prompt`` comes in ``params``."""
    if method == "text_to_image":
        given = text_payload(params.pop("prompt", ""), n, seed, params)
    else:
        given = sample_params(n, seed, params)
    return {"model": model, "method": method, "params": given}


def groups_from_json(body: dict) -> dict[str, np.ndarray]:
    return {name: _array(rows) for name, rows in body["groups"].items()}


def log_prob_payload(images: Iterable[ImageInput], samples: int | None, seed: int | None) -> dict:
    payload = images_payload(images)
    if samples is not None:
        payload["samples"] = samples
    if seed is not None:
        payload["seed"] = seed
    return payload


def log_prob_from_json(body: dict) -> LogProbResult:
    return LogProbResult(
        model=body["model"],
        bits_per_dim=[float(b) for b in body["bits_per_dim"]],
        bound=body["bound"],
        samples=int(body["samples"]),
        seed=body.get("seed"),
    )


def reload_from_json(body: dict) -> ReloadResult:
    refused = {item["model"]: item["error"] for item in body["refused"]}
    return ReloadResult(list(body["loaded"]), list(body["removed"]), refused)
