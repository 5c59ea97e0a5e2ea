"""Every Redis key claude-pool uses, and their lifetimes, in one place.

All keys of one pool share the hash tag ``{<prefix>}`` so that a Redis Cluster keeps a pool in one
slot: the selection script touches many accounts' keys in one call, which a cluster allows only
within one slot.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RedisKeys"]

# How long idle state may linger; every write refreshes it.
BUCKET_TTL_SECONDS = 24 * 3600
STICKY_TTL_SECONDS_DEFAULT = 3600
EVENTS_STREAM_MAXLEN = 10_000


@dataclass(frozen=True)
class RedisKeys:
    prefix: str = "claude-pool"

    @property
    def tag(self) -> str:
        return "{" + self.prefix + "}"

    # --- capacity --------------------------------------------------------------------------
    def bucket(self, bucket_id: str) -> str:
        """Hash: the continuous token buckets (rpm/itpm/otpm level and last refill), cooldown."""
        return self.bucket_prefix() + bucket_id

    def bucket_prefix(self) -> str:
        """What a bucket's key is made of before its id: the acquire script makes the keys of the
        buckets it reads (same hash tag, so the same Cluster slot) rather than take thousands."""
        return f"{self.tag}:bucket:"

    def fullness(self) -> str:
        """Sorted set: bucket keys scored by when each is full again (the acquire script's walk)."""
        return f"{self.tag}:fullness"

    def candidate_list(self, digest: str) -> str:
        """Hash: one candidate list registered for the walk, bucket key -> its candidates; named by
        the digest of the list, so a changed list is a new key and an unused one expires."""
        return f"{self.tag}:candidates:{digest}"

    def account(self, account_id: str) -> str:
        """Hash: an account's static view for selection (bucket id, limits, weight, priority)."""
        return f"{self.tag}:account:{account_id}"

    def leases(self, bucket_id: str) -> str:
        """Sorted set: in-flight leases scored by their expiry time."""
        return self.leases_prefix() + bucket_id

    def leases_prefix(self) -> str:
        return f"{self.tag}:leases:"

    def reservations(self) -> str:
        """Hash: reservation id -> what it holds, so settle and expiry refund exactly once."""
        return f"{self.tag}:reservations"

    def lease_index(self) -> str:
        """Sorted set: every live lease of the pool scored by its expiry, for ``reclaim_expired``."""
        return f"{self.tag}:leases-all"

    def round_robin(self) -> str:
        return f"{self.tag}:rr"

    def sticky(self, sticky_key: str) -> str:
        return f"{self.tag}:sticky:{sticky_key}"

    # --- circuit breaker -------------------------------------------------------------------
    def breaker(self, account_id: str) -> str:
        """Hash: state, consecutive failures, opened_at, open timeout, trips, probes in flight."""
        return f"{self.tag}:breaker:{account_id}"

    def breaker_probes(self, account_id: str) -> str:
        """Sorted set: half-open probe slots (token) scored by when they expire if never returned."""
        return f"{self.tag}:breaker-probes:{account_id}"

    # --- events ----------------------------------------------------------------------------
    def events_channel(self) -> str:
        return f"{self.tag}:events"

    def events_stream(self) -> str:
        return f"{self.tag}:events:log"

    def all_pattern(self) -> str:
        return f"{self.tag}:*"
