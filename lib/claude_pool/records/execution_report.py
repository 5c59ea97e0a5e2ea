"""One execution for people: the markdown a ``delegate`` run shows in the Prefect UI, and the name
of the run that made it.

Built from an :meth:`ExecutionView.as_dict` (plain, already redacted values); everything written
here is redacted again, since it leaves for Prefect's database.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from claude_pool.core.config import PoolConfig
from claude_pool.core.redaction import redact

__all__ = ["delegation_run_name", "execution_cost_usd", "execution_markdown"]

Execution = Mapping[str, Any]  # an ExecutionView.as_dict()

_NAME_PART_LIMIT = 60


def delegation_run_name(
    organization_id: str, *, user_id: str | None = None, idempotency_key: str | None = None
) -> str:
    """``tenant-a · user u-1 · key job-7``: who asked, so that a run is found by eye in a list."""
    parts = [organization_id]
    if user_id:
        parts.append(f"user {user_id}")
    if idempotency_key:
        parts.append(f"key {idempotency_key}")
    return redact(" · ".join(p[:_NAME_PART_LIMIT] for p in parts))


def execution_cost_usd(config: PoolConfig, execution: Execution) -> float | None:
    """What the execution's tokens cost at the configured list prices; None when unpriced."""
    price = config.price_for(str(execution.get("model") or ""))
    if price is None:
        return None
    return price.cost_usd(
        input_tokens=int(execution.get("input_tokens") or 0),
        output_tokens=int(execution.get("output_tokens") or 0),
        cache_write_tokens=int(execution.get("cache_creation_input_tokens") or 0),
        cache_read_tokens=int(execution.get("cache_read_input_tokens") or 0),
    )


def _figures(execution: Execution, names: Mapping[str, str], cost_usd: float | None) -> list[str]:
    account = execution.get("account_name") or names.get(execution.get("account_id") or "", "-")
    latency = execution.get("latency_ms")
    return [
        "| | |",
        "|---|---|",
        f"| execution id | `{execution.get('execution_id') or '-'}` |",
        f"| status | {execution.get('status')} |",
        f"| account | {account} |",
        f"| model | {execution.get('model')} |",
        f"| attempts | {execution.get('attempts', 0)} ({execution.get('failovers', 0)} fail-overs) |",
        f"| tokens | {execution.get('input_tokens', 0)} in, {execution.get('output_tokens', 0)} out |",
        f"| latency | {'-' if latency is None else f'{latency:.0f} ms'} |",
        f"| cost | {'unpriced' if cost_usd is None else f'${cost_usd:.6f}'} |",
    ]


def _attempts(execution: Execution, names: Mapping[str, str]) -> list[str]:
    details = execution.get("attempt_details") or []
    if not details:
        return ["No account was tried."]
    lines = ["| # | account | outcome | HTTP status | error | latency |", "|---:|---|---|---:|---|---:|"]
    for number, attempt in enumerate(details, start=1):
        account_id = attempt.get("account_id") or ""
        lines.append(
            f"| {number} | {names.get(account_id, account_id or '-')} | {attempt.get('outcome')} "
            f"| {attempt.get('status_code') or '-'} | {attempt.get('error_type') or '-'} "
            f"| {float(attempt.get('latency_ms') or 0):.0f} ms |"
        )
    return lines


def execution_markdown(
    execution: Execution, *, names: Mapping[str, str] | None = None, cost_usd: float | None = None
) -> str:
    """The answer (or the error, with each account's reason), then the figures of the execution.
    ``names`` maps account ids to names for the attempts table."""
    names = names or {}
    if execution.get("status") == "succeeded":
        head = ["# Answer", "", str(execution.get("text") or "(empty)")]
    else:
        error = f"{execution.get('error_type') or 'Error'}: {execution.get('error_message') or ''}"
        head = [f"# Delegation {execution.get('status')}", "", "```", error.strip(), "```", "", "## Per account", ""]
        head += _attempts(execution, names)
    lines = [*head, "", "## Execution", "", *_figures(execution, names, cost_usd)]
    if execution.get("status") == "succeeded" and execution.get("failovers"):
        lines += ["", "## Attempts", "", *_attempts(execution, names)]
    lines += ["", f"Details: `claude-pool executions show {execution.get('execution_id')}`"]
    return redact("\n".join(lines))
