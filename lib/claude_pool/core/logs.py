"""Logging as the original system's users expect it: ``LOG_LEVEL``, console plus a log file, one line
per event with its context, and every record passed through the key redaction filter, whatever
library emitted it."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path
from typing import Any

from claude_pool.core.redaction import redact
from claude_pool.core.settings import Settings

__all__ = ["ContextFormatter", "MessageContextFormatter", "RedactingFilter", "configure_logging", "log_event"]

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_HANDLER_MARK = "_claude_pool_handler"


class RedactingFilter(logging.Filter):
    """Masks anything shaped like an API key in the message, its arguments and its context."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = redact(str(record.msg))
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def _with_context(line: str, record: logging.LogRecord, *, skip: frozenset[str] = frozenset()) -> str:
    context = {
        k: v
        for k, v in vars(record).items()
        if k not in _STANDARD_ATTRS and k not in skip and not k.startswith("_")
    }
    if context:
        line += " " + " ".join(f"{k}={v}" for k, v in sorted(context.items()))
    return redact(line)


class ContextFormatter(logging.Formatter):
    """``time level logger message key=value ...`` with the record's extra context appended."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")

    def format(self, record: logging.LogRecord) -> str:
        return _with_context(super().format(record), record)


class MessageContextFormatter(logging.Formatter):
    """``message key=value ...``: for a sink that shows the time, level and logger itself (a
    Prefect run's log), the context a person needs in the text they read. ``skip`` names
    attributes that sink adds to records for its own use."""

    def __init__(self, skip: frozenset[str] = frozenset()) -> None:
        super().__init__("%(message)s")
        self._skip = skip

    def format(self, record: logging.LogRecord) -> str:
        return _with_context(super().format(record), record, skip=self._skip)


def configure_logging(settings: Settings, *, console: bool = True) -> None:
    """Idempotent: calling it again replaces our handlers instead of adding more.

    ``console=False`` is for processes whose console belongs to another program (a Prefect worker,
    the demo): every event goes to the log file with its context, only errors to the console (an
    account failing over is the pool's routine, told in the file and the run's summary), and nothing is handed up to the root logger, whose handlers (Prefect's) would print each
    event as a bare message without its context."""
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    root = logging.getLogger("claude_pool")
    root.setLevel(level)
    root.propagate = console
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if not console:
        handlers[0].setLevel(logging.ERROR)
    if settings.log_file is not None:
        Path(settings.log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                settings.log_file, maxBytes=20_000_000, backupCount=5, encoding="utf-8"
            )
        )
    for handler in handlers:
        setattr(handler, _HANDLER_MARK, True)
        handler.setFormatter(ContextFormatter())
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)


def log_event(logger: logging.Logger, level: int, message: str, **context: Any) -> None:
    """One line per event, its context as key=value pairs."""
    logger.log(level, message, extra={k: v for k, v in context.items() if v is not None})
