"""Hostile files through the real upload path (``read_file`` -> ``propose_spec`` -> ``check`` ->
``import_file``): each file is either stored faithfully — exact values and types in its table, the
audit log able to rebuild them — or refused with a ``PortalError`` that says what is wrong and what
to do, leaving no table, dataset, changeset or stored upload behind.

Every file's bytes are generated here, so the corpus documents itself: the table ``CORPUS`` is
the list of files and what the portal does with each.
"""

from __future__ import annotations

import codecs
import gzip
import io
import struct
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.chain import verify
from audit.trail import dataset_state
from portal import uploads
from portal.actor import Actor
from portal.csv_import import EncodingNotConfirmed, ImportRefused
from portal.db import reset_engine
from portal.errors import PortalError, ValidationError
from portal.spec import MAX_COLUMNS, DatasetSpec
from tests.conftest import DatabaseHandle
from tests.factories import make_user, table_name

pytestmark = pytest.mark.db


# --- the files ------------------------------------------------------------------------------


def _png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1 pixel, 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


def _zip(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return out.getvalue()


PNG = _png()
PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
ELF = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HHI", 2, 0x3E, 1) + bytes(40)
XLSX = _zip(
    {
        "[Content_Types].xml": '<?xml version="1.0"?><Types xmlns='
        '"http://schemas.openxmlformats.org/package/2006/content-types"/>',
        "_rels/.rels": "<Relationships/>",
        "xl/workbook.xml": "<workbook/>",
    }
)
ZIPPED_CSV = _zip({"people.csv": "Name,Qty\nAnn,1\n"})
GZIPPED_CSV = gzip.compress(b"Name,Qty\nAnn,1\n")
HTML_PAGE = b"<!DOCTYPE html>\n<html><head><title>Export</title></head><body>a,b</body></html>\n"
JSON_DOC = b'{"rows": [{"Name": "Ann", "Qty": 1}]}\n'

LONG_LABEL = "L" * 100
FIVE_MB = "x" * (5 * 1024 * 1024)
WIDE = 2000
AT_LIMIT = MAX_COLUMNS
SQL_LABEL = "x); DROP TABLE portal.users; --"
# Far into the file, past what libmagic samples, so the NUL check itself must catch it.
LATE_NUL = b"id,v\n" + b"".join(b"%d,v%d\n" % (i, i) for i in range(8000)) + b"8000,x\x00y\n"


def _row(values: Iterable[object]) -> bytes:
    return ",".join(str(v) for v in values).encode()


# --- what should happen ---------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """The file imports: ``columns`` are the table's user columns (physical name, PostgreSQL
    type) in order and ``rows`` the values read back, compared with their Python types."""

    columns: list[tuple[str, str]]
    rows: list[tuple[Any, ...]]
    labels: list[str] | None = None
    """The labels the spec keeps (the header as written), when worth asserting."""
    note: str | None = None
    """A phrase one of ``propose_spec``'s notes must contain."""


@dataclass(frozen=True)
class Refused:
    """The upload stops with exactly ``error`` (its type, not a subclass) and a message
    containing every phrase: what is wrong, and what to do."""

    error: type[PortalError]
    phrases: tuple[str, ...]


@dataclass(frozen=True)
class Case:
    id: str
    data: bytes
    expect: Stored | Refused
    delimiter: str | None = None
    decimal_comma: bool = False
    marks: tuple[Any, ...] = field(default=())


NOT_CSV = "Export the data as CSV"
HEADER = "The header line (line 1) has problems"
TEXT, BIGINT, NUMERIC = "text", "bigint", "numeric"
BOOLEAN, DATE, TIMESTAMPTZ = "boolean", "date", "timestamp with time zone"

CORPUS: list[Case] = [
    # Binary files with a .csv name: refused by content, named for what they are.
    Case("png", PNG, Refused(ImportRefused, ("an image (image/png)", NOT_CSV))),
    Case("pdf", PDF, Refused(ImportRefused, ("a PDF document", NOT_CSV))),
    Case("elf", ELF, Refused(ImportRefused, ("an executable program", NOT_CSV))),
    Case("xlsx", XLSX, Refused(ImportRefused, ("an Excel workbook", NOT_CSV))),
    Case("zip", ZIPPED_CSV, Refused(ImportRefused, ("a ZIP archive", NOT_CSV))),
    Case("gzip", GZIPPED_CSV, Refused(ImportRefused, ("application/gzip", NOT_CSV))),
    Case("html-page", HTML_PAGE, Refused(ImportRefused, ("an HTML page", NOT_CSV))),
    Case("json", JSON_DOC, Refused(ImportRefused, ("a JSON document", NOT_CSV))),
    # Nothing to import.
    Case("empty", b"", Refused(ImportRefused, ("The file is empty", "header line and rows"))),
    Case(
        "blank-lines-only",
        b"\n\n\r\n\n",
        Refused(ImportRefused, ("no header line", "the first line must name the columns")),
    ),
    Case(
        "whitespace-lines-only",
        b"\n  \n\t\n",
        Refused(
            ImportRefused,
            (
                "The header line (line 2) has problems",
                "column 1 has no name but holds values (line 3:",
                "give it a name, or delete the column",
            ),
        ),
    ),
    Case(
        "header-only",
        b"Name,Qty\r\n",
        Refused(ImportRefused, ("no data rows", "add at least one row under the header")),
    ),
    # Bytes that are not text, or not one encoding.
    Case("nul-byte", b"a,b\n1,\x002\n", Refused(ImportRefused, ("binary data", NOT_CSV))),
    Case(
        "nul-byte-late",
        LATE_NUL,
        Refused(ImportRefused, ("NUL byte at offset", "(line 8002)", "CSV UTF-8")),
    ),
    Case(
        "utf-16-bom",
        "Name,Qty\nAnn,1\n".encode("utf-16"),
        Refused(ImportRefused, ("UTF-16 text", "save it as “CSV UTF-8”")),
    ),
    Case(
        "utf-16-no-bom",
        "Name,Qty\nAnn,1\n".encode("utf-16-le"),
        Refused(ImportRefused, ("binary data", NOT_CSV)),
    ),
    Case(
        "latin-1",
        "Name,City\nRené,Besançon\n".encode("latin-1"),
        Refused(EncodingNotConfirmed, ("not UTF-8", "(line 2)", "confirm that encoding")),
    ),
    Case(
        "invalid-utf-8",
        b"Name,Qty\nAnn\xff\xfe,1\n",
        Refused(EncodingNotConfirmed, ("not UTF-8", "byte 0xFF at offset 12", "CSV UTF-8")),
    ),
    Case(
        "invalid-utf-8-after-bom",
        codecs.BOM_UTF8 + b"Name,Qty\n\xff,1\n",
        Refused(ImportRefused, ("starts as UTF-8 but is not valid UTF-8", "(line 2)")),
    ),
    # Rows that do not parse.
    Case(
        "ragged-rows",
        b"a,b,c\n1,2,3\n4,5\n6,7,8,9\n",
        Refused(
            ImportRefused,
            (
                "2 lines of the file cannot be read",
                "line 3: 2 fields, but the header has 3",
                "line 4: 4 fields",
            ),
        ),
    ),
    Case(
        "unterminated-quote",
        b'a,b\n1,"two\n3,4\n',
        Refused(ImportRefused, ("line 2", "closing quote is missing", "close the quote")),
    ),
    Case(
        "text-after-closing-quote",
        b'a,b\n"x"y,1\n',
        Refused(ImportRefused, ("line 2", "text follows a closing quote")),
    ),
    # Headers.
    Case(
        "duplicate-header",
        b"a,b,a\n1,2,3\n",
        Refused(ImportRefused, (HEADER, "columns 1 and 3 are both named “a”", "rename one")),
    ),
    Case(
        "case-duplicate-header",
        b'"Name","name "\nx,y\n',
        Refused(
            ImportRefused,
            (HEADER, "columns 1 and 2 are both named “Name” and “name”", "ignoring case"),
        ),
    ),
    Case(
        "blank-header-cell",
        b"a,,c\n1,2,3\n",
        Refused(
            ImportRefused,
            (HEADER, "column 2 has no name but holds values (line 2: “2”)", "give it a name"),
        ),
    ),
    Case(
        # as spreadsheets export the empty columns past the last one: nothing in them to keep
        "trailing-delimiter-header",
        b"a,b,,\r\n1,x,,\r\n",
        Stored([("a", BIGINT), ("b", TEXT)], [(1, "x")], labels=["a", "b"]),
    ),
    Case(
        "trailing-delimiter-header-with-a-value",
        b"a,b,\n1,2,\n3,4,5\n",
        Refused(ImportRefused, (HEADER, "column 3 has no name but holds values (line 3: “5”)")),
    ),
    Case(
        "excel-sep-line",
        b"sep=;\nName;Qty\nAnn;1\n",
        # Excel's line naming the delimiter: not the header, and the delimiter it names is used.
        Stored([("name", TEXT), ("qty", BIGINT)], [("Ann", 1)], labels=["Name", "Qty"]),
    ),
    Case(
        f"{WIDE}-columns",
        _row(f"c{i}" for i in range(WIDE)) + b"\n" + _row(range(WIDE)) + b"\n",
        Refused(ImportRefused, (f"the file has {WIDE} columns", f"at most {MAX_COLUMNS}")),
    ),
    Case(
        f"{AT_LIMIT}-columns",
        _row(f"c{i}" for i in range(AT_LIMIT)) + b"\n" + _row(range(AT_LIMIT)) + b"\n",
        Stored([(f"c{i}", BIGINT) for i in range(AT_LIMIT)], [tuple(range(AT_LIMIT))]),
    ),
    Case(
        "100-character-header",
        f"{LONG_LABEL},{LONG_LABEL}x\n1,2\n".encode(),
        Stored(
            [("l" * 63, BIGINT), ("l" * 61 + "_2", BIGINT)],
            [(1, 2)],
            labels=[LONG_LABEL, LONG_LABEL + "x"],
        ),
    ),
    Case(
        "sql-looking-header",
        f'"{SQL_LABEL}",b\n1,2\n'.encode(),
        Stored(
            [("x_drop_table_portal_users", BIGINT), ("b", BIGINT)],
            [(1, 2)],
            labels=[SQL_LABEL, "b"],
        ),
    ),
    Case(
        "reserved-word-headers",
        b"select,user,_row_id,_version,tableoid,oid,pg_class,2024\n1,2,3,4,5,6,7,8\n",
        Stored(
            [
                ("select", BIGINT),
                ("user", BIGINT),
                ("row_id", BIGINT),
                ("version", BIGINT),
                ("col_tableoid", BIGINT),
                ("col_oid", BIGINT),
                ("col_pg_class", BIGINT),
                ("col_2024", BIGINT),
            ],
            [(1, 2, 3, 4, 5, 6, 7, 8)],
        ),
    ),
    Case(
        "non-ascii-headers",
        "Größe,名前,😀,a-b,a b\n1,Ünïcödé,🎉 ok,p,q\n".encode(),
        Stored(
            [("grosse", BIGINT), ("col_2", TEXT), ("col_3", TEXT), ("a_b", TEXT), ("a_b_2", TEXT)],
            [(1, "Ünïcödé", "🎉 ok", "p", "q")],
            labels=["Größe", "名前", "😀", "a-b", "a b"],
        ),
    ),
    # Encodings and line ends that are fine.
    Case(
        "utf-8-bom",
        codecs.BOM_UTF8 + b"Name,Qty\nAnn,1\n",
        Stored([("name", TEXT), ("qty", BIGINT)], [("Ann", 1)], labels=["Name", "Qty"]),
    ),
    Case(
        "crlf",
        b"Name,Qty\r\nAnn,1\r\nBob,2\r\n",
        Stored([("name", TEXT), ("qty", BIGINT)], [("Ann", 1), ("Bob", 2)]),
    ),
    Case(
        "cr-only",
        b"Name,Qty\rAnn,1\rBob,2\r",
        Stored([("name", TEXT), ("qty", BIGINT)], [("Ann", 1), ("Bob", 2)]),
    ),
    Case(
        "quoted-newlines",
        b'Name,Note\r\nAnn,"line one\nline two"\r\nBob,"a\r\nb"\r\nCy,"say ""hi"", then go"\r\n',
        Stored(
            [("name", TEXT), ("note", TEXT)],
            [("Ann", "line one\nline two"), ("Bob", "a\r\nb"), ("Cy", 'say "hi", then go')],
        ),
    ),
    # Delimiters.
    Case(
        "semicolons-decimal-comma",
        b"Name;Price;Qty\nAnn;1,50;1.234\nBob;1.234,5;2\n",
        Stored(
            [("name", TEXT), ("price", NUMERIC), ("qty", BIGINT)],
            [("Ann", Decimal("1.50"), 1234), ("Bob", Decimal("1234.50"), 2)],
        ),
        delimiter=";",
        decimal_comma=True,
    ),
    Case(
        "semicolons-without-decimal-comma",
        b"Name;Price\nAnn;1,50\nBob;1.234,5\n",
        Stored(
            [("name", TEXT), ("price", TEXT)],
            [("Ann", "1,50"), ("Bob", "1.234,5")],
            note="choose the decimal-comma option",
        ),
    ),
    Case(
        "tab-separated",
        b"Name\tCity\tQty\nAnn\tParis; France\t1\nBob\tRome\t2\n",
        Stored(
            [("name", TEXT), ("city", TEXT), ("qty", BIGINT)],
            [("Ann", "Paris; France", 1), ("Bob", "Rome", 2)],
        ),
    ),
    Case(
        "tab-separated-commas-in-values",
        b"Name\tCity, Country\tQty\nAnn\tParis, France\t1\nBob\tRome, Italy\t2\n",
        Stored(
            [("name", TEXT), ("city_country", TEXT), ("qty", BIGINT)],
            [("Ann", "Paris, France", 1), ("Bob", "Rome, Italy", 2)],
        ),
    ),
    # Values.
    Case(
        "formula-looking-values",
        b'id,f\n1,=1+1\n2,+cmd\n3,-2\n4,@SUM(A1:A2)\n5,"=HYPERLINK(""http://x"")"\n',
        Stored(
            [("id", BIGINT), ("f", TEXT)],
            [
                (1, "=1+1"),
                (2, "+cmd"),
                (3, "-2"),
                (4, "@SUM(A1:A2)"),
                (5, '=HYPERLINK("http://x")'),
            ],
        ),
    ),
    Case(
        "html-in-values",
        b"Name,Comment\nAnn,<script>alert(1)</script>\nBob,<b>bold</b> & <i>it</i>\n",
        Stored(
            [("name", TEXT), ("comment", TEXT)],
            [("Ann", "<script>alert(1)</script>"), ("Bob", "<b>bold</b> & <i>it</i>")],
        ),
    ),
    Case(
        "html-link-in-values",
        b'id,note\n1,"<a href=""https://example.com"">link</a>"\n',
        Stored([("id", BIGINT), ("note", TEXT)], [(1, '<a href="https://example.com">link</a>')]),
    ),
    Case(
        "html-table-in-values",
        b"id,note\n1,<table><tr><td>x</td></tr></table>\n",
        Stored([("id", BIGINT), ("note", TEXT)], [(1, "<table><tr><td>x</td></tr></table>")]),
    ),
    Case(
        "html-quoted-script",
        b"Name,Comment\nAnn,\"<script>alert('x')</script>\"\n",
        Stored([("name", TEXT), ("comment", TEXT)], [("Ann", "<script>alert('x')</script>")]),
    ),
    Case(
        "invisible-and-bidi-characters",
        "v\n\u202eevil\u202c\nzero\u200bwidth\n  padded  \n".encode(),
        Stored([("v", TEXT)], [("\u202eevil\u202c",), ("zero\u200bwidth",), ("  padded  ",)]),
    ),
    Case(
        "leading-zero-codes",
        b"code,zip\n007,01234\n0123,98765\n",
        Stored(
            [("code", TEXT), ("zip", TEXT)],
            [("007", "01234"), ("0123", "98765")],
            note="leading zeros",
        ),
    ),
    Case(
        "integers-beyond-int64",
        b"n\n9223372036854775808\n-99999999999999999999999\n1\n",
        Stored(
            [("n", NUMERIC)],
            [
                (Decimal("9223372036854775808"),),
                (Decimal("-99999999999999999999999"),),
                (Decimal(1),),
            ],
            note="beyond the 64-bit whole-number range",
        ),
    ),
    Case(
        "int64-bounds",
        b"n\n9223372036854775807\n-9223372036854775808\n",
        Stored([("n", BIGINT)], [(2**63 - 1,), (-(2**63),)]),
    ),
    Case(
        "null-markers",
        b'a,b,c\nNULL,1,""\nN/A,,\nnull,3,\n',
        # Only an empty cell is missing: the words are text, kept as written.
        Stored(
            [("a", TEXT), ("b", BIGINT), ("c", TEXT)],
            [("NULL", 1, None), ("N/A", None, None), ("null", 3, None)],
            note="every cell is empty",
        ),
    ),
    Case(
        "mixed-types",
        b"v,w\n1,1\nabc,NaN\n2.5,inf\n",
        Stored([("v", TEXT), ("w", TEXT)], [("1", "1"), ("abc", "NaN"), ("2.5", "inf")]),
    ),
    Case(
        "mixed-date-formats",
        b"d\n2024-01-05\n05.01.2024\n01/05/2024\n",
        Stored([("d", TEXT)], [("2024-01-05",), ("05.01.2024",), ("01/05/2024",)]),
    ),
    Case(
        "ambiguous-dates",
        b"d\n01/02/2024\n03/04/2024\n",
        Stored([("d", TEXT)], [("01/02/2024",), ("03/04/2024",)], note="could be day/month"),
    ),
    Case(
        "typed-columns",
        b"when,at,ok,ratio\n24.12.2024,2024-01-05T10:00:00+02:00,yes,0.125\n"
        b"01.02.2024,2024-01-05 10:00,n,-3\n",
        Stored(
            [("when", DATE), ("at", TIMESTAMPTZ), ("ok", BOOLEAN), ("ratio", NUMERIC)],
            [
                (
                    date(2024, 12, 24),
                    datetime.fromisoformat("2024-01-05T08:00:00+00:00"),
                    True,
                    Decimal("0.125"),
                ),
                (
                    date(2024, 2, 1),
                    datetime.fromisoformat("2024-01-05T10:00:00+00:00"),
                    False,
                    Decimal("-3.000"),
                ),
            ],
            note="no UTC offset",
        ),
    ),
    Case(
        "5-mb-field",
        f'id,blob\n1,"{FIVE_MB}"\n2,small\n'.encode(),
        Stored([("id", BIGINT), ("blob", TEXT)], [(1, FIVE_MB), (2, "small")]),
    ),
]


# --- the path -------------------------------------------------------------------------------


@pytest.fixture
def editor(fresh_db: DatabaseHandle) -> Actor:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor", username="eddie", display_name="Eddie E.")
    return Actor(name, "Eddie E.", "editor")


def _upload(
    actor: Actor,
    data: bytes,
    target: uploads.NewDataset | uploads.ExistingDataset,
    *,
    spec: DatasetSpec | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    decimal_comma: bool = False,
) -> tuple[uploads.ImportOutcome, list[str]]:
    """The upload page's path; ``spec`` None means the proposed one, accepted unchanged
    through the page's spec grid (``spec_rows`` -> ``spec_from_rows``)."""
    parsed = uploads.read_file(data, encoding=encoding, delimiter=delimiter)
    notes: list[str] = []
    if spec is None:
        proposed, notes = uploads.propose_spec(parsed, decimal_comma=decimal_comma)
        spec = uploads.spec_from_rows(uploads.spec_rows(proposed), base=proposed)
    result = uploads.check(parsed, spec, decimal_comma=decimal_comma)
    outcome = uploads.import_file(
        actor=actor,
        filename="upload.csv",
        data=data,
        parsed=parsed,
        spec=spec,
        result=result,
        target=target,
        reason="corpus",
    )
    return outcome, notes


def _written(db: DatabaseHandle) -> dict[str, int]:
    with db.app.connect() as conn:
        row = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = 'data') AS tables,"
                " (SELECT count(*) FROM portal.datasets) AS datasets,"
                " (SELECT count(*) FROM audit.changeset) AS changesets,"
                " (SELECT count(*) FROM audit.upload) AS uploads,"
                " (SELECT count(*) FROM audit.bulk_load) AS bulk_loads"
            )
        ).one()
    return dict(row._mapping)


NOTHING = {"tables": 0, "datasets": 0, "changesets": 0, "uploads": 0, "bulk_loads": 0}


def _table(db: DatabaseHandle, dataset_id: int) -> tuple[str, dict[str, Any]]:
    with db.app.connect() as conn:
        row = conn.execute(
            text("SELECT table_name, spec FROM portal.datasets WHERE id = :i"), {"i": dataset_id}
        ).one()
    return row.table_name, row.spec


def _columns(db: DatabaseHandle, table: str) -> list[tuple[str, str]]:
    with db.app.connect() as conn:
        return [
            (r.column_name, r.data_type)
            for r in conn.execute(
                text(
                    "SELECT column_name, data_type FROM information_schema.columns"
                    " WHERE table_schema = 'data' AND table_name = :t"
                    " AND column_name NOT IN ('_row_id', '_version') ORDER BY ordinal_position"
                ),
                {"t": table},
            )
        ]


def _rows(db: DatabaseHandle, table: str, names: list[str]) -> list[tuple[Any, ...]]:
    columns = ", ".join(f'"{n}"' for n in names)
    with db.app.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(text(f'SELECT {columns} FROM data."{table}" ORDER BY _row_id'))
        ]


def _typed(rows: list[tuple[Any, ...]]) -> list[list[tuple[str, Any]]]:
    """Rows with each value's type beside it: 1 == Decimal(1) == True, but not here."""
    return [[(type(v).__name__, v) for v in row] for row in rows]


def _images(db: DatabaseHandle, table: str) -> dict[int, Any]:
    with db.app.connect() as conn:
        return {
            r[0]: r[1]
            for r in conn.execute(
                text(
                    f"SELECT _row_id, to_jsonb(t) - '_row_id' - '_version'"
                    f' FROM data."{table}" t ORDER BY _row_id'
                )
            )
        }


def _assert_stored(
    db: DatabaseHandle, outcome: uploads.ImportOutcome, data: bytes, expect: Stored
) -> None:
    table, spec = _table(db, outcome.dataset_id)
    assert _columns(db, table) == expect.columns
    got = _rows(db, table, [name for name, _ in expect.columns])
    assert _typed(got) == _typed(expect.rows)
    if expect.labels is not None:
        assert [c["label"] for c in spec["columns"]] == expect.labels
    with db.app.connect() as conn:
        changesets = conn.execute(
            text("SELECT kind, actor_username, inserted, detail FROM audit.changeset")
        ).all()
        upload = conn.execute(text("SELECT content, dataset_id FROM audit.upload")).one()
        users = conn.scalar(text("SELECT count(*) FROM portal.users"))
    # one changeset: the table's creation and its rows
    assert [tuple(c[:3]) for c in changesets] == [("upload", "eddie", len(expect.rows))]
    assert changesets[0].detail["created"]["table"] == table
    assert zlib.decompress(upload.content) == data  # the original bytes, kept
    assert upload.dataset_id == outcome.dataset_id
    assert users == 1  # the editor, whatever the headers said
    with Session(db.app) as s:
        assert verify(session=s).ok
        rebuilt = dataset_state(session=s, dataset_id=outcome.dataset_id)
    assert rebuilt == _images(db, table)  # the audit log alone gives back what is stored


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CORPUS])
def test_corpus_file_is_stored_faithfully_or_refused_clearly(
    fresh_db: DatabaseHandle, editor: Actor, case: Case
) -> None:
    target = uploads.NewDataset(name=f"corpus {case.id}")
    if isinstance(case.expect, Refused):
        with pytest.raises(PortalError) as raised:
            _upload(
                editor,
                case.data,
                target,
                delimiter=case.delimiter,
                decimal_comma=case.decimal_comma,
            )
        assert type(raised.value) is case.expect.error, raised.value
        for phrase in case.expect.phrases:
            assert phrase in str(raised.value)
        assert _written(fresh_db) == NOTHING
        return
    outcome, notes = _upload(
        editor, case.data, target, delimiter=case.delimiter, decimal_comma=case.decimal_comma
    )
    assert outcome.rows == len(case.expect.rows)
    if case.expect.note is not None:
        assert any(case.expect.note in n for n in notes), notes
    _assert_stored(fresh_db, outcome, case.data, case.expect)


# --- encodings confirmed by the person --------------------------------------------------------


def test_latin_1_is_refused_until_confirmed_then_stored_exactly(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    data = "Name,City,Price\nRené,Besançon,1.50\nZoë,Orléans,2\n".encode("latin-1")
    target = uploads.NewDataset(name="Latin")
    with pytest.raises(EncodingNotConfirmed, match="not UTF-8") as raised:
        _upload(editor, data, target)
    guess = raised.value.guess
    assert guess.needs_confirmation
    assert "René,Besançon" in guess.preview  # what the person checks before confirming
    assert _written(fresh_db) == NOTHING

    outcome, _ = _upload(editor, data, target, encoding=guess.name)
    _assert_stored(
        fresh_db,
        outcome,
        data,
        Stored(
            [("name", TEXT), ("city", TEXT), ("price", NUMERIC)],
            [("René", "Besançon", Decimal("1.50")), ("Zoë", "Orléans", Decimal("2.00"))],
        ),
    )
    with fresh_db.app.connect() as conn:
        encoding = conn.scalar(text("SELECT encoding FROM audit.upload"))
    assert encoding == guess.name  # and the original bytes are kept, not the conversion


def test_an_encoding_that_does_not_decode_the_file_is_refused(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    data = "Name\n名前\n".encode("shift_jis") + b"\xff\n"
    with pytest.raises(ImportRefused, match=r"is not valid .*Choose another encoding"):
        _upload(editor, data, uploads.NewDataset(name="x"), encoding="shift_jis")
    with pytest.raises(ImportRefused, match="not an encoding the portal knows"):
        _upload(editor, data, uploads.NewDataset(name="x"), encoding="klingon")
    assert _written(fresh_db) == NOTHING


def test_a_file_over_the_size_limit_is_refused(
    fresh_db: DatabaseHandle, editor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_MAX_UPLOAD_MB", "1")
    reset_engine()  # settings are read again
    data = b"id,v\n" + b"1,x\n" * 300_000
    with pytest.raises(ImportRefused, match=r"is 1\.1 MB; the limit is 1 MB\. Split it"):
        _upload(editor, data, uploads.NewDataset(name="Too big"))
    assert _written(fresh_db) == NOTHING


# --- known bugs, each its own failing test ----------------------------------------------------


def test_integers_over_38_digits_are_kept_exactly(fresh_db: DatabaseHandle, editor: Actor) -> None:
    digits = "1" * 39
    outcome, _ = _upload(editor, f"n\n{digits}\n-{digits}\n".encode(), uploads.NewDataset("Big"))
    table, _ = _table(fresh_db, outcome.dataset_id)
    with fresh_db.app.connect() as conn:
        values = conn.scalars(text(f'SELECT n::text FROM data."{table}" ORDER BY _row_id')).all()
    assert values == [digits, f"-{digits}"]


def test_mixed_date_formats_get_a_note(fresh_db: DatabaseHandle) -> None:
    parsed = uploads.read_file(b"d\n2024-01-05\n24.12.2024\n")
    spec, notes = uploads.propose_spec(parsed)
    assert spec.columns[0].type == "text"
    assert any("date" in n for n in notes), notes


def test_a_header_after_blank_lines_is_named_by_its_line(fresh_db: DatabaseHandle) -> None:
    with pytest.raises(ImportRefused) as raised:
        uploads.read_file(b"\n\nName,name\n1,2\n")
    assert "line 3" in str(raised.value)


# --- appending a file whose header does not fit the dataset -----------------------------------

PEOPLE = b"Name,Qty,Joined\nAnn,3,2024-01-05\nBob,,2024-02-29\n"

MISMATCHES = [
    pytest.param(b"Name,Joined\nCy,2024-03-01\n", ("missing: “Qty”",), id="missing-column"),
    pytest.param(
        b"Name,Qty,Joined,Colour\nCy,1,2024-03-01,red\n",
        ("not in the dataset: “Colour”",),
        id="extra-column",
    ),
    pytest.param(
        b"Name,Quantity,Joined\nCy,1,2024-03-01\n",
        ("missing: “Qty”", "not in the dataset: “Quantity”"),
        id="renamed-column",
    ),
    pytest.param(b"Qty,Joined\n1,2024-03-01\n", ("missing: “Name”",), id="first-column-dropped"),
    pytest.param(b"a,b,c\n1,2,3\n", ("missing: “Name”, “Qty”, “Joined”",), id="another-file"),
]


@pytest.fixture
def people(fresh_db: DatabaseHandle, editor: Actor) -> int:
    outcome, _ = _upload(editor, PEOPLE, uploads.NewDataset("People"))
    return outcome.dataset_id


@pytest.mark.parametrize(("data", "phrases"), MISMATCHES)
def test_appending_a_file_with_other_columns_is_refused_and_writes_nothing(
    fresh_db: DatabaseHandle, editor: Actor, people: int, data: bytes, phrases: tuple[str, ...]
) -> None:
    before = _written(fresh_db)
    table, _ = _table(fresh_db, people)
    rows = _rows(fresh_db, table, ["name", "qty", "joined"])
    spec = uploads.dataset_spec(people)
    with pytest.raises(ValidationError) as raised:
        _upload(editor, data, uploads.ExistingDataset(people), spec=spec)
    message = str(raised.value)
    assert "The file's columns do not match the dataset's" in message
    assert "rename the header cells to the dataset's column names" in message
    for phrase in phrases:
        assert phrase in message
    assert _written(fresh_db) == before
    assert _rows(fresh_db, table, ["name", "qty", "joined"]) == rows


def test_a_file_with_other_columns_is_told_the_dataset_s_columns_and_what_it_can_do(
    fresh_db: DatabaseHandle, editor: Actor, people: int
) -> None:
    """The refusal named only the columns missing, and advised to "change the dataset's
    columns", which nothing in the portal can do: it names the dataset's columns to rename the
    header cells to, and the way that exists for a file of other columns (a new dataset)."""
    spec = uploads.dataset_spec(people)
    with pytest.raises(ValidationError) as raised:
        _upload(editor, b"Name,Quantity\nCy,1\n", uploads.ExistingDataset(people), spec=spec)
    message = str(raised.value)
    assert "its columns are “Name”, “Qty”, “Joined”" in message
    assert "or upload the file as a new dataset" in message
    assert "change the dataset's columns" not in message


def test_appending_with_the_header_in_another_order_and_case_imports(
    fresh_db: DatabaseHandle, editor: Actor, people: int
) -> None:
    spec = uploads.dataset_spec(people)
    data = b"joined, QTY ,name,_row_id\n2024-03-01,7,Cy,1\n"  # _row_id from a file is ignored
    outcome, _ = _upload(editor, data, uploads.ExistingDataset(people), spec=spec)
    table, _ = _table(fresh_db, people)
    assert _rows(fresh_db, table, ["_row_id", "name", "qty", "joined"]) == [
        (1, "Ann", 3, date(2024, 1, 5)),
        (2, "Bob", None, date(2024, 2, 29)),
        (3, "Cy", 7, date(2024, 3, 1)),
    ]
    with fresh_db.app.connect() as conn:
        last = conn.execute(
            text("SELECT seq, kind, inserted FROM audit.changeset ORDER BY seq DESC LIMIT 1")
        ).one()
    assert tuple(last) == (outcome.seq, "upload", 1)


def test_appending_rows_checked_against_another_spec_writes_nothing(
    fresh_db: DatabaseHandle, editor: Actor, people: int
) -> None:
    """A caller that checks the file against its own proposed spec, not the dataset's: the
    typed rows lack the dataset's columns and the load stops before anything lands."""
    before = _written(fresh_db)
    with pytest.raises(ValidationError, match="lack the column 'qty'"):
        _upload(editor, b"Name,Amount\nCy,1\n", uploads.ExistingDataset(people))
    assert _written(fresh_db) == before


def test_an_appended_value_too_long_for_its_column_s_index_is_refused_naming_it(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """Once a column has its on-demand index (portal.indexes), a value over about 2,700 bytes
    that does not compress cannot go into it: an append was refused with the server's words."""
    from portal.spec import index_name

    created, _ = _upload(editor, b"Name,Note\nann,short\n", uploads.NewDataset(name="Notes"))
    table = table_name(fresh_db.app, created.dataset_id)
    with Session(fresh_db.app) as s, s.begin():
        s.execute(text(f"CREATE INDEX {index_name(table, 'note')} ON data.{table} (note, _row_id)"))
    before = _written(fresh_db)
    note = "".join(f"{i * 7919 % 100_003:05x}" for i in range(2_400)).encode()  # 12,000 bytes
    with pytest.raises(ValidationError) as caught:
        _upload(
            editor,
            b"Name,Note\nbob," + note + b"\n",
            uploads.ExistingDataset(created.dataset_id, "append"),
        )
    said = str(caught.value)
    assert "column “Note”" in said
    assert "too long for the column's index" in said
    assert _written(fresh_db) == before
