"""Server TLS settings are checked at start: pairs, missing files, keys that do not match."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.certificates import CertificateAuthority
from latentserve.server.security.tls import server_tls
from latentserve.server.settings import load_settings


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("pki"))


def test_no_tls_settings_serve_plain_text() -> None:
    assert server_tls(load_settings()) is None


def test_a_certificate_and_its_key_load_with_an_optional_client_ca(
    ca: CertificateAuthority,
) -> None:
    server = ca.issue("server")
    tls = server_tls(load_settings(tls_cert=server.cert, tls_key=server.key))
    assert tls is not None and tls.client_ca is None
    options = tls.uvicorn_options()
    assert options == {"ssl_certfile": str(server.cert), "ssl_keyfile": str(server.key)}
    mutual = server_tls(
        load_settings(tls_cert=server.cert, tls_key=server.key, tls_client_ca=ca.cert)
    )
    assert mutual is not None and mutual.client_ca == ca.cert


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"tls_cert"}, "tls_cert and tls_key go together"),
        ({"tls_key"}, "tls_cert and tls_key go together"),
        ({"tls_client_ca"}, "tls_client_ca needs tls_cert and tls_key"),
    ],
)
def test_incomplete_tls_settings_are_refused(
    ca: CertificateAuthority, given: set[str], message: str
) -> None:
    server = ca.issue("server")
    files = {"tls_cert": server.cert, "tls_key": server.key, "tls_client_ca": ca.cert}
    with pytest.raises(ValueError, match=message):
        server_tls(load_settings(**{name: files[name] for name in given}))


def test_missing_files_and_a_key_of_another_certificate_are_refused(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    server, other = ca.issue("server"), ca.issue("other")
    with pytest.raises(FileNotFoundError, match="TLS key file not found"):
        server_tls(load_settings(tls_cert=server.cert, tls_key=tmp_path / "nope.pem"))
    with pytest.raises(ValueError, match="do not load"):
        server_tls(load_settings(tls_cert=server.cert, tls_key=other.key))
    not_a_ca = tmp_path / "ca.pem"
    not_a_ca.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="client CA .* does not load"):
        server_tls(load_settings(tls_cert=server.cert, tls_key=server.key, tls_client_ca=not_a_ca))
