"""The OpenAPI document says what the server does, where schema-driven tools once found it
did not: the timeout header, the /metrics content type, and the methods a path allows."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "PATCH"])
def test_a_method_the_path_lacks_gets_405_allowing_all_it_has(
    http: httpx.Client, method: str
) -> None:
    # With CORS off (the default) nothing answers OPTIONS: 405, naming what the path takes.
    response = http.request(method, "/v1/jobs/0123456789abcdef0123456789abcdef")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "DELETE"}
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert http.request(method, "/v1/models").headers["allow"] == "GET"


def test_metrics_is_declared_with_the_content_types_it_serves(http: httpx.Client) -> None:
    declared = http.get("/openapi.json").json()["paths"]["/metrics"]["get"]["responses"]["200"]
    plain = http.get("/metrics").headers["content-type"]
    assert plain.startswith("text/plain") and plain in declared["content"]
    # OpenMetrics (the format with exemplars) when the scraper asks for it
    asked = {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"}
    openmetrics = http.get("/metrics", headers=asked).headers["content-type"]
    assert openmetrics.startswith("application/openmetrics-text")
    media_types = {t.split(";")[0] for t in declared["content"]}
    assert media_types == {"text/plain", openmetrics.split(";")[0]}


def test_the_timeout_header_is_declared_as_the_seconds_it_accepts(http: httpx.Client) -> None:
    parameters = http.get("/openapi.json").json()["paths"]["/v1/models"]["get"]["parameters"]
    schema = next(p for p in parameters if p["name"] == "X-Request-Timeout")["schema"]
    assert schema["type"] == "number" and "anyOf" not in schema
    maximum = schema["maximum"]
    assert http.get("/v1/models", headers={"X-Request-Timeout": str(maximum)}).status_code == 200
    for refused in ("null", "0", str(maximum * 2)):
        answer = http.get("/v1/models", headers={"X-Request-Timeout": refused})
        assert answer.status_code == 422, refused
        assert answer.json()["error"]["field"] == "X-Request-Timeout"
