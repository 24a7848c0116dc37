"""Formula neutralisation for every CSV the portal hands out (DESIGN §7).

A spreadsheet opening a CSV runs a cell beginning with ``=``, ``+``, ``-`` or ``@`` as a formula
(and a leading tab or carriage return can hide such a prefix), so a value a user typed could
execute in a colleague's spreadsheet ("CSV injection"). Every export passes each cell through
``neutralise``, which prefixes such a cell with a single quote: spreadsheets then show it as text.

A plain number (``-125.50``, ``+1``, ``-1e3``) is left as it is: spreadsheets read it as that
number, never as a formula, and a quote would make it text (a column of negative amounts would
no longer add up). The prefix changes the exported text (``-5+1`` becomes ``'-5+1``), and
uploads take it off again
(``unneutralise``, applied to every cell and header of an upload), so a downloaded file uploads
back to the values it was made from: the route the revert of a large changeset advises. To make
that exact, a value that already begins with quotes before such a character gets one more
(``'=x`` is written ``''=x``); a quote before anything else is data and left alone both ways.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from portal.errors import ValidationError

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


PLAIN_VALUE = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]"
"""A number as spreadsheets read one, or a sign alone (a dash for "none"): no formula can hide
in it, so it is left as it is."""
_PLAIN_VALUE = re.compile(PLAIN_VALUE)


def neutralise(value: str) -> str:
    """``value`` with a ``'`` in front if a spreadsheet could read it as a formula, or if it is
    quotes before such a character (so ``unneutralise`` gives it back exactly); a plain number,
    or a sign alone, as it is."""
    if value.lstrip("'").startswith(FORMULA_TRIGGERS) and not _PLAIN_VALUE.fullmatch(value):
        return "'" + value
    return value


def unneutralise(value: str) -> str:
    """What ``neutralise`` was given: one ``'`` fewer in front of quotes before a formula
    character; any other value as it is."""
    if value.startswith("'") and value.lstrip("'").startswith(FORMULA_TRIGGERS):
        return value[1:]
    return value


def neutralise_row(values: Iterable[str]) -> list[str]:
    """Every cell of a row through ``neutralise``."""
    return [neutralise(v) for v in values]


def value_text(value: Any) -> str:
    """A typed value as every download writes it and an upload reads it back: booleans as
    ``true``/``false``, decimals exactly, date-times in UTC with a space before the time."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def file_stem(name: str) -> str:
    """A download's file name from a dataset's name: its letters, marks and digits, of any
    script (Streamlit names the file with RFC 5987's ``filename*``), and ``. _ -``; each run of
    anything else (spaces, separators, quotes, symbols, invisible characters) one ``-``; at
    most 80 characters."""
    marked = "".join(
        ch if ch in "._-" or unicodedata.category(ch)[0] in "LMN" else "\0"
        for ch in unicodedata.normalize("NFC", name)
    )
    stem = re.sub("\0+", "-", marked).strip("-.")
    return stem[:80] or "dataset"


def check_download_size(
    size: int,
    rows: int,
    max_mb: int,
    *,
    advice: str = "filter the rows and download them in parts",
) -> None:
    """Refuse a download growing past ``max_mb`` (the upload limit, ``PORTAL_MAX_UPLOAD_MB``):
    a download is built in the server's memory, and one larger than an upload may be could not
    be uploaded back. ``size`` is what was written after ``rows`` rows; ``advice`` is what to do
    instead (a download whose rows cannot be filtered says what else).

    Raises:
        ValidationError: too large; says how many rows fitted and what to do.
    """
    if size > max_mb * 1024 * 1024:
        raise ValidationError(
            f"The download would be larger than {max_mb:,} MB (the largest file the portal takes "
            f"as an upload) after {rows:,} rows: {advice}. Nothing was recorded."
        )


def csv_bytes(header: Sequence[str], rows: Iterable[Iterable[str]]) -> bytes:
    """A small report as a CSV download: every cell through ``neutralise``, UTF-8 with a
    byte-order mark so spreadsheets read it as UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(neutralise_row(header))
    writer.writerows(neutralise_row(row) for row in rows)
    return out.getvalue().encode("utf-8-sig")
