"""A seeded audit trail for the Audit and History tests: two datasets uploaded by two editors
through the real upload flow, portal edits (updates, inserts, deletes) under changesets, and a
write made outside the portal. Plain functions; every value is written through real APIs."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.changesets import open_changeset
from portal import uploads
from portal.actor import Actor
from tests.conftest import DatabaseHandle
from tests.db.test_browse import people_csv, upload
from tests.factories import make_user, table_name, unique_name


@dataclass
class Trail:
    db: DatabaseHandle
    ann: Actor
    bob: Actor
    admin: Actor
    people: int
    stock: int
    seqs: dict[str, int] = field(default_factory=dict)  # label -> seq of the changeset


def head_seq(db: DatabaseHandle) -> int:
    with db.app.connect() as conn:
        return int(conn.scalar(text("SELECT seq FROM audit.chain_head")))


def edit(
    db: DatabaseHandle,
    actor: Actor,
    dataset_id: int,
    statements: list[tuple[str, dict[str, Any]]],
    reason: str,
) -> int:
    """Run ``statements`` ({table} is the dataset's table) as one portal changeset; its seq."""
    table = table_name(db.app, dataset_id)
    with Session(db.app) as s, s.begin():
        open_changeset(
            session=s,
            kind="edit",
            actor_username=actor.username,
            actor_display_name=actor.display_name,
            dataset_id=dataset_id,
            reason=reason,
        )
        for sql, params in statements:
            s.execute(text(sql.format(table=f"data.{table}")), params)
    return head_seq(db)


def out_of_band(db: DatabaseHandle, dataset_id: int, sql: str) -> int:
    table = table_name(db.app, dataset_id)
    with db.superuser.begin() as conn:
        conn.execute(text(sql.format(table=f"data.{table}")))
    return head_seq(db)


def stock_csv() -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
    writer.writerow(["Item", "Count"])
    writer.writerows([["bolt", "10"], ["nut", "20"], ["=HYPERLINK(1)", "30"]])
    return out.getvalue().encode()


def seed_trail(db: DatabaseHandle) -> Trail:
    with Session(db.app) as s, s.begin():
        ann, _ = make_user(s, role="editor", username=unique_name("ann"), display_name="Ann A")
        bob, _ = make_user(s, role="editor", username=unique_name("bob"), display_name="Bob B")
        admin, _ = make_user(s, role="admin", username=unique_name("adm"), display_name="Ad Min")
    trail = Trail(
        db,
        Actor(ann, "Ann A", "editor"),
        Actor(bob, "Bob B", "editor"),
        Actor(admin, "Ad Min", "admin"),
        0,
        0,
    )
    trail.people = upload(trail.ann, people_csv(), uploads.NewDataset("People")).dataset_id
    trail.seqs["people upload"] = head_seq(db)
    trail.stock = upload(trail.bob, stock_csv(), uploads.NewDataset("Stock")).dataset_id
    trail.seqs["stock upload"] = head_seq(db)
    trail.seqs["ann qty"] = edit(
        db,
        trail.ann,
        trail.people,
        [("UPDATE {table} SET qty = 99, _version = _version + 1 WHERE _row_id IN (1, 2)", {})],
        "fix the quantities",
    )
    trail.seqs["bob note"] = edit(
        db,
        trail.bob,
        trail.people,
        [
            (
                "UPDATE {table} SET note = :n, _version = _version + 1 WHERE _row_id = 3",
                {"n": "Zebra crossing"},
            )
        ],
        "typo",
    )
    trail.seqs["oob"] = out_of_band(db, trail.people, "DELETE FROM {table} WHERE _row_id = 4")
    trail.seqs["ann stock"] = edit(
        db,
        trail.ann,
        trail.stock,
        [
            ("INSERT INTO {table} (item, count) VALUES ('washer', 5)", {}),
            ("DELETE FROM {table} WHERE _row_id = 2", {}),
        ],
        "stock take 100%",
    )
    return trail
