"""``portal user ...`` goes through the same rules as the Users page and leaves the same events,
attributed to the operator at the command line."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from typing import Any
from unittest.mock import ANY

import pytest
from click.testing import CliRunner, Result

from portal import signin
from portal.cli import main
from portal.errors import AuthError
from tests.conftest import DatabaseHandle
from tests.factories import user_admin_events

pytestmark = pytest.mark.db

OPERATOR = f"cli:{getpass.getuser()}"


def portal(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["user", *args], input=stdin)


def admin_events(db: DatabaseHandle) -> list[tuple[str, str, dict[str, Any]]]:
    return user_admin_events(db.owner)


def test_user_commands_leave_events(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "1")
    result = portal("add", "boss", "--role", "admin", "--password-stdin", stdin="boss pass 1234\n")
    assert result.exit_code == 0, result.output
    result = portal(
        "add", "Kim", "--role", "viewer", "--password-stdin", stdin="kim password 123\n"
    )
    assert result.exit_code == 0, result.output
    assert "user 'kim' created with role viewer" in result.output

    assert portal("role", "kim", "editor").exit_code == 0
    assert portal("disable", "kim").exit_code == 0
    with pytest.raises(AuthError, match="disabled"):
        signin.authenticate("kim", "kim password 123")
    assert portal("enable", "kim").exit_code == 0
    with pytest.raises(AuthError, match="locked"):
        signin.authenticate("kim", "a wrong guess")
    listing = portal("list").output
    kim_line = next(line for line in listing.splitlines() if line.startswith("kim "))
    assert "editor" in kim_line
    assert kim_line.split()[4] != "-"  # a locked-until time
    assert portal("unlock", "kim").output == "'kim' has been unlocked\n"
    assert portal("unlock", "kim").exit_code == 0  # nothing left to unlock: no second event
    result = portal(
        "passwd", "kim", "--must-change-password", "--password-stdin", stdin="new pass for kim"
    )
    assert result.exit_code == 0, result.output
    assert signin.authenticate("kim", "new pass for kim").must_change_password

    assert admin_events(fresh_db) == [
        (OPERATOR, "boss", {"action": "create", "role": "admin", "must_change_password": False}),
        (OPERATOR, "kim", {"action": "create", "role": "viewer", "must_change_password": False}),
        (OPERATOR, "kim", {"action": "set_role", "old_role": "viewer", "new_role": "editor"}),
        (OPERATOR, "kim", {"action": "disable"}),
        (OPERATOR, "kim", {"action": "enable"}),
        (OPERATOR, "kim", {"action": "unlock", "failed_attempts": 1, "locked_until": ANY}),
        (OPERATOR, "kim", {"action": "reset_password", "must_change_password": True}),
    ]


def test_user_commands_report_refusals_without_a_traceback(fresh_db: DatabaseHandle) -> None:
    result = portal("add", "only", "--role", "admin", "--password-stdin", stdin="only pass 1234\n")
    assert result.exit_code == 0, result.output
    for args, message in [
        (("role", "only", "viewer"), "last active admin"),
        (("disable", "only"), "last active admin"),
        (("role", "nobody", "viewer"), "There is no user 'nobody'"),
        (("add", "short", "--password-stdin"), "use at least 12"),
    ]:
        result = portal(*args, stdin="short\n")
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output
        assert "Traceback" not in result.output
    assert [e[2]["action"] for e in admin_events(fresh_db)] == ["create"]


@pytest.mark.parametrize("ending", [b"\r\n", b"\n"])
def test_a_password_piped_from_a_windows_file_is_the_one_to_sign_in_with(
    fresh_db: DatabaseHandle, ending: bytes
) -> None:
    """``--password-stdin`` fed from a file saved with Windows line endings (a real pipe, which
    keeps the carriage return): it ends the line, it is not the password's last character —
    no sign-in form can type one."""

    def piped(*args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "portal.cli", "user", *args],
            input=stdin,
            capture_output=True,
            timeout=120,
            check=False,
        )

    result = piped("add", "kim", "--password-stdin", stdin=b"kim password 123" + ending)
    assert result.returncode == 0, result.stderr
    assert signin.authenticate("kim", "kim password 123").username == "kim"
    result = piped("passwd", "kim", "--password-stdin", stdin=b"new pass for kim" + ending)
    assert result.returncode == 0, result.stderr
    assert signin.authenticate("kim", "new pass for kim").username == "kim"


@pytest.mark.parametrize("locale", ["C.UTF-8", "C"])
def test_a_password_piped_in_another_encoding_is_refused_without_a_traceback(
    fresh_db: DatabaseHandle, locale: str
) -> None:
    """A password file saved as Latin-1 or Windows-1252 ("café" as b"caf\\xe9"): read as it is,
    it has no UTF-8 form to hash or to type at the sign-in form."""
    result = subprocess.run(
        [sys.executable, "-m", "portal.cli", "user", "add", "kim", "--password-stdin"],
        input=b"caf\xe9 au lait et croissant\n",
        capture_output=True,
        timeout=120,
        check=False,
        env=os.environ | {"LC_ALL": locale},
    )
    assert result.returncode == 1, result.stderr
    assert b"Traceback" not in result.stderr
    assert b"not UTF-8" in result.stderr
    assert admin_events(fresh_db) == []


@pytest.mark.parametrize("command", [("add", "kim"), ("passwd", "admin")], ids=" ".join)
def test_a_prompt_with_no_terminal_to_type_at_says_to_use_password_stdin(
    fresh_db: DatabaseHandle, command: tuple[str, ...]
) -> None:
    """Run from a script or `docker exec` without a terminal, the prompt read the end of its
    input and said only "Aborted!" (after a warning that the password might be echoed)."""
    portal("add", "admin", "--role", "admin", "--password-stdin", stdin="admin pass 1234\n")
    result = subprocess.run(
        [sys.executable, "-m", "portal.cli", "user", *command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "Aborted!" not in result.stderr
    assert "Error: No password was given: standard input is not a terminal" in result.stderr
    assert "with --password-stdin" in result.stderr
    assert [e[1] for e in admin_events(fresh_db)] == ["admin"]  # its creation alone
    assert signin.authenticate("admin", "admin pass 1234").username == "admin"


def test_a_username_typed_with_spaces_or_capitals_is_echoed_as_the_account_is_named(
    fresh_db: DatabaseHandle,
) -> None:
    """The commands find " Kim " as kim (trimmed and lower-cased, as the sign-in form does);
    what they print names that account, not a quoted ' kim ' that is nobody's name."""
    portal("add", "kim", "--password-stdin", stdin="kim password 123\n")
    for args, said in [
        (("role", " Kim ", "viewer"), "'kim' is now viewer"),
        (("disable", " Kim "), "'kim' disabled"),
        (("enable", "KIM\t"), "'kim' enabled"),
        (("passwd", " kim", "--password-stdin"), "password of 'kim' changed"),
    ]:
        result = portal(*args, stdin="new pass for kim\n")
        assert result.exit_code == 0, (args, result.output)
        assert result.output == said + "\n"


def test_a_command_that_finds_nothing_to_change_says_so(fresh_db: DatabaseHandle) -> None:
    """Enabling an enabled account (or giving a role it has, unlocking one not locked) changes
    nothing and records no event; the command said "'kim' enabled" all the same, so whoever ran
    it would look in the audit log for a change that never was. Unlocking an account that has
    failed sign-ins but no lock clears those, and says so (it said "'typo' unlocked")."""
    portal("add", "kim", "--role", "viewer", "--password-stdin", stdin="kim password 123\n")
    portal("add", "typo", "--role", "viewer", "--password-stdin", stdin="typo password 123\n")
    with pytest.raises(AuthError):
        signin.authenticate("typo", "a wrong guess")
    for args, said in [
        (("role", "kim", "viewer"), "'kim' is viewer already; nothing was changed"),
        (("enable", "kim"), "'kim' is enabled already; nothing was changed"),
        (("unlock", "kim"), "'kim' is not locked and has no failed sign-ins; nothing was changed"),
        (("unlock", "typo"), "'typo' was not locked; its 1 failed sign-in has been cleared"),
        (("disable", "kim"), "'kim' disabled"),
        (("disable", "kim"), "'kim' is disabled already; nothing was changed"),
    ]:
        result = portal(*args)
        assert result.exit_code == 0, (args, result.output)
        assert result.output == said + "\n"
    assert [(e[1], e[2]["action"]) for e in admin_events(fresh_db)] == [
        ("kim", "create"),
        ("typo", "create"),
        ("typo", "unlock"),
        ("kim", "disable"),
    ]


def test_listing_no_users_says_how_to_add_the_first(fresh_db: DatabaseHandle) -> None:
    """A new production database has no account (only `portal dev` makes one): the list was a
    header row alone, which reads like a fault in the command."""
    result = portal("list")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "There are no users yet; add the first admin with `portal user add NAME --role admin`.\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "kim"), "The username 'kim' is taken; choose another."),
        (("add", "Bad Name!"), "Username 'Bad Name!' is not allowed"),
        (("add", "lee", "--email", "lee at example"), "is not an email address"),
        (("passwd", "nobody"), "There is no user 'nobody'."),
    ],
    ids=["taken", "bad name", "bad email", "no such user"],
)
def test_what_no_password_could_mend_is_said_before_the_password_is_asked_for(
    fresh_db: DatabaseHandle, args: tuple[str, ...], message: str
) -> None:
    """At a terminal the operator typed a new password twice, only to be told then that the
    name was taken, not allowed, or nobody's."""
    portal("add", "kim", "--password-stdin", stdin="kim password 123\n")
    result = portal(*args, stdin="a good password 1\na good password 1\n")
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Password" not in result.output  # no prompt
    assert [e[1] for e in admin_events(fresh_db)] == ["kim"]
