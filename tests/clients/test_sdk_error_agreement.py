"""The same bad requests over REST and gRPC through a real server: the SDK raises the same
exception class with the same code and field on both transports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.server_process import ServerFactory, ServerProcess, connect_to
from latentserve.clients import (
    InvalidArgumentError,
    JobNotFoundError,
    LatentServeError,
    ModelNotFoundError,
    UnsupportedError,
)
from latentserve.clients.images import to_png

pytestmark = pytest.mark.slow

PNG = to_png(np.zeros((28, 28), np.uint8))
OVERSIZE = PNG + b"\x00" * 70_000  # over the server's 65536-byte request limit

# (what the call does, expected class, code, field)
BAD_CALLS: dict[str, tuple[Callable, type[LatentServeError], str, str | None]] = {
    "unknown-model": (
        lambda c: c.get_model("no-such-model"),
        ModelNotFoundError,
        "not_found",
        None,
    ),
    "unknown-version": (lambda c: c.sample("vae-tiny@9"), ModelNotFoundError, "not_found", None),
    "superscript-version": (
        lambda c: c.get_model("vae-tiny@²"),
        ModelNotFoundError,
        "not_found",
        None,
    ),
    "leading-zero": (lambda c: c.sample("vae-tiny@01"), ModelNotFoundError, "not_found", None),
    "n-zero": (lambda c: c.sample("vae-tiny", n=0), InvalidArgumentError, "invalid_argument", "n"),
    "n-over-max": (
        lambda c: c.sample("vae-tiny", n=65),
        InvalidArgumentError,
        "invalid_argument",
        "n",
    ),
    "hot-temperature": (
        lambda c: c.sample("vae-tiny", temperature=1e38),
        InvalidArgumentError,
        "invalid_argument",
        "temperature",
    ),
    "negative-seed": (
        lambda c: c.sample("vae-tiny", seed=-1),
        InvalidArgumentError,
        "invalid_argument",
        "seed",
    ),
    "foreign-parameter": (
        lambda c: c.sample("vae-tiny", steps=10),
        InvalidArgumentError,
        "invalid_argument",
        "steps",
    ),
    "sample-an-autoencoder": (
        lambda c: c.sample("ae-tiny"),
        UnsupportedError,
        "unsupported",
        None,
    ),
    "log-prob-an-autoencoder": (
        lambda c: c.log_prob("ae-tiny", [PNG]),
        UnsupportedError,
        "unsupported",
        None,
    ),
    "not-a-png": (
        lambda c: c.encode("vae-tiny", [b"\x89PNG\r\n\x1a\n but not really"]),
        InvalidArgumentError,
        "invalid_argument",
        "images[0]",
    ),
    "no-images": (
        lambda c: c.encode("vae-tiny", []),
        InvalidArgumentError,
        "invalid_argument",
        "images",
    ),
    "zero-samples": (
        lambda c: c.log_prob("vae-tiny", [PNG], samples=0),
        InvalidArgumentError,
        "invalid_argument",
        "samples",
    ),
    "oversize-request": (
        lambda c: c.encode("vae-tiny", [OVERSIZE]),
        InvalidArgumentError,
        "payload_too_large",
        None,
    ),
    "unknown-job": (lambda c: c.get_job("no-such-job"), JobNotFoundError, "not_found", None),
}


@pytest.fixture(scope="module")
def small_body_server(
    tiny_repository: Path, start_server: ServerFactory
) -> Iterator[ServerProcess]:
    with start_server(tiny_repository, "agreement", "max_body_bytes = 65536\n") as server:
        yield server


def outcome(server: ServerProcess, transport: str, call: Callable) -> tuple:
    with connect_to(server, transport) as client, pytest.raises(LatentServeError) as caught:
        call(client)
    return type(caught.value), caught.value.code, caught.value.field


@pytest.mark.parametrize(("call", "cls", "code", "field"), BAD_CALLS.values(), ids=BAD_CALLS)
def test_both_transports_raise_the_same_error(
    small_body_server: ServerProcess, call: Callable, cls: type, code: str, field: str | None
) -> None:
    over_rest = outcome(small_body_server, "rest", call)
    over_grpc = outcome(small_body_server, "grpc", call)
    assert over_rest == over_grpc == (cls, code, field)
