"""One changeset drawn for the Audit and History pages: who, when, why, an out-of-band warning,
and its rows — updated rows before -> after with the changed cells highlighted, inserted and
deleted rows in full, bulk-loaded rows replayed a page at a time."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from portal import trail_views
from portal.actor import Actor
from portal.db import session_scope
from portal.errors import PortalError
from portal.trail_views import ChangesetDetail, when
from portal.ui.column_config import EMPTY_CELL
from portal.ui.db_retry import show_refusal
from portal.ui.markdown import md_escape
from portal.ui.pager import Pager

PAGE_SIZE = 50
OP_LABELS = {"update": "Updated", "insert": "Inserted", "delete": "Deleted", "bulk": "Bulk-loaded"}


def out_of_band_warning(detail: ChangesetDetail) -> None:
    s = detail.summary
    st.warning(
        f"**Out of band.** This change was written outside the portal (psql or another tool) "
        f"by database user **{md_escape(s.actor_username)}**; nobody gave a reason in the "
        "portal. Find out who had that access and why.",
        icon=":material/warning:",
    )


@dataclass(frozen=True)
class Shown:
    """A changeset drawn: its header, and the reverts of it."""

    detail: ChangesetDetail
    reverts: list[trail_views.RevertedBy]


def show_changeset(
    actor: Actor, changeset_id: int, key: str, *, record: bool = False
) -> Shown | None:
    """Draw the changeset; return its header and reverts (``None`` if it could not be read, said
    why)."""
    try:
        with session_scope() as session:
            detail = trail_views.changeset(
                session=session, actor=actor, changeset_id=changeset_id, record=record
            )
            reverts = trail_views.reverted_by(session=session, changeset_id=changeset_id)
    except PortalError as exc:
        show_refusal(exc)
        return None
    s = detail.summary
    st.subheader(f"Changeset #{s.seq}")
    if s.out_of_band:
        out_of_band_warning(detail)
    dataset = md_escape(s.dataset_name or (f"dataset {s.dataset_id}" if s.dataset_id else "—"))
    kind = md_escape(trail_views.changeset_kind(s))
    what = trail_views.changeset_what(s)
    st.markdown(
        f"**{kind}**{f' ({md_escape(what)})' if what else ''} on **{dataset}** by "
        f"**{md_escape(trail_views.who(s.actor_display_name, s.actor_username))}**, "
        f"{when(s.committed_at)}  \n"
        f"Reason: {md_escape(s.reason) if s.reason else '*none given*'}  \n"
        f"{s.inserted:,} inserted · {s.updated:,} updated · {s.deleted:,} deleted"
    )
    if reverts:
        said = ", then ".join(
            f"#{r.seq} ({md_escape(r.who)}, {when(r.committed_at)})"
            + (
                f", itself reverted by {' and '.join(f'#{a}' for a in r.reverted_by)}"
                if r.reverted_by
                else ""
            )
            for r in reverts
        )
        st.info(f"Reverted by {said}.", icon=":material/undo:")
    lines = trail_views.setup_lines(detail.detail)
    if lines:
        st.markdown("\n".join(f"- {md_escape(line)}" for line in lines))
    with st.expander("Seal and details"):
        st.caption("Its hash, sealed into the chain, and the previous changeset's")
        st.code(f"this      {detail.hash}\nprevious  {detail.prev_hash}", language=None)
        if detail.detail:
            st.json(detail.detail, expanded=False)
        if detail.client_info:
            st.json(detail.client_info, expanded=False)
    counts = {op: n for op, n in detail.row_ops.items() if n}
    bulk_rows = sum(b.row_count for b in detail.bulk_loads)
    if bulk_rows:
        counts["bulk"] = bulk_rows
    if not counts:
        st.info(
            # A column's values go with its change, in the lines above, not as row changes.
            "No row changes of its own: what it did is listed above."
            if lines
            else "This changeset changed no rows.",
            icon=":material/info:",
        )
        return Shown(detail, reverts)
    ops = list(counts)
    if len(ops) == 1:  # nothing to choose between: said, not a radio of one option
        op = ops[0]
        st.markdown(f"**{OP_LABELS[op]} rows ({counts[op]:,})**")
    else:
        op = st.radio(
            "Rows",
            ops,
            format_func=lambda o: f"{OP_LABELS[o]} ({counts[o]:,})",
            horizontal=True,
            key=f"{key}.{changeset_id}.op",
        )
    if op == "bulk":
        _bulk_rows(actor, detail, key)
    else:
        _row_changes(actor, detail, op, key)
    return Shown(detail, reverts)


def _row_changes(actor: Actor, detail: ChangesetDetail, op: str, key: str) -> None:
    changeset_id = detail.summary.id
    pager = Pager(f"{key}.{changeset_id}.{op}.pager", (changeset_id, op))
    try:
        with session_scope() as session:
            frames = trail_views.change_frames(
                session=session,
                actor=actor,
                detail=detail,
                op=op,
                after_id=pager.after,
                limit=PAGE_SIZE,
            )
    except PortalError as exc:
        show_refusal(exc)
        return
    if frames.updates is not None:
        st.caption(
            "Each updated row as it was before and after, with only the cells it changed "
            '(highlighted); ∅ is no value, "" an empty text.'
        )
        st.dataframe(frames.updates, hide_index=True, width="stretch")
    else:
        frame = frames.inserted if frames.inserted is not None else frames.deleted
        st.dataframe(frame, hide_index=True, width="stretch", placeholder=EMPTY_CELL)
    pager.controls(frames.next_key)


@st.cache_data(max_entries=32, ttl=900, show_spinner="Rebuilding these rows from the stored file…")
def bulk_frame(
    seal: str, bulk_load_id: int, offset: int, limit: int, _actor: Actor, _detail: ChangesetDetail
) -> pd.DataFrame:
    """A page of a bulk load's rows, replayed from its stored stream (read whole, to check its
    SHA-256). Keyed on the changeset's seal (``hash``), which covers that stream: a sealed
    changeset's rows never change, so one replay serves every rerun, and everyone who may open
    the changeset (the caller has just read ``_detail`` for its actor)."""
    with session_scope() as session:
        return trail_views.bulk_page(
            session=session,
            actor=_actor,
            detail=_detail,
            bulk_load_id=bulk_load_id,
            offset=offset,
            limit=limit,
        )


def _bulk_rows(actor: Actor, detail: ChangesetDetail, key: str) -> None:
    changeset_id = detail.summary.id
    for bulk in detail.bulk_loads:
        pages = max(1, math.ceil(bulk.row_count / PAGE_SIZE))
        page_key = f"{key}.{changeset_id}.bulk.{bulk.id}.page"
        st.caption(
            f"Rows {bulk.first_row_id:,}–{bulk.last_row_id:,} ({bulk.row_count:,}) were loaded "
            "in one go; they are rebuilt from the stored file a page at a time."
        )
        page = int(st.number_input("Page", 1, pages, step=1, key=page_key))
        try:
            offset = (page - 1) * PAGE_SIZE
            frame = bulk_frame(detail.hash, bulk.id, offset, PAGE_SIZE, actor, detail)
        except PortalError as exc:
            show_refusal(exc)
            continue
        st.dataframe(frame, hide_index=True, width="stretch", placeholder=EMPTY_CELL)
        st.caption(f"Page {page:,} of {pages:,}")
