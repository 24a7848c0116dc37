"""Formula neutralisation for every CSV the portal hands out (DESIGN §7).

A spreadsheet opening a CSV runs a cell beginning with ``=``, ``+``, ``-`` or ``@`` as a formula
(and a leading tab or carriage return can hide such a prefix), so a value a user typed could
execute in a colleague's spreadsheet ("CSV injection"). Every export passes each cell through
``neutralise``, which prefixes such a cell with a single quote: spreadsheets then show it as text.
The prefix changes the exported text (``-5`` becomes ``'-5``); that is the accepted price of
safety, and the same rule applies to every export so readers learn it once.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    """``value`` with a ``'`` in front if a spreadsheet could read it as a formula."""
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def neutralise_row(values: Iterable[str]) -> list[str]:
    """Every cell of a row through ``neutralise``."""
    return [neutralise(v) for v in values]


def csv_bytes(header: Sequence[str], rows: Iterable[Iterable[str]]) -> bytes:
    """A small report as a CSV download: every cell through ``neutralise``, UTF-8 with a
    byte-order mark so spreadsheets read it as UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(neutralise_row(header))
    writer.writerows(neutralise_row(row) for row in rows)
    return out.getvalue().encode("utf-8-sig")
