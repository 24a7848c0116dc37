"""Settings refuse an unsafe production configuration, naming the variable and a fix."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from portal.cli import main
from portal.config import get_settings, load_settings, read_or_create_secret
from portal.errors import ConfigError

GOOD_KEY = "k" * 16 + "0123456789abcdef0123456789"
DB_URL = "postgresql+psycopg2://portal_app:pw@db:5432/portal"


@pytest.fixture
def prod(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("PORTAL_ENV", "prod")
    monkeypatch.setenv("PORTAL_DATABASE_URL", DB_URL)
    monkeypatch.setenv("PORTAL_COOKIE_KEY", GOOD_KEY)
    return monkeypatch


def test_prod_with_good_values_loads(prod: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.env == "prod"
    assert settings.cookie_secret() == GOOD_KEY
    assert settings.app_url() == DB_URL
    assert settings.migration_url() == DB_URL  # falls back to the app URL


def test_prod_without_cookie_key_fails_naming_it(prod: pytest.MonkeyPatch) -> None:
    prod.delenv("PORTAL_COOKIE_KEY")
    with pytest.raises(ConfigError, match=r"PORTAL_COOKIE_KEY is missing.*secrets\.token_urlsafe"):
        load_settings()


@pytest.mark.parametrize("placeholder", ["some_key", "changethis", "SECRET", "  changeme "])
def test_prod_with_placeholder_cookie_key_fails(prod: pytest.MonkeyPatch, placeholder: str) -> None:
    prod.setenv("PORTAL_COOKIE_KEY", placeholder)
    with pytest.raises(ConfigError, match="PORTAL_COOKIE_KEY is missing or a placeholder"):
        load_settings()


def test_prod_with_short_cookie_key_fails(prod: pytest.MonkeyPatch) -> None:
    prod.setenv("PORTAL_COOKIE_KEY", "x" * 31)
    with pytest.raises(ConfigError, match=r"PORTAL_COOKIE_KEY is 31 bytes long.*at least 32"):
        load_settings()


@pytest.mark.parametrize("repeat", ["x" * 48, "ab" * 24, "password" * 4, "0123456" * 5])
def test_prod_with_a_repeated_cookie_key_fails(prod: pytest.MonkeyPatch, repeat: str) -> None:
    """Long enough, but a repeat of a few characters is guessed first, as a password would be."""
    prod.setenv("PORTAL_COOKIE_KEY", repeat)
    with pytest.raises(
        ConfigError, match=r"PORTAL_COOKIE_KEY has only \d different characters.*token_urlsafe"
    ):
        load_settings()


def test_prod_accepts_random_keys_of_the_shortest_kind(prod: pytest.MonkeyPatch) -> None:
    """Of keys as they are usually made, 32 random hex digits (``openssl rand -hex 16``) have the
    fewest different characters; none of many is taken for a repeat."""
    for _ in range(500):
        key = secrets.token_hex(16)
        prod.setenv("PORTAL_COOKIE_KEY", key)
        assert load_settings().cookie_secret() == key


def test_prod_without_database_url_fails(prod: pytest.MonkeyPatch) -> None:
    prod.delenv("PORTAL_DATABASE_URL")
    with pytest.raises(ConfigError, match="PORTAL_DATABASE_URL is not set"):
        load_settings()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgres://portal_app:s3cret@db:5432/portal", "not a PostgreSQL URL"),
        ("mysql://portal_app:s3cret@db/portal", "not a PostgreSQL URL"),
        ("postgresql+asyncpg://portal_app:s3cret@db/portal", "not a PostgreSQL URL"),
        ("db:5432", "not a database URL"),
        ("portal_app:s3cret@db:5432/portal", "not a database URL"),
        (  # JDBC's option: libpq refused it only at connecting, with the driver's traceback
            "postgresql+psycopg2://portal_app:s3cret@db:5432/portal?ssl=s3cret",
            "after ? it names 'ssl', which is not a connection option PostgreSQL knows",
        ),
        (
            "postgresql+psycopg2://portal_app:s3cret@db/portal?sslmode=require&sslmod=s3cret",
            "after ? it names 'sslmod', which is not a connection option PostgreSQL knows",
        ),
    ],
)
@pytest.mark.parametrize("variable", ["PORTAL_DATABASE_URL", "PORTAL_MIGRATION_DATABASE_URL"])
def test_a_database_url_the_portal_cannot_use_names_the_variable(
    prod: pytest.MonkeyPatch, variable: str, url: str, problem: str
) -> None:
    """A Heroku-style ``postgres://``, another database's URL or a bare host stopped `portal
    serve` and `portal migrate` with SQLAlchemy's traceback; it is refused at start-up, naming
    the variable and the form to write, never echoing the password."""
    prod.setenv(variable, url)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = str(refused.value)
    assert message.startswith(f"{variable}: ")
    assert problem in message
    assert "postgresql+psycopg2://" in message
    assert "s3cret" not in message


def test_a_url_with_connection_options_postgresql_knows_is_taken(
    prod: pytest.MonkeyPatch,
) -> None:
    url = f"{DB_URL}?sslmode=require&connect_timeout=10&application_name=portal"
    prod.setenv("PORTAL_DATABASE_URL", url)
    assert load_settings().app_url() == url


@pytest.mark.parametrize(
    ("variable", "latin1"),
    [
        ("PORTAL_DATABASE_URL", b"postgresql+psycopg2://portal_app:caf\xe9@db:5432/portal"),
        ("PORTAL_MIGRATION_DATABASE_URL", b"postgresql+psycopg2://portal_owner:caf\xe9@db/portal"),
        ("PORTAL_COOKIE_KEY", b"caf\xe9 " + GOOD_KEY.encode()),
    ],
)
@pytest.mark.parametrize("env", ["dev", "prod"])
def test_a_value_set_in_another_encoding_names_the_variable(
    prod: pytest.MonkeyPatch, variable: str, latin1: bytes, env: str
) -> None:
    """An .env saved as Latin-1: Python keeps the byte it cannot decode as a lone surrogate,
    and connecting (or checking the cookie key) stopped with a UnicodeEncodeError traceback."""
    prod.setenv("PORTAL_ENV", env)
    prod.setenv(variable, os.fsdecode(latin1))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["user", "list"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.output.startswith(f"Error: {variable}: not UTF-8 text"), result.output
    assert "caf" not in result.output


def test_an_empty_migration_url_falls_back_to_the_app_url(prod: pytest.MonkeyPatch) -> None:
    """Compose's ``${VAR:-}`` gives an empty value: the same as unset, as the README says."""
    prod.setenv("PORTAL_MIGRATION_DATABASE_URL", "  ")
    assert load_settings().migration_url() == DB_URL


def test_portal_serve_refuses_a_malformed_database_url_without_a_traceback(
    prod: pytest.MonkeyPatch,
) -> None:
    prod.setenv("PORTAL_DATABASE_URL", "postgres://portal_app:s3cret@db:5432/portal")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["serve", "--db-wait-attempts", "1"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: PORTAL_DATABASE_URL: ")
    assert "s3cret" not in result.output


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "letters, digits"),
        ("portal auth", "letters, digits"),
        ("auth;portal_route=x", "letters, digits"),
        ("portal_route", "nginx's replica routing cookie"),
        ("_streamlit_xsrf", "Streamlit's XSRF cookie"),
    ],
)
def test_a_cookie_name_that_cannot_work_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, problem: str
) -> None:
    """A name a browser cannot keep, or one the portal's other cookies already use (nginx's
    HttpOnly routing cookie, which the sign-in cookie could then never replace; Streamlit's XSRF
    token, which uploads need), signed everyone out at each reload or broke uploads, unsaid."""
    monkeypatch.setenv("PORTAL_COOKIE_NAME", name)
    with pytest.raises(ConfigError, match=rf"^PORTAL_COOKIE_NAME: .*{problem}"):
        load_settings()


@pytest.mark.parametrize("name", ["portal_auth", "Data-Portal.auth", "auth2"])
def test_a_plain_cookie_name_is_taken(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("PORTAL_COOKIE_NAME", name)
    assert load_settings().cookie_name == name


def test_malformed_number_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_MAX_UPLOAD_MB", "lots")
    with pytest.raises(ConfigError, match="PORTAL_MAX_UPLOAD_MB"):
        load_settings()


def test_dev_generates_and_keeps_a_private_cookie_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PORTAL_DATA_DIR", str(tmp_path))
    first = load_settings().cookie_secret()
    assert len(first.encode()) >= 32
    assert load_settings().cookie_secret() == first
    assert stat.S_IMODE((tmp_path / "cookie-key").stat().st_mode) == 0o600


def test_dev_without_database_says_how_to_get_one() -> None:
    with pytest.raises(ConfigError, match="portal dev"):
        load_settings().app_url()


def test_a_kept_secret_is_created_whole_and_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "cookie-key"
    first = read_or_create_secret(path)
    assert len(first) >= 32
    assert path.read_text() == first + "\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_or_create_secret(path) == first
    assert sorted(p.name for p in path.parent.iterdir()) == ["cookie-key"]  # nothing partial


def test_a_kept_secret_readable_by_others_is_made_private_again(tmp_path: Path) -> None:
    """`.data` copied without its modes: the key that signs sign-in cookies (whoever reads it
    can forge an admin's) stayed readable by every user of the machine."""
    path = tmp_path / "data" / "cookie-key"
    first = read_or_create_secret(path)
    path.chmod(0o644)
    assert read_or_create_secret(path) == first
    assert path.stat().st_mode & 0o777 == 0o600


def test_an_empty_secret_file_left_by_a_crash_is_replaced(tmp_path: Path) -> None:
    """An empty key would be refused as a placeholder at every start until deleted by hand."""
    path = tmp_path / "cookie-key"
    path.write_text("")
    value = read_or_create_secret(path)
    assert len(value) >= 32
    assert path.read_text().strip() == value


def test_processes_creating_a_secret_at_once_keep_the_same_one(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "cookie-key"
    code = (
        "import sys; from pathlib import Path; from portal.config import read_or_create_secret;"
        f" print(read_or_create_secret(Path({str(path)!r})))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    seen = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert seen == {path.read_text().strip()}
