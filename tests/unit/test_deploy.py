"""The production files hold together: the compose file validates against the Compose spec, the
Dockerfile is hadolint-clean, secrets are required (a missing one stops start-up), only nginx is
published, start-up order follows health, and .env.example names every variable."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = ROOT / "docker-compose.yml"


def _tool(name: str) -> str:
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail(f"{name} is not installed: `make test` installs the dev extra that has it")
    return found


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_matches_the_compose_spec() -> None:
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_hadolint_clean() -> None:
    result = subprocess.run(
        [_tool("hadolint"), str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_secrets_are_required_not_defaulted() -> None:
    text = COMPOSE.read_text()
    for secret in ("PORTAL_OWNER_PASSWORD", "PORTAL_APP_PASSWORD", "PORTAL_COOKIE_KEY"):
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", text)
        assert uses, secret
        assert all(use.startswith(":?") for use in uses), (secret, uses)


def test_only_nginx_is_published_and_start_up_follows_health(compose: dict) -> None:
    services = compose["services"]
    assert [name for name, s in services.items() if "ports" in s] == ["nginx"]
    assert services["db"]["healthcheck"]["test"][1].startswith("pg_isready -h 127.0.0.1")
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["app"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["app"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert "_stcore/health" in " ".join(services["app"]["healthcheck"]["test"])
    assert services["nginx"]["depends_on"]["app"]["condition"] == "service_healthy"
    assert services["app"]["environment"]["PORTAL_ENV"] == "prod"
    assert services["app"]["restart"] == "unless-stopped"


def test_env_example_names_every_variable_compose_reads() -> None:
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    listed = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    assert used <= listed, sorted(used - listed)


@pytest.mark.parametrize(("upload_mb", "body_mb"), [("50", "51"), (None, "201")])
def test_nginx_body_limit_follows_the_upload_limit(upload_mb: str | None, body_mb: str) -> None:
    env = {"PATH": os.environ["PATH"]}
    if upload_mb is not None:
        env["PORTAL_MAX_UPLOAD_MB"] = upload_mb
    result = subprocess.run(
        ["sh", "-c", f". {ROOT / 'nginx' / '15-portal-limits.envsh'}; echo $PORTAL_MAX_BODY_MB"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    assert result.stdout.strip() == body_mb
