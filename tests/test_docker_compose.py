"""The docker-compose.yml for users: valid, security on, secrets from the env file only.

No container engine runs here, so the file is checked as data, and loaded with
``docker compose config`` where the compose plugin exists, else with a small Go program
built on compose-go, the library Docker Compose loads and validates files with.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers.fixtures import in_ci

REPO = Path(__file__).resolve().parents[1]

#: The Go program that loads a Compose file with Docker Compose's own loader library.
COMPOSE_CHECK = Path(__file__).resolve().parent / "compose_check"

#: Seconds ``go build`` may take (a fresh machine downloads the modules first).
BUILD_TIMEOUT_S = 600


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


def _compose_config_command(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``docker compose`` where the plugin exists, else our build of its loader."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    go = shutil.which("go")
    if go is None:
        if in_ci():
            pytest.fail("neither the docker compose plugin nor Go is installed")
        pytest.skip("neither the docker compose plugin nor Go (to build its loader) is here")
    binary = tmp_path_factory.mktemp("compose-check") / "compose_check"
    build = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=COMPOSE_CHECK,
        capture_output=True,
        text=True,
        check=False,
        timeout=BUILD_TIMEOUT_S,
    )
    assert build.returncode == 0, build.stderr
    return [str(binary)]


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """Runs ``config`` on a Compose file with an env file and profiles."""
    command = _compose_config_command(tmp_path_factory)

    def run(compose_file: Path, env_file: Path, *profiles: str) -> Any:
        if command[-1] == "compose":
            arguments = [*command, "--env-file", str(env_file), "-f", str(compose_file)]
            for profile in profiles:
                arguments += ["--profile", profile]
            arguments += ["config", "--format", "json"]
        else:
            arguments = [*command, str(compose_file), str(env_file), *profiles]
        return subprocess.run(arguments, capture_output=True, text=True, check=False)

    return run


def test_compose_loader_accepts_it(compose_config: Callable[..., Any], tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text((REPO / ".env.example").read_text("utf-8"), encoding="utf-8")
    result = compose_config(REPO / "docker-compose.yml", env, "opensearch")
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    assert sorted(model["services"]) == ["elasticsearch", "kibana", "kibana-setup", "opensearch"]
    elasticsearch = model["services"]["elasticsearch"]
    # The password is interpolated from the env file, not written in the compose file.
    assert elasticsearch["environment"]["ELASTIC_PASSWORD"] == _env_value(env, "ELASTIC_PASSWORD")
    assert [(p["host_ip"], p["target"]) for p in elasticsearch["ports"]] == [("127.0.0.1", 9200)]

    # Without the opensearch profile, OpenSearch is not part of the project.
    result = compose_config(REPO / "docker-compose.yml", env)
    assert result.returncode == 0, result.stderr
    assert "opensearch" not in json.loads(result.stdout)["services"]


def test_compose_loader_rejects_a_broken_file(
    compose_config: Callable[..., Any], tmp_path: Path
) -> None:
    env = tmp_path / ".env"
    env.write_text("", encoding="utf-8")
    # No ELASTIC_PASSWORD: the file's ${ELASTIC_PASSWORD:?...} must stop the load.
    result = compose_config(REPO / "docker-compose.yml", env)
    assert result.returncode != 0
    assert "set ELASTIC_PASSWORD in .env" in result.stderr

    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  x:\n    image: a\n    restart_policy: always\n", "utf-8")
    result = compose_config(broken, env)
    assert result.returncode != 0
    assert "restart_policy" in result.stderr


def _env_value(env_file: Path, name: str) -> str:
    for line in env_file.read_text("utf-8").splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{name} missing from {env_file}")
