"""The repo's nginx templates in front of a real Streamlit server: they pass ``nginx -t``, carry
the WebSocket (the handshake answers 101; a real Chromium signs in through it), send the security
headers, compress static assets, refuse bodies over the upload limit before they reach the app,
and let Streamlit refuse a foreign Origin's WebSocket and uploads without its XSRF token."""

from __future__ import annotations

import gzip
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, expect
from sqlalchemy import text
from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string

from tests.e2e import nginx
from tests.e2e.conftest import PortalServer, free_port
from tests.e2e.test_sign_in_browser import sign_in, sign_in_form
from tests.e2e.test_upload_browser import SLOW

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
MAX_UPLOAD_MB = 10  # what the portal_server fixture gives Streamlit


@pytest.fixture
def proxied_conf(proxied: str, tmp_path: Path) -> Path:
    """The config the ``proxied`` nginx runs (conftest writes it under ``tmp_path/nginx``)."""
    conf = tmp_path / "nginx" / "nginx.conf"
    assert conf.is_file()
    return conf


def test_template_renders_to_a_valid_config(tmp_path: Path) -> None:
    conf = nginx.write_config(
        tmp_path, listen_port=free_port(), upstream="127.0.0.1:8501", max_upload_mb=200
    )
    result = nginx.check(conf)
    assert result.returncode == 0, result.stderr
    site = nginx.rendered(conf)
    assert "include conf.d/site-http.inc;" in site
    active = "\n".join(
        (tmp_path / "conf.d" / name).read_text()
        for name in ("default.conf", "site-http.inc", "proxy.inc")
    )
    assert "${" not in active
    for directive in (
        "hash $portal_route consistent;",
        "server 127.0.0.1:8501;",
        "default_server;",
        "proxy_http_version 1.1;",
        "proxy_set_header Host $http_host;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $portal_connection;",
        "proxy_read_timeout 3600s;",
        "proxy_buffering off;",
        "client_max_body_size 201m;",
    ):
        assert directive in active


def test_sign_in_through_nginx(
    portal_server: PortalServer, proxied: str, context: BrowserContext
) -> None:
    """Everything after the first HTML arrives over the WebSocket: seeing the form and then the
    Users page proves the upgrade, Host and Origin handling through nginx."""
    page = context.new_page()
    page.goto(proxied + "/users")
    sign_in_form(page)
    sign_in(page, "boss", portal_server.users["boss"])
    expect(page.get_by_role("heading", name="Manage a user")).to_be_visible(timeout=SLOW)


def test_a_forged_forwarded_for_does_not_reach_the_audit_log(
    portal_server: PortalServer, proxied: str, browser: Browser
) -> None:
    """The audit log keeps the address each sign-in came from. A browser claiming another one
    in ``X-Forwarded-For`` must not get it recorded: nginx, the edge, forwards only the address
    it sees (here loopback, which Streamlit records as no address at all)."""
    forged = "203.0.113.9"
    context = browser.new_context(extra_http_headers={"X-Forwarded-For": forged})
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto(proxied + "/users")
        sign_in_form(page)
        sign_in(page, "boss", portal_server.users["boss"])
        expect(page.get_by_role("heading", name="Manage a user")).to_be_visible(timeout=SLOW)
    finally:
        context.close()
    with portal_server.db.app.connect() as conn:
        recorded = conn.execute(
            text(
                "SELECT client_info FROM audit.event WHERE kind = 'sign_in'"
                " AND actor_username = 'boss' ORDER BY id DESC LIMIT 1"
            )
        ).scalar_one()
    assert "user_agent" in recorded  # the headers were read
    assert forged not in json.dumps(recorded), recorded
    assert recorded.get("forwarded_for") == "127.0.0.1", recorded


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


def test_streamlit_s_metrics_are_not_served_to_the_outside(
    proxied: str, portal_server: PortalServer
) -> None:
    """The app serves its metrics (session counts, cache names) to whoever asks it directly;
    nginx, the portal's only way in, does not pass them on."""
    status, _, body = _get(portal_server.url + "/_stcore/metrics")
    assert status == 200
    assert b"session" in body.lower()
    for path in ("/_stcore/metrics", "/_stcore/metrics?x=1", "//_stcore/metrics"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            _get(proxied + path)
        assert refused.value.code == 404, path


def test_a_page_load_while_the_app_is_down_says_so(tmp_path: Path) -> None:
    """Starting, or restarting after an update, the app does not answer for a while: a browser
    then gets a page that says what is happening and what to do, not nginx's bare "502 Bad
    Gateway", and the security headers as ever."""
    port = free_port()
    conf = nginx.write_config(
        tmp_path, listen_port=port, upstream=f"127.0.0.1:{free_port()}", max_upload_mb=10
    )
    url = f"http://127.0.0.1:{port}"
    proc = nginx.start(conf, url, app_up=False)
    try:
        for path in ("/", "/upload?dataset=3", "/_stcore/health"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                _get(url + path)
            assert refused.value.code == 503, path
            headers, page = refused.value.headers, refused.value.read().decode()
            assert headers["Content-Type"].startswith("text/html")
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert "Data Portal is not answering right now" in page
            assert "Reload this page in a minute" in page
            assert "Bad Gateway" not in page
        assert {r.status for r in nginx.access_log(conf)} == {503}
    finally:
        nginx.stop(proc)


def test_body_over_the_upload_limit_is_refused_by_nginx(proxied: str, proxied_conf: Path) -> None:
    too_big = b"x" * ((MAX_UPLOAD_MB + 2) * 1024 * 1024)
    request = urllib.request.Request(  # noqa: S310 - loopback test server
        proxied + "/_stcore/upload_file/session/file", data=too_big, method="PUT"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=20)  # noqa: S310
    assert refused.value.code == 413
    # Answered by nginx itself: no upstream was asked.
    [logged] = nginx.wait_for_log(proxied_conf, "upload_file")
    assert (logged.status, logged.upstream) == (413, "-")


def test_websocket_handshake_through_nginx_answers_101(proxied: str) -> None:
    status, headers = nginx.websocket_handshake(proxied, origin=proxied)
    assert status == 101, headers
    assert headers["Upgrade"].lower() == "websocket"
    assert headers["Sec-WebSocket-Protocol"] == "streamlit"


def test_a_foreign_origin_is_refused(proxied: str) -> None:
    """A page on another site can neither open the portal's WebSocket (Streamlit checks Origin
    against the Host nginx forwards) nor upload: it cannot read the XSRF cookie, and the
    upload endpoint's CORS answer does not name it."""
    foreign = "https://evil.example"
    status, _ = nginx.websocket_handshake(proxied, origin=foreign)
    assert status == 403

    token, other = generate_xsrf_token_string(), generate_xsrf_token_string()
    upload = proxied + "/_stcore/upload_file/no-such-session/file"

    def put(cookie: str | None, header: str | None) -> int:
        headers = {"Origin": foreign, "Content-Type": "multipart/form-data; boundary=b"}
        if cookie is not None:
            headers["Cookie"] = f"_streamlit_xsrf={cookie}"
        if header is not None:
            headers["X-Xsrftoken"] = header
        request = urllib.request.Request(  # noqa: S310 - loopback test server
            upload, data=b"--b--\r\n", method="PUT", headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert put(cookie=token, header=None) == 403
    assert put(cookie=None, header=token) == 403
    assert put(cookie=token, header=other) == 403
    # With the matching pair (which only a page of the portal's own origin can read) the XSRF
    # check passes and the request fails later, on the made-up session.
    assert put(cookie=token, header=token) == 400

    preflight = urllib.request.Request(  # noqa: S310 - loopback test server
        upload,
        method="OPTIONS",
        headers={"Origin": foreign, "Access-Control-Request-Method": "PUT"},
    )
    with urllib.request.urlopen(preflight, timeout=15) as response:  # noqa: S310
        assert response.headers.get("Access-Control-Allow-Origin") != foreign
