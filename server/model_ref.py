"""Model references: ``name`` (its newest version) or ``name@version``.

Both transports and the repository loader read a reference here, so a version means the
same everywhere: ASCII digits without a leading zero, at most ``MAX_VERSION_DIGITS`` of
them. Anything else (``@²``, ``@١``, ``@01``, a bare ``@``, a 5000-digit number) names no
model: it is refused as not found, naming the reference, never converted by ``int()``.
"""

from __future__ import annotations

import re

from latentserve.server.errors import ModelNotFound, shown

MAX_VERSION_DIGITS = 9
_VERSION = re.compile(rf"0|[1-9][0-9]{{0,{MAX_VERSION_DIGITS - 1}}}")


def parse_version(text: str) -> int | None:
    """The version ``text`` spells, or ``None`` if it spells none."""
    return int(text) if _VERSION.fullmatch(text) else None


def parse_model_ref(ref: str) -> tuple[str, int | None]:
    """``(name, version)``; ``version`` is ``None`` when the reference names no version."""
    name, at, text = ref.partition("@")
    if not at:
        return name, None
    version = parse_version(text)
    if version is None:
        raise ModelNotFound(
            f"model reference {shown(ref)!r}: a version is a number without leading zeros "
            f"(at most {MAX_VERSION_DIGITS} digits)"
        )
    return name, version
