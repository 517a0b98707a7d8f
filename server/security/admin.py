"""Admin tokens: who may change what the server serves (repository reloads).

The tokens come from a file, one a line (blank lines and ``#`` comments skipped), named by
the ``admin_tokens_file`` setting and read at startup. A client presents one as a bearer
token — ``Authorization: Bearer <token>`` over REST, ``authorization`` metadata over
gRPC — and it is compared in constant time (``tokens``, as ``auth``). With
bearer-token authentication on, admin tokens also pass it. Without the file there are no
admins and every admin call is refused.
"""

from __future__ import annotations

from pathlib import Path

from latentserve.server.errors import PermissionDenied, Unauthenticated
from latentserve.server.security.tokens import bearer_token, known_token, read_tokens


class AdminTokens:
    def __init__(self, digests: tuple[bytes, ...] = ()) -> None:
        self._digests = digests

    @classmethod
    def from_file(cls, path: Path | None) -> AdminTokens:
        return cls() if path is None else cls(read_tokens(path))

    def check(self, authorization: str | None) -> None:
        """Pass an ``Authorization`` value holding an admin token; refuse anything else."""
        if not self._digests:
            raise PermissionDenied("admin calls are disabled: the server has no admin tokens")
        token = bearer_token(authorization)
        if token is None:
            raise Unauthenticated("admin call without a token: send 'Bearer <admin token>'")
        if not known_token(token, self._digests):
            raise PermissionDenied("not an admin token")
