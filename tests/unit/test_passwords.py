"""The password rules every way of setting one goes through (``users.check_password``): long
enough, within bcrypt's 72 bytes, not the username, not a repeat or run of characters; and one
password however its accented letters are encoded."""

from __future__ import annotations

import subprocess
import sys
import unicodedata

import bcrypt
import pytest

from portal.errors import ValidationError
from portal.users import check_password, check_username, hash_password, password_matches

# "é" is one code point (NFC: what most keyboards type) or "e" and a combining accent (NFD: what
# some Mac and Linux input methods, or a password manager's import, give): the same password.
COMPOSED = unicodedata.normalize("NFC", "Crème brûlée à Noël")
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)


@pytest.mark.parametrize(
    "password",
    [
        "a" * 20,
        "abababababab",
        "Aa1Aa1Aa1Aa1",  # four distinct characters, whatever the case
        "abcdefghijklmnop",
        "123456789012",
        "9876543210987",
    ],
)
def test_a_repeated_or_running_password_is_refused(password: str) -> None:
    with pytest.raises(ValidationError, match="repeated or running sequence"):
        check_password(password, username="kim")


@pytest.mark.parametrize("password", [" " * 12, "\t \u00a0" * 5])
def test_a_password_of_spaces_alone_is_refused_saying_so(password: str) -> None:
    """Twelve spaces were refused as a sequence like "aaaa…" or "1234…", which says nothing
    of spaces."""
    with pytest.raises(ValidationError, match="only spaces"):
        check_password(password, username="kim")


@pytest.mark.parametrize(
    "password",
    ["correct horse battery", "pw Lq8rT2vXz9", "now it is my own one", "1234 blue whale 5678"],
)
def test_ordinary_passwords_pass(password: str) -> None:
    check_password(password, username="kim")


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short one", "9 characters long"),
        ("é" * 40, "80 bytes long"),
        ("  Kim.Doe-2024  ", "must not be the username"),
    ],
)
def test_the_other_rules_still_hold(password: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        check_password(password, username="kim.doe-2024")


@pytest.mark.parametrize(("chosen", "typed"), [(COMPOSED, DECOMPOSED), (DECOMPOSED, COMPOSED)])
def test_a_password_is_the_same_however_its_accents_are_encoded(chosen: str, typed: str) -> None:
    assert chosen != typed
    assert password_matches(typed, hash_password(chosen))
    assert not password_matches(typed + "!", hash_password(chosen))


def test_a_password_hashed_as_typed_before_normalisation_still_matches() -> None:
    old_hash = bcrypt.hashpw(DECOMPOSED.encode(), bcrypt.gensalt(rounds=4)).decode()
    assert password_matches(DECOMPOSED, old_hash)


def test_the_rules_measure_the_normalised_password() -> None:
    """71 bytes composed, 100 decomposed: it fits bcrypt once normalised, as it is stored."""
    composed = "é" * 29 + "correct horse"
    decomposed = unicodedata.normalize("NFD", composed)
    assert len(composed.encode()) <= 72 < len(decomposed.encode())
    check_password(decomposed, username="kim")
    with pytest.raises(ValidationError, match="11 characters long"):
        check_password(unicodedata.normalize("NFD", "éèêëàâîïôûç"), username="kim")


def test_a_refused_username_is_quoted_only_when_short() -> None:
    with pytest.raises(ValidationError, match=r"Username 'bad name!' is not allowed"):
        check_username("bad name!")
    with pytest.raises(ValidationError) as refused:
        check_username("x" * 100_000 + "!")
    assert "of 100,001 characters is not allowed" in str(refused.value)
    assert len(str(refused.value)) < 300


def test_passwords_are_hashed_at_bcrypt_cost_12_outside_the_tests() -> None:
    """The test-suite hashes at cost 4 in its own process (tests/conftest.py); the portal, as
    any process other than the tests' runs it, hashes at 2**12 rounds."""
    made = subprocess.run(
        [
            sys.executable,
            "-c",
            "from portal.users import hash_password; print(hash_password('correct horse battery'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert made.startswith("$2b$12$"), made
    assert password_matches("correct horse battery", made)
    assert hash_password("correct horse battery").startswith("$2b$04$")  # this process's
