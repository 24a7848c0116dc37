"""Fuzzed files through the upload path, as the Upload page drives it (``read_file``, the proposed
encoding confirmed when the page would offer it, ``propose_spec`` through the spec grid,
``check``, ``import_file``) into a new dataset or appended to / replacing an existing one.

The files are hypothesis-generated: random bytes, and valid CSVs mutated — BOMs, NULs, bytes of
another encoding spliced in, ragged rows, huge fields, formula-looking cells, stray quotes,
CR-only newlines, cut or flipped bytes. Whatever arrives: the only exceptions are
``PortalError``s, and the database holds either exactly the accepted file — one dataset (or
the existing one) with exactly the file's rows, each valid by the spec's own validator, its
changeset and stored original, rebuildable from the audit log, the chain intact — or nothing
new at all in ``data.*``, ``portal.datasets`` and ``audit.*``.

Examples commit for real (``import_file`` commits its own transaction), so each one is checked
against counts taken just before it.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.chain import verify
from audit.trail import dataset_state
from portal import uploads
from portal.actor import Actor
from portal.config import get_settings
from portal.csv_import import EncodingNotConfirmed
from portal.datasets import dataset_spec, get_dataset
from portal.errors import PortalError
from portal.spec import CellError, ColumnSpec, DatasetSpec, validate_value
from tests.conftest import DatabaseHandle
from tests.factories import make_user, upload_dataset

pytestmark = pytest.mark.db

BASE_SPEC = DatasetSpec(
    (
        ColumnSpec("Name", "name", "text", required=True),
        ColumnSpec("Qty", "qty", "integer"),
        ColumnSpec("Note", "note", "text"),
    )
)
BASE_CSV = b"Name,Qty,Note\nann,1,first\nbob,2,\n"
MAX_UPLOAD_MB = 1

# --- the files -----------------------------------------------------------------------------

_FORMULAS = ["=1+1", "+1", "-1", "@SUM(A1)", "\t=x", "\r=x", '=HYPERLINK("http://x")']
_CELLS = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.dates().map(lambda d: d.isoformat()),
    st.sampled_from(["true", "false", "yes", "", " ", "NULL", "NaN", "1,5", "١٢", "2024-02-30"]),
    st.sampled_from(_FORMULAS),
    st.text(max_size=10),
    st.text(alphabet='",;\t\r\n x', max_size=6),  # quotes, delimiters and line breaks in a value
)
_LABELS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["Name", "name", "", " ", "_row_id", "_version", "select", "ctid", "x" * 70]),
)


@st.composite
def valid_csvs(draw: st.DrawFn) -> tuple[bytes, str]:
    """A well-formed CSV (then maybe mutated): the base dataset's header or a random one."""
    header = (
        ["Name", "Qty", "Note"]
        if draw(st.booleans())
        else draw(st.lists(_LABELS, min_size=1, max_size=5))
    )
    rows = draw(st.lists(st.lists(_CELLS, min_size=len(header), max_size=len(header)), max_size=6))
    if header[0] == "Name" and draw(st.booleans()):  # rows that fit the base dataset
        rows = [[f"n{i}", str(i), draw(_CELLS)] for i in range(draw(st.integers(1, 5)))]
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator=newline, quoting=quoting).writerows(
        [header, *rows]
    )
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16"]))
    return out.getvalue().encode(encoding, errors="replace"), delimiter


@st.composite
def fitting_csvs(draw: st.DrawFn) -> tuple[bytes, str]:
    """Rows that fit the base dataset (and a new one), in UTF-8, any dialect."""
    rows = [
        [
            draw(st.text(min_size=1, max_size=8).filter(str.strip)),
            str(draw(st.integers(-(10**9), 10**9))),
            cell,
        ]
        for cell in draw(st.lists(_CELLS, min_size=1, max_size=6))
    ]
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    out = io.StringIO()
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    csv.writer(out, delimiter=delimiter, lineterminator=newline).writerows(
        [["Name", "Qty", "Note"], *rows]
    )
    return out.getvalue().encode(draw(st.sampled_from(["utf-8", "utf-8-sig"]))), delimiter


@st.composite
def mutated(draw: st.DrawFn, data: bytes, most: int = 3) -> bytes:
    """``data`` with a few hostile edits at drawn places."""
    for _ in range(draw(st.integers(0, most))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.integers(0, 11))
        if kind == 0:
            data = data[:at] + b"\x00" + data[at:]
        elif kind == 1:
            data = draw(st.sampled_from([codecs.BOM_UTF8, codecs.BOM_UTF16_LE, b"\xfe\xff"])) + data
        elif kind == 2:  # bytes of another encoding spliced in
            data = data[:at] + draw(st.sampled_from(["é", "€", "ß"])).encode("cp1252") + data[at:]
        elif kind == 3:
            data = data[:at] + data[at + draw(st.integers(1, 20)) :]
        elif kind == 4:
            data = data[:at]
        elif kind == 5:
            data = data[:at] + b'"' + data[at:]
        elif kind == 6:
            data = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
        elif kind == 7 and at < len(data):
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        elif kind == 8:  # a ragged row
            data = data + draw(st.sampled_from([b"\n1,2,3,4,5\n", b"\nonly\n", b"\n,,\n"]))
        elif kind == 9:  # a huge field, sometimes past the size limit
            size = draw(st.sampled_from([70_000, 300_000, MAX_UPLOAD_MB * 1024 * 1024 + 1]))
            data = data[:at] + b"x" * size + data[at:]
        elif kind == 10:
            data = data[:at] + draw(st.sampled_from(_FORMULAS)).encode() + data[at:]
        else:
            data = data[:at] + "\u2028\u00a0\ufeff".encode() + data[at:]
    return data


@st.composite
def files(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """Bytes as uploaded, and the delimiter the person chose (None: detected)."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=400)), None
    if kind <= 2:
        data, delimiter = draw(fitting_csvs())
        data = draw(mutated(data, most=1)) if draw(st.booleans()) else data
    else:
        data, delimiter = draw(valid_csvs())
        data = draw(mutated(data))
    choice = draw(st.sampled_from([None, None, None, None, delimiter, ",", ";", "\t", "|"]))
    return data, choice


# --- the checks ----------------------------------------------------------------------------


@pytest.fixture
def editor(fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch) -> Actor:
    monkeypatch.setenv("PORTAL_MAX_UPLOAD_MB", str(MAX_UPLOAD_MB))
    get_settings.cache_clear()
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor", username="uploader", display_name="Uploader")
    return Actor(name, "Uploader", "editor")


def written(db: DatabaseHandle) -> dict[str, Any]:
    with db.app.connect() as conn:
        row = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = 'data') AS tables,"
                " (SELECT count(*) FROM portal.datasets) AS datasets,"
                " (SELECT count(*) FROM audit.changeset) AS changesets,"
                " (SELECT count(*) FROM audit.row_change) AS row_changes,"
                " (SELECT count(*) FROM audit.upload) AS uploads,"
                " (SELECT count(*) FROM audit.bulk_load) AS bulk_loads,"
                " (SELECT max(id) FROM portal.datasets) AS last_dataset"
            )
        ).one()
    return dict(row._mapping)


def table_rows(db: DatabaseHandle, dataset_id: int) -> tuple[DatasetSpec, str, list[Any]]:
    with Session(db.app) as s:
        dataset = get_dataset(session=s, dataset_id=dataset_id)
        spec, table = dataset_spec(dataset), dataset.table_name
        names = ", ".join(f'"{n}"' for n in spec.names)
        rows = s.execute(text(f'SELECT _row_id, {names} FROM data."{table}" ORDER BY 1')).all()
    return spec, table, rows


def invalid_cells(spec: DatasetSpec, rows: list[Any]) -> list[str]:
    found = []
    for row in rows:
        for column, value in zip(spec.columns, row[1:], strict=True):
            typed = validate_value(column, value)
            if isinstance(typed, CellError) or typed != value:
                found.append(f"row {row[0]}, {column.name} = {value!r}: {typed}")
    for k, column in enumerate(spec.columns, start=1):
        values = [r[k] for r in rows if r[k] is not None]
        if column.unique and len(values) != len(set(values)):
            found.append(f"{column.name} holds a value twice")
    return found


def test_fuzzed_files_are_stored_whole_or_not_at_all(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    base = upload_dataset(editor, BASE_CSV, spec=BASE_SPEC, name="Base")
    names = (f"Fuzzed {n}" for n in itertools.count())
    seen: dict[str, int] = {"stored": 0, "appended": 0, "replaced": 0, "refused": 0}

    @settings(
        max_examples=250,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(
        file=files(),
        confirm=st.booleans(),
        target=st.sampled_from(["new", "new", "new", "append", "replace"]),
    )
    # Files that fit the base dataset, so appends and replaces that succeed are always among
    # the examples (random files that fit its three columns are rare: one run drew a single one).
    @example(file=(BASE_CSV, None), confirm=False, target="append")
    @example(file=(b"Name;Qty;Note\ncy;3;third\n", ";"), confirm=False, target="append")
    @example(
        file=(BASE_CSV.replace(b"bob,2,", b"bob,20,later"), None), confirm=False, target="replace"
    )
    def one_file(file: tuple[bytes, str | None], confirm: bool, target: str) -> None:
        data, delimiter = file
        before = written(fresh_db)
        base_before = table_rows(fresh_db, base)[2]
        into: uploads.NewDataset | uploads.ExistingDataset = (
            uploads.NewDataset(next(names))
            if target == "new"
            else uploads.ExistingDataset(base, "append" if target == "append" else "replace")
        )
        try:
            try:
                parsed = uploads.read_file(data, delimiter=delimiter)
            except EncodingNotConfirmed as exc:
                if not confirm:
                    raise
                parsed = uploads.read_file(data, encoding=exc.guess.name, delimiter=delimiter)
            if target == "new":
                proposed, _ = uploads.propose_spec(parsed)
                spec = uploads.spec_from_rows(uploads.spec_rows(proposed), base=proposed)
            else:
                spec = BASE_SPEC
            result = uploads.check(parsed, spec)
            outcome = uploads.import_file(
                actor=editor,
                filename="fuzz.csv",
                data=data,
                parsed=parsed,
                spec=spec,
                result=result,
                target=into,
                reason="fuzz",
            )
        except PortalError:
            seen["refused"] += 1
            assert written(fresh_db) == before, "a refused file wrote something"
            assert table_rows(fresh_db, base)[2] == base_before
            return
        after = written(fresh_db)
        new = target == "new"
        seen["stored" if new else f"{target}ed".replace("ee", "e")] += 1
        assert outcome.rows == parsed.row_count == len(result.typed) > 0
        assert after["tables"] == before["tables"] + new
        assert after["datasets"] == before["datasets"] + new
        assert after["uploads"] == before["uploads"] + 1
        assert after["bulk_loads"] == before["bulk_loads"] + 1
        assert after["changesets"] > before["changesets"]
        if new:
            assert outcome.dataset_id == after["last_dataset"] != before["last_dataset"]
        else:
            assert outcome.dataset_id == base
        spec_now, table, rows = table_rows(fresh_db, outcome.dataset_id)
        kept = len(base_before) if target == "append" else 0
        assert len(rows) == kept + outcome.rows
        assert invalid_cells(spec_now, rows) == []
        with fresh_db.app.connect() as conn:
            stored = conn.execute(
                text(
                    "SELECT u.content, c.kind, c.inserted, d.row_count"
                    " FROM audit.upload u JOIN audit.changeset c ON c.id = u.changeset_id"
                    " JOIN portal.datasets d ON d.id = u.dataset_id"
                    " WHERE u.changeset_id = :c"
                ),
                {"c": outcome.changeset_id},
            ).one()
            images = {
                r[0]: r[1]
                for r in conn.execute(
                    text(
                        "SELECT _row_id, to_jsonb(t) - '_row_id' - '_version'"
                        f' FROM data."{table}" t'
                    )
                )
            }
        assert zlib.decompress(stored.content) == data
        assert (stored.kind, stored.inserted, stored.row_count) == (
            "upload",
            outcome.rows,
            len(rows),
        )
        with Session(fresh_db.app) as s:
            chain = verify(session=s)
            assert chain.ok, chain.summary()
            assert dataset_state(session=s, dataset_id=outcome.dataset_id) == images

    one_file()
    print(f"\n{seen}")
    assert seen["refused"] >= 10, seen
    assert seen["stored"] >= 10, seen
    assert seen["appended"] + seen["replaced"] >= 3, seen
