"""The production files hold together: the compose file validates against the Compose spec, the
Dockerfile is hadolint-clean, secrets are required (a missing one stops start-up) and the files
that hold them stay out of git and the image, only nginx is published, start-up order follows
health, .env.example names every variable, and the nginx image's entrypoint gets the portal's
script (executable, or the image skips it), which derives the body limit and chooses plain HTTP
or TLS."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from portal.config import Settings, load_settings

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


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, (KEYWORD, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = (line.strip() for line in joined.splitlines())
    return [
        (keyword.upper(), rest.strip())
        for keyword, _, rest in (line.partition(" ") for line in lines)
        if keyword and not keyword.startswith("#")
    ]


def test_the_app_user_can_read_what_the_image_copies() -> None:
    """COPY keeps the modes the files have in the checkout. Checked out under umask 027 or 077
    (common on hardened servers), they are unreadable by anyone but their owner, root in the
    image: the app, run as an unprivileged user, then stopped at its first import. Everything
    copied must be made readable (and its directories searchable) before the switch of user."""
    instructions = _dockerfile_instructions()
    [user_at] = [n for n, (keyword, _) in enumerate(instructions) if keyword == "USER"]
    last_copy = max(n for n, (keyword, _) in enumerate(instructions) if keyword == "COPY")
    assert last_copy < user_at
    between = [args for keyword, args in instructions[last_copy:user_at] if keyword == "RUN"]
    assert any("chmod -R a+rX /app" in args for args in between), between


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


def test_compose_passes_every_production_setting_to_the_app(compose: dict) -> None:
    """README's Configuration table lists the portal's settings; one that compose does not pass
    on to the app is silently ignored when set in .env (PORTAL_COOKIE_NAME stayed portal_auth).
    Only the development settings and the owner's URL (the migrate step's alone) stay out."""
    kept_out = {"PORTAL_ADMIN_PASSWORD", "PORTAL_DATA_DIR", "PORTAL_MIGRATION_DATABASE_URL"}
    settings = {f"PORTAL_{name.upper()}" for name in Settings.model_fields}
    passed = set(compose["services"]["app"]["environment"])
    assert sorted(settings - kept_out - passed) == []


def test_only_services_that_serve_http_are_checked_over_http(compose: dict) -> None:
    """The app image's HEALTHCHECK asks for Streamlit's /_stcore/health. The migrate step runs
    the same image without serving anything: left on, the check failed from its first probe,
    and a migration taking more than a minute showed as "unhealthy" in `docker compose ps`."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile
    assert "_stcore/health" in dockerfile
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["portal", "migrate"]
    assert migrate.get("healthcheck") == {"disable": True}


def test_only_the_migration_step_holds_the_owner_s_credentials(compose: dict) -> None:
    """The owner is the database's superuser: the web process gets the app role only."""
    env = {name: service.get("environment", {}) for name, service in compose["services"].items()}
    assert "PORTAL_MIGRATION_DATABASE_URL" in env["migrate"]
    assert "PORTAL_MIGRATION_DATABASE_URL" not in env["app"]
    assert "portal_owner" not in str(env["app"])
    assert env["app"]["PORTAL_DATABASE_URL"].startswith("postgresql+psycopg2://portal_app:")


def test_nginx_restarts_with_a_recreated_app(compose: dict) -> None:
    assert compose["services"]["nginx"]["depends_on"]["app"]["restart"] is True


def test_the_app_trusts_forwarded_addresses_only_where_nginx_alone_connects(compose: dict) -> None:
    """The audit log's address of a browser is what nginx passes on in X-Forwarded-For (the
    e2e test of the template shows a forged one is not): uvicorn must trust it from nginx, and
    nothing else that may send HTTP may share the app's network with nginx."""
    services = compose["services"]
    assert services["app"]["environment"]["FORWARDED_ALLOW_IPS"] == "*"
    networks = {
        name: set(service.get("networks", ["default"])) for name, service in services.items()
    }
    on_edge = {name for name, nets in networks.items() if "edge" in nets}
    assert on_edge == {"app", "nginx"}
    assert networks["nginx"] == {"edge"}
    assert all(nets <= {"backend"} for name, nets in networks.items() if name not in on_edge)


def test_env_example_names_every_variable_compose_reads() -> None:
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    listed = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    assert used <= listed, sorted(used - listed)


def _dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (the last pattern that
    matches decides; ``!`` lets a path back in; a pattern naming a directory keeps out all of
    it). Exact paths and ``**/name`` only: fnmatch's ``*`` also matches ``/``, which Docker's
    does not."""
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        parents = [str(p) for p in Path(path).parents if str(p) != "."]
        if any(fnmatch(p, pattern) for p in [path, *parents]):
            ignored = not negated
    return ignored


@pytest.mark.parametrize(
    "secret_file",
    [
        ".env",
        ".streamlit/secrets.toml",
        "deploy/tls/privkey.pem",
        "portal-2026-01-31.dump",
        "portal-2026-01-31.head",
        "pgdata.tgz",
    ],
)
def test_secret_files_in_the_checkout_are_neither_committed_nor_built_in(secret_file: str) -> None:
    """README: `cp .env.example .env` and fill in the secrets, in the checkout; Streamlit reads
    its own secrets from .streamlit/secrets.toml, a directory the Dockerfile copies whole; the
    TLS certificate's private key goes in deploy/tls/; README's backups (every dataset, the
    audit log, the password hashes) are written where the compose commands run, the checkout.
    None may be picked up by `git add` or sent to the image build."""
    result = subprocess.run(
        ["git", "check-ignore", "--quiet", "--no-index", secret_file],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, f"git would commit {secret_file} {result.stderr}"
    assert _dockerignored(secret_file), f"the image build would get {secret_file}"


ENVSH = ROOT / "nginx" / "15-portal.envsh"


def _source_envsh(**settings: str) -> subprocess.CompletedProcess[str]:
    shown = "PORTAL_MAX_BODY_MB PORTAL_NGINX_SITE PORTAL_HTTPS_PORT_SUFFIX"
    return subprocess.run(
        ["sh", "-c", f'. "{ENVSH}"; for v in {shown}; do eval echo "$v=\\${{$v}}"; done'],
        env={"PATH": os.environ["PATH"], **settings},
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )


def _derived(**settings: str) -> dict[str, str]:
    result = _source_envsh(**settings)
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


@pytest.mark.parametrize(("upload_mb", "body_mb"), [("50", "51"), (None, "201")])
def test_nginx_body_limit_follows_the_upload_limit(upload_mb: str | None, body_mb: str) -> None:
    settings = {} if upload_mb is None else {"PORTAL_MAX_UPLOAD_MB": upload_mb}
    assert _derived(**settings)["PORTAL_MAX_BODY_MB"] == body_mb


@pytest.mark.parametrize("upload_mb", ["050", "080", "0200"])
def test_nginx_reads_the_upload_limit_as_the_portal_does(
    monkeypatch: pytest.MonkeyPatch, upload_mb: str
) -> None:
    """A leading zero is still decimal: sh's arithmetic would take 050 for octal (40)."""
    monkeypatch.setenv("PORTAL_MAX_UPLOAD_MB", upload_mb)
    portal_mb = load_settings().max_upload_mb
    assert _derived(PORTAL_MAX_UPLOAD_MB=upload_mb)["PORTAL_MAX_BODY_MB"] == str(portal_mb + 1)


@pytest.mark.parametrize("upload_mb", ["lots", "200MB", "-5"])
def test_nginx_refuses_an_upload_limit_that_is_not_a_number(upload_mb: str) -> None:
    result = _source_envsh(PORTAL_MAX_UPLOAD_MB=upload_mb)
    assert result.returncode != 0
    assert f"PORTAL_MAX_UPLOAD_MB must be a whole number of megabytes (got '{upload_mb}')" in (
        result.stderr
    )


def test_nginx_serves_plain_http_unless_a_certificate_is_given(tmp_path: Path) -> None:
    assert _derived()["PORTAL_NGINX_SITE"] == "http"
    assert _derived(PORTAL_TLS_CERT="", PORTAL_TLS_KEY="")["PORTAL_NGINX_SITE"] == "http"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    tls = {"PORTAL_TLS_CERT": str(cert), "PORTAL_TLS_KEY": str(key)}
    assert _derived(**tls) == {
        "PORTAL_MAX_BODY_MB": "201",
        "PORTAL_NGINX_SITE": "https",
        "PORTAL_HTTPS_PORT_SUFFIX": "",
    }
    assert _derived(**tls, PORTAL_HTTPS_PORT="8443")["PORTAL_HTTPS_PORT_SUFFIX"] == ":8443"


@pytest.mark.parametrize("missing", ["key", "file"])
def test_nginx_refuses_half_a_tls_configuration(tmp_path: Path, missing: str) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("cert")
    settings = {"PORTAL_TLS_CERT": str(cert)}
    if missing == "file":
        settings["PORTAL_TLS_KEY"] = str(tmp_path / "no-such-key.pem")
    result = _source_envsh(**settings)
    assert result.returncode != 0
    assert "PORTAL_TLS_CERT and PORTAL_TLS_KEY" in result.stderr


def test_nginx_says_which_tls_file_it_cannot_read_and_where_it_must_be(tmp_path: Path) -> None:
    """The usual slip is the certificate's path on this machine, where nginx needs the path it
    sees in its container: the message names the variable that is wrong and the directory."""
    key = tmp_path / "key.pem"
    key.write_text("key")
    result = _source_envsh(PORTAL_TLS_CERT="./deploy/tls/fullchain.pem", PORTAL_TLS_KEY=str(key))
    assert result.returncode != 0
    assert (
        "but PORTAL_TLS_CERT is './deploy/tls/fullchain.pem', which is no file nginx can read"
    ) in " ".join(result.stderr.split())
    assert "which nginx sees as /etc/nginx/tls" in result.stderr
    assert "PORTAL_TLS_CERT=/etc/nginx/tls/fullchain.pem" in result.stderr

    result = _source_envsh(PORTAL_TLS_CERT=str(key), PORTAL_TLS_KEY="")
    assert result.returncode != 0
    assert "but PORTAL_TLS_KEY is empty" in result.stderr


def test_nginx_says_a_tls_file_is_a_link_out_of_what_it_sees(tmp_path: Path) -> None:
    """certbot keeps the certificate in live/<name>/ as links to ../../archive/<name>/: with
    PORTAL_TLS_DIR set to live/<name>, the links lead out of what nginx sees. The message says
    so and what to mount instead; the file being "there" on the host is no puzzle."""
    mounted = tmp_path / "live" / "portal.example"
    mounted.mkdir(parents=True)
    for name in ("fullchain.pem", "privkey.pem"):
        (mounted / name).symlink_to(f"../../archive/portal.example/{name[:-4]}1.pem")
    result = _source_envsh(
        PORTAL_TLS_CERT=str(mounted / "fullchain.pem"), PORTAL_TLS_KEY=str(mounted / "privkey.pem")
    )
    assert result.returncode != 0
    message = " ".join(result.stderr.split())
    assert f"PORTAL_TLS_CERT is '{mounted / 'fullchain.pem'}', a symbolic link to no file " in (
        message
    )
    assert "a link out of PORTAL_TLS_DIR leads nowhere in its container" in message
    assert "PORTAL_TLS_DIR=/etc/letsencrypt and" in message


def test_nginx_gets_the_templates_and_the_executable_entrypoint_script(compose: dict) -> None:
    nginx = compose["services"]["nginx"]
    mounts = {target: source for source, target, _ in (m.rsplit(":", 2) for m in nginx["volumes"])}
    assert mounts["/etc/nginx/templates"] == "./nginx/templates"
    assert mounts["/docker-entrypoint.d/15-portal.envsh"] == "./nginx/15-portal.envsh"
    assert os.access(ENVSH, os.X_OK)
    assert mounts["/etc/nginx/tls"] == "${PORTAL_TLS_DIR:-./deploy/tls}"
    environment = set(nginx["environment"])
    assert {"PORTAL_TLS_CERT", "PORTAL_TLS_KEY", "PORTAL_MAX_UPLOAD_MB"} <= environment
    # It renders to default.conf: the image's own default site would otherwise answer instead.
    assert (ROOT / "nginx" / "templates" / "default.conf.template").is_file()


def test_nginx_lets_idle_app_connections_go_before_the_app_closes_them() -> None:
    # Streamlit's server (uvicorn) closes an idle keep-alive connection after its default;
    # nginx's default (60 s) would keep using connections the app is closing.
    import inspect

    import uvicorn

    app_seconds = inspect.signature(uvicorn.Config).parameters["timeout_keep_alive"].default
    template = (ROOT / "nginx" / "templates" / "default.conf.template").read_text()
    upstream = re.search(r"upstream portal_app \{(.*?)\n\}", template, re.S)
    assert upstream is not None
    found = re.search(r"^\s*keepalive_timeout (\d+)s;", upstream[1], re.M)
    assert found is not None, "the upstream keeps nginx's 60 s default"
    assert int(found[1]) < app_seconds
