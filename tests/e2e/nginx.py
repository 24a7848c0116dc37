"""Run the repo's own nginx configuration locally, the way the official nginx image does: source
``nginx/15-portal.envsh`` for the derived variables, render every ``nginx/templates/*.template``
into ``conf.d/`` (envsubst restricted to the portal's variables), and start a real nginx whose
main config includes ``conf.d/*.conf`` like the image's. Loopback ports instead of 80/443; an
access log that names the upstream each request went to (``-``: answered by nginx itself)."""

from __future__ import annotations

import base64
import http.client
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "nginx" / "templates"
ENVSH = ROOT / "nginx" / "15-portal.envsh"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@dataclass(frozen=True)
class TLS:
    """A certificate and key (PEM files) and the loopback port the HTTPS server listens on."""

    cert: Path
    key: Path
    port: int


@dataclass(frozen=True)
class Logged:
    """One access-log line: status, the upstream that answered (``-`` if none) and the request."""

    status: int
    upstream: str
    request: str


def render(template: str, variables: dict[str, str]) -> str:
    """envsubst restricted to ``variables`` (the image substitutes only variables it defines,
    so nginx's own ``$host`` and friends are left alone)."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, match.group(0))

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)\}|\$([A-Z_][A-Z0-9_]*)", substitute, template)


def site_variables(settings: dict[str, str]) -> dict[str, str]:
    """The variables the templates see: ``settings`` after ``15-portal.envsh`` has run.

    Raises:
        subprocess.CalledProcessError: the script refused the settings (its message on stderr).
    """
    result = subprocess.run(
        ["sh", "-c", f'. "{ENVSH}" && env -0'],
        env={"PATH": os.environ["PATH"], **settings},
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    pairs = (entry.partition("=") for entry in result.stdout.split("\0"))
    return {k: v for k, _, v in pairs if k.startswith(("PORTAL_", "NGINX_"))}


def write_config(
    workdir: Path,
    *,
    listen_port: int,
    upstream: str | Sequence[str],
    max_upload_mb: int,
    tls: TLS | None = None,
) -> Path:
    """Render the repo's templates into ``workdir/conf.d`` and write ``workdir/nginx.conf``.

    ``upstream`` is one ``host:port`` or several (compose gets several replicas from one DNS
    name; here each is listed).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    servers = [upstream] if isinstance(upstream, str) else list(upstream)
    settings = {
        "PORTAL_APP_UPSTREAM": ";\n    server ".join(servers),
        "PORTAL_MAX_UPLOAD_MB": str(max_upload_mb),
        "NGINX_LISTEN": f"127.0.0.1:{listen_port}",
    }
    if tls is not None:
        settings |= {
            "PORTAL_TLS_CERT": str(tls.cert),
            "PORTAL_TLS_KEY": str(tls.key),
            "NGINX_LISTEN_TLS": f"127.0.0.1:{tls.port}",
            "PORTAL_HTTPS_PORT": str(tls.port),
        }
    variables = site_variables(settings)
    conf_d = workdir / "conf.d"
    conf_d.mkdir(exist_ok=True)
    for template in sorted(TEMPLATES.glob("*.template")):
        (conf_d / template.name.removesuffix(".template")).write_text(
            render(template.read_text(), variables)
        )
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = f"""{user}worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log info;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    log_format portal '$status|$upstream_addr|$request';
    access_log {workdir}/access.log portal;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    include conf.d/*.conf;
}}
"""
    conf = workdir / "nginx.conf"
    conf.write_text(main)
    return conf


def rendered(conf: Path) -> str:
    """Every rendered file of the site, concatenated (for assertions on directives)."""
    return "\n".join(p.read_text() for p in sorted((conf.parent / "conf.d").iterdir()))


def access_log(conf: Path) -> list[Logged]:
    """The requests nginx has logged so far (it writes each line when the response is done)."""
    path = conf.parent / "access.log"
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        status, upstream, request = line.split("|", 2)
        lines.append(Logged(int(status), upstream, request))
    return lines


def wait_for_log(
    conf: Path, request_part: str, count: int = 1, timeout: float = 15
) -> list[Logged]:
    """The logged requests containing ``request_part``, once there are ``count`` of them (nginx
    writes a line just after the response, so the client may see it first)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in access_log(conf) if request_part in r.request]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def websocket_handshake(
    base_url: str, *, origin: str | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str]]:
    """Open Streamlit's WebSocket (``/_stcore/stream``) the way a browser does; return the
    status and headers of the handshake's answer (101 when the upgrade went through)."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    conn = (
        http.client.HTTPSConnection(host, port, timeout=15, context=context)
        if parts.scheme == "https"
        else http.client.HTTPConnection(host, port, timeout=15)
    )
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": "streamlit",
    }
    if origin is not None:
        headers["Origin"] = origin
    try:
        conn.request("GET", "/_stcore/stream", headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.headers)
    finally:
        conn.close()


def check(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NGINX, "-t", "-c", str(conf)], capture_output=True, text=True, check=False, timeout=30
    )


def start(conf: Path, url: str, *, app_up: bool = True) -> subprocess.Popen[bytes]:
    """Start nginx and wait until ``url`` + ``/_stcore/health`` answers through it (an https
    URL is not verified here: the tests that use TLS verify it themselves); with ``app_up``
    False, until nginx answers at all (its upstream is not running)."""
    proc = subprocess.Popen(
        [NGINX, "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    unverified = ssl._create_unverified_context()  # noqa: S323 - loopback readiness probe only
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {check(conf).stderr}")
        try:
            with urllib.request.urlopen(  # noqa: S310
                f"{url}/_stcore/health", timeout=1, context=unverified
            ):
                return proc
        except urllib.error.HTTPError:
            if not app_up:
                return proc
            time.sleep(0.1)
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError("nginx did not answer in 10 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGQUIT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
