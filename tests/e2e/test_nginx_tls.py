"""TLS with the repo's nginx templates: given PORTAL_TLS_CERT and PORTAL_TLS_KEY (here a throwaway
self-signed certificate for 127.0.0.1), plain HTTP only redirects to HTTPS, and HTTPS serves the
portal — health, HSTS and the security headers, the WebSocket upgrade, a real browser signing in."""

from __future__ import annotations

import http.client
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e import nginx
from tests.e2e.conftest import PortalServer, free_port
from tests.e2e.test_sign_in_browser import sign_in, sign_in_form
from tests.e2e.test_upload_browser import SLOW

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, valid for a day, and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = (
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
        " -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
    )
    subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.fixture
def trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A client context that verifies the server against the throwaway certificate."""
    return ssl.create_default_context(cafile=str(certificate[0]))


@pytest.fixture
def tls_site(
    portal_server: PortalServer, certificate: tuple[Path, Path], tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """nginx with TLS in front of the portal: (http URL, https URL)."""
    http_port, https_port = free_port(), free_port()
    conf = nginx.write_config(
        tmp_path / "nginx",
        listen_port=http_port,
        upstream=urlparse(portal_server.url).netloc,
        max_upload_mb=10,
        tls=nginx.TLS(cert=certificate[0], key=certificate[1], port=https_port),
    )
    https_url = f"https://127.0.0.1:{https_port}"
    proc = nginx.start(conf, https_url)
    try:
        yield f"http://127.0.0.1:{http_port}", https_url
    finally:
        nginx.stop(proc)


def _get(
    url: str, context: ssl.SSLContext | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """One request, redirects not followed."""
    parts = urlparse(url)
    conn = (
        http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=15, context=context)
        if parts.scheme == "https"
        else http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=15)
    )
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


def test_tls_config_renders_and_passes_nginx_t(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    conf = nginx.write_config(
        tmp_path,
        listen_port=free_port(),
        upstream="127.0.0.1:8501",
        max_upload_mb=200,
        tls=nginx.TLS(cert=certificate[0], key=certificate[1], port=free_port()),
    )
    result = nginx.check(conf)
    assert result.returncode == 0, result.stderr
    assert "include conf.d/site-https.inc;" in (tmp_path / "conf.d" / "default.conf").read_text()
    site = (tmp_path / "conf.d" / "site-https.inc").read_text()
    assert "${" not in site
    assert f"ssl_certificate {certificate[0]};" in site
    assert f"ssl_certificate_key {certificate[1]};" in site


def test_http_redirects_to_https_which_serves_the_portal(
    tls_site: tuple[str, str], trusting: ssl.SSLContext
) -> None:
    http_url, https_url = tls_site
    for path in ("/", "/upload?dataset=3", "/_stcore/health"):
        status, headers, _ = _get(http_url + path)
        assert (status, headers["Location"]) == (308, https_url + path)
        assert "Strict-Transport-Security" not in headers  # only ever sent over HTTPS

    status, headers, body = _get(https_url + "/_stcore/health", trusting)
    assert (status, body) == (200, b"ok")
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    status, headers, _ = _get(https_url + "/", trusting)
    assert status == 200
    assert headers["Set-Cookie"].endswith("; HttpOnly; SameSite=Lax; Secure")  # replica routing
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'self'" in headers["Content-Security-Policy"]
    assert headers["Strict-Transport-Security"] == "max-age=31536000"


def test_websocket_upgrade_through_tls(tls_site: tuple[str, str], trusting: ssl.SSLContext) -> None:
    _, https_url = tls_site
    status, headers = nginx.websocket_handshake(https_url, origin=https_url, context=trusting)
    assert status == 101, headers
    foreign = "https://evil.example"
    status, _ = nginx.websocket_handshake(https_url, origin=foreign, context=trusting)
    assert status == 403


def test_a_browser_signs_in_over_https(
    portal_server: PortalServer, tls_site: tuple[str, str], browser: Browser
) -> None:
    """Opened by its http:// address, the portal lands on https:// and works over wss://."""
    http_url, https_url = tls_site
    context = browser.new_context(ignore_https_errors=True)  # the certificate is self-signed
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto(http_url + "/users")
        assert page.url == https_url + "/users"
        sign_in_form(page)
        sign_in(page, "boss", portal_server.users["boss"])
        expect(page.get_by_role("heading", name="Manage a user")).to_be_visible(timeout=SLOW)
    finally:
        context.close()
