"""Requests from front ends' fields and from batch files; a batch's executions and its report."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_pool.core.errors import InvalidInput
from claude_pool.pool import Pool
from claude_pool.pool.models import DelegationRequest
from claude_pool.records.batch import run_batch
from claude_pool.records.batch_report import batch_summary, summary_headline, summary_markdown
from claude_pool.records.requests import batch_requests, delegation_request
from claude_pool.storage import utcnow

from .conftest import RecordsWorld


def test_a_request_from_fields_names_the_wrong_one() -> None:
    before = time.time()
    request = delegation_request("org", message="hi", model=None, max_tokens=None, timeout_seconds=30)
    assert request.model == DelegationRequest.model_fields["model"].default  # None: the default
    assert request.deadline is not None and before + 30 <= request.deadline <= time.time() + 30
    with pytest.raises(InvalidInput) as no_message:
        delegation_request("org")
    assert no_message.value.field == "messages"
    with pytest.raises(InvalidInput) as too_many:
        delegation_request("org", message="hi", max_tokens=0)
    assert too_many.value.field == "max_tokens"


def test_batch_requests_from_a_list_or_a_file(tmp_path: Path) -> None:
    defaults = {"organization_id": "org", "max_tokens": 20, "model": None}
    listed = batch_requests([{"message": "a"}, {"message": "b", "idempotency_key": "mine"}], None, defaults, "b1")
    assert [r["idempotency_key"] for r in listed] == ["b1-0", "mine"]
    assert all(r["max_tokens"] == 20 and r["model"] for r in listed)  # model None: the default one
    path = tmp_path / "requests.jsonl"
    path.write_text('{"message": "a"}\n\n{"message": "b"}\n', encoding="utf-8")
    assert [r["messages"][0]["content"] for r in batch_requests(None, str(path), defaults, "b2")] == ["a", "b"]


@pytest.mark.parametrize(
    ("requests", "jsonl", "field"),
    [
        (None, None, "requests"),
        ([{"message": "a"}], "x.jsonl", "requests"),
        (None, "missing.jsonl", "jsonl_path"),
        (None, "bad.jsonl", "jsonl_path line 2"),
        (["just text"], None, "requests[0]"),
        ([{"message": "a"}, {"max_tokens": 5}], None, "requests[1]"),
    ],
)
def test_a_wrong_batch_names_where(
    tmp_path: Path, requests: list[object] | None, jsonl: str | None, field: str
) -> None:
    (tmp_path / "bad.jsonl").write_text('{"message": "a"}\n{not json\n', encoding="utf-8")
    path = None if jsonl is None else str(tmp_path / jsonl)
    with pytest.raises(InvalidInput) as refused:
        batch_requests(requests, path, {"organization_id": "org"}, "b")
    assert refused.value.field == field


async def test_a_batch_runs_every_request_and_reports_what_it_did(
    records_world: Callable[..., RecordsWorld],
) -> None:
    world = records_world()
    requests = [DelegationRequest(organization_id="tenant-a", message=f"m{i}", max_tokens=8) for i in range(5)]
    requests.append(DelegationRequest(organization_id="tenant-a", message="refused", model="gpt-4"))
    since, done = utcnow(), []
    async with Pool.open(world.runtime) as pool:
        outcomes = await run_batch(
            pool, requests, concurrency=3, executions=world.executions, on_done=done.append
        )
    assert [o.status for o in outcomes] == ["succeeded"] * 5 + ["failed"] and len(done) == 6
    assert sorted(o.execution_id or "" for o in outcomes) == sorted(r[0] for r in world.rows())
    summary = await batch_summary(world.runtime, [o.as_dict() for o in outcomes], since, 2.0)
    assert (summary["requests"], summary["succeeded"], summary["failed"]) == (6, 5, 1)
    assert summary["errors"] == {"CallerRequestError": 1} and summary["requests_per_s"] == 3.0
    names = {world.runtime.accounts.get(i).name for i in world.account_ids.values()}
    assert set(summary["per_account"]) <= names
    assert sum(a["requests"] for a in summary["per_account"].values()) == 5
    markdown = summary_markdown(summary)
    assert markdown.splitlines()[0] == f"# {summary_headline(summary)}"
    assert summary_headline(summary).startswith("delegate-batch: 5/6 succeeded")
