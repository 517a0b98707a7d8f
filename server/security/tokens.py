"""Bearer tokens from a file, kept only as SHA-256 digests and compared in constant time:
the primitives both the bearer-token authentication (``auth``) and the admin calls
(``admin``) check tokens with."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

SCHEME = "bearer"


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def read_tokens(path: Path) -> tuple[bytes, ...]:
    """The digests of the tokens in ``path``; a file with none is an error (it would lock
    every client out), and a bad line is named by number, never quoted."""
    if not path.is_file():
        raise FileNotFoundError(f"auth tokens file not found: {path}")
    digests = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
            raise ValueError(
                f"{path}, line {number}: a token is one word of printable ASCII characters"
            )
        digests.append(_digest(token.encode()))
    if not digests:
        raise ValueError(
            f"{path} holds no tokens (one a line); to serve without authentication, "
            "leave auth_tokens_file unset"
        )
    return tuple(digests)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value; ``None`` for anything else."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    token = credentials.strip()
    return token if scheme.lower() == SCHEME and token else None


def known_token(token: str, digests: tuple[bytes, ...]) -> bool:
    """Whether ``token`` is one of ``digests``, compared in constant time against all."""
    digest = _digest(token.encode("utf-8", "replace"))
    found = False
    for known in digests:  # no early exit: every check costs the same
        found |= hmac.compare_digest(digest, known)
    return found
