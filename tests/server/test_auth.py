"""Bearer tokens: reading the tokens file, exempt paths, and the check both transports use."""

from __future__ import annotations

from pathlib import Path

import pytest
from latentserve.server.metrics import ServerMetrics
from latentserve.server.security.auth import BearerAuth, is_exempt, read_tokens
from latentserve.server.settings import AUTH_EXEMPT_PATHS, load_settings
from prometheus_client import CollectorRegistry


def tokens_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokens"
    path.write_text(text)
    return path


def auth_for(path: Path, registry: CollectorRegistry | None = None) -> BearerAuth:
    metrics = ServerMetrics(registry or CollectorRegistry())
    return BearerAuth(read_tokens(path), AUTH_EXEMPT_PATHS, metrics)


def refused(registry: CollectorRegistry, protocol: str, reason: str) -> float:
    labels = {"protocol": protocol, "reason": reason}
    return registry.get_sample_value("latentserve_auth_refused_total", labels) or 0.0


def test_tokens_skip_blank_lines_and_comments_and_strip_spaces(tmp_path: Path) -> None:
    auth = auth_for(tokens_file(tmp_path, "\ufeff# ops team\n\n  alpha-1  \n#beta\nbeta-2\n"))
    assert auth.check("Bearer alpha-1", "rest") is None
    assert auth.check("bearer beta-2", "grpc") is None  # the scheme is case-insensitive
    assert auth.check("Bearer #beta", "rest") is not None  # a comment is not a token
    assert auth.check("Bearer ", "rest") is not None


def test_a_file_without_tokens_is_refused_rather_than_locking_everyone_out(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="holds no tokens"):
        read_tokens(tokens_file(tmp_path, "# nothing yet\n\n"))
    with pytest.raises(FileNotFoundError, match="auth tokens file not found"):
        read_tokens(tmp_path / "missing")


def test_a_bad_line_is_named_by_number_without_quoting_the_token(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"line 2: a token is one word") as error:
        read_tokens(tokens_file(tmp_path, "good\nsecret with-space\n"))
    assert "secret" not in str(error.value).replace(str(tmp_path), "")


def test_missing_and_wrong_tokens_are_refused_and_counted_apart(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    auth = auth_for(tokens_file(tmp_path, "right\n"), registry)
    missing = auth.check(None, "rest")
    not_bearer = auth.check("Basic cmlnaHQ=", "rest")
    wrong = auth.check("Bearer wrong", "grpc")
    prefix = auth.check("Bearer righ", "grpc")
    assert missing is not None and not_bearer is not None
    assert missing.reason == not_bearer.reason == "missing"
    assert wrong is not None and prefix is not None and wrong.reason == "invalid"
    assert 'error="invalid_token"' in wrong.challenge and "error=" not in missing.challenge
    assert refused(registry, "rest", "missing") == 2
    assert refused(registry, "grpc", "invalid") == 2
    assert auth.check("Bearer right", "rest") is None
    assert refused(registry, "rest", "invalid") == 0


def test_an_exempt_path_covers_itself_and_what_lies_under_it() -> None:
    assert is_exempt("/docs", AUTH_EXEMPT_PATHS)
    assert is_exempt("/docs/static/swagger-ui.css", AUTH_EXEMPT_PATHS)
    assert is_exempt("/grpc.health.v1.Health/Check", AUTH_EXEMPT_PATHS)
    assert not is_exempt("/docsx", AUTH_EXEMPT_PATHS)
    assert not is_exempt("/healthz/../v1/models", AUTH_EXEMPT_PATHS)
    assert not is_exempt("/docs/./static", AUTH_EXEMPT_PATHS)
    assert not is_exempt("/v1/models", AUTH_EXEMPT_PATHS)
    assert not is_exempt("/latentserve.v1.GenerativeService/Sample", AUTH_EXEMPT_PATHS)


def test_the_playground_page_is_open_but_the_root_covers_nothing_under_it() -> None:
    """The playground (``/`` and its files) loads without a token, so a person can type
    one into it; ``/`` exempts only itself, never every path."""
    assert is_exempt("/", AUTH_EXEMPT_PATHS)
    assert is_exempt("/playground/app.js", AUTH_EXEMPT_PATHS)
    assert not is_exempt("/v1/models", AUTH_EXEMPT_PATHS)
    assert not is_exempt("/v1/jobs/abc", ("/",))
    assert not is_exempt("//v1/models", AUTH_EXEMPT_PATHS)


def test_no_tokens_file_means_no_authentication_and_settings_name_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = ServerMetrics(CollectorRegistry())
    monkeypatch.delenv("LATENTSERVE_AUTH_TOKENS_FILE", raising=False)
    assert BearerAuth.from_settings(load_settings(), metrics) is None
    path = tokens_file(tmp_path, "t0k3n\n")
    monkeypatch.setenv("LATENTSERVE_AUTH_TOKENS_FILE", str(path))
    monkeypatch.setenv("LATENTSERVE_AUTH_EXEMPT_PATHS", '["/healthz"]')
    auth = BearerAuth.from_settings(load_settings(), metrics)
    assert auth is not None and auth.exempt_paths == ("/healthz",)
    assert auth.check("Bearer t0k3n", "rest") is None


def test_admin_tokens_also_pass_authentication_but_ordinary_ones_do_not_admin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from latentserve.server.errors import PermissionDenied
    from latentserve.server.security.admin import AdminTokens

    users = tokens_file(tmp_path, "user-token\n")
    admins = tmp_path / "admins"
    admins.write_text("admin-token\n")
    monkeypatch.setenv("LATENTSERVE_AUTH_TOKENS_FILE", str(users))
    monkeypatch.setenv("LATENTSERVE_ADMIN_TOKENS_FILE", str(admins))
    settings = load_settings()
    auth = BearerAuth.from_settings(settings, ServerMetrics(CollectorRegistry()))
    assert auth is not None
    assert auth.check("Bearer admin-token", "rest") is None
    assert auth.check("Bearer user-token", "grpc") is None
    AdminTokens.from_file(settings.admin_tokens_file).check("Bearer admin-token")
    with pytest.raises(PermissionDenied):
        AdminTokens.from_file(settings.admin_tokens_file).check("Bearer user-token")
