"""Typed sample parameters, one model per pipeline kind.

Each pipeline kind declares the parameters its ``sample`` takes as a pydantic model; the
transports hand the service a plain mapping of what the client sent and never name a
field. Parsing refuses a field the model's kind does not have by name (``steps`` sent to
a VAE, ``temperature`` sent to a diffusion model), and ``check`` applies the rules that
depend on the model (``n`` within its ``max_n``, a class label within its classes), so
every check on a sample request happens here, once.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from latentserve.server.errors import InvalidArgument, shown
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_SEED = 2**64 - 1
# A prior's temperature scales its noise (or divides its logits): outside this range the
# float32 graphs overflow or collapse to one flat image.
MIN_TEMPERATURE = 1e-3
MAX_TEMPERATURE = 100.0


def resolve_seed(seed: int | None, field: str = "seed") -> int:
    """The request's seed (the field ``field``), or a fresh one the response reports back."""
    if seed is None:
        return secrets.randbits(63)
    if not 0 <= seed <= MAX_SEED:
        raise InvalidArgument(field, f"must be between 0 and {MAX_SEED}, got {shown(seed)}")
    return seed


class RequestParams(BaseModel):
    """The parameters of one generating method (``sample``, ``interpolate``, ...)."""

    # Strict: "n": "3" is a client bug worth a 422, not something to coerce silently.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: How a pipeline kind calls itself in error messages.
    kind: ClassVar[str] = "sample"
    #: What its fields are called in error messages.
    noun: ClassVar[str] = "a sample parameter"

    @classmethod
    def parse(cls, raw: Mapping[str, Any], model: str) -> Self:
        """Validate what a client sent; the first problem becomes an ``InvalidArgument``."""
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"]) or "body"
            if error["type"] == "extra_forbidden":
                accepted = ", ".join(cls.model_fields)
                raise InvalidArgument(
                    field,
                    f"not {cls.noun} of {model} ({cls.kind} models take {accepted})",
                ) from None
            raise InvalidArgument(field, error["msg"]) from None

    def check(self, max_n: int) -> Self:
        """Apply the model's limits (and resolve seeds the server draws)."""
        return self

    def with_defaults(self, defaults: Mapping[str, Any]) -> Self:
        """The parameters with the model's defaults (its manifest's) in place of fields the
        client left out (``None``); a field a client set is kept."""
        missing = {
            name: value
            for name, value in defaults.items()
            if name in type(self).model_fields and getattr(self, name) is None
        }
        return self.model_copy(update=missing) if missing else self


class SampleParams(RequestParams):
    """What every sample request has: how many images and the seed that reproduces them."""

    n: int = Field(default=1, ge=1, description="images to draw: 1 to the model's max_n")
    seed: int | None = Field(
        default=None, ge=0, le=MAX_SEED, description="omit to let the server draw one"
    )

    def check(self, max_n: int) -> Self:
        """Apply the model's limits; returns the parameters with the seed resolved."""
        if not 1 <= self.n <= max_n:
            raise InvalidArgument("n", f"must be between 1 and {max_n}, got {shown(self.n)}")
        return self.model_copy(update={"seed": resolve_seed(self.seed)})

    @property
    def resolved_seed(self) -> int:
        if self.seed is None:
            raise RuntimeError("parameters used before check() resolved the seed")
        return self.seed


class Temperature(RequestParams):
    """The prior's temperature, for one-shot and autoregressive sampling (and their
    interpolation)."""

    temperature: float | None = Field(
        default=None,
        ge=MIN_TEMPERATURE,
        le=MAX_TEMPERATURE,
        allow_inf_nan=False,
        description="prior scale (default: the model's, 1.0 unless its manifest names another)",
    )


class TemperatureParams(Temperature, SampleParams):
    """One-shot and autoregressive sampling: the prior's temperature."""

    kind: ClassVar[str] = "prior"
