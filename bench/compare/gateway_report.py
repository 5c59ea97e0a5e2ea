"""The gateway benchmark's tables: added latency, time to first byte and CPU at light load; goodput
and 429s under limits; and issue 15's targets for claude-pool's ``/v1/messages``, met or not."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace

from bench.compare.figures import percentile
from bench.compare.gateway_load import LightTimings, LoadCounts
from bench.compare.gateway_paths import Target

__all__ = ["LightRow", "light_rows", "light_table", "load_table", "targets_verdict"]

#: Issue 15, "Done when": added over the simulator called directly, at light load (ms).
TARGET_ADDED_P50_MS = 3.0
TARGET_ADDED_P99_MS = 10.0
TARGET_TTFB_MS = 5.0


def _ms(seconds: float) -> float:
    return seconds * 1000.0


@dataclass(frozen=True)
class LightRow:
    name: str
    p50_ms: float
    p99_ms: float
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    stream_p50_ms: float
    cpu_ms_per_request: float
    errors: str
    max_in_flight: int
    added_p50_ms: float = math.nan
    added_p99_ms: float = math.nan
    added_ttfb_p50_ms: float = math.nan
    added_ttfb_p99_ms: float = math.nan


def _errors(counts: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.most_common()) or "0"


def light_rows(targets: list[Target], timings: dict[str, LightTimings]) -> list[LightRow]:
    """One row per measured target; the first target is the baseline the others add to."""
    rows: list[LightRow] = []
    for t in targets:
        m = timings[t.name]
        row = LightRow(
            t.name,
            _ms(percentile(m.messages_s, 50)),
            _ms(percentile(m.messages_s, 99)),
            _ms(percentile(m.ttfb_s, 50)),
            _ms(percentile(m.ttfb_s, 99)),
            _ms(percentile(m.stream_s, 50)),
            _ms(m.cpu_s / m.requests) if m.requests and t.pid is not None else math.nan,
            _errors(m.errors),
            m.max_in_flight,
        )
        if rows:
            base = rows[0]
            row = replace(
                row,
                added_p50_ms=row.p50_ms - base.p50_ms,
                added_p99_ms=row.p99_ms - base.p99_ms,
                added_ttfb_p50_ms=row.ttfb_p50_ms - base.ttfb_p50_ms,
                added_ttfb_p99_ms=row.ttfb_p99_ms - base.ttfb_p99_ms,
            )
        rows.append(row)
    return rows


def _pair(a: float, b: float, digits: int = 1) -> str:
    if math.isnan(a) and math.isnan(b):
        return "—"
    return f"{a:.{digits}f} / {b:.{digits}f}"


def _signed_pair(a: float, b: float) -> str:
    if math.isnan(a) and math.isnan(b):
        return "baseline"
    return f"{a:+.1f} / {b:+.1f}"


def light_table(rows: list[LightRow], skipped: list[Target]) -> str:
    lines = [
        "| path | message p50 / p99 ms | added p50 / p99 ms | stream TTFB p50 / p99 ms | added TTFB p50 / p99 ms "
        "| stream end p50 ms | gateway CPU ms/req | most in flight | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cpu = "—" if math.isnan(r.cpu_ms_per_request) else f"{r.cpu_ms_per_request:.2f}"
        lines.append(
            f"| {r.name} | {_pair(r.p50_ms, r.p99_ms)} | {_signed_pair(r.added_p50_ms, r.added_p99_ms)} "
            f"| {_pair(r.ttfb_p50_ms, r.ttfb_p99_ms)} | {_signed_pair(r.added_ttfb_p50_ms, r.added_ttfb_p99_ms)} "
            f"| {r.stream_p50_ms:.1f} | {cpu} | {r.max_in_flight} | {r.errors} |"
        )
    lines += [f"| {t.name} | not run: {t.skipped} | | | | | | | |" for t in skipped]
    return "\n".join(lines)


def load_table(targets: list[Target], counts: dict[str, LoadCounts], skipped: list[Target]) -> str:
    lines = [
        "| path | offered | answered | goodput | upstream 429s | failures seen by the caller "
        "| answered p50 / p99 ms | gateway CPU ms/answered |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in targets:
        c = counts[t.name]
        answered = len(c.answered_s)
        goodput = c.served_in_window / c.allowed if c.allowed else math.nan
        cpu = f"{_ms(c.cpu_s / answered):.2f}" if answered and t.pid is not None else "—"
        lines.append(
            f"| {t.name} | {c.offered} | {answered} | {goodput:.0%} ({c.served_in_window}/{c.allowed:.0f}) "
            f"| {c.upstream_429} | {_errors(c.failures)} "
            f"| {_pair(_ms(percentile(c.answered_s, 50)), _ms(percentile(c.answered_s, 99)), 0)} | {cpu} |"
        )
    lines += [f"| {t.name} | not run: {t.skipped} | | | | | | |" for t in skipped]
    return "\n".join(lines)


def _check(ok: bool) -> str:
    return "met" if ok else "NOT met"


def targets_verdict(rows: list[LightRow], pool: str, litellm: str) -> list[str]:
    """Issue 15's targets for claude-pool's row, as lines; empty when claude-pool was not measured."""
    by_name = {r.name: r for r in rows}
    if pool not in by_name:
        return []
    p = by_name[pool]
    lines = [
        f"- added p50 {p.added_p50_ms:+.1f} ms (target ≤ {TARGET_ADDED_P50_MS:.0f} ms): "
        f"{_check(p.added_p50_ms <= TARGET_ADDED_P50_MS)}",
        f"- added p99 {p.added_p99_ms:+.1f} ms (target ≤ {TARGET_ADDED_P99_MS:.0f} ms): "
        f"{_check(p.added_p99_ms <= TARGET_ADDED_P99_MS)}",
        f"- added time to first byte p50 {p.added_ttfb_p50_ms:+.1f} ms (target ≤ {TARGET_TTFB_MS:.0f} ms): "
        f"{_check(p.added_ttfb_p50_ms <= TARGET_TTFB_MS)}",
    ]
    if litellm in by_name:
        q = by_name[litellm]
        lower = (
            p.added_p50_ms < q.added_p50_ms
            and p.added_p99_ms < q.added_p99_ms
            and p.added_ttfb_p50_ms < q.added_ttfb_p50_ms
        )
        lines.append(
            f"- lower than LiteLLM's proxy in this run (added p50 {q.added_p50_ms:+.1f}, p99 {q.added_p99_ms:+.1f}, "
            f"TTFB p50 {q.added_ttfb_p50_ms:+.1f} ms): {_check(lower)}"
        )
    else:
        lines.append("- lower than LiteLLM's proxy: not measured (LiteLLM's proxy did not run)")
    return lines
