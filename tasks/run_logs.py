"""The pool's own log lines (account selection, fail-overs, breaker transitions, quota decisions)
in the log of the Prefect run that caused them, with their context in the text, redacted.

The library logs on ``claude_pool`` with its context as ``extra`` fields; Prefect's API handler
would send only the bare message, so ours formats ``message key=value ...`` first. Records made
outside a flow or task run (a worker's start, a server) stay in the log file only.
"""

from __future__ import annotations

import logging

from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.handlers import APILogHandler

from claude_pool.core.logs import MessageContextFormatter, RedactingFilter

__all__ = ["forward_pool_logs_to_prefect", "redact_prefect_log_sinks"]

_MARK = "_claude_pool_run_log"
#: Prefect's loggers whose handlers leave the process (to the API, or the worker's console).
PREFECT_LOGGERS = ("prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.extra", "")


def _in_a_run(_record: logging.LogRecord) -> bool:
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def forward_pool_logs_to_prefect() -> None:
    """Idempotent: one handler on ``claude_pool`` sending each record made in a run to that run."""
    pool_logger = logging.getLogger("claude_pool")
    if any(getattr(h, _MARK, False) for h in pool_logger.handlers):
        return
    handler = APILogHandler()
    setattr(handler, _MARK, True)
    handler.addFilter(_in_a_run)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(MessageContextFormatter())
    pool_logger.addHandler(handler)


def redact_prefect_log_sinks() -> None:
    """Prefect's own handlers redact too: a key quoted in an exception or a printed value never
    reaches Prefect's API, database or console in the clear. Idempotent."""
    for name in PREFECT_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())


# At once, when a flow module is loaded (after Prefect set up its logging): a run's first lines,
# and an exception its flow raises before any task started the runtime, are redacted too.
redact_prefect_log_sinks()
