"""What the ``portal`` command does when it cannot do what it was asked: a non-zero exit status and
a message that says what is wrong and what to do, never a Python traceback, and nothing written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from portal.cli import main
from tests.conftest import DatabaseHandle

pytestmark = pytest.mark.db


def portal(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def assert_refused(result: Result, message: str, *, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert message in result.stderr, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), repr(result.exception)


@pytest.mark.parametrize(
    "option", ["--expect-head", "--expect-event-head"], ids=["changesets", "events"]
)
@pytest.mark.parametrize(
    "kept",
    [
        "xyz",
        "",
        "ab" * 31,  # cut short when copied
        "g" * 64,
        "5 " + "ab" * 32,  # the whole line of `portal audit head`, seq and all
    ],
)
def test_a_malformed_head_hash_is_refused_not_taken_for_tampering(
    fresh_db: DatabaseHandle, option: str, kept: str
) -> None:
    result = portal("audit", "verify", option, kept)
    assert_refused(result, "is not a head hash", code=2)
    assert "64 hexadecimal digits" in result.stderr
    assert "broken" not in result.output
    assert "removed" not in result.output


def test_a_head_hash_may_differ_in_case_and_blanks(fresh_db: DatabaseHandle) -> None:
    head = portal("audit", "head")
    assert head.exit_code == 0, head.output
    changesets, events = (line.split()[-1] for line in head.output.splitlines())
    result = portal(
        "audit",
        "verify",
        "--expect-head",
        f" {changesets.upper()}\n",
        "--expect-event-head",
        events.upper(),
    )
    assert result.exit_code == 0, result.output
