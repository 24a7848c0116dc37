"""Concurrent Edit-page sessions: N processes, each a real Streamlit AppTest session driving
``pages/4_edit.py`` against one real database, editing overlapping rows of one dataset for a
bounded time; then the promises of ``benchmarks.load`` checked against the table and the log.

The page-level complement of ``benchmarks.load`` (which calls the functions the Edit page calls,
in threads of one process: ``AppTest.run`` swaps the process-wide Runtime singleton, so two
AppTests cannot run at once in one process). Here every session is its own process (spawned),
so each has its own Streamlit runtime, its own ``portal.db`` engine and its own CPU time slice,
as separate browser sessions on separate app servers would.

Each session signs in through the form as its own editor, goes to the Edit page and picks the
dataset; once all are there the clock starts. Then it loops like a person: inject the grid's
state (AppTest cannot type into a data_editor) setting, on 1-3 rows mostly among the first 20,
``hits`` to the committed value + 1 and ``token`` to a token unique to the attempt; type the
token as the reason; "Review and commit…"; "Commit" (that run timed: the commit click's page
latency, the page's rerun after the commit included). The outcome is read off the page:
"Committed as changeset N" (ok), the conflict view (conflict) or anything else (error). After a
conflict it clicks "Reload and re-apply my edits" and, if cells clash, keeps "mine" and "Apply
my choices" (as ``benchmarks.load`` resolves them), then edits the reloaded rows again.

The ChangeSet each Commit click sent is the page's own (``edit.<id>.pending`` of the run that
opened the dialog), so the attempts are ``benchmarks.load.Attempt`` records and
``benchmarks.load.violations`` checks them unchanged.

    python -m benchmarks.load_pages [--sessions 20] [--seconds 30] [--rows 200]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import random
import re
import secrets
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/4_edit.py"
RUN_TIMEOUT = 180.0
"""Seconds one AppTest run may take: 20 processes share 2 cores with PostgreSQL."""
DONE = re.compile(r"Committed as changeset (\d+)")


# ---------------------------------------------------------------------------------------------
# One session (a child process)
# ---------------------------------------------------------------------------------------------


def _button(at: Any, label: str) -> Any:
    found = [b for b in at.button if b.label == label]
    if len(found) != 1:
        raise RuntimeError(f"{len(found)} buttons labelled {label!r}: {_shown(at)}")
    return found[0]


def _shown(at: Any) -> str:
    parts = [f"exception: {e.value}" for e in at.exception]
    parts += [f"error: {e.value}" for e in at.error]
    parts += [f"warning: {e.value}" for e in at.warning]
    return "; ".join(parts)[:500] or "(no error shown)"


def _open_page(at: Any, username: str, password: str, dataset_id: int) -> Any:
    at.run()
    at.text_input(key="sign_in.username").input(username)
    at.text_input(key="sign_in.password").input(password)
    at.button(key="sign_in.submit").click()
    at.run()
    if any(b.key == "sign_in.submit" for b in at.button) or at.exception:
        raise RuntimeError(f"sign-in failed: {_shown(at)}")
    at.switch_page("app.py").run()  # app.py's st.navigation, as in tests/app/conftest.show_app
    at.switch_page(PAGE).run()
    at.selectbox(key="edit.dataset").select(dataset_id).run()
    if at.exception or not at.data_editor:
        raise RuntimeError(f"the Edit page did not show the grid: {_shown(at)}")
    return at


def _session(
    n: int,
    username: str,
    password: str,
    dataset_id: int,
    rows: int,
    env: dict[str, str],
    seed: int,
    ready: Any,
    go: Any,
    deadline_at: Any,
    out: Any,
) -> None:
    os.environ.update(env)
    attempts: list[Any] = []
    crashes: list[str] = []
    abandoned = 0
    try:
        from streamlit.testing.v1 import AppTest

        from benchmarks.load import HOT_ROWS, Attempt, _edit_state

        # Setting session state between runs (no script running) warns "missing
        # ScriptRunContext" each time; a filter, since Streamlit resets its loggers' levels.
        logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(
            lambda record: "missing ScriptRunContext" not in record.getMessage()
        )

        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=RUN_TIMEOUT)
        try:
            _open_page(at, username, password, dataset_id)
        finally:
            ready.wait(timeout=600)  # everyone signed in and on the page (or given up)
        go.wait(timeout=600)
        deadline = deadline_at.value
        rng = random.Random(seed * 1_000 + n)
        hot = list(range(1, min(rows, HOT_ROWS) + 1))
        everyone = list(range(1, rows + 1))
        k = {p: f"edit.{dataset_id}.{p}" for p in ("window", "pending", "conflict", "rebased")}
        serial = 0
        while time.monotonic() < deadline:
            serial += 1
            targets = sorted(
                {rng.choice(hot) if rng.random() < 0.8 else rng.choice(everyone) for _ in range(3)}
            )[: rng.randint(1, 3)]
            attempt = 0
            while True:
                attempt += 1
                token = f"s{n}-e{serial}-a{attempt}"
                loaded = at.session_state[k["window"]]
                # The grid as shown (pending changes on top); hits = the committed value + 1.
                at.session_state[loaded.editor_key] = _edit_state(
                    loaded.window, targets, None, token
                )
                at.run()
                at.text_input(key=f"edit.{dataset_id}.reason").input(token).run()
                _button(at, "Review and commit…").click().run()
                changes = at.session_state[k["pending"]]  # what the dialog commits
                _button(at, "Commit").click()
                start = time.perf_counter()
                at.run()
                seconds = time.perf_counter() - start
                done = [m for s in at.success if (m := DONE.search(str(s.value)))]
                if done and not at.exception:
                    attempts.append(
                        Attempt(n, token, changes, "ok", seconds, changeset_id=int(done[0][1]))
                    )
                    break
                if k["conflict"] in at.session_state:
                    exc = at.session_state[k["conflict"]]
                    mine = {u.row_id: u.version for u in changes.updates}
                    explained = bool(exc.conflicts) and all(
                        c.row_id in mine and c.version != mine[c.row_id] for c in exc.conflicts
                    )
                    attempts.append(
                        Attempt(
                            n,
                            token,
                            changes,
                            "conflict",
                            seconds,
                            conflict_rows=tuple(c.row_id for c in exc.conflicts),
                            conflicts_explained=explained,
                        )
                    )
                else:
                    attempts.append(Attempt(n, token, changes, "error", seconds, error=_shown(at)))
                    break
                if time.monotonic() >= deadline:
                    abandoned += 1
                    break
                _button(at, "Reload and re-apply my edits").click().run()
                if k["rebased"] in at.session_state:  # cells clash: keep mine, as load does
                    for radio in at.radio:
                        if (radio.key or "").startswith(f"edit.{dataset_id}.clash."):
                            radio.set_value("mine")
                    _button(at, "Apply my choices").click().run()
                if at.exception or k["window"] not in at.session_state:
                    raise RuntimeError(f"after reload and re-apply: {_shown(at)}")
    except Exception as exc:  # noqa: BLE001 - reported to the parent, checked as a violation
        crashes.append(
            f"session {n}: {type(exc).__name__}: {exc}\n"
            + "".join(traceback.format_exc().splitlines(keepends=True)[-6:])
        )
    out.put((n, attempts, abandoned, crashes))


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------


def run_pages(
    env: dict[str, str],
    users: list[tuple[str, str]],
    dataset_id: int,
    *,
    seconds: float,
    rows: int,
    seed: int = 9,
) -> Any:
    """One AppTest session (a spawned process) per (username, password), all editing
    ``dataset_id`` for ``seconds`` once every one is on the Edit page; returns a
    ``benchmarks.load.LoadRun`` of every Commit click."""
    from benchmarks.load import LoadRun

    ctx = mp.get_context("spawn")
    sessions = len(users)
    ready = ctx.Barrier(sessions + 1)
    go = ctx.Event()
    deadline_at = ctx.Value("d", 0.0)
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_session,
            args=(n, name, pw, dataset_id, rows, env, seed, ready, go, deadline_at, out),
            name=f"load-page-{n}",
        )
        for n, (name, pw) in enumerate(users)
    ]
    started = time.monotonic()
    for p in procs:
        p.start()
    ready.wait(timeout=600)
    took = time.monotonic() - started
    print(f"  {sessions} sessions signed in and on the Edit page in {took:.1f} s")
    start = time.monotonic()
    deadline_at.value = start + seconds
    go.set()
    run = LoadRun(sessions)
    for _ in procs:
        _n, attempts, abandoned, crashes = out.get(timeout=seconds + 600)
        run.attempts += attempts
        run.abandoned += abandoned
        run.crashes += crashes
    run.seconds = time.monotonic() - start
    for p in procs:
        p.join(60)
    return run


def main(sessions: int = 20, seconds: float = 30, rows: int = 200) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from benchmarks.common import bench_editor, cluster
    from benchmarks.load import create_dataset, violations
    from portal.actor import cli_actor
    from portal.db import reset_engine
    from portal.users import create_user

    with cluster() as info:
        owner = bench_editor(info)  # sets PORTAL_DATABASE_URL to the cluster's app role
        engine = create_engine(info.url("app"))
        users = [(f"page{n}", secrets.token_urlsafe(16)) for n in range(sessions)]
        with Session(engine) as s, s.begin():
            for name, password in users:
                create_user(
                    session=s,
                    actor=cli_actor(),
                    username=name,
                    display_name=f"Page {name[4:]}",
                    role="editor",
                    password=password,
                )
        dataset_id = create_dataset(owner, rows, name="Load pages")
        env = {
            "PORTAL_DATABASE_URL": info.url("app"),
            "PORTAL_COOKIE_KEY": os.environ.get("PORTAL_COOKIE_KEY") or secrets.token_urlsafe(48),
        }
        run = run_pages(env, users, dataset_id, seconds=seconds, rows=rows)
        problems = violations(engine, dataset_id, rows, run)
        engine.dispose()
        reset_engine()
    ok, attempts = len(run.committed), len(run.attempts)
    rate = len(run.conflicts) / attempts if attempts else 0.0
    print(f"\nload_pages: {sessions} AppTest sessions (processes) on {PAGE}, {rows} rows")
    print(f"  sessions                 {sessions:8d}")
    print(f"  seconds                  {run.seconds:8.1f}")
    print(f"  commits                  {ok:8d}")
    print(f"  commits/s                {ok / run.seconds:8.2f}")
    conflicts = len(run.conflicts)
    print(f"  conflicts                {conflicts:8d}   ({rate:.1%} of {attempts} attempts)")
    print(f"  errors                   {len(run.errors):8d}")
    print(f"  abandoned at deadline    {run.abandoned:8d}")
    print(f"  commit click p50         {run.latency(0.5) * 1000:8.1f} ms")
    print(f"  commit click p95         {run.latency(0.95) * 1000:8.1f} ms")
    broken = f"{len(problems)} BROKEN:\n    " + "\n    ".join(problems[:10])
    print("  invariants: " + ("all hold" if not problems else broken))
    return run, problems


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rows", type=int, default=200)
    args = parser.parse_args()
    main(args.sessions, args.seconds, args.rows)
