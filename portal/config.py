"""Settings: every ``PORTAL_*`` environment variable, read once, checked before anything starts.

In production (``PORTAL_ENV=prod``) the portal refuses to start without a database URL and a random
cookie key of at least 32 bytes: streamlit-authenticator signs its login cookie with that key, and a
default or short key lets anyone forge an admin sign-in. In development a key is generated once and
kept under the data directory.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from functools import lru_cache
from pathlib import Path
from typing import Literal

from psycopg2 import ProgrammingError  # type: ignore[import-untyped,unused-ignore]
from psycopg2.extensions import (  # type: ignore[import-untyped,unused-ignore]
    make_dsn,
    parse_dsn,
)
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from portal.errors import ConfigError
from portal.wording import agreeing

MIN_COOKIE_KEY_BYTES = 32
MIN_COOKIE_KEY_CHARS = 8
"""Different characters a cookie key needs: fewer is a repeat (``xxxx…``, ``abab…``, a word over
and over), guessed first whatever its length. Random keys as they are usually made have more: 32
random hex digits (``openssl rand -hex 16``) showed 9 or more in each of 200,000 draws."""
COOKIE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
KEY_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
# Values seen in tutorials, templates and library defaults; never acceptable as a real secret.
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "some_key",
        "changethis",
        "changeme",
        "change-me",
        "secret",
        "password",
        "random_signature_key",
        "your-secret-key",
        "cookie_key",
        "xxx",
        "todo",
    }
)


class Settings(BaseSettings):
    """The portal's configuration, from ``PORTAL_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="PORTAL_", extra="ignore")

    env: Literal["dev", "prod"] = "dev"
    database_url: SecretStr | None = None
    migration_database_url: SecretStr | None = None
    cookie_key: SecretStr | None = None
    cookie_name: str = "portal_auth"
    cookie_expiry_days: float = Field(default=1.0, gt=0, le=30)
    max_upload_mb: int = Field(default=200, ge=1, le=4096)
    index_from_rows: int = Field(default=100_000, ge=0)
    """Datasets from this many rows get an index on a column when first sorted or filtered by
    it (``portal.indexes``)."""
    admin_password: SecretStr | None = None
    lockout_attempts: int = Field(default=5, ge=1, le=100)
    lockout_minutes: int = Field(default=15, ge=1, le=24 * 60)
    data_dir: Path = Path(".data")

    @field_validator("cookie_name")
    @classmethod
    def _usable_cookie_name(cls, value: str) -> str:
        taken = {
            "portal_route": "nginx's replica routing cookie (HttpOnly: the sign-in cookie could "
            "never replace it, and every reload would sign out)",
            "_streamlit_xsrf": "Streamlit's XSRF cookie (uploads and the page's connection "
            "need it)",
        }
        if not COOKIE_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a cookie name: use letters, digits and - _ . only, e.g. "
                "portal_auth (the default)"
            )
        if value in taken:
            raise ValueError(f"{value!r} is {taken[value]}: choose another, e.g. portal_auth")
        return value

    @field_validator("database_url", "migration_database_url", "cookie_key")
    @classmethod
    def _utf8_text(cls, value: SecretStr | None) -> SecretStr | None:
        """A value set from a file in another encoding (Latin-1's é as the byte 0xE9) reaches
        Python as a lone surrogate, which no connection or signature can encode: the driver, or
        the cookie key's check, stopped with a UnicodeEncodeError traceback."""
        if value is not None:
            try:
                value.get_secret_value().encode()
            except UnicodeEncodeError:
                raise ValueError(
                    "not UTF-8 text (set from a file saved as Latin-1 or Windows-1252, say): "
                    "set it again as UTF-8"
                ) from None
        return value

    @field_validator("database_url", "migration_database_url")
    @classmethod
    def _postgresql_url(cls, value: SecretStr | None) -> SecretStr | None:
        """Blank is unset (compose's ``${VAR:-}``); anything else must be a URL the portal can
        connect with, or `portal serve` and `portal migrate` stopped with SQLAlchemy's
        traceback."""
        if value is None or not value.get_secret_value().strip():
            return None
        problem = database_url_problem(value.get_secret_value())
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env != "prod":
            return self
        if self.database_url is None or not self.database_url.get_secret_value().strip():
            raise ValueError(
                "PORTAL_DATABASE_URL is not set: in production the portal needs the URL of its "
                "PostgreSQL database, e.g. postgresql+psycopg2://portal_app:PASSWORD@db:5432/portal"
            )
        key = self.cookie_key.get_secret_value() if self.cookie_key else ""
        problem = cookie_key_problem(key)
        if problem is not None:
            raise ValueError(problem)
        return self

    def migration_url(self) -> str:
        """The URL Alembic connects with: the owner role's, else the app's."""
        url = self.migration_database_url or self.database_url
        if url is None:
            raise ConfigError(
                "No database configured: set PORTAL_MIGRATION_DATABASE_URL (or "
                "PORTAL_DATABASE_URL), or run `portal dev` to use the embedded PostgreSQL."
            )
        return url.get_secret_value()

    def app_url(self) -> str:
        """The URL the portal connects with (role ``portal_app``)."""
        if self.database_url is None:
            raise ConfigError(
                "No database configured: set PORTAL_DATABASE_URL, "
                "or run `portal dev` to use the embedded PostgreSQL."
            )
        return self.database_url.get_secret_value()

    def cookie_secret(self) -> str:
        """The key that signs sign-in cookies; in development, generated once under data_dir."""
        if self.cookie_key is not None and self.cookie_key.get_secret_value():
            return self.cookie_key.get_secret_value()
        if self.env == "prod":  # pragma: no cover - the validator already refused this
            raise ConfigError("PORTAL_COOKIE_KEY is not set")
        return read_or_create_secret(self.data_dir / "cookie-key")


DATABASE_URL_FORM = "postgresql+psycopg2://USER:PASSWORD@HOST:5432/DATABASE"


def database_url_problem(url: str) -> str | None:
    """What keeps ``url`` from being a database URL the portal can use, or None. The message
    never quotes the URL: it holds a password."""
    try:
        parsed = make_url(url.strip())
    except (ArgumentError, ValueError):
        return (
            f"not a database URL; write it as {DATABASE_URL_FORM} (in the password, write "
            "@ : / % # ? as %40 %3A %2F %25 %23 %3F)"
        )
    if parsed.get_backend_name() != "postgresql" or parsed.get_driver_name() != "psycopg2":
        return (
            f"not a PostgreSQL URL the portal can use (it names {parsed.drivername!r}); write "
            f"it as {DATABASE_URL_FORM}"
        )
    unknown = [key for key in parsed.query if not _is_connection_option(key)]
    if unknown:
        return (
            f"after ? it names {', '.join(repr(key) for key in unknown)}, which "
            f"{agreeing(len(unknown), 'is not a connection option', 'are not connection options')}"
            " PostgreSQL knows (such as sslmode, connect_timeout or application_name): correct "
            f"or remove {agreeing(len(unknown), 'it', 'them')}, e.g. {DATABASE_URL_FORM}"
            "?sslmode=require"
        )
    return None


def _is_connection_option(key: str) -> bool:
    """Whether libpq takes ``key`` as a connection option (``?key=…`` of a URL): an unknown one
    failed only at connecting, with the driver's ProgrammingError traceback."""
    try:
        parse_dsn(make_dsn(**{key: "x"}))
    except ProgrammingError:
        return False
    return True


def cookie_key_problem(key: str) -> str | None:
    """What is wrong with ``key`` as PORTAL_COOKIE_KEY — a placeholder, shorter than
    MIN_COOKIE_KEY_BYTES, or a repeat of fewer than MIN_COOKIE_KEY_CHARS characters — or None.
    Settings refuses such a key in production; ``portal.auth.cookie_key`` in every mode."""
    if key.strip().lower() in PLACEHOLDER_SECRETS:
        return (
            "PORTAL_COOKIE_KEY is missing or a placeholder: sign-in cookies signed with it "
            "could be forged. Set it to a random value of at least "
            f"{MIN_COOKIE_KEY_BYTES} bytes, made with: {KEY_HINT}"
        )
    if len(key.encode()) < MIN_COOKIE_KEY_BYTES:
        return (
            f"PORTAL_COOKIE_KEY is {len(key.encode())} bytes long; it must be at least "
            f"{MIN_COOKIE_KEY_BYTES} random bytes. Make one with: {KEY_HINT}"
        )
    if len(set(key)) < MIN_COOKIE_KEY_CHARS:
        return (
            f"PORTAL_COOKIE_KEY has only {len(set(key))} different characters: a repeat is "
            "not random, and is guessed first whatever its length. Make a random key of at "
            f"least {MIN_COOKIE_KEY_BYTES} bytes with: {KEY_HINT}"
        )
    return None


def make_private(path: Path) -> bool:
    """Make the secret file ``path`` readable by its owner alone (mode 0600) if others may read
    it (copied without its mode, say); whether it had to be."""
    if not stat.S_IMODE(path.stat().st_mode) & 0o077:
        return False
    path.chmod(0o600)
    return True


def read_or_create_secret(path: Path, nbytes: int = 48) -> str:
    """Return the secret kept in ``path``, creating it (mode 0600) on first use; one readable
    by others (copied without its mode, say) is made 0600 again.

    It is written whole to a file of its own, then linked into place: a crash or a full disk
    never leaves an empty or partial secret behind, and of two processes starting at once both
    keep the first one linked. An empty file (a crash of an earlier version) is replaced.
    """
    if path.exists():
        value = path.read_text().strip()
        if value:
            make_private(path)
            return value
        path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(partial, path)
        except FileExistsError:  # another process linked its secret first: keep that one
            return path.read_text().strip()
    finally:
        partial.unlink(missing_ok=True)
    return value


def load_settings() -> Settings:
    """Read the environment into Settings.

    Raises:
        ConfigError: a variable is missing, malformed or unsafe; the message names it.
    """
    try:
        return Settings()
    except PydanticValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"PORTAL_{where.upper()}: {msg}" if where else msg)
        raise ConfigError("; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide Settings, read once (``get_settings.cache_clear()`` re-reads)."""
    return load_settings()
