"""End-to-end fixtures: a real ``streamlit run app.py`` on a free 127.0.0.1 port, started fresh for
each test against its own database, and Chromium driven by Playwright.

The server is started exactly as ``portal serve`` starts it (``portal.cli.streamlit_command``) and
is always killed, with its whole process group, when the test ends.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from sqlalchemy.orm import Session

from portal.cli import streamlit_command
from tests.conftest import DatabaseHandle
from tests.e2e import nginx
from tests.factories import make_user

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_TIMEOUT = 20.0
# Every ``expect`` waits as long as the contexts' actions do (``set_default_timeout``), not
# Playwright's 5 s: on a loaded 2-core CI machine a rerun drawing a page can take longer.
expect.set_options(timeout=15_000)
PROXY_MAX_UPLOAD_MB = 10  # what portal_server gives Streamlit


@dataclass
class PortalServer:
    url: str
    cookie_key: str
    db: DatabaseHandle
    log: Path
    users: dict[str, str] = field(default_factory=dict)  # username -> password

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"streamlit did not become healthy in {START_TIMEOUT}s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def streamlit_server(
    database_url: str, cookie_key: str, workdir: Path, max_upload_mb: int = PROXY_MAX_UPLOAD_MB
) -> Iterator[tuple[str, Path]]:
    """``streamlit run app.py`` as ``portal serve`` starts it, on a free 127.0.0.1 port, against
    ``database_url``, with its data directory and log in ``workdir``: (its URL, its log). Killed
    with its whole process group when the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(
        PORTAL_ENV="dev",
        PORTAL_DATABASE_URL=database_url,
        PORTAL_COOKIE_KEY=cookie_key,
        PORTAL_DATA_DIR=str(workdir / "data"),
    )
    log = workdir / "streamlit.log"
    cmd = streamlit_command(address="127.0.0.1", port=port, max_upload_mb=max_upload_mb)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, log)
        yield url, log
    finally:
        stop(proc)


@pytest.fixture
def portal_server(fresh_db: DatabaseHandle, tmp_path: Path) -> Iterator[PortalServer]:
    """A fresh server (no session has run yet) with an admin ``boss`` and a viewer ``vee``."""
    users = {}
    with Session(fresh_db.app) as s, s.begin():
        for name, role in (("boss", "admin"), ("vee", "viewer")):
            _, users[name] = make_user(s, username=name, role=role, display_name=name.title())
    key = secrets.token_urlsafe(48)
    with streamlit_server(fresh_db.url("app"), key, tmp_path) as (url, log):
        yield PortalServer(url=url, cookie_key=key, db=fresh_db, log=log, users=users)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context()
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def proxied(portal_server: PortalServer, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    conf = nginx.write_config(
        tmp_path / "nginx",
        listen_port=port,
        upstream=urlparse(portal_server.url).netloc,
        max_upload_mb=PROXY_MAX_UPLOAD_MB,
    )
    url = f"http://127.0.0.1:{port}"
    proc = nginx.start(conf, url)
    try:
        yield url
    finally:
        nginx.stop(proc)


CHOOSE_TIMEOUT = 15_000  # ms: a rerun on a loaded 2-core machine can take seconds


def choose(page: Page, box_name: str, option_name: str) -> None:
    """Pick an option of a select box, again if a rerun still in flight closed the list first
    (the run after signing in may redraw the page while the list is opening)."""
    box = page.get_by_role("combobox", name=box_name)
    option = page.get_by_role("option", name=option_name)
    for _ in range(5):
        page.locator('[data-testid="stStatusWidget"]').wait_for(
            state="hidden", timeout=CHOOSE_TIMEOUT
        )
        box.click()
        try:
            option.click(timeout=CHOOSE_TIMEOUT // 5)
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            continue
        return
    raise AssertionError(f"the option {option_name!r} of {box_name!r} never opened")
