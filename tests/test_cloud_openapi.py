"""The API's OpenAPI document describes real request bodies, and fuzzing every endpoint from it
(schemathesis, against the real server process, with the admin and a node token) never gets a
5xx. Bounded: a few examples per operation; the whole module runs well under a minute."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from pullprint.peers.cloud import CloudServer
from tests.test_cloud_api import start_cloud

# The accounting endpoints are fuzzed by the accounting tests, not here.
OURS = r"^/api/v1/(?!accounting/)"


@pytest.fixture(scope="module")
def fuzz_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    server = start_cloud(tmp_path_factory.mktemp("fuzz"), "sqlite", long_poll_seconds=0.3)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_cloud: CloudServer) -> Any:
    loaded = schemathesis.openapi.from_url(f"{fuzz_cloud.url}/openapi.json")
    return loaded.include(path_regex=OURS)


def test_openapi_describes_request_bodies(fuzz_cloud: CloudServer) -> None:
    doc = requests.get(f"{fuzz_cloud.url}/openapi.json", timeout=5).json()
    paths = doc["paths"]
    release = paths["/api/v1/jobs/{uuid}/release"]["post"]
    ref = release["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(body["required"]) == {"user", "pin", "printer"}
    assert body["properties"]["pin"]["pattern"] == "^[0-9]{4,8}$"
    claim = paths["/api/v1/jobs/{uuid}/claim"]["post"]["responses"]["200"]
    job = claim["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert "download_url" in doc["components"]["schemas"][job]["properties"]
    for path, methods in paths.items():
        for method, op in methods.items():
            if method in ("post", "put") and "accounting" not in path:
                assert "requestBody" in op, (method, path)
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


EXAMPLES = 25


def test_no_server_errors(api_schema: Any, fuzz_cloud: CloudServer) -> None:
    """Every operation, EXAMPLES generated requests each, sent with the admin token and with a
    node token: no answer is a 5xx."""
    tokens = (fuzz_cloud.admin_token, fuzz_cloud.node_tokens["node1"])
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def fuzz(case: Any) -> None:
            for token in tokens:
                response = case.call(headers={"Authorization": f"Bearer {token}"}, timeout=10)
                assert response.status_code < 500, (
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]}\n{fuzz_cloud.log_tail(30)}"
                )

        fuzz()


def test_fuzzing_left_the_server_healthy(fuzz_cloud: CloudServer, tmp_path: Path) -> None:
    assert requests.get(f"{fuzz_cloud.url}/api/v1/health", timeout=5).json() == {"status": "ok"}
    assert "Traceback" not in fuzz_cloud.log_tail(2000)
