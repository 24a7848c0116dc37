"""Server functions re-check the actor's role themselves, whatever page calls them: a page's
guard is not the only thing standing between a viewer and admin-only data or an audit write."""

from __future__ import annotations

import hashlib
import zlib

import pytest
from sqlalchemy import text

from portal import datasets, trail_views, users
from portal.actor import Actor
from portal.db import session_scope
from portal.errors import PermissionDenied
from tests.conftest import DatabaseHandle

pytestmark = pytest.mark.db

VIEWER = Actor("vera", "Vera Viewer", "viewer")
EDITOR = Actor("eddie", "Eddie Editor", "editor")
ADMIN = Actor("ada", "Ada Admin", "admin")


@pytest.mark.parametrize("actor", [VIEWER, EDITOR], ids=lambda a: a.role)
def test_the_user_list_is_for_admins_only(fresh_db: DatabaseHandle, actor: Actor) -> None:
    with session_scope() as session, pytest.raises(PermissionDenied):
        users.summarise_users(session=session, actor=actor)
    with session_scope() as session:
        assert users.summarise_users(session=session, actor=ADMIN) == []


@pytest.mark.parametrize("actor", [VIEWER, EDITOR], ids=lambda a: a.role)
def test_the_audit_trail_s_actors_are_for_admins_only(
    fresh_db: DatabaseHandle, actor: Actor
) -> None:
    with session_scope() as session, pytest.raises(PermissionDenied):
        trail_views.actors(session=session, actor=actor)
    with session_scope() as session:
        assert isinstance(trail_views.actors(session=session, actor=ADMIN), dict)


def test_a_viewer_cannot_record_an_upload(fresh_db: DatabaseHandle) -> None:
    data = b"a\n1\n"
    with session_scope() as session, pytest.raises(PermissionDenied):
        datasets.record_upload(
            session=session,
            actor=VIEWER,
            filename="forged.csv",
            data=data,
            mime_type="text/csv",
            encoding="utf-8",
            report={},
            sha256=hashlib.sha256(data).hexdigest(),
            compressed=zlib.compress(data),
        )
    with fresh_db.owner.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit.upload")).scalar_one() == 0
