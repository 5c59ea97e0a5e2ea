"""Register a simulator's keys as pool accounts, for rehearsals, the demo and tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from claude_pool.accounts.registry import AccountService
from claude_pool.simulator.scenario import KeySpec, OrgSpec

__all__ = ["register_simulated_accounts"]


def register_simulated_accounts(
    accounts: AccountService,
    keys: Sequence[KeySpec],
    orgs: Sequence[OrgSpec],
    *,
    organization_id: str,
    tier: str = "pro",
    shared_orgs: bool = True,
    **extra: Any,
) -> dict[str, str]:
    """Each key as an account of ``organization_id`` with its Anthropic organization's limits; keys
    of one organization share a capacity group (``shared_orgs``), as they share its limits upstream.
    ``extra`` fields (``max_in_flight``, ``priority``...) apply to every account. Returns name -> id."""
    limits = {o.id: o.limits for o in orgs}
    keys_per_org: dict[str, int] = {}
    for spec in keys:
        keys_per_org[spec.org] = keys_per_org.get(spec.org, 0) + 1
    ids = {}
    for spec in keys:
        org_limits = limits[spec.org]
        account = accounts.register(
            {
                "organization_id": organization_id,
                "name": spec.name,
                "tier": tier,
                "api_key": spec.key,
                "requests_per_minute": org_limits.rpm,
                "input_tokens_per_minute": org_limits.itpm,
                "output_tokens_per_minute": org_limits.otpm,
                "capacity_group": spec.org if shared_orgs and keys_per_org[spec.org] > 1 else None,
                **extra,
            }
        )
        ids[spec.name] = account.id
    return ids
