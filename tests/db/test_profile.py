"""A column's profile on a real dataset: empty cells, distinct values, the most frequent values
and the spread of numbers, dates and date-times; sampled past a size, refused past a time."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from portal import profile, uploads
from portal.actor import Actor
from portal.db import session_scope
from portal.errors import ValidationError
from tests.conftest import DatabaseHandle
from tests.db.test_browse import upload
from tests.factories import make_user, table_name

LONG = "x" * 200


@pytest.fixture
def editor(fresh_db: DatabaseHandle) -> Actor:
    with Session(fresh_db.app) as s, s.begin():
        username, _ = make_user(s, role="editor", display_name="Eddie Editor")
    return Actor(username, "Eddie Editor", "editor")


def profile_of(dataset_id: int, column: str) -> profile.Profile:
    with session_scope() as s:
        return profile.column_profile(session=s, dataset_id=dataset_id, column=column)


def test_counts_frequent_values_and_spread_are_exact_on_a_small_table(editor: Actor) -> None:
    lines = ["Name,Qty,Day,At"]
    for i in range(1, 11):
        name = "ann" if i <= 5 else "bob" if i <= 8 else LONG
        lines.append(f"{name},{i},2024-01-{i:02d},2024-01-01T{i:02d}:00:00Z")
    lines.append("cy,,,")
    dataset = upload(editor, ("\n".join(lines) + "\n").encode(), uploads.NewDataset("P")).dataset_id

    name = profile_of(dataset, "name")
    assert (name.rows, name.sampled, name.empty, name.distinct) == (11, False, 0, 4)
    assert name.top.to_dict("list") == {
        "value": ["ann", "bob", LONG[:79] + "…", "cy"],
        "rows": [5, 3, 2, 1],
    }
    assert name.spread is None  # text has no spread

    qty = profile_of(dataset, "qty")
    assert (qty.empty, qty.distinct) == (1, 10)
    assert qty.spread is not None
    assert qty.spread["from"].tolist() == [str(i) for i in range(1, 11)]  # one per whole number
    assert qty.spread["to"].tolist() == qty.spread["from"].tolist()
    assert qty.spread["rows"].tolist() == [1] * 10

    day = profile_of(dataset, "day")
    assert day.spread is not None
    assert (day.spread["from"].iloc[0], day.spread["to"].iloc[-1]) == ("2024-01-01", "2024-01-10")
    assert day.top["value"].tolist()[:2] == ["2024-01-01", "2024-01-02"]  # ties by value

    at = profile_of(dataset, "at")
    assert at.spread is not None
    assert len(at.spread) == profile.BUCKETS
    assert at.spread["from"].iloc[0] == "2024-01-01 01:00"
    assert at.spread["to"].iloc[-1] == "2024-01-01 10:00"
    assert at.spread["rows"].sum() == 10
    assert at.spread["rows"].iloc[-1] == 1  # 10:00, the upper bound itself


def test_whole_numbers_spread_in_ranges_of_whole_numbers(editor: Actor) -> None:
    data = "Name,Qty\n" + "".join(f"n{i},{i}\n" for i in range(100))
    dataset = upload(editor, data.encode(), uploads.NewDataset("W")).dataset_id
    qty = profile_of(dataset, "qty")
    assert qty.spread is not None
    assert qty.spread.to_dict("list") == {
        "from": [str(i) for i in range(0, 100, 5)],
        "to": [str(i + 4) for i in range(0, 100, 5)],
        "rows": [5] * 20,
    }


def test_one_value_everywhere_is_one_range(editor: Actor) -> None:
    data = b"Name,Qty\na,7\nb,7\nc,7\n"
    dataset = upload(editor, data, uploads.NewDataset("Same")).dataset_id
    qty = profile_of(dataset, "qty")
    assert qty.spread is not None
    assert qty.spread.to_dict("list") == {"from": ["7"], "to": ["7"], "rows": [3]}


def test_a_large_table_is_profiled_from_a_repeatable_sample(
    editor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = 6_000
    data = "Name,Qty\n" + "".join(f"n{i},{i % 50}\n" for i in range(rows))
    dataset = upload(editor, data.encode(), uploads.NewDataset("Big")).dataset_id
    monkeypatch.setattr(profile, "EXACT_ROWS", 1_000)
    monkeypatch.setattr(profile, "SAMPLE_ROWS", 2_000)
    first = profile_of(dataset, "qty")
    assert first.sampled
    assert 0 < first.rows < rows  # whole pages, about a third of them
    assert first.spread is not None
    assert first.spread["rows"].sum() == first.rows - first.empty
    again = profile_of(dataset, "qty")
    assert (again.rows, again.top.to_dict("list")) == (first.rows, first.top.to_dict("list"))


def test_a_decimal_too_large_for_a_spread_is_said_not_an_error(
    editor: Actor, fresh_db: DatabaseHandle
) -> None:
    dataset = upload(editor, b"Name,Rate\na,1.5\nb,2.5\n", uploads.NewDataset("R")).dataset_id
    table = table_name(fresh_db.app, dataset)
    with fresh_db.superuser.begin() as conn:  # from psql: a value past float8's range
        conn.execute(text(f"INSERT INTO data.{table} (name, rate) VALUES ('c', 1e400)"))
    rate = profile_of(dataset, "rate")
    assert rate.spread is None
    assert "too large" in rate.note
    assert rate.distinct == 3  # the rest of the profile is there


def test_an_unknown_column_or_a_slow_profile_is_refused_clearly(
    editor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = upload(editor, b"Name,Qty\na,1\n", uploads.NewDataset("S")).dataset_id
    with pytest.raises(ValidationError, match="no column '_row_id'"):
        profile_of(dataset, "_row_id")
    monkeypatch.setattr(profile, "TIME_LIMIT", "1ms")
    monkeypatch.setattr(profile, "_profile", _slow(profile._profile))
    with pytest.raises(ValidationError, match="took longer than 1ms"):
        profile_of(dataset, "qty")


def _slow(real):  # type: ignore[no-untyped-def]
    def slow(session, source, c, sampled):  # type: ignore[no-untyped-def]
        session.execute(text("SELECT pg_sleep(0.2)"))
        return real(session, source, c, sampled)

    return slow


def test_the_last_range_ends_at_the_largest_value_not_past_it(editor: Actor) -> None:
    data = "Name,Qty,Day\n" + "".join(f"n{i},{i},2024-01-{i:02d}\n" for i in range(1, 26))
    dataset = upload(editor, data.encode(), uploads.NewDataset("Ends")).dataset_id
    qty = profile_of(dataset, "qty")
    assert qty.spread is not None
    assert (qty.spread["from"].iloc[0], qty.spread["to"].iloc[-1]) == ("1", "25")
    day = profile_of(dataset, "day")
    assert day.spread is not None
    assert day.spread["to"].iloc[-1] == "2024-01-25"


def test_ranges_narrower_than_the_labels_default_precision_have_distinct_labels(
    editor: Actor,
) -> None:
    lines = ["Name,Rate,At"]
    for i in range(1, 10):  # a million and a few tenths; nine seconds of one minute
        lines.append(f"n{i},1000000.{i},2024-01-01T00:00:{i:02d}.{i}Z")
    dataset = upload(editor, ("\n".join(lines) + "\n").encode(), uploads.NewDataset("F")).dataset_id
    for column in ("rate", "at"):
        spread = profile_of(dataset, column).spread
        assert spread is not None
        assert spread["from"].is_unique, spread["from"].tolist()
        assert spread["from"].iloc[0] < spread["to"].iloc[-1]
    rate = profile_of(dataset, "rate").spread
    assert rate is not None
    assert (rate["from"].iloc[0], rate["to"].iloc[-1]) == ("1,000,000.1", "1,000,000.9")
    assert rate["rows"].sum() == 9  # every value in a range, the smallest too


def test_the_last_moment_a_datetime_can_hold_has_a_spread(editor: Actor) -> None:
    # 9999-12-31 23:59:59.999999, a common "valid until further notice", is 253402300800.0 s
    # since 1970 as a float8: one microsecond past what Python's datetime can hold.
    data = b"Name,Until\na,2024-01-01T00:00:00Z\nb,9999-12-31T23:59:59.999999Z\n"
    dataset = upload(editor, data, uploads.NewDataset("Until")).dataset_id
    until = profile_of(dataset, "until")
    assert until.spread is not None
    assert until.spread["from"].iloc[0] == "2024-01-01 00:00"
    assert until.spread["to"].iloc[-1].startswith("9999-12-31 23:59")
    assert until.spread["rows"].tolist()[::19] == [1, 1]


def test_integers_past_float8s_precision_are_labelled_exactly(editor: Actor) -> None:
    # 18-digit ids: as float8 both are 1,234,567,890,123,456,768, a number neither of them is
    data = b"Name,Id\na,1234567890123456789\nb,1234567890123456799\nc,9223372036854775807\n"
    dataset = upload(editor, data, uploads.NewDataset("Ids")).dataset_id
    ids = profile_of(dataset, "id")
    assert ids.spread is not None
    assert ids.spread["from"].iloc[0] == "1,234,567,890,123,456,789"
    assert ids.spread["to"].iloc[-1] == "9,223,372,036,854,775,807"
    assert ids.spread["rows"].tolist() == [2] + [0] * 18 + [1]


def stale_count_write(conn: Connection, db: DatabaseHandle, dataset: int) -> str:
    """Switch the transaction's triggers off (as a superuser may, and as a count kept before
    migration 0016 missed writes made outside the portal), so its writes leave the dataset's
    row_count as it is; the dataset's table name."""
    conn.execute(text("SET LOCAL session_replication_role = replica"))
    return table_name(db.app, dataset)


def test_rows_deleted_outside_the_portal_do_not_make_a_small_table_sampled(
    editor: Actor, fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = "Name,Qty\n" + "".join(f"n{i},{i}\n" for i in range(3_000))
    dataset = upload(editor, data.encode(), uploads.NewDataset("Shrunk")).dataset_id
    with fresh_db.superuser.begin() as conn:  # the dataset's row_count stays 3,000
        table = stale_count_write(conn, fresh_db, dataset)
        conn.execute(text(f"DELETE FROM data.{table} WHERE qty >= 500"))
    monkeypatch.setattr(profile, "EXACT_ROWS", 1_000)
    monkeypatch.setattr(profile, "SAMPLE_ROWS", 500)
    qty = profile_of(dataset, "qty")
    assert (qty.sampled, qty.rows, qty.distinct) == (False, 500, 500)


def test_long_values_alike_in_their_first_characters_are_told_apart(editor: Actor) -> None:
    # URLs, paths: the first 79 characters alike, the rest not
    url = "https://example.org/" + "a" * 70 + "/report-{}.csv"
    data = "Name,Link\n" + "".join(f"n{i},{url.format(i % 3)}\n" for i in range(6))
    dataset = upload(editor, data.encode(), uploads.NewDataset("Links")).dataset_id
    link = profile_of(dataset, "link")
    assert link.distinct == 3
    labels = link.top["value"].tolist()
    assert len(set(labels)) == 3, labels  # three bars, not one of 6 rows
    assert [label.endswith(f"report-{i}.csv") for i, label in enumerate(labels)] == [True] * 3
    assert all(len(label) <= 80 for label in labels)


def test_date_times_before_the_year_1000_are_labelled_with_four_digit_years(
    editor: Actor,
) -> None:
    data = b"Name,At,Day\na,0001-01-01T00:00:00Z,0001-01-01\nb,0999-06-30T12:00:00Z,0999-06-30\n"
    dataset = upload(editor, data, uploads.NewDataset("Old")).dataset_id
    at = profile_of(dataset, "at").spread
    day = profile_of(dataset, "day").spread
    assert at is not None
    assert day is not None
    assert (at["from"].iloc[0], at["to"].iloc[-1]) == ("0001-01-01 00:00", "0999-06-30 12:00")
    assert (day["from"].iloc[0], day["to"].iloc[-1]) == ("0001-01-01", "0999-06-30")  # as dates


def test_rows_added_outside_the_portal_are_sampled_at_the_tables_size(
    editor: Actor, fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = upload(editor, b"Name,Qty\na,1\n", uploads.NewDataset("Grown")).dataset_id
    with fresh_db.superuser.begin() as conn:  # the dataset's row_count stays 1
        table = stale_count_write(conn, fresh_db, dataset)
        conn.execute(
            text(
                f"INSERT INTO data.{table} (name, qty) SELECT 'n', i FROM generate_series(1, :n) i"
            ),
            {"n": 20_000},
        )
        conn.execute(text(f"ANALYZE data.{table}"))  # as autovacuum does after so many
    monkeypatch.setattr(profile, "EXACT_ROWS", 1_000)
    monkeypatch.setattr(profile, "SAMPLE_ROWS", 2_000)
    qty = profile_of(dataset, "qty")
    assert qty.sampled
    assert qty.total == 20_001  # what the page says the sample is of, not the 1 of row_count
    assert 1_000 < qty.rows < 4_000  # about SAMPLE_ROWS, not half the table


def test_the_smallest_and_largest_decimals_are_labelled_as_they_are(editor: Actor) -> None:
    data = b"Name,Price\na,1.05\nb,12345.67\nc,300.00\n"
    dataset = upload(editor, data, uploads.NewDataset("Prices")).dataset_id
    price = profile_of(dataset, "price").spread
    assert price is not None
    # the page says "from the smallest to the largest (<the last range's end>)": not 12,345.7
    assert (price["from"].iloc[0], price["to"].iloc[-1]) == ("1.05", "12,345.67")


def test_decimals_spread_in_ranges_that_start_at_round_numbers(editor: Actor) -> None:
    """A 2-decimal column from 1.34 to 94.25 had ranges starting at 5.9855, 10.631, …"""
    prices = ["1.34", "12.50", "33.33", "47.10", "50.00", "94.25"]
    data = ("Name,Price\n" + "".join(f"n{i},{p}\n" for i, p in enumerate(prices))).encode()
    dataset = upload(editor, data, uploads.NewDataset("Prices")).dataset_id
    spread = profile_of(dataset, "price").spread
    assert spread is not None
    assert spread["from"].tolist() == ["1.34", *(str(n) for n in range(5, 95, 5))]
    assert spread["to"].iloc[-1] == "94.25"
    assert spread["rows"].sum() == len(prices)
    assert spread.loc[spread["from"] == "50", "rows"].item() == 1  # 50.00: its range's start


def test_one_large_decimal_everywhere_is_said_not_an_error(editor: Actor) -> None:
    """The profile of a decimal column holding 12345678901234567890.123 in every row crashed:
    its range's bounds came out equal in float8, which width_bucket refuses."""
    data = b"Name,Amount\na,12345678901234567890.123\nb,12345678901234567890.123\n"
    dataset = upload(editor, data, uploads.NewDataset("Big one")).dataset_id
    amount = profile_of(dataset, "amount")
    assert amount.spread is None
    assert "too large" in amount.note
