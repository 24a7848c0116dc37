"""Run the repo's own nginx template locally: render it for loopback ports the way the nginx
image's envsubst does, wrap it in a minimal main config, start and stop a real nginx."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "nginx" / "templates" / "portal.conf.template"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def render(template: str, variables: dict[str, str]) -> str:
    """envsubst restricted to ``variables`` (the image substitutes only variables it defines,
    so nginx's own ``$host`` and friends are left alone)."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, match.group(0))

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)\}|\$([A-Z_][A-Z0-9_]*)", substitute, template)


def write_config(workdir: Path, *, listen_port: int, upstream: str, max_upload_mb: int) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    site = render(
        TEMPLATE.read_text(),
        {
            "PORTAL_APP_UPSTREAM": upstream,
            "NGINX_LISTEN": f"127.0.0.1:{listen_port}",
            "PORTAL_MAX_BODY_MB": str(max_upload_mb + 1),
        },
    )
    (workdir / "portal.conf").write_text(site)
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = f"""{user}worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log info;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    access_log {workdir}/access.log;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    include {workdir}/portal.conf;
}}
"""
    conf = workdir / "nginx.conf"
    conf.write_text(main)
    return conf


def check(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NGINX, "-t", "-c", str(conf)], capture_output=True, text=True, check=False, timeout=30
    )


def start(conf: Path, url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [NGINX, "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {(conf.parent / 'error.log').read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1):  # noqa: S310
                return proc
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
