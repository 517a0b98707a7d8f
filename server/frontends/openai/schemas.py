"""The request bodies of the OpenAI Images API as latentserve serves them.

The API's own fields, plus latentserve's sampler settings as extra body fields (the SDK's
``extra_body``). A field this server would ignore is refused by name rather than silently
dropped; what the engine checks (steps, sampler, n against the model's limit) it names too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: The fields handed to the engine's ``text_to_image`` as they are.
ENGINE_FIELDS = {
    "prompt",
    "n",
    "seed",
    "steps",
    "sampler",
    "guidance_scale",
    "negative_prompt",
    "strength",
}


class GenerationRequest(BaseModel):
    """``POST /v1/images/generations``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="a served model with the text_to_image capability")
    prompt: str = Field(description="what to draw")
    n: int | None = Field(default=None, description="images to make (default 1)")
    size: str | None = Field(
        default=None, description='the model\'s own "WIDTHxHEIGHT" (e.g. "28x28") or "auto"'
    )
    response_format: Literal["b64_json", "url"] | None = Field(
        default=None,
        description="b64_json (default) or url: GET /v1/jobs/{id}/images/{i} while the job "
        "is retained",
    )
    output_format: Literal["png"] | None = Field(default=None, description="png only")
    user: str | None = Field(default=None, description="the end user, for the caller's records")
    stream: bool | None = Field(default=None, description="answer with Server-Sent Events")
    partial_images: int | None = Field(
        default=None, ge=0, le=3, description="streamed partial images (previews), 0 to 3"
    )
    # latentserve's own (send them as extra body fields)
    seed: int | None = Field(default=None, description="reproduce a result")
    steps: int | None = Field(default=None, description="denoiser steps")
    sampler: str | None = Field(default=None, description="ddpm, ddim, dpmpp_2m or euler_a")
    guidance_scale: float | None = Field(default=None, description="classifier-free guidance")
    negative_prompt: str | None = Field(default=None, description="what to steer away from")

    def engine_params(self) -> dict[str, Any]:
        """What the engine's ``text_to_image`` takes from this request."""
        return self.model_dump(include=ENGINE_FIELDS, exclude_none=True)


class EditRequest(GenerationRequest):
    """``POST /v1/images/edits`` (multipart): the form fields besides ``image`` and ``mask``."""

    strength: float | None = Field(
        default=None,
        description="how much of the image to redraw, (0, 1] (default 0.8; 1 with a mask)",
    )
