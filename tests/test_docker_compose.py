"""The docker-compose.yml for users: valid, security on, secrets from the env file only.

No container engine runs here, so the file is checked as data (and with
``docker compose config`` where the compose plugin exists).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text("utf-8"))
    return document


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert sorted(services) == ["elasticsearch", "kibana", "kibana-setup", "opensearch"]
    assert services["opensearch"]["profiles"] == ["opensearch"]
    assert "profiles" not in services["elasticsearch"] and "profiles" not in services["kibana"]
    assert services["kibana"]["depends_on"] == {
        "kibana-setup": {"condition": "service_completed_successfully"}
    }


def test_security_on_and_passwords_only_from_the_environment(compose: dict[str, Any]) -> None:
    environment = compose["services"]["elasticsearch"]["environment"]
    assert "xpack.security.enabled=true" in environment
    assert "ELASTIC_PASSWORD=${ELASTIC_PASSWORD:?set ELASTIC_PASSWORD in .env}" in environment
    text = (REPO / "docker-compose.yml").read_text("utf-8")
    assert "change-me" not in text
    assert ".env" in (REPO / ".gitignore").read_text("utf-8").splitlines()
    example = (REPO / ".env.example").read_text("utf-8")
    for name in ("ELASTIC_PASSWORD", "KIBANA_PASSWORD", "OPENSEARCH_PASSWORD"):
        assert f"{name}=" in example


def test_ports_only_on_loopback(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("the docker compose plugin is not installed (the file is checked as data)")
    env = tmp_path / ".env"
    env.write_text((REPO / ".env.example").read_text("utf-8"), encoding="utf-8")
    result = subprocess.run(
        [
            docker,
            "compose",
            "--env-file",
            str(env),
            "-f",
            str(REPO / "docker-compose.yml"),
            "--profile",
            "opensearch",
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
