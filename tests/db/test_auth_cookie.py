"""The sign-in cookie: only a token signed with PORTAL_COOKIE_KEY, in the portal's exact format and
not expired, is read; and even then PostgreSQL has the last word on every use."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from sqlalchemy.orm import Session

from portal import auth, signin
from portal.actor import cli_actor
from portal.errors import AuthError, ConfigError
from portal.users import set_active
from tests.conftest import DatabaseHandle
from tests.factories import make_user

KEY = secrets.token_urlsafe(48)
NOW = datetime.now(UTC)
LATER = NOW + timedelta(days=1)


def token(username: str = "admin", *, key: str = KEY) -> str:
    return auth.encode_token(username, key=key, since=NOW, expires_at=LATER)


def decode(value: str) -> auth.CookieClaims | None:
    return auth.decode_token(value, key=KEY, now=datetime.now(UTC))


def test_a_token_signed_with_the_key_is_read_back_exactly() -> None:
    claims = decode(token("ann"))
    assert claims is not None
    assert (claims.username, claims.since) == ("ann", NOW)  # to the microsecond
    assert abs(claims.expires_at - LATER) < timedelta(milliseconds=1)


FORGERIES = {
    # What streamlit-authenticator writes with its default key: anyone can make this one.
    "library-default-key": lambda: jwt.encode(
        {"username": "admin", "exp_date": LATER.timestamp()}, "some_key", algorithm="HS256"
    ),
    "default-key-portal-format": lambda: token(key="some_key"),
    "another-random-key": lambda: token(key=secrets.token_urlsafe(48)),
}


@pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")
@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_token_signed_with_any_other_key_is_refused(forgery: str) -> None:
    assert decode(FORGERIES[forgery]()) is None


def test_unsigned_tampered_and_malformed_tokens_are_refused() -> None:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = base64.urlsafe_b64encode(
        json.dumps({"username": "admin", "exp_date": LATER.timestamp(), "signed_in_us": 1}).encode()
    )
    unsigned = f"{header.decode().rstrip('=')}.{body.decode().rstrip('=')}."
    good = token("ann")
    head, _, signature = good.split(".")
    tampered = f"{head}.{body.decode().rstrip('=')}.{signature}"
    for bad in (unsigned, tampered, "", "garbage", "a.b.c", good[:-3]):
        assert decode(bad) is None, bad


@pytest.mark.parametrize(
    "claims",
    [
        {},  # the library's format without the sign-in time: refused, it cannot be revoked
        {"signed_in_us": "123"},
        {"signed_in_us": True},
        {"signed_in_us": 10**30},
        {"signed_in_us": int((NOW + timedelta(hours=1)).timestamp() * 1e6)},  # in the future
        {"signed_in_us": 1, "exp_date": (NOW - timedelta(seconds=1)).timestamp()},  # expired
        {"signed_in_us": 1, "exp_date": "tomorrow"},
        {"signed_in_us": 1, "username": "Not A Username!"},
        {"signed_in_us": 1, "username": None},
    ],
)
def test_right_key_but_wrong_shape_is_refused(claims: dict[str, object]) -> None:
    payload: dict[str, object] = {"username": "admin", "exp_date": LATER.timestamp(), **claims}
    assert decode(jwt.encode(payload, KEY, algorithm="HS256")) is None


@pytest.mark.parametrize("bad_key", ["some_key", "SOME_KEY", "short-but-random-1234", "ab" * 24])
def test_an_unsafe_cookie_key_is_not_used(monkeypatch: pytest.MonkeyPatch, bad_key: str) -> None:
    monkeypatch.setenv("PORTAL_COOKIE_KEY", bad_key)
    with pytest.raises(ConfigError, match="PORTAL_COOKIE_KEY"):
        auth.cookie_key()


def test_development_generates_a_key() -> None:
    assert len(auth.cookie_key()) >= 32  # under PORTAL_DATA_DIR, a temp dir in tests
    assert auth.cookie_key() == auth.cookie_key()


@pytest.mark.db
def test_a_valid_cookie_still_needs_the_database_to_agree(fresh_db: DatabaseHandle) -> None:
    with Session(fresh_db.app) as s, s.begin():
        name, password = make_user(s, role="editor")
    signed = signin.authenticate(name, password)
    claims = decode(auth.encode_token(name, key=KEY, since=signed.since, expires_at=LATER))
    assert claims is not None
    assert signin.resume(claims.username, since=claims.since, from_cookie=True).role == "editor"

    with Session(fresh_db.app) as s, s.begin():
        set_active(session=s, actor=cli_actor(), username=name, active=False)
    with pytest.raises(AuthError, match="disabled"):
        signin.resume(claims.username, since=claims.since, from_cookie=True)
    with Session(fresh_db.app) as s, s.begin():
        set_active(session=s, actor=cli_actor(), username=name, active=True)

    # Enabled again, it signs in anew; signing out ends every copy of that cookie.
    signed = signin.authenticate(name, password)
    claims = decode(auth.encode_token(name, key=KEY, since=signed.since, expires_at=LATER))
    assert claims is not None
    signin.sign_out(name, since=signed.since)
    with pytest.raises(AuthError, match="signed out"):
        signin.resume(claims.username, since=claims.since, from_cookie=True)
