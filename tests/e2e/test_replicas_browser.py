"""Two app replicas behind the repo's nginx, on one database: browsers are spread over both by
nginx's routing cookie and each stays on its replica, so uploads from several browsers, all
signed in at the same time, all succeed (without stickiness an upload reaching the other
replica fails with 400, "Invalid session_id")."""

from __future__ import annotations

import secrets
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import text

from tests.e2e import nginx
from tests.e2e.conftest import (
    PROXY_MAX_UPLOAD_MB,
    PortalServer,
    free_port,
    streamlit_server,
)
from tests.e2e.test_upload_browser import SLOW, create_from_people, open_upload

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROUTE_COOKIE = "portal_route"
BROWSERS_PER_REPLICA = 2
WARM_UP = 60_000  # ms


@pytest.fixture
def second_replica(portal_server: PortalServer, tmp_path: Path) -> Iterator[str]:
    """Another Streamlit server like ``portal_server``: same database, same cookie key."""
    with streamlit_server(
        portal_server.db.url("app"), portal_server.cookie_key, tmp_path / "replica-2"
    ) as (url, _):
        yield url


@pytest.fixture
def balanced(
    portal_server: PortalServer, second_replica: str, tmp_path: Path
) -> Iterator[tuple[str, Path, list[str]]]:
    """nginx over both replicas: (its URL, its config, the two upstream addresses)."""
    upstreams = [urlparse(portal_server.url).netloc, urlparse(second_replica).netloc]
    port = free_port()
    conf = nginx.write_config(
        tmp_path / "nginx-2",
        listen_port=port,
        upstream=upstreams,
        max_upload_mb=PROXY_MAX_UPLOAD_MB,
    )
    url = f"http://127.0.0.1:{port}"
    proc = nginx.start(conf, url)
    try:
        yield url, conf, upstreams
    finally:
        nginx.stop(proc)


def _route_values(url: str, conf: Path, upstreams: list[str]) -> dict[str, list[str]]:
    """Routing-cookie values that nginx sends to each replica, found by asking it: a cookie
    lands on either replica with even odds, so a few dozen probes find enough for both."""
    found: dict[str, list[str]] = {u: [] for u in upstreams}
    for probe in range(64):
        value = secrets.token_hex(16)
        request = urllib.request.Request(  # noqa: S310 - loopback test server
            f"{url}/_stcore/health?probe={probe}", headers={"Cookie": f"{ROUTE_COOKIE}={value}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert "Set-Cookie" not in response.headers or ROUTE_COOKIE not in str(
                response.headers.get_all("Set-Cookie")
            )  # a browser that has its routing cookie keeps it
        [logged] = nginx.wait_for_log(conf, f"probe={probe} ")
        found[logged.upstream].append(value)
        if all(len(v) >= BROWSERS_PER_REPLICA for v in found.values()):
            return found
    raise AssertionError(f"nginx sent 64 probes to one replica only: {found}")


def test_nginx_gives_a_new_browser_its_routing_cookie(
    balanced: tuple[str, Path, list[str]], browser: Browser
) -> None:
    url, conf, upstreams = balanced
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url + "/")
        expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=SLOW)
        [route] = [c for c in context.cookies() if c["name"] == ROUTE_COOKIE]
        assert route["httpOnly"]
        assert not route["secure"]  # plain HTTP here; over HTTPS it is Secure (test_nginx_tls)
        assert len(route["value"]) == 32
        # Everything after the first page went to one replica: the one the cookie names.
        used = {r.upstream for r in nginx.access_log(conf)[1:] if "probe" not in r.request}
        assert len(used & set(upstreams)) == 1, used
    finally:
        context.close()


def test_uploads_from_browsers_on_both_replicas_all_succeed(
    portal_server: PortalServer, balanced: tuple[str, Path, list[str]], browser: Browser
) -> None:
    url, conf, upstreams = balanced
    routes = _route_values(url, conf, upstreams)
    sessions: list[tuple[BrowserContext, Page, str]] = []
    try:
        # Everyone signs in first, so all the sessions are live at once on both replicas.
        for upstream, values in routes.items():
            for value in values[:BROWSERS_PER_REPLICA]:
                context = browser.new_context()
                context.set_default_timeout(15_000)
                context.add_cookies([{"name": ROUTE_COOKIE, "value": value, "url": url}])
                page = context.new_page()
                # A replica's first run imports the whole portal: on a busy machine that is
                # slower than the sign-in helpers wait for.
                page.goto(url + "/upload")
                expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=WARM_UP)
                open_upload(page, portal_server, url)
                sessions.append((context, page, upstream))
        for n, (_, page, _) in enumerate(sessions, start=1):
            create_from_people(page, f"Replica upload {n}")
            expect(page.get_by_text(f"3 rows loaded into “Replica upload {n}”")).to_be_visible(
                timeout=SLOW
            )
    finally:
        for context, _, _ in sessions:
            context.close()

    puts = nginx.wait_for_log(conf, "PUT /_stcore/upload_file/", count=len(sessions))
    assert {r.status for r in puts} <= {200, 204}, puts
    assert {r.upstream for r in puts} == set(upstreams)
    with portal_server.db.app.connect() as conn:
        names = conn.scalars(text("SELECT name FROM portal.datasets ORDER BY name")).all()
        uploads = conn.scalar(text("SELECT count(*) FROM audit.changeset WHERE kind = 'upload'"))
    assert names == [f"Replica upload {n}" for n in range(1, len(sessions) + 1)]
    assert uploads == len(sessions)
