"""The password rules every way of setting one goes through (``users.check_password``): long
enough, within bcrypt's 72 bytes, not the username, not a repeat or run of characters."""

from __future__ import annotations

import pytest

from portal.errors import ValidationError
from portal.users import check_password


@pytest.mark.parametrize(
    "password",
    [
        " " * 12,
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
