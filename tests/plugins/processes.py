"""Child processes of a test: 'spawn' workers released together, and ``python -m`` commands.

reports = run_spawned(worker.run, [(backend, path) for _ in range(4)], timeout=60)
child = python_module("claude_pool", "serve", "--port", str(port), env=env, cwd=tmp_path)
health = wait_while_running(child, ask_health, what="the server answers", timeout=30)
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["python_module", "run_spawned", "wait_while_running"]

T = TypeVar("T")


def run_spawned(
    target: Callable[..., None],
    arguments: Sequence[tuple[Any, ...]],
    *,
    timeout: float,
    on_started: Callable[[], None] | None = None,
    start_timeout: float = 120.0,
) -> list[Any]:
    """One 'spawn' process per tuple of ``arguments`` (no fork of a process that holds threads and
    loops), each running ``target(*args, barrier, results)``: it waits at ``barrier`` (so slow
    start-ups on a loaded machine do not shorten anyone's run) and puts its report on ``results``.
    Returns the reports in the order they came, each waited for at most ``timeout`` seconds.

    With ``on_started`` the parent is one more party at the start line (waited for at most
    ``start_timeout``) and calls it once every worker is there; ``timeout`` then counts from there.
    Every process must end with exit code 0; one that does not end is killed."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(arguments) + (on_started is not None))
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, results)) for args in arguments]
    for p in procs:
        p.start()
    try:
        if on_started is not None:
            barrier.wait(timeout=start_timeout)
            on_started()
        reports = [results.get(timeout=timeout) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=15)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        results.close()
        results.join_thread()
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return reports


def python_module(
    module: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    **popen: Any,
) -> subprocess.Popen[Any]:
    """``python -m module args`` in a child process, with this interpreter; stdout and stderr are
    pipes unless ``popen`` says otherwise (``stderr=subprocess.STDOUT``, ``text=True``...)."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "-m", module, *args], env=env, cwd=cwd, **popen)


def wait_while_running(
    child: subprocess.Popen[Any],
    ready: Callable[[], T | None],
    *,
    what: str,
    timeout: float,
    every: float = 0.1,
) -> T:
    """The first answer of ``ready()`` that is not None, asked every ``every`` seconds: a bounded poll,
    as a child process has no other way to say it got there. Fails as soon as the child exits
    (with what it wrote), or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (answer := ready()) is None:
        if child.poll() is not None:
            raise AssertionError(
                f"the child exited ({child.returncode}) before {what}: {child.communicate()}"
            )
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(every)
    return answer
