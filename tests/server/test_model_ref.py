"""Model references: what a version may look like, the same for every caller."""

from __future__ import annotations

import pytest
from latentserve.server.errors import ModelNotFound
from latentserve.server.model_ref import MAX_VERSION_DIGITS, parse_model_ref, parse_version


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("vae-mnist", ("vae-mnist", None)),
        ("vae-mnist@1", ("vae-mnist", 1)),
        ("vae-mnist@0", ("vae-mnist", 0)),
        ("vae-mnist@120", ("vae-mnist", 120)),
        ("vae-mnist@" + "9" * MAX_VERSION_DIGITS, ("vae-mnist", 10**MAX_VERSION_DIGITS - 1)),
    ],
)
def test_names_and_versions_are_read(ref: str, expected: tuple[str, int | None]) -> None:
    assert parse_model_ref(ref) == expected


@pytest.mark.parametrize(
    "version",
    [
        "²",  # str.isdigit() says yes, int() says no
        "١",  # Arabic-Indic one: int() reads it as 1
        "１",  # fullwidth one
        "01",
        "00",
        "",
        " 1",
        "1 ",
        "1\n",
        "+1",
        "-1",
        "1_0",
        "1@2",
        "latest",
        "9" * (MAX_VERSION_DIGITS + 1),
        "9" * 5000,  # past Python's int() digit limit
    ],
)
def test_anything_else_is_not_found_naming_the_reference(version: str) -> None:
    assert parse_version(version) is None
    with pytest.raises(ModelNotFound) as refused:
        parse_model_ref(f"vae-mnist@{version}")
    assert "model reference 'vae-mnist@" in refused.value.message
    assert len(refused.value.message) < 300  # a 5000-digit reference is not echoed whole
