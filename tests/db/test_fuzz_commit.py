"""Fuzzed editor states through the whole commit path on a real table: hypothesis-generated
``edited_rows`` / ``added_rows`` / ``deleted_rows`` (any positions and keys, unknown and
read-only columns, any JSON values, sizes up to the caps) go through ``diffs.build_changeset``
and ``writes.commit``. Whatever arrives: the only exceptions are ``PortalError``s, every row of
the table still satisfies the spec (re-checked with the spec's own validator), and a refused
state writes nothing, neither to the table nor to the audit log.

Each example runs in a transaction rolled back afterwards (``writes.commit`` takes the caller's
session and only flushes), so every example starts from the same table; the deferred seal is
fired with ``SET CONSTRAINTS ALL IMMEDIATE`` before the checks, so an accepted commit is sealed
into the chain and the chain verified, as at a real COMMIT.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.chain import verify
from portal import diffs, writes
from portal.actor import Actor
from portal.errors import PortalError
from portal.spec import CellError, ColumnSpec, DatasetSpec, validate_value
from tests.conftest import DatabaseHandle
from tests.factories import make_user, table_name, upload_dataset

pytestmark = pytest.mark.db

SPEC = DatasetSpec(
    (
        ColumnSpec("Code", "code", "text", required=True, unique=True, regex=r"[A-Z]{2}[0-9]+"),
        ColumnSpec("Qty", "qty", "integer", min=0, max=1000),
        ColumnSpec("Big", "big", "integer"),
        ColumnSpec("Price", "price", "decimal", scale=2, min=Decimal("0")),
        ColumnSpec("Active", "active", "boolean"),
        ColumnSpec("Since", "since", "date"),
        ColumnSpec("Seen at", "seen_at", "datetime"),
        ColumnSpec("Size", "size", "category", options=("S", "M", "L"), default="M"),
        ColumnSpec("Note", "note", "text", max_length=10),
        ColumnSpec("Free", "free", "text"),
    )
)
CSV = (
    "Code,Qty,Big,Price,Active,Since,Seen at,Size,Note,Free\n"
    + "".join(
        f"AB{i},{i},{i * 10**15},{i}.25,{'true' if i % 2 else 'false'},2024-01-{i:02d},"
        f"2024-01-{i:02d}T10:00:00Z,{'SML'[i % 3]},n{i},free {i}\n"
        for i in range(1, 9)
    )
).encode()
WINDOW = 5  # of the 8 rows: a unique value may clash with a row outside the window
NAMES = SPEC.names

# --- the editor states ---------------------------------------------------------------------

_EDGE_NUMBERS = [0, -1, 1000, 1001, 2**31, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**40]
_EDGE_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324, 0.005, 1.005, 2.675, 1e21]
_EDGE_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "AB1",
    "AB99",
    "ZZ123456789",
    "ab1",
    "S",
    "M",
    "L",
    "s",
    "true",
    "false",
    "1",
    "1.005",
    "1e3",
    "NaN",
    "Infinity",
    "-0",
    "2024-02-29",
    "2023-02-29",
    "2024-05-01T00:00:00",
    "2024-05-01T10:30:00Z",
    "2024-05-01T10:30:00+14:00",
    "0001-01-01",
    "9999-12-31T23:59:59.999999Z",
    "=1+1",
    "+SUM(A1)",
    "@x",
    "<script>alert(1)</script>",
    "'; DROP TABLE portal.users; --",
    "٣",
    "é" * 11,
]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.sampled_from(_EDGE_NUMBERS),
    st.floats(),
    st.sampled_from(_EDGE_FLOATS),
    st.text(max_size=12),
    st.sampled_from(_EDGE_TEXT),
    st.tuples(st.sampled_from(["x", "AB1", "é", "\U0001f600"]), st.integers(11, 30_000)).map(
        lambda t: t[0] * t[1]
    ),  # long strings, cheaply
)
JSON = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=5,
)
"""Any JSON value the browser could send (and some it could not: NaN, lone surrogates)."""

# Values that pass, so that many examples reach the database and commit.
_VALID: dict[str, st.SearchStrategy[Any]] = {
    "code": st.from_regex(r"[A-Z]{2}[0-9]{1,3}", fullmatch=True),
    "qty": st.integers(0, 1000),
    # As a number cell sends it (a browser holds whole numbers exactly up to 2**53 - 1), or as
    # text, as the grid's text column for longer numbers sends it.
    "big": st.integers(-(2**53 - 1), 2**53 - 1) | st.integers(-(2**63), 2**63 - 1).map(str),
    "price": st.decimals(0, 10**6, places=2, allow_nan=False).map(float),
    "active": st.booleans(),
    "since": st.dates(date(1, 1, 1), date(9999, 12, 31)).map(date.isoformat),
    "seen_at": st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1)).map(
        lambda d: d.isoformat()
    ),
    "size": st.sampled_from(["S", "M", "L"]),
    "note": st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=10),
    "free": st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40),
}
COLUMNS = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(NAMES),
    st.sampled_from(["_row_id", "_version", "_index", "Code", "nope", "", "code "]),
    st.text(max_size=6),
)
POSITIONS = st.one_of(
    st.integers(-2, WINDOW + 1),
    st.integers(-2, WINDOW + 1),
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1, 10**30]),
    st.from_regex(r"-?[0-9]{1,3}", fullmatch=True),
    st.text(max_size=4),
    st.floats(),
    st.booleans(),
    st.none(),
)


@st.composite
def cells(draw: st.DrawFn) -> dict[Any, Any]:
    """One row of the grid: columns (some unknown) to values (some valid for their column)."""
    row: dict[Any, Any] = {}
    for _ in range(draw(st.integers(0, 4))):
        column = draw(COLUMNS)
        pool = _VALID.get(column)
        row[column] = draw(pool) if pool is not None and draw(st.booleans()) else draw(JSON)
    return row


def _many_rows(count: int) -> list[dict[str, Any]]:
    return [{"code": f"ZX{n}", "qty": n % 1000} for n in range(count)]


EDITED = st.dictionaries(POSITIONS, cells() | JSON, max_size=5)
ADDED = st.one_of(
    st.lists(cells() | JSON, max_size=4),
    st.lists(cells(), max_size=3),
    st.sampled_from([4_999, 5_000, 5_001]).map(_many_rows),  # at and past MAX_ADDED_ROWS
)
DELETED = st.one_of(
    st.lists(POSITIONS, max_size=4),
    st.lists(st.integers(0, WINDOW - 1), max_size=3),
    st.sampled_from([10_000, 200_000]).map(lambda n: list(range(n))),
)


@st.composite
def plausible_cells(draw: st.DrawFn, new_row: bool = False) -> dict[str, Any]:
    """A row as the grid sends it: known columns, values mostly valid, now and then not; a
    new row mostly with its required code."""
    columns = draw(st.lists(st.sampled_from(NAMES), max_size=4, unique=True))
    if new_row and draw(st.integers(0, 7)) and "code" not in columns:
        columns.append("code")
    return {c: draw(_VALID[c]) if draw(st.integers(0, 5)) else draw(_scalars) for c in columns}


PLAUSIBLE = st.fixed_dictionaries(
    {
        "edited_rows": st.dictionaries(st.integers(0, WINDOW - 1), plausible_cells(), max_size=4),
        "added_rows": st.lists(plausible_cells(new_row=True), max_size=3),
        "deleted_rows": st.lists(st.integers(0, WINDOW - 1), max_size=2),
    }
)
"""Close to what a person's grid sends, so that many examples commit."""


@st.composite
def hostile_states(draw: st.DrawFn) -> object:
    state: dict[Any, Any] = {}
    for key, strategy in (
        ("edited_rows", EDITED),
        ("added_rows", ADDED),
        ("deleted_rows", DELETED),
    ):
        if draw(st.integers(0, 9)):  # now and then a key is missing
            state[key] = draw(strategy) if draw(st.integers(0, 9)) else draw(JSON)
    if not draw(st.integers(0, 14)):
        state[draw(st.text(max_size=5))] = draw(JSON)
    return state if draw(st.integers(0, 19)) else draw(JSON)


@st.composite
def valid_states(draw: st.DrawFn) -> dict[str, Any]:
    """A state the checks must accept: valid values for columns other than the unique code,
    at least one new row with a code of its own, deletes apart from the edited rows."""
    editable = [n for n in NAMES if n != "code"]
    edited = draw(st.lists(st.integers(0, WINDOW - 1), max_size=3, unique=True))
    added = [
        {"code": f"NW{k}"} | {c: draw(_VALID[c]) for c in draw(st.sets(st.sampled_from(editable)))}
        for k in range(draw(st.integers(1, 3)))
    ]
    return {
        "edited_rows": {
            p: {c: draw(_VALID[c]) for c in draw(st.sets(st.sampled_from(editable), min_size=1))}
            for p in edited
        },
        "added_rows": added,
        "deleted_rows": draw(
            st.lists(st.sampled_from([p for p in range(WINDOW) if p not in edited]), max_size=2)
        ),
    }


editor_states = st.one_of(PLAUSIBLE, PLAUSIBLE, valid_states(), hostile_states())
"""Half close to a person's grid, a quarter valid for sure (so the floor of commits below
holds on any draw), a quarter hostile."""


# --- the checks ----------------------------------------------------------------------------


@pytest.fixture
def editor(fresh_db: DatabaseHandle) -> Actor:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor", username="fuzzer", display_name="Fuzzer")
    return Actor(name, "Fuzzer", "editor")


@pytest.fixture
def dataset(editor: Actor) -> int:
    return upload_dataset(editor, CSV, spec=SPEC, name="Fuzzed")


@pytest.fixture
def rolled_back(fresh_db: DatabaseHandle) -> Iterator[Any]:
    """A factory of sessions, each in a transaction rolled back when the next one starts."""
    opened: list[Any] = []

    def start() -> Session:
        while opened:
            opened.pop().close()  # the connection's transaction is rolled back on close
        conn = fresh_db.app.connect()
        opened.append(conn)
        conn.begin()
        return Session(bind=conn, join_transaction_mode="create_savepoint")

    yield start
    for conn in opened:
        conn.close()


def snapshot(session: Session, table: str) -> tuple[Any, ...]:
    rows = session.execute(
        text(f'SELECT _row_id, _version, {", ".join(NAMES)} FROM data."{table}" ORDER BY 1')
    ).all()
    audit = session.execute(
        text(
            "SELECT (SELECT count(*) FROM audit.changeset),"
            " (SELECT count(*) FROM audit.row_change),"
            " (SELECT row_count FROM portal.datasets WHERE table_name = :t)"
        ),
        {"t": table},
    ).one()
    return tuple(tuple(r) for r in rows), tuple(audit)


def invalid_cells(rows: tuple[tuple[Any, ...], ...]) -> list[str]:
    """Every cell of the table the spec's own validator refuses or would store differently,
    and every value a unique column holds twice."""
    found = []
    for row in rows:
        for column, value in zip(SPEC.columns, row[2:], strict=True):
            typed = validate_value(column, value)
            if isinstance(typed, CellError) or typed != value:
                found.append(f"row {row[0]}, {column.name} = {value!r}: {typed}")
    for k, column in enumerate(SPEC.columns, start=2):
        values = [r[k] for r in rows if r[k] is not None]
        if column.unique and len(values) != len(set(values)):
            found.append(f"{column.name} holds a value twice: {sorted(values)}")
    return found


def test_fuzzed_editor_states_never_crash_never_write_invalid_rows(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int, rolled_back: Any
) -> None:
    table = table_name(fresh_db.app, dataset)
    seen = {"accepted": 0, "refused": 0}

    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )
    @given(state=editor_states, offset=st.sampled_from([0, 3]))
    def example(state: object, offset: int) -> None:
        session = rolled_back()
        read = writes.read_window(session=session, dataset_id=dataset, offset=offset, limit=WINDOW)
        window = diffs.make_window(
            read.spec, diffs.editor_frame(read.spec, read.rows), read.versions
        )
        before = snapshot(session, table)
        try:
            changes = diffs.build_changeset(window, state, may_edit=True)
            result = writes.commit(
                session=session,
                actor=editor,
                dataset_id=dataset,
                spec_version=read.spec_version,
                changes=changes,
                reason="fuzz",
            )
            session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))  # seal, as COMMIT would
        except PortalError:
            seen["refused"] += 1
            assert snapshot(session, table) == before, "a refused state wrote something"
            return
        seen["accepted"] += 1
        rows, (changesets, row_changes, row_count) = snapshot(session, table)
        assert invalid_cells(rows) == []
        assert row_count == len(rows)
        assert changesets == before[1][0] + 1
        touched = len(changes.updates) + len(changes.inserts) + len(changes.deletes)
        assert row_changes == before[1][1] + touched
        assert len(result.inserted_ids) == len(changes.inserts)
        chain = verify(session=session)
        assert chain.ok, chain.summary()

    example()
    print(f"\n{seen}")
    assert seen["accepted"] >= 15, seen  # the fuzzing reached the database, not only the checks
    assert seen["refused"] >= 20, seen
    with Session(fresh_db.app) as s:  # every example was rolled back
        assert verify(session=s).changesets == 1
