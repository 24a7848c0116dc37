"""The repo's nginx template in front of a real Streamlit server: it passes ``nginx -t``, carries
the WebSocket (a real Chromium signs in through it), sends the security headers, compresses
static assets and refuses bodies over the upload limit."""

from __future__ import annotations

import gzip
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.e2e import nginx
from tests.e2e.conftest import PortalServer, free_port
from tests.e2e.test_sign_in_browser import sign_in, sign_in_form

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
MAX_UPLOAD_MB = 10  # what the portal_server fixture gives Streamlit


def test_template_renders_to_a_valid_config(tmp_path: Path) -> None:
    conf = nginx.write_config(
        tmp_path, listen_port=free_port(), upstream="127.0.0.1:8501", max_upload_mb=200
    )
    result = nginx.check(conf)
    assert result.returncode == 0, result.stderr
    site = (tmp_path / "portal.conf").read_text()
    assert "${" not in site
    for directive in (
        "ip_hash;",
        "proxy_http_version 1.1;",
        "proxy_set_header Host $http_host;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_read_timeout 3600s;",
        "proxy_buffering off;",
        "client_max_body_size 201m;",
    ):
        assert directive in site


def test_sign_in_through_nginx(
    portal_server: PortalServer, proxied: str, context: BrowserContext
) -> None:
    """Everything after the first HTML arrives over the WebSocket: seeing the form and then the
    Users page proves the upgrade, Host and Origin handling through nginx."""
    page = context.new_page()
    page.goto(proxied + "/users")
    sign_in_form(page)
    sign_in(page, "boss", portal_server.users["boss"])
    expect(page.get_by_role("heading", name="Manage a user")).to_be_visible()


def _get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback test server
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.status, dict(response.headers), response.read()


def test_security_headers_and_compressed_assets(proxied: str) -> None:
    status, headers, page = _get(proxied + "/")
    assert status == 200
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert "frame-ancestors 'self'" in headers["Content-Security-Policy"]
    assert "Server" not in headers or "nginx/" not in headers["Server"]
    script = re.search(rb'src="\.?/?(static/js/[^"]+\.js)"', page)
    assert script is not None
    status, headers, body = _get(
        f"{proxied}/{script.group(1).decode()}", **{"Accept-Encoding": "gzip"}
    )
    assert (status, headers.get("Content-Encoding")) == (200, "gzip")
    assert len(gzip.decompress(body)) > len(body)


def test_body_over_the_upload_limit_is_refused_by_nginx(proxied: str) -> None:
    too_big = b"x" * ((MAX_UPLOAD_MB + 2) * 1024 * 1024)
    request = urllib.request.Request(  # noqa: S310 - loopback test server
        proxied + "/_stcore/upload_file/session/file", data=too_big, method="PUT"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=20)  # noqa: S310
    assert refused.value.code == 413
