"""Files over the upload limit, chosen in a real browser through the repo's nginx: over Streamlit's
limit, the browser refuses the file itself and says so; over nginx's body limit (here set lower
than Streamlit's, as a proxy in front might be), nginx answers 413 without asking the app, and
the page tells the user what that means. Nothing is stored either way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import BrowserContext, expect
from sqlalchemy import text

from tests.e2e import nginx
from tests.e2e.conftest import PROXY_MAX_UPLOAD_MB, PortalServer, free_port
from tests.e2e.test_upload_browser import SLOW, choose_file, open_upload

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

NGINX_LIMITED_MB = 1  # nginx then refuses bodies over 2 MB; Streamlit still accepts 10 MB


def _csv_of(megabytes: float) -> bytes:
    return b"a,b\n" + b"1,2\n" * int(megabytes * 1024 * 1024 / 4)


def _stored_uploads(server: PortalServer) -> int:
    with server.db.app.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM audit.upload")) or 0)


@pytest.fixture
def limited(portal_server: PortalServer, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """nginx with a body limit below Streamlit's upload limit: (URL, its config)."""
    port = free_port()
    conf = nginx.write_config(
        tmp_path / "limited",
        listen_port=port,
        upstream=urlparse(portal_server.url).netloc,
        max_upload_mb=NGINX_LIMITED_MB,
    )
    url = f"http://127.0.0.1:{port}"
    proc = nginx.start(conf, url)
    try:
        yield url, conf
    finally:
        nginx.stop(proc)


def test_a_file_over_the_limit_is_refused_in_the_browser(
    portal_server: PortalServer, proxied: str, context: BrowserContext, tmp_path: Path
) -> None:
    page = context.new_page()
    open_upload(page, portal_server, proxied)
    expect(page.get_by_text(f"A file can be at most {PROXY_MAX_UPLOAD_MB} MB.")).to_be_visible(
        timeout=SLOW
    )
    choose_file(page, "huge.csv", _csv_of(PROXY_MAX_UPLOAD_MB + 1))
    expect(page.get_by_text(f"File must be {PROXY_MAX_UPLOAD_MB}.0MB or smaller.")).to_be_visible(
        timeout=SLOW
    )
    # The browser checked the size itself: the file never left it.
    conf = tmp_path / "nginx" / "nginx.conf"
    assert not [r for r in nginx.access_log(conf) if "upload_file" in r.request]
    assert _stored_uploads(portal_server) == 0


def test_nginx_refuses_a_body_over_its_limit_and_the_page_says_why(
    portal_server: PortalServer, limited: tuple[str, Path], context: BrowserContext
) -> None:
    url, conf = limited
    page = context.new_page()
    open_upload(page, portal_server, url)
    choose_file(page, "big.csv", _csv_of(NGINX_LIMITED_MB + 2))
    expect(page.get_by_text("status code 413", exact=False).first).to_be_visible(timeout=SLOW)
    [refused] = nginx.wait_for_log(conf, "PUT /_stcore/upload_file/")
    assert (refused.status, refused.upstream) == (413, "-")  # answered by nginx, not the app
    expect(
        page.get_by_text("was refused as too large by the server in front of the portal")
    ).to_be_visible(timeout=SLOW)
    assert _stored_uploads(portal_server) == 0
