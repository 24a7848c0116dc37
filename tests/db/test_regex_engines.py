"""A column's pattern is read by two engines: the validator's (RE2, through pyarrow) on upload
and on every edit, and PostgreSQL's (``~``, its ARE flavour) in the table's CHECK. Here the same
(pattern, value) goes through both: ``spec.validate_value`` and ``SELECT :value ~ :pattern``,
which is the CHECK's own test (a search, unanchored, as ``ddl_table`` writes it)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, create_engine, pool, text
from sqlalchemy.exc import DBAPIError

from portal.embedded import ClusterInfo
from portal.errors import ValidationError
from portal.spec import (
    CellError,
    ColumnSpec,
    DatasetSpec,
    check_new_patterns,
    validate,
    validate_value,
)
from tests.conftest import create_database, drop_database

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def pg(pg_cluster: ClusterInfo, migrated_template: str) -> Iterator[Connection]:
    """A connection as the app role to a database of the test cluster (its locale and
    encoding are the ones every dataset's table gets)."""
    name = f"t_{secrets.token_hex(6)}"
    create_database(pg_cluster, name, template=migrated_template)
    engine = create_engine(pg_cluster.url("app", name), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()
        drop_database(pg_cluster, name)


def verdicts(pg: Connection, pattern: str, value: str) -> tuple[bool, bool]:
    """(the validator takes ``value`` for a text column with ``pattern``, PostgreSQL's CHECK
    would). The validator's verdict is the edit's (``validate_value``) and the upload's
    (``validate`` over a frame), which must be one."""
    column = ColumnSpec("Code", "code", "text", regex=pattern)
    edit = not isinstance(validate_value(column, value), CellError)
    upload = validate(DatasetSpec((column,)), pd.DataFrame({"Code": [value]})).ok
    assert edit == upload, (pattern, value)
    database = pg.scalar(
        text("SELECT CAST(:value AS text) ~ :pattern"), {"value": value, "pattern": pattern}
    )
    return edit, bool(database)


@pytest.mark.parametrize(
    ("pattern", "value"),
    [("^a.b$", "a\nb"), ("^A.*Z$", "A\r\nZ"), ("^.+$", "line one\nline two"), (".", "\n")],
)
def test_a_dot_takes_a_line_break_for_the_validator_as_for_postgresql(
    pg: Connection, pattern: str, value: str
) -> None:
    """PostgreSQL's ``.`` matches any character, a line break too (``~`` is not
    newline-sensitive); RE2's did not, so a cell of two lines was refused on upload and on edit
    although the table takes it."""
    assert verdicts(pg, pattern, value) == (True, True)


# --- constructs the engines read differently: refused in a new spec ----------------------

DIFFERENT: list[tuple[str, str, tuple[bool, bool], str]] = [
    # pattern, value, (validator, PostgreSQL), the construct the refusal names
    (r"^\x41BC$", "ABC", (True, False), r"\x41B is one character"),
    (r"^\x41BC$", "\u41bc", (False, True), r"\x41B is one character"),
    (r"^[\x41B]$", "B", (True, False), r"\x41B is one character"),
    (r"^[[.a.]]$", "a", (False, True), "collating element"),
    (r"^[[=a=]]$", "a", (False, True), "equivalence class"),
    (r"^\w+$", "café", (False, True), r"\w is a letter"),
    (r"^\W$", "é", (True, False), r"\W is anything but"),
    (r"^[\w.]+$", "Łódź", (False, True), r"\w is a letter"),
    (r"^[[:alpha:]]+$", "café", (False, True), "[:alpha:] takes"),
    (r"^[[:word:]]+$", "café", (False, True), "[:word:] takes"),
    (r"^[[:alnum:]]+$", "Ärger1", (False, True), "[:alnum:] takes"),
    (r"^[[:upper:]]", "Édith", (False, True), "[:upper:] takes"),
    (r"^[[:lower:]]+$", "ß", (False, True), "[:lower:] takes"),
    (r"^[[:punct:]]$", "«", (False, True), "[:punct:] takes"),
    (r"^[[:space:]]$", "\u2003", (False, True), "[:space:] takes"),
    (r"^[[:print:]]+$", "é", (False, True), "[:print:] takes"),
    (r"^[[:graph:]]+$", "é", (False, True), "[:graph:] takes"),
    (r"^[[:cntrl:]]$", "\x85", (False, True), "[:cntrl:] takes"),
    (r"^a\sb$", "a\vb", (False, True), r"\s takes more spaces"),
    (r"^a\sb$", "a\u2003b", (False, True), r"\s takes more spaces"),
    (r"^\S+$", "a\vb", (True, False), r"\S is anything but a space"),
    (r"^(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)(l)\12$", "abcdefghijkll", (False, True), r"\1 is a"),
]


@pytest.mark.parametrize(("pattern", "value", "expected", "construct"), DIFFERENT)
def test_a_construct_the_engines_read_differently_is_refused_in_a_new_spec(
    pg: Connection, pattern: str, value: str, expected: tuple[bool, bool], construct: str
) -> None:
    """The disagreement is real (the upload would say "valid" and the table refuse, or the
    reverse), so a new spec refuses the pattern, naming the construct; a stored spec with it
    still loads (its table exists, with its rule)."""
    assert verdicts(pg, pattern, value) == expected
    spec = DatasetSpec((ColumnSpec("Code", "code", "text", regex=pattern),))
    with pytest.raises(ValidationError, match=re.escape(construct)) as refused:
        check_new_patterns(spec)
    assert str(refused.value).startswith(f"Column “Code”: the pattern {pattern!r} cannot be used")
    assert DatasetSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        (r"^[\w-z]+$", r"\w is a letter"),
        (r"^[\d-z]+$", r"\d at an end of a range"),
        (r"^[a\D-z]+$", r"\D at an end of a range"),
        (r"^[[:digit:]-9]+$", "[:digit:] at an end of a range"),
        (r"^[!-[:digit:]]+$", "[:digit:] at an end of a range"),
        (r"^[[:^alpha:]]+$", "[:^alpha:] is not read alike"),
        (r"^[a[.]+$", "[. [= and [: begin"),
    ],
)
def test_a_pattern_only_the_validator_takes_is_refused_in_a_new_spec(
    pg: Connection, pattern: str, construct: str
) -> None:
    """RE2 takes these (the upload checks every row against them), PostgreSQL refuses to
    compile them: the spec refuses them before a file is checked against them."""
    savepoint = pg.begin_nested()
    with pytest.raises(DBAPIError, match="invalid"):
        pg.execute(text("SELECT 'a' ~ :pattern"), {"pattern": pattern})
    savepoint.rollback()
    with pytest.raises(ValidationError, match=re.escape(construct)):
        check_new_patterns(DatasetSpec((ColumnSpec("Code", "code", "text", regex=pattern),)))


TRICKY = [
    "café", "Ärger", "ß", "Ж", "ſ", "\u212a", "٣", "३", "１", "²", "\v", "\xa0", "\u2003",
    "\x85", "\u2028", "«", "_", "-", "A", "z", "0", " ", "\t", "\n", "\x7f", "~", "😀",
]  # fmt: skip


@pytest.mark.parametrize(
    "pattern",
    [
        # the replacements the refusals propose
        r"^[A-Za-z0-9_]+$",
        r"^[^A-Za-z0-9_]$",
        r"^[ \t\n\r\f\v]$",
        r"^[^ \t\n\r\f\v]$",
        r"^[A-Za-z]+$",
        r"^[A-Za-z0-9]+$",
        r"^[A-Z]",
        r"^[a-z]+$",
        r"^[ \t]$",
        r"^[.,;:!?-]$",
        r"^[\x01-\x1f\x7f]$",
        r"^[ -~]+$",
        r"^[!-~]+$",
        r"^\x41$",
        r"^(?:\x41)B$",
        # common patterns, kept
        r"^[A-Z]{2}-[0-9]{4}$",
        r"\d+",
        r"^\d{2}-[a-z]+$",
        r"^\D+$",
        r"^[a-z0-9._%+-]+@[a-z0-9.-]+$",
        r"^(?:red|green|blue)$",
        r"^[[:digit:]]+$",
        r"^[[:xdigit:]]{2,8}$",
        r"^[[:ascii:]]*$",
        r"^[^[:digit:]]$",
        r"^[\d-]+$",
        r"^[-\d]+$",
        r"^[-[:digit:]]+$",
        r"^[a\-[:digit:]]+$",
        r"^[[:digit:]a-f]+$",
        r"^[à-ÿ]+$",
        r"^.{1,3}$",
    ],
)
def test_a_portable_pattern_is_kept_and_judged_alike(pg: Connection, pattern: str) -> None:
    spec = DatasetSpec((ColumnSpec("Code", "code", "text", regex=pattern),))
    check_new_patterns(spec)
    for value in TRICKY + [f"AB-{v}" for v in TRICKY] + ["AB-1234", "ab@x.org", "red", "AB"]:
        checker, database = verdicts(pg, pattern, value)
        assert checker == database, (pattern, value)


# --- the property: for patterns built from what a new spec accepts, the engines agree ----

VALUE_CHARS = (
    "aAzZkKsS09_-.@ "  # ASCII
    "éÉßẞЖжſ\u212aÅµçÇ"  # letters of other scripts, and those with odd case foldings
    "٣३１²𝟙"  # digits of other scripts
    "\t\n\r\f\v\x85\xa0\u2003\u2028\u3000"  # spaces, line breaks, NBSP
    "«»!~\x7f😀"
)
_LITERALS = st.sampled_from(
    ["a", "Z", "k", "s", "0", "7", "_", "-", " ", "@", "é", "ß", "Ж", "٣", r"\.", r"\-", r"\\"]
)
_ESCAPES = st.sampled_from([r"\d", r"\D", r"\t", r"\n", r"\r", r"\f", r"\v", "(?:\\x41)"])
_BRACKET_ITEMS = st.sampled_from(
    ["a-z", "A-Z", "0-9", "k", "s", "_", ".", " ", "é", "à-ÿ", "Ѐ-ӿ", r"\d", r"\D", r"\v",
     r"\t", r"\-", r"\]", r"\\", "[:digit:]", "[:xdigit:]", "[:ascii:]"]
)  # fmt: skip
_BRACKETS = st.builds(
    lambda negated, items, dash: f"[{'^' if negated else ''}{''.join(items)}{dash}]",
    st.booleans(),
    st.lists(_BRACKET_ITEMS, min_size=1, max_size=4),
    st.sampled_from(["", "-"]),
)
_QUANTIFIERS = st.sampled_from(["", "", "*", "+", "?", "{2}", "{1,}", "{0,2}", "+?", "*?", "??"])


def _pattern(atoms: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    piece = st.builds(str.__add__, atoms, _QUANTIFIERS)
    branch = st.lists(piece, min_size=1, max_size=4).map("".join)
    return st.lists(branch, min_size=1, max_size=3).map("|".join)


_ATOMS = st.recursive(
    st.one_of(_LITERALS, _ESCAPES, _BRACKETS, st.just(".")),
    lambda inner: (
        _pattern(inner).map(lambda p: f"({p})") | _pattern(inner).map(lambda p: f"(?:{p})")
    ),
    max_leaves=8,
)
PATTERNS = st.builds(
    lambda start, body, end: f"{start}{body}{end}",
    st.sampled_from(["", "^"]),
    _pattern(_ATOMS),
    st.sampled_from(["", "$"]),
)


def test_the_validator_and_postgresql_agree_on_every_accepted_pattern(pg: Connection) -> None:
    """Patterns made of the constructs a new spec accepts, and values with letters, digits and
    spaces of other scripts: the validator's verdict is the table's, for every value."""
    seen: set[bool] = set()

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(pattern=PATTERNS, data=st.data())
    def agree(pattern: str, data: st.DataObject) -> None:
        spec = DatasetSpec((ColumnSpec("Code", "code", "text", regex=pattern),))
        check_new_patterns(spec)  # the pattern is one a new spec takes
        alphabet = st.sampled_from(VALUE_CHARS + pattern.replace("\\", ""))
        values = data.draw(st.lists(st.text(alphabet, min_size=1, max_size=8), min_size=8))
        checker = validate(spec, pd.DataFrame({"Code": values}))
        refused = {e.row - 2 for e in checker.errors}
        database = pg.scalars(
            text(
                "SELECT v ~ :pattern FROM unnest(CAST(:values AS text[]))"
                " WITH ORDINALITY AS t(v, n) ORDER BY n"
            ),
            {"values": values, "pattern": pattern},
        ).all()
        for k, value in enumerate(values):
            assert (k not in refused) == database[k], (pattern, value)
            seen.add(database[k])

    agree()
    assert seen == {True, False}  # both verdicts came up: the agreement is not vacuous
