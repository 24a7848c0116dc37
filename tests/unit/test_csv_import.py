"""Upload checks, from bytes to a table of strings, and the CSVs handed back. Real python-magic
and charset-normalizer; every file is generated here."""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import lzma
import sys
import zipfile
import zlib
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from portal import csv_import
from portal.csv_import import (
    MAX_PROBLEMS_KEPT,
    Dialect,
    EncodingNotConfirmed,
    ImportRefused,
    ParsedCSV,
    annotated_original_csv,
    copy_stream,
    decode,
    detect_encoding,
    error_report_csv,
    mime_type,
    read_upload,
    sniff_dialect,
)
from portal.csv_safe import csv_bytes, file_stem, neutralise, unneutralise
from portal.errors import ValidationError
from portal.spec import CellError, ColumnSpec, DatasetSpec, infer_spec, validate

LIMIT = 10_000_000


def upload(data: bytes, **kwargs: Any) -> ParsedCSV:
    return read_upload(data, max_bytes=kwargs.pop("max_bytes", LIMIT), **kwargs)


def refused(data: bytes, **kwargs: Any) -> ImportRefused:
    with pytest.raises(ImportRefused) as caught:
        upload(data, **kwargs)
    return caught.value


def values(parsed: ParsedCSV) -> dict[str, list[Any]]:
    return {
        k: [None if pd.isna(v) else v for v in vs] for k, vs in parsed.frame.to_dict("list").items()
    }


# --- refused files --------------------------------------------------------------------------


def png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
        )

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0\0"))
        + chunk(b"IEND", b"")
    )


def zip_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


XLSX = zip_of(
    {
        "[Content_Types].xml": '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
        "xl/workbook.xml": "<workbook/>",
        "xl/worksheets/sheet1.xml": "<worksheet/>",
    }
)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (png(), "an image (image/png)"),
        (zip_of({"data.csv": "a,b\n1,2\n"}), "a ZIP archive"),
        (XLSX, "(application/"),
        (
            b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< >>\n%%EOF\n",
            "a PDF document",
        ),
        (Path(sys.executable).read_bytes()[:200_000], "an executable program"),
        (b'{"name": "x", "qty": 1}\n', "a JSON document"),
        (b"\x01\x02\x03a,b\n\x1b[31m,\x7f\n", "binary data"),
    ],
    ids=["png", "zip", "xlsx", "pdf", "elf", "json", "control-chars"],
)
def test_non_text_content_is_refused_whatever_the_name(data: bytes, fragment: str) -> None:
    error = refused(data)
    assert "not a CSV text file" in str(error)
    assert fragment in str(error)
    assert "whatever its name says" in str(error)


@pytest.mark.parametrize("control", [b"\x01", b"\x1a", b"\x7f"], ids=["soh", "sub", "del"])
def test_a_control_character_past_libmagic_s_sample_is_refused_as_in_it(control: bytes) -> None:
    """libmagic reads the first 64 KiB: a control character there made the file "binary data",
    while the same character further down was stored. It is refused wherever it is, by line."""
    rows = b"".join(b"Ann %d,%d\n" % (i, i) for i in range(20_000))  # ~200 KB
    data = b"name,qty\n" + rows + b"Bo" + control + b"b,1\n" + b"Cy,2\n"
    assert len(data) > 2 * 65_536
    error = refused(data)
    assert f"line {20_002} holds a control character (U+{control[0]:04X})" in str(error)
    assert "upload it again" in str(error)
    # Tab, carriage return, form feed and escape are text to libmagic, and stay accepted.
    fine = b"name,qty\n" + rows + b"Bo\x0cb\x1b,1\n"
    assert read_upload(fine, max_bytes=LIMIT).row_count == 20_001


def _ods() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<office:document-content/>")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (_ods(), "an OpenDocument spreadsheet (LibreOffice, OpenOffice)"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), "an Office document (an Excel .xls"),
        (gzip.compress(b"a,b\n1,2\n"), "a compressed file (application/gzip)"),
        (bz2.compress(b"a,b\n1,2\n"), "a compressed file (application/x-bzip2)"),
        (lzma.compress(b"a,b\n1,2\n"), "a compressed file (application/x-xz)"),
    ],
    ids=["ods", "xls", "gzip", "bzip2", "xz"],
)
def test_spreadsheets_and_compressed_files_are_named_for_what_they_are(
    data: bytes, fragment: str
) -> None:
    """They were refused "of type application/x-ole-storage" and the like: true, but not what
    a person who saved a workbook or compressed a file knows it as."""
    error = refused(data)
    assert "not a CSV text file" in str(error)
    assert fragment in str(error)


@pytest.mark.parametrize(
    "data",
    [b"name,qty\napple,1\npear,2\n", b"#include,int\nmain,1\n", b"a;b\n1;2\n", b"x\n1\n"],
    ids=["csv", "looks-like-c", "semicolon", "one-column"],
)
def test_text_verdicts_are_accepted(data: bytes) -> None:
    verdict = mime_type(data)
    assert verdict in ("text/csv", "text/plain") or verdict.startswith("text/x-")
    assert upload(data).mime == verdict


def test_nul_bytes_are_refused_with_their_place() -> None:
    data = b"a,b\n1,2\n3,\x004\n"
    with pytest.raises(ImportRefused, match=r"NUL byte at offset 10 \(line 3\)"):
        decode(data, "utf-8")
    with pytest.raises(ImportRefused, match="UTF-16"):
        upload("a,b\n1,2\n".encode("utf-16"))


def test_utf_32_with_a_byte_order_mark_is_named_as_such() -> None:
    """Its little-endian mark starts as UTF-16's: it was refused as "UTF-16 text"."""
    for codec in ("utf-32-le", "utf-32-be"):
        mark = codecs.BOM_UTF32_LE if codec.endswith("le") else codecs.BOM_UTF32_BE
        error = refused(mark + "a,b\n1,2\n".encode(codec))
        assert "The file is UTF-32 text: save it as “CSV UTF-8”" in str(error), codec


def test_invalid_utf8_is_never_mangled_and_the_byte_is_named() -> None:
    data = b"name\nok\n" + b"caf\xc3(\n"
    with pytest.raises(ImportRefused, match=r"byte 0xC3 at offset 11 \(line 3\)"):
        decode(data, "utf-8")
    bom = b"\xef\xbb\xbf" + data
    with pytest.raises(
        ImportRefused, match=r"starts as UTF-8 .* byte 0xC3 at offset 14 \(line 3\)"
    ):
        upload(bom)
    with pytest.raises(ImportRefused, match=r"not valid Windows-1252.*byte 0x81 at offset 7"):
        decode(b"a,b\n1,\x81\n".replace(b"1,", b"1,2"), "cp1252")


def test_size_limits() -> None:
    with pytest.raises(ImportRefused, match=r"1,001 bytes; the limit is 1,000 bytes"):
        upload(b"a\n" + b"1\n" * 499 + b"x", max_bytes=1000)
    with pytest.raises(ImportRefused, match="The file is empty"):
        upload(b"")


def test_a_file_over_the_limit_is_measured_in_the_limits_megabytes() -> None:
    """The limit is PORTAL_MAX_UPLOAD_MB megabytes of 1,048,576 bytes (as Streamlit's and the
    page's "at most N MB"), but sizes were written in megabytes of 1,000,000: a limit of 3 read
    "3.1 MB", and a file just over 1 MB "1.0 MB; the limit is 1.0 MB", as if it were not over."""
    mb = 1024 * 1024
    with pytest.raises(ImportRefused, match=r"The file is 3\.5 MB; the limit is 3 MB\. Split"):
        csv_import.check_size(b"x" * (3 * mb + mb // 2), max_bytes=3 * mb)
    with pytest.raises(ImportRefused) as caught:
        csv_import.check_size(b"x" * (mb + 1), max_bytes=mb)
    assert "The file is 1,048,577 bytes; the limit is 1 MB (1,048,576 bytes)." in str(caught.value)


def test_unknown_or_non_text_encodings_are_refused() -> None:
    with pytest.raises(ImportRefused, match="not an encoding"):
        decode(b"a\n1\n", "klingon")
    with pytest.raises(ImportRefused, match="not a text encoding"):
        decode(b"a\n1\n", "base64")


# --- accepted files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "delimiter", "encoding"),
    [
        (b"name,qty\nAnna,1\nBo,2\n", ",", "utf-8"),
        (b"name;qty\r\nAnna;1\r\nBo;2\r\n", ";", "utf-8"),
        (b"name\tqty\nAnna\t1\nBo\t2", "\t", "utf-8"),
        (b"\xef\xbb\xbfname,qty\nAnna,1\nBo,2\n", ",", "utf-8-sig"),
    ],
    ids=["comma", "semicolon-crlf", "tab-no-final-newline", "bom"],
)
def test_accepted_files(data: bytes, delimiter: str, encoding: str) -> None:
    parsed = upload(data)
    assert parsed.header == ["name", "qty"]  # the BOM is gone from the first header
    assert values(parsed) == {"name": ["Anna", "Bo"], "qty": ["1", "2"]}
    assert (parsed.dialect.delimiter, parsed.encoding, parsed.row_count) == (delimiter, encoding, 2)
    assert parsed.line_numbers.tolist() == [2, 3]
    assert all(str(t) == "string" for t in parsed.frame.dtypes)


def test_sniffing_is_not_fooled_by_quoted_delimiters_and_can_be_overridden() -> None:
    data = b'name;note\n"Smith, Anna";"a, b, c"\n"Lee, Bo";"x, y"\n'
    parsed = upload(data)
    assert parsed.dialect.name == "semicolon"
    assert values(parsed)["note"] == ["a, b, c", "x, y"]
    forced = upload(b"a,b;c\n1,2;3\n", delimiter=";")
    assert forced.header == ["a,b", "c"]
    with pytest.raises(ValidationError, match="not supported"):
        upload(data, delimiter="|")
    assert sniff_dialect("single\nvalue\n").delimiter == ","


@pytest.mark.parametrize(
    ("codec", "expected"),
    [("cp1252", "cp1252"), ("latin-1", "cp1252")],
)
def test_a_legacy_encoding_is_proposed_and_used_only_once_confirmed(
    codec: str, expected: str
) -> None:
    text = "Name;Stadt;Preis\nJosé Müller;Köln;5 ¤\nRenée;Zürich;3\n"
    if codec == "cp1252":
        text = text.replace("¤", "€") + "“Smart” quotes;Besançon;4\n"
    data = text.encode(codec)
    with pytest.raises(EncodingNotConfirmed) as caught:
        upload(data)
    guess = caught.value.guess
    assert guess.name == expected
    assert guess.needs_confirmation
    assert "Windows-1252" in str(caught.value)
    assert "line 2" in str(caught.value)
    assert guess.preview.splitlines()[1].startswith("José Müller")
    assert detect_encoding(data) == guess
    parsed = upload(data, encoding=guess.name)
    assert values(parsed)["Name"][:2] == ["José Müller", "Renée"]
    assert parsed.encoding == guess.name
    assert detect_encoding(b"a,b\n1,2\n").name == "utf-8"
    assert not detect_encoding(b"\xef\xbb\xbfa\n1\n").needs_confirmation


@pytest.mark.parametrize(
    "text",
    [
        "Item,Price\nTea,€2\nCoffee,€3\n",  # proposed as Mac Roman: “Tea,Ä2”
        "a,b\n“hi”,€5\n",  # proposed as Windows-1251 (Cyrillic): “Ђ5”
    ],
)
def test_windows_1252_is_offered_whenever_it_reads_the_file(text: str) -> None:
    """charset-normalizer may rank the usual Windows code page below a Mac, DOS or Cyrillic
    one, or leave it out: it was then not among the encodings offered at all, and the file
    could not be converted as what it is."""
    data = text.encode("cp1252")
    guess = detect_encoding(data)
    offered = [guess.name, *guess.alternatives]
    assert "cp1252" in offered[:2], offered
    assert values(upload(data, encoding="cp1252")) == values(upload(text.encode()))


def test_a_file_mixing_utf_8_with_another_encoding_is_refused_not_offered_a_conversion() -> None:
    """Lines pasted together from a UTF-8 file and a Windows one: the first byte that is not
    UTF-8 led to a Windows-1252 proposal whose preview (the first lines) looked right, and
    confirming it stored the UTF-8 lines garbled (“JÃ¼rgen”)."""
    data = (
        b"Name,City\n"
        + b"Ann,Paris\n" * 10
        + "René,Lyon\n".encode("cp1252")
        + b"Bob,Rome\n" * 10
        + "Jürgen,Köln\n".encode()
    )
    error = refused(data)
    assert not isinstance(error, EncodingNotConfirmed)
    message = str(error)
    assert "mixes UTF-8 with another encoding" in message
    assert "byte 0xE9 at offset 113 (line 12)" in message
    assert "line 23 is UTF-8 (“ü”)" in message
    assert "Save it as “CSV UTF-8”" in message
    with pytest.raises(ImportRefused, match="mixes UTF-8 with another encoding"):
        upload(data, encoding="cp1252")  # chosen from the list: no conversion either
    # the same lines in one encoding throughout are proposed as before
    with pytest.raises(EncodingNotConfirmed):
        upload(data.replace("Jürgen,Köln".encode(), "Jürgen,Köln".encode("cp1252")))


# --- shape problems -------------------------------------------------------------------------


def test_ragged_rows_name_their_lines_and_field_counts() -> None:
    error = refused(b"a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n")
    assert error.problems == [
        "line 3: 2 fields, but the header has 3.",
        "line 4: 4 fields, but the header has 3.",
    ]
    assert "2 lines of the file cannot be read" in str(error)
    assert "Fix them (in a text editor" in str(error)
    one = refused(b"a,b,c\n1,2,3\n4,5\n")
    assert "1 line of the file cannot be read as rows of the table. Fix it (in" in str(one)


@pytest.mark.parametrize(("more", "said"), [(1, "1 more problem"), (1200, "1,200 more problems")])
def test_ragged_lines_past_those_kept_are_counted(more: int, said: str) -> None:
    error = refused(b"a,b\n" + b"1\n" * (MAX_PROBLEMS_KEPT + more))
    assert len(error.problems) == MAX_PROBLEMS_KEPT + 1
    assert error.problems[-1] == f"… {said} not listed."
    assert f"{MAX_PROBLEMS_KEPT + more:,} lines of the file cannot be read" in str(error)


@pytest.mark.parametrize(
    ("first", "delimiter"),
    [(b"sep=;", ";"), (b"\xef\xbb\xbfSEP=;", ";"), (b"sep=\t", "\t"), (b"sep=,", ",")],
)
def test_excels_separator_line_names_the_delimiter_and_is_not_the_header(
    first: bytes, delimiter: str
) -> None:
    """Excel writes, and reads, a first line ``sep=;`` saying the delimiter. It was read as the
    header (``sep=`` and a column with no name) and the file refused as if its header lacked a
    name."""
    d = delimiter.encode()
    rows = [b"Name" + d + b"Qty", b"Ann" + d + b"1", b"Bob" + d + b"2"]
    parsed = upload(b"\r\n".join([first, *rows]) + b"\r\n")
    assert (parsed.header, parsed.dialect.delimiter) == (["Name", "Qty"], delimiter)
    assert values(parsed) == {"Name": ["Ann", "Bob"], "Qty": ["1", "2"]}
    assert parsed.line_numbers.tolist() == [3, 4]  # the file's lines, the sep line counted
    ragged = refused(b"\n".join([first, *rows, b"Cy"]) + b"\n")
    assert ragged.problems == ["line 5: 1 field, but the header has 2."]
    # the delimiter chosen by the person wins; the line is not data either way
    assert upload(b"sep=;\nName,Qty\nAnn,1\n", delimiter=",").header == ["Name", "Qty"]


def test_a_separator_line_naming_a_delimiter_the_portal_does_not_read_is_refused() -> None:
    error = refused(b"sep=|\nName|Qty\nAnn|1\n")
    assert "first line “sep=|”" in str(error)
    assert "comma, semicolon or tab" in str(error)


def test_an_unterminated_quote_names_the_line_where_it_starts() -> None:
    error = refused(b'a,b\n1,2\n3,"never closed\n4,5\n6,7\n')
    assert len(error.problems) == 1
    assert error.problems[0].startswith("line 3: a quoted value starts here but its closing quote")


def test_text_after_a_closing_quote_is_a_problem_not_silently_joined() -> None:
    error = refused(b'a,b\n1,"x"y\n2,3\n')
    assert error.problems[0].startswith("line 2: text follows a closing quote")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"Name,qty,name \n1,2,3\n", "columns 1 and 3 are both named “Name” and “name”"),
        (b"a,b,a\n1,2,3\n", "columns 1 and 3 are both named “a” (names"),
        # the same name, é precomposed and as e + a combining accent
        (
            "Qt\u00e9,Qte\u0301\n1,2\n".encode(),
            "columns 1 and 2 are both named “Qt\u00e9” and “Qte\u0301”",
        ),
        (b"a,,b\n1,2,3\n", "column 2 has no name"),
        (b"a, ,b\n1,2,3\n", "column 2 has no name"),
        (b"a,b\n", "no data rows"),
        (b"a,b\n\n\n", "no data rows"),
        (b"\n\r\n", "no header line"),
        (b'"a,b\n1,2\n', "header line cannot be read"),
    ],
)
def test_header_problems(data: bytes, fragment: str) -> None:
    assert fragment in str(refused(data))


def test_columns_without_a_name_or_a_value_are_left_out() -> None:
    """Spreadsheets export empty columns past the last one ("a,b,,"): such a file was refused
    for columns without a name, which held nothing."""
    parsed = upload(b"a,b,,\r\n1,,,\r\n2,3,,\r\n")
    assert (parsed.header, parsed.left_out) == (["a", "b"], (3, 4))
    assert parsed.frame.to_dict("list") == {"a": ["1", "2"], "b": [None, "3"]}
    assert upload(b"a, ,c\n1,,3\n").left_out == (2,)  # wherever it stands
    assert upload(b"a,b\n1,2\n").left_out == ()
    error = refused(b"a,,\n1,,\n2,,x\n")
    assert error.problems == [
        "column 3 has no name but holds values (line 3: “x”): give it a name, or delete the column."
    ]
    assert "names no column" in str(refused(b",,\n,,\n"))


def test_rows_without_any_value_are_left_out_with_their_lines() -> None:
    parsed = upload(b'Name,Qty\r\nAnn,1\r\n,\r\nBob,2\r\n"",""\r\n')
    assert parsed.frame.to_dict("list") == {"Name": ["Ann", "Bob"], "Qty": ["1", "2"]}
    assert list(parsed.line_numbers) == [2, 4]  # the report's lines stay the file's
    assert (parsed.row_count, parsed.empty_rows, parsed.first_empty_lines) == (2, 2, (3, 5))
    many = upload(b"a,b\n1,2\n" + b",\n" * 9)
    assert (many.empty_rows, many.first_empty_lines) == (9, (3, 4, 5, 6, 7))
    assert "no value in any row" in str(refused(b"a,b\n,\n,\n"))
    assert upload(b"a,b\n,2\n").empty_rows == 0  # one value is a row


def test_a_title_above_the_table_is_named_as_the_likely_problem() -> None:
    """A title line read as the header made every good line "break" it, and nothing named
    line 1."""
    error = refused(b"Sales report Q1 2024\nName,Qty\nAnn,1\n")
    assert error.problems[0] == (
        "line 1, read as the header, has 1 field and every line after it has 2: if it is a"
        " title above the table, delete it (and any other line above the column names), so"
        " that the first line names the columns."
    )
    assert error.problems[1:] == [
        "line 2: 2 fields, but the header has 1.",
        "line 3: 2 fields, but the header has 1.",
    ]
    # rows of another width beside rows that fit: the rows are at fault, not the header
    assert "read as the header" not in str(refused(b"a,b\n1,2,3\n1,2\n").problems)
    assert "read as the header" not in str(refused(b"a,b,c\n1,2\n3,4\n").problems)


def test_many_problems_are_summarised() -> None:
    error = refused(b"a,b\n" + b"1\n" * 30)
    assert len(error.problems) == 30
    assert "… and 20 more" in str(error)


def test_multi_line_values_and_blank_lines_keep_file_line_numbers() -> None:
    data = b'code,qty,note\nA,1,"two\nlines"\n\nB,x,plain\nC,3,"three\r\nline\r\nnote"\nD,y,z\n'
    parsed = upload(data)
    assert parsed.line_numbers.tolist() == [2, 5, 6, 9]
    assert values(parsed)["note"] == ["two\nlines", "plain", "three\r\nline\r\nnote", "z"]
    spec = DatasetSpec(
        (
            ColumnSpec("code", "code", "text"),
            ColumnSpec("qty", "qty", "integer"),
            ColumnSpec("note", "note", "text"),
        )
    )
    result = validate(spec, parsed.frame, line_numbers=parsed.line_numbers)
    assert [(e.row, e.value) for e in result.errors] == [(5, "x"), (9, "y")]


def test_empty_cells_are_missing_whether_quoted_or_not() -> None:
    parsed = upload(b'a,b,c\n1,,""\n" ",x,\n')
    assert values(parsed) == {"a": ["1", " "], "b": [None, "x"], "c": [None, None]}


# --- fast and careful parsers agree ---------------------------------------------------------

csvish = st.text(alphabet=st.sampled_from(list('ab1,;"\n\r\t é')), max_size=60)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csvish, st.sampled_from(csv_import.DELIMITERS))
def test_the_fast_parse_equals_the_csv_modules_whenever_it_is_used(
    text: str, delimiter: str
) -> None:
    dialect = Dialect(delimiter)
    try:
        header = csv_import._read_header(text, dialect)
    except ImportRefused:
        return
    fast = csv_import._fast_parse(text.encode(), len(header), dialect)
    try:
        slow = csv_import._slow_parse(text, len(header), dialect)
    except ImportRefused:
        assert fast is None  # the fast path never accepts what the csv module refuses
        return
    event("fast path" if fast is not None else "csv module only")
    if fast is not None:
        assert fast[0].to_pylist() == slow[0].to_pylist()
        assert fast[1].tolist() == slow[1].tolist()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.binary(max_size=300),
    st.sampled_from([None, "cp1252", "utf-8", "shift_jis"]),
    st.sampled_from([None, ",", ";", "\t"]),
)
def test_any_bytes_end_in_a_table_or_a_validation_error(
    data: bytes, encoding: str | None, delimiter: str | None
) -> None:
    try:
        parsed = upload(data, encoding=encoding, delimiter=delimiter)
    except ValidationError as exc:
        event(str(exc).split(":")[0][:40])
        return
    event("parsed")
    assert parsed.row_count == len(parsed.frame) == len(parsed.line_numbers) >= 1
    spec, _ = infer_spec(parsed.header, {h: parsed.frame[h] for h in parsed.header})
    result = validate(spec, parsed.frame, line_numbers=parsed.line_numbers)
    assert result.ok  # a spec inferred from the data accepts the data
    copy_stream(result.typed, spec, first_row_id=1)
    error_report_csv(result.errors)
    annotated_original_csv(parsed, result.errors)


cell_text = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=("Cc", "Cs")), st.sampled_from(list(',;\t\n\r"'))
    ),
    max_size=8,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(st.lists(cell_text, min_size=2, max_size=2), min_size=1, max_size=6),
    st.sampled_from(csv_import.DELIMITERS),
)
def test_any_csv_written_by_the_csv_module_reads_back(
    rows: list[list[str]], delimiter: str
) -> None:
    """Every cell exactly, but for the one rule of the portal's own downloads: a quote before
    quotes and a formula character is their neutralisation and is taken off (``'=`` reads
    ``=``); a row without any value is left out, as a blank line is."""
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter).writerows([["first", "second"], *rows])
    expected = [[unneutralise(v) or None for v in row] for row in rows]
    expected = [row for row in expected if any(row)]
    if not expected:
        assert "no value in any row" in str(refused(out.getvalue().encode(), delimiter=delimiter))
        return
    parsed = upload(out.getvalue().encode(), delimiter=delimiter)
    got = [[None if pd.isna(v) else v for v in row] for row in parsed.frame.itertuples(index=False)]
    assert got == expected


def test_a_quote_before_a_formula_character_is_read_as_the_downloads_neutralisation() -> None:
    parsed = upload(b"first,second\n'=,'plain\n''-5,'\n")
    got = [list(row) for row in parsed.frame.itertuples(index=False)]
    assert got == [["=", "'plain"], ["'-5", "'"]]


# --- reports --------------------------------------------------------------------------------


def test_formula_neutralisation() -> None:
    for risky in ["=1+1", "-5+1", "--", "+x", "@SUM(A1)", "\tx", "\rx", "'=x", "''-5", "'-5", "'-"]:
        assert neutralise(risky) == "'" + risky
    # A plain number is read as that number, never a formula: a quote would make it text (a
    # downloaded column of negative amounts would not add up in a spreadsheet).
    for safe in [
        "",
        "a=b",
        "1",
        " =x",
        "'already",
        "'",
        "''",
        "-5",
        "+1",
        "-",  # a dash for "none", and a plus alone: no formula
        "+",
        "-125.50",
        "-.5",
        "-1e3",
    ]:
        assert neutralise(safe) == safe


def test_a_download_is_named_after_its_dataset_in_any_script() -> None:
    """Every character past ASCII became a dash: "Ventes été 2024" downloaded as
    Ventes-t-2024.csv, "Café" as Caf.csv, and a name in Cyrillic or Greek as dataset.csv, one
    name for all of them. Letters, marks and digits of any script are kept (the server names
    the file with RFC 5987's filename*); spaces, separators, quotes, symbols and invisible
    characters still become one dash."""
    assert file_stem("Ventes été 2024") == "Ventes-été-2024"
    assert file_stem("Café") == "Café"
    assert file_stem("Продажи по регионам") == "Продажи-по-регионам"
    assert file_stem("हिन्दी") == "हिन्दी"  # vowel signs are marks, kept
    assert file_stem("People") == "People"
    assert file_stem('a/b\\c: "d" <e>') == "a-b-c-d-e"
    assert file_stem("x\u202egpj.exe") == "x-gpj.exe"  # a right-to-left override is no letter
    assert file_stem("..hidden") == "hidden"
    assert file_stem("€ 💶 ™") == "dataset"
    assert len(file_stem("é" * 200)) == 80


@given(st.text(alphabet="'=-+@\t\rab1 ", max_size=8))
def test_an_upload_takes_off_exactly_what_neutralising_put_on(text: str) -> None:
    assert unneutralise(neutralise(text)) == text


def test_an_upload_reads_a_downloaded_file_back_to_its_values() -> None:
    """Header and cells, on the fast (pyarrow) and the slow (csv module) parser alike."""
    values = [["=Total", "Note"], ["-5", "'=x"], ["@home", "'plain"], ["+1", ""]]
    written = csv_bytes(values[0], values[1:])
    for data in (written, written + b'"multi\nline",x\n'):  # a quoted line break: slow path
        parsed = upload(data)
        assert parsed.header == values[0]
        got = [
            ["" if pd.isna(v) else v for v in row] for row in parsed.frame.itertuples(index=False)
        ]
        assert got[:3] == values[1:]


@given(st.lists(st.one_of(st.none(), st.text(max_size=5))))
def test_the_vectorised_neutraliser_equals_neutralise(texts: list[str | None]) -> None:
    texts = [t.replace("\x00", "") if t else t for t in texts]
    got = csv_import._safe_array(pa.array(texts, pa.large_string())).to_pylist()
    assert got == [None if t is None else neutralise(t) for t in texts]


@given(st.lists(st.one_of(st.none(), st.text(alphabet="'=-+@\t\rab ", max_size=5))))
def test_the_vectorised_unneutraliser_equals_unneutralise(texts: list[str | None]) -> None:
    got = csv_import._unsafe_array(pa.array(texts, pa.large_string())).to_pylist()
    assert got == [None if t is None else unneutralise(t) for t in texts]


def read_report(data: bytes, delimiter: str = ",") -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=delimiter))


def test_error_report_is_formula_safe() -> None:
    errors = [
        CellError(2, "=Label", '=HYPERLINK("http://x")', "type", 'bad, "quoted"\nmessage'),
        CellError(5, "qty", "-5", "min", "“-5” is below the minimum 0: enter 0 or more."),
    ]
    rows = read_report(error_report_csv(errors))
    assert rows == [
        ["line", "column", "value", "rule", "problem"],
        ["2", "'=Label", '\'=HYPERLINK("http://x")', "type", 'bad, "quoted"\nmessage'],
        ["5", "qty", "-5", "min", "“-5” is below the minimum 0: enter 0 or more."],  # a number
    ]


def test_annotated_original_keeps_rows_and_adds_errors() -> None:
    parsed = upload(b'code;qty;errors\n=cmd|calc;x;"multi\nline"\n+1;2;@x\n-3;-4;ok\n')
    spec = DatasetSpec(
        (
            ColumnSpec("code", "code", "text"),
            ColumnSpec("qty", "qty", "integer", min=0),
            ColumnSpec("errors", "errors", "text"),
        )
    )
    result = validate(spec, parsed.frame, line_numbers=parsed.line_numbers)
    rows = read_report(annotated_original_csv(parsed, result.errors), delimiter=";")
    assert rows[0] == ["code", "qty", "errors", "errors_2"]
    assert rows[1][:3] == ["'=cmd|calc", "x", "multi\nline"]
    assert rows[1][3].startswith("qty: “x” is not a whole number")
    assert rows[2] == ["+1", "2", "'@x", ""]  # a plain number is read as one, never a formula
    assert rows[3][:3] == ["-3", "-4", "ok"]
    assert rows[3][3].startswith("qty: “-4” is below")
    assert len(rows) == 4


def test_reports_of_a_file_with_more_errors_than_listed_say_so() -> None:
    """The check lists the first errors only (``max_errors``): the error report ended as if it
    had them all, and the annotated file left the rows past the last one listed blank, as if
    they had no error."""
    parsed = upload(b"qty\n" + b"x\n" * 5)
    spec = DatasetSpec((ColumnSpec("qty", "qty", "integer"),))
    result = validate(spec, parsed.frame, line_numbers=parsed.line_numbers, max_errors=2)
    assert (len(result.errors), result.error_count) == (2, 5)

    report = read_report(error_report_csv(result.errors, error_count=result.error_count))
    assert [r[0] for r in report[1:3]] == ["2", "3"]
    assert report[3][0] == ""
    assert report[3][4].startswith("… and 3 more errors, not listed here")
    assert len(report) == 4

    rows = read_report(
        annotated_original_csv(parsed, result.errors, error_count=result.error_count)
    )
    assert [r[1].split(":")[0] for r in rows[1:3]] == ["qty", "qty"]
    for row in rows[3:]:
        assert row[1].startswith("errors, if any, not listed: the report lists the first 2 of 5")
    assert len(rows) == 6

    # a complete list: nothing added
    assert read_report(error_report_csv(result.errors, error_count=2))[1:] == report[1:3]
    assert read_report(annotated_original_csv(parsed, result.errors))[3] == ["x", ""]


# --- the COPY stream ------------------------------------------------------------------------

COPY_SPEC = DatasetSpec(
    (
        ColumnSpec("t", "t", "text"),
        ColumnSpec("d", "d", "decimal"),
        ColumnSpec("i", "i", "integer"),
        ColumnSpec("b", "b", "boolean"),
        ColumnSpec("day", "day", "date"),
        ColumnSpec("ts", "ts", "datetime"),
    )
)


def read_copy(data: bytes) -> list[list[str | None]]:
    """A COPY CSV read the way PostgreSQL does: unquoted empty = NULL, quoted "" = ''."""
    table = pcsv.read_csv(
        io.BytesIO(data),
        read_options=pcsv.ReadOptions(autogenerate_column_names=True),
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(
            column_types={f"f{i}": pa.string() for i in range(7)},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    return [list(r.values()) for r in table.to_pylist()]


def test_copy_stream_from_validated_rows() -> None:
    frame = pd.DataFrame(
        {
            "t": ['a,"b"\r\nc', "=1", None, "\\.", "x"],
            "d": ["-0.00000000000000000000000000000000000001", str(2**63), "", "1.50", "0.1"],
            "i": ["1", "", str(-(2**63)), "7", "0"],
            "b": ["yes", "0", "", "T", "n"],
            "day": ["2024-02-29", "", "0001-01-01", "9999-12-31", "2024-01-01"],
            "ts": [
                "2024-01-02T03:04:05.123456+01:00",
                "",
                "0001-01-01T00:00Z",
                "2024-06-01",
                "9999-12-31T23:59:59.999999Z",
            ],
        }
    )
    result = validate(COPY_SPEC, frame)
    assert result.ok
    data = copy_stream(result.typed, COPY_SPEC, first_row_id=100)
    rows = read_copy(data)
    assert [r[0] for r in rows] == ["100", "101", "102", "103", "104"]
    assert rows[0][1] == 'a,"b"\r\nc'
    assert rows[1][1] == "=1"
    assert rows[2][1] is None
    assert rows[3][1] == "\\."
    assert [r[2] for r in rows] == ["-1E-38", str(2**63), None, "1.5", "0.1"]  # as short as exact
    assert [Decimal(r[2]) if r[2] else None for r in rows] == [
        Decimal("-1E-38"),
        Decimal(2**63),
        None,
        Decimal("1.5"),
        Decimal("0.1"),
    ]
    assert [r[3] for r in rows] == ["1", None, str(-(2**63)), "7", "0"]
    assert [r[4] for r in rows] == ["true", "false", None, "true", "false"]
    assert [r[5] for r in rows] == ["2024-02-29", None, "0001-01-01", "9999-12-31", "2024-01-01"]
    assert rows[0][6] == "2024-01-02 02:04:05.123456Z"
    assert rows[1][6] is None
    assert rows[4][6] == "9999-12-31 23:59:59.999999Z"
    assert b",," in data
    assert not data.startswith(b"_row_id")
    for line in data.decode().split("\n"):
        for field in next(csv.reader([line])) if line and "\r" not in line else []:
            assert field == "" or line.count('"') >= 2  # every non-null value was quoted


def test_copy_stream_keeps_empty_strings_apart_from_null_and_takes_plain_python_values() -> None:
    frame = pd.DataFrame(
        {
            "t": ["", None, 'comma, "quote"\nnewline'],
            "d": [Decimal("1.5"), None, Decimal("-0.25")],
            "i": [1, None, 3],
            "b": [True, None, False],
            "day": [date(2024, 1, 1), None, date(1999, 12, 31)],
            "ts": [datetime(2024, 1, 1, tzinfo=UTC), None, pd.Timestamp("2024-05-06 07:08:09")],
        }
    )
    data = copy_stream(frame, COPY_SPEC, first_row_id=1)
    assert data.startswith(b'"1","",')
    assert data.split(b"\n")[1] == b'"2",,,,,,'
    rows = read_copy(data)
    assert rows[0][1] == ""
    assert rows[1][1] is None
    assert rows[2][1:] == [
        'comma, "quote"\nnewline',
        "-0.25",
        "3",
        "false",
        "1999-12-31",
        "2024-05-06 07:08:09.000000Z",
    ]
    with pytest.raises(ValidationError, match="exact decimals"):
        copy_stream(frame.assign(d=[1.5, None, 2.0]), COPY_SPEC, first_row_id=1)
    with pytest.raises(ValidationError, match="lack the column 'ts'"):
        copy_stream(frame.drop(columns="ts"), COPY_SPEC, first_row_id=1)


def test_upload_to_copy_stream_end_to_end() -> None:
    data = "Code;Menge;Preis;Tag\n007;1;1,50;24.12.2024\n042;2;2,25;31.01.2025\n".encode("cp1252")
    parsed = upload(data)  # plain ASCII: UTF-8
    spec, notes = infer_spec(
        parsed.header, {h: parsed.frame[h] for h in parsed.header}, decimal_comma=True
    )
    assert [c.type for c in spec.columns] == ["text", "integer", "decimal", "date"]
    result = validate(spec, parsed.frame, decimal_comma=True, line_numbers=parsed.line_numbers)
    assert result.ok, result.errors
    rows = read_copy(copy_stream(result.typed, spec, first_row_id=1))
    assert rows == [
        ["1", "007", "1", "1.50", "2024-12-24"],
        ["2", "042", "2", "2.25", "2025-01-31"],
    ]
    assert np.array_equal(parsed.line_numbers, [2, 3])
    assert any("leading zeros" in n for n in notes)
