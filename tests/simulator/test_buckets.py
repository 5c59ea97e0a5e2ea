from __future__ import annotations

import pytest

from claude_pool.simulator import Limits, OrgBuckets, TokenBucket


def test_bucket_starts_full_and_refills_continuously() -> None:
    b = TokenBucket(60, now=0.0)
    assert b.level == 60
    b.take(60)
    b.refill(0.5)
    assert b.level == pytest.approx(0.5)
    b.refill(100.0)
    assert b.level == 60  # never above capacity


def test_refused_request_consumes_nothing() -> None:
    buckets = OrgBuckets(Limits(rpm=10, itpm=1000, otpm=500), now=0.0)
    assert buckets.try_admit(900, 100, now=0.0) is None
    before = (buckets.requests.level, buckets.input_tokens.level, buckets.output_tokens.level)
    assert buckets.try_admit(200, 10, now=0.0) == "input_tokens"
    assert buckets.try_admit(10, 450, now=0.0) == "output_tokens"
    assert (buckets.requests.level, buckets.input_tokens.level, buckets.output_tokens.level) == before


def test_requests_bucket_is_checked_first() -> None:
    buckets = OrgBuckets(Limits(rpm=1, itpm=10, otpm=10), now=0.0)
    assert buckets.try_admit(1, 1, now=0.0) is None
    assert buckets.try_admit(100, 100, now=0.0) == "requests"


def test_output_is_charged_at_admission_and_refunded_at_the_end() -> None:
    buckets = OrgBuckets(Limits(rpm=100, itpm=10_000, otpm=1000), now=0.0)
    assert buckets.try_admit(10, 400, now=0.0) is None
    assert buckets.output_tokens.level == 600
    buckets.refund_output(400 - 30, now=0.0)
    assert buckets.output_tokens.level == 970


def test_retry_after_is_whole_seconds_until_room() -> None:
    buckets = OrgBuckets(Limits(rpm=60, itpm=6000, otpm=6000), now=0.0)  # 1 request/s
    for _ in range(60):
        assert buckets.try_admit(1, 1, now=0.0) is None
    assert buckets.try_admit(1, 1, now=0.0) == "requests"
    assert buckets.retry_after(1, 1, now=0.0) == 1
    assert buckets.retry_after(1, 1, now=0.999) == 1
    assert buckets.try_admit(1, 1, now=1.0) is None
    # ITPM 6000 = 100 tokens/s; after draining, 250 tokens need 2.5 s -> 3.
    tokens = OrgBuckets(Limits(rpm=600, itpm=6000, otpm=6000), now=0.0)
    assert tokens.try_admit(6000, 1, now=0.0) is None
    assert tokens.try_admit(250, 1, now=0.0) == "input_tokens"
    assert tokens.retry_after(250, 1, now=0.0) == 3


def test_oversized_request_waits_for_a_full_bucket() -> None:
    buckets = OrgBuckets(Limits(rpm=60, itpm=600, otpm=600), now=0.0)
    assert buckets.try_admit(700, 1, now=0.0) == "input_tokens"
    assert buckets.retry_after(700, 1, now=0.0) == 1  # already full: the soonest it could ever fit


def test_tier_change_keeps_the_amount_used() -> None:
    buckets = OrgBuckets(Limits(rpm=100, itpm=1000, otpm=1000), now=0.0)
    buckets.try_admit(500, 1, now=0.0)
    buckets.set_limits(Limits(rpm=200, itpm=2000, otpm=2000), now=0.0)
    assert buckets.input_tokens.level == pytest.approx(1500)
    buckets.set_limits(Limits(rpm=200, itpm=400, otpm=2000), now=0.0)
    assert buckets.input_tokens.level == 0
    assert buckets.requests.capacity == 200
