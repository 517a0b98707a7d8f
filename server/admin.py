"""Admin tokens: who may change what the server serves (repository reloads).

The tokens come from a file, one a line (blank lines and ``#`` comments skipped), named by
the ``admin_tokens_file`` setting and read at startup. A client presents one as a bearer
token — ``Authorization: Bearer <token>`` over REST, ``authorization`` metadata over
gRPC — and it is compared in constant time. Without the file there are no admins and every
admin call is refused.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from pathlib import Path

from latentserve.server.errors import PermissionDenied, Unauthenticated


class AdminTokens:
    def __init__(self, tokens: Iterable[str] = ()) -> None:
        self._tokens = [token.encode() for token in tokens]

    @classmethod
    def from_file(cls, path: Path | None) -> AdminTokens:
        if path is None:
            return cls()
        if not path.is_file():
            raise FileNotFoundError(f"admin tokens file not found: {path}")
        lines = (line.strip() for line in path.read_text().splitlines())
        tokens = [line for line in lines if line and not line.startswith("#")]
        if not tokens:
            raise ValueError(f"{path}: holds no admin token")
        return cls(tokens)

    def check(self, authorization: str | None) -> None:
        """Pass an ``Authorization`` value holding an admin token; refuse anything else."""
        if not self._tokens:
            raise PermissionDenied("admin calls are disabled: the server has no admin tokens")
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("admin call without a token: send 'Bearer <admin token>'")
        presented = token.strip().encode()
        matched = False
        for known in self._tokens:  # every one compared: the time says nothing of which
            matched |= hmac.compare_digest(presented, known)
        if not matched:
            raise PermissionDenied("not an admin token")
