"""What the server says of itself over the protocol, on both transports."""

from __future__ import annotations

from typing import Any

from latentserve import __version__

NAME = "latentserve"
#: The protocol's optional parts served here (REST binary data; the repository extension).
EXTENSIONS = ["binary_tensor_data", "model_repository"]


def server_metadata() -> dict[str, Any]:
    return {"name": NAME, "version": __version__, "extensions": EXTENSIONS}
