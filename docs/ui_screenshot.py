"""Screenshots of a ``delegate`` run in the Prefect UI, for the README (``make docs-screenshot``).

Starts the Anthropic simulator with two accounts registered, a real Prefect server (a temporary
PREFECT_HOME of its own) and ``claude-pool serve-flows``; triggers the ``delegate`` deployment as
the UI's "Run" button does (``POST /deployments/<id>/create_flow_run``); then opens the run's page
in headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright) and saves under docs/:

- ``prefect-ui-delegate-artifact.png``: the run's ``delegate-execution`` artifact, opened from the
  run page's Artifacts tab: the answer, the account, attempts, tokens and the execution id;
- ``prefect-ui-delegate-logs.png``: the run page with its log, the "account selection" line.

Each screenshot is taken once the page shows what it is meant to show (the answer and the execution
id, the account selection line), read from the pool's own records. Every process it starts is
stopped at the end, whatever happens. It runs in the docs virtualenv (the project and Playwright):
``.venv-docs/bin/python docs/ui_screenshot.py``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_pool.core.crypto import generate_key
from claude_pool.core.settings import Settings
from claude_pool.records.executions import ExecutionStore
from claude_pool.runtime import Runtime
from claude_pool.simulator import RunningSimulator, Scenario
from claude_pool.simulator.accounts import register_simulated_accounts
from claude_pool.simulator.harness import simulator
from claude_pool.simulator.scenario import OutputSpec

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

DOCS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent  # prefect and claude-pool of the same virtualenv
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags this machine's Chromium has its connections refused.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 1400, "height": 900}
ORGANIZATION = "acme"
# The simulator answers with a fixed pangram ("the quick brown fox..."): a question it answers well.
QUESTION = "Which English sentence uses every letter of the alphabet?"
PARAMETERS = {
    "organization_id": ORGANIZATION,
    "message": QUESTION,
    "max_tokens": 64,
    "user_id": "ada",
    "idempotency_key": "docs-1",
}
TIMEOUT_S = 180


@dataclass(frozen=True)
class DelegateRun:
    """What the screenshots must show, from the pool's records of the run."""

    flow_run_id: str
    execution_id: str
    answer: str
    account: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _api(url: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 (loopback only)
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 (loopback only)
        return json.loads(reply.read() or b"null")


def _wait(what: str, check: Callable[[], Any]) -> Any:
    """``check()``'s first truthy value, asked once a second. An OSError (no server yet, or a 503
    from a SQLite-backed Prefect server that is busy) counts as "not yet"; the last one is reported."""
    deadline = time.monotonic() + TIMEOUT_S
    last_error: OSError | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError as exc:
            value, last_error = None, exc
        if value:
            return value
        time.sleep(1)
    raise SystemExit(f"timed out after {TIMEOUT_S}s waiting for {what} (last error: {last_error})")


@contextmanager
def _process(name: str, args: list[str], env: dict[str, str], workdir: Path) -> Iterator[None]:
    """``args`` running in the background, its output in ``workdir/<name>.log``; stopped on exit."""
    with (workdir / f"{name}.log").open("w") as log:
        proc = subprocess.Popen(args, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _pool_env(workdir: Path, sim: RunningSimulator) -> dict[str, str]:
    """The pool's settings, as the flows read them, with the simulator's keys registered as accounts."""
    env = {
        "CLAUDE_POOL_HOME": str(workdir / "pool-home"),
        "CLAUDE_POOL_CONFIG": str(workdir / "no-config.json"),  # the defaults
        "ENCRYPTION_KEY": generate_key(),
        "ANTHROPIC_BASE_URL": sim.base_url,
        "LOG_FILE": str(workdir / "app.log"),
    }
    runtime = Runtime.from_env(Settings.from_env(env))
    try:
        runtime.db.upgrade()
        register_simulated_accounts(runtime.accounts, sim.keys, sim.orgs, organization_id=ORGANIZATION)
    finally:
        runtime.close()
    return env


def _environment(workdir: Path, pool_env: dict[str, str], port: int) -> dict[str, str]:
    """This shell's environment without its Prefect, pool and backend settings, then ours."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLAUDE_POOL_"))}
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "SLACK_BOT_TOKEN",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_ADMIN_API_KEY",
    ):
        inherited.pop(name, None)
    return {
        **inherited,
        **pool_env,
        "PREFECT_HOME": str(workdir / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # No scheduled capacity-sync/quota-sweep/health-check runs: they would only compete with
        # the delegate run for the server's SQLite database.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_LOCAL_STORAGE_PATH": str(workdir / "results"),
    }


def _delegate_run(api: str) -> str:
    """A ``delegate`` run triggered as the UI's "Run" button does; its id once it has completed."""
    deployment = _wait(
        "the served delegate deployment", lambda: _api(f"{api}/deployments/name/delegate/delegate")
    )
    # the idempotency key makes a retry after a 503 return the same run rather than a second one
    body = {"parameters": PARAMETERS, "idempotency_key": "docs-screenshot"}
    run = _wait(
        "the delegate run's creation",
        lambda: _api(f"{api}/deployments/{deployment['id']}/create_flow_run", body),
    )

    def completed() -> str:
        state = _api(f"{api}/flow_runs/{run['id']}")["state"]["type"]
        if state in ("FAILED", "CRASHED", "CANCELLED"):
            raise SystemExit(f"the delegate run ended {state}: see the serve-flows log")
        return str(run["id"]) if state == "COMPLETED" else ""

    return str(_wait(f"flow run {run['id']} to complete", completed))


def _recorded(pool_env: dict[str, str], flow_run_id: str) -> DelegateRun:
    runtime = Runtime.from_env(Settings.from_env(pool_env))
    try:
        [row] = ExecutionStore(runtime.db).list(flow_run_id=flow_run_id, limit=1)
        account = runtime.accounts.get(row.account_id or "")
    finally:
        runtime.close()
    return DelegateRun(flow_run_id, row.id, (row.response_text or "").strip(), account.name)


def main() -> None:
    scenario = Scenario.uniform(
        accounts=2, rpm=1000, itpm=1_000_000, otpm=100_000, output=OutputSpec("fixed", tokens=20)
    )
    started = time.monotonic()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="claude-pool-docs-")))
        sim = stack.enter_context(simulator(scenario))
        port = _free_port()
        pool_env = _pool_env(workdir, sim)
        env = _environment(workdir, pool_env, port)
        api = env["PREFECT_API_URL"]
        server = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        stack.enter_context(_process("prefect-server", server, env, workdir))
        _wait("the Prefect server", lambda: _api(f"{api}/health") is True)
        stack.enter_context(_process("serve-flows", [str(BIN / "claude-pool"), "serve-flows"], env, workdir))
        run = _recorded(pool_env, _delegate_run(api))
        print(f"delegate run {run.flow_run_id}: execution {run.execution_id} answered by {run.account}")
        for path in _screenshots(f"http://127.0.0.1:{port}", run):
            print(f"wrote {path.relative_to(DOCS.parent)}")
    print(f"done in {time.monotonic() - started:.0f} s")


def _screenshots(ui: str, run: DelegateRun) -> list[Path]:
    from playwright.sync_api import Page, sync_playwright

    def shoot(page: Page, name: str) -> Path:
        path = DOCS / name
        page.screenshot(path=str(path))
        return path

    with sync_playwright() as playwright:
        # Playwright gives the browser a fresh --user-data-dir of its own, deleted when it closes.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(TIMEOUT_S * 1000)
            page.goto(f"{ui}/runs/flow-run/{run.flow_run_id}")
            # the Logs tab is open first; the page is there once the pool's own line is
            page.get_by_text(f"account selection account={run.account}").wait_for()
            # the run's header and its whole log in one picture: the window as tall as the page
            # (the UI scrolls an inner pane, so a full-page screenshot would stop at the window)
            box = page.locator(".flow-run-logs").bounding_box() or {"y": 0, "height": VIEWPORT["height"]}
            page.set_viewport_size({"width": VIEWPORT["width"], "height": int(box["y"] + box["height"] + 24)})
            logs = shoot(page, "prefect-ui-delegate-logs.png")
            page.set_viewport_size(VIEWPORT)
            # as a person would: the Artifacts tab, then the artifact's card
            page.locator(".p-tab", has_text="Artifacts").click()
            page.get_by_text("delegate-execution", exact=True).last.click()
            page.get_by_text(run.answer).wait_for()
            page.get_by_text(run.execution_id, exact=True).wait_for()
            artifact = shoot(page, "prefect-ui-delegate-artifact.png")
        finally:
            browser.close()
    return [artifact, logs]


if __name__ == "__main__":
    main()
