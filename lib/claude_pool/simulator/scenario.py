"""What a simulator serves: organizations, their limits and keys, latency, output length and faults.

A scenario is plain data, loadable from JSON or YAML, so the same file drives tests, the
``claude-pool simulate`` command and benchmarks. Keys are derived from the seed: the same scenario
always serves the same keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from claude_pool.simulator.faults import FaultRule

__all__ = [
    "KeySpec",
    "Latency",
    "Limits",
    "OrgSpec",
    "OutputSpec",
    "Scenario",
    "derive_admin_key",
    "derive_api_key",
    "derive_key_id",
    "derive_org_id",
]

OutputMode = Literal["random", "fraction", "fixed"]


def _digest(*parts: object) -> bytes:
    return hashlib.sha512(":".join(["claude-pool-sim", *map(str, parts)]).encode()).digest()


def derive_api_key(seed: int, org_index: int, key_index: int) -> str:
    """A key shaped like Anthropic's (``sk-ant-api03-`` + 86 url-safe chars + ``AA``), from the seed."""
    body = base64.urlsafe_b64encode(_digest("api", seed, org_index, key_index)).decode().rstrip("=")
    return f"sk-ant-api03-{body}AA"


def derive_admin_key(seed: int, org_index: int) -> str:
    body = base64.urlsafe_b64encode(_digest("admin", seed, org_index)).decode().rstrip("=")
    return f"sk-ant-admin01-{body}AA"


def derive_org_id(seed: int, org_index: int) -> str:
    """Organization ids are UUIDs upstream (the ``anthropic-organization-id`` header)."""
    return str(uuid.UUID(bytes=_digest("org", seed, org_index)[:16]))


def derive_key_id(secret: str) -> str:
    """The public id of a key, as the Admin API reports it (``apikey_...``)."""
    return "apikey_01" + base64.b32encode(hashlib.sha256(secret.encode()).digest()).decode()[:22].lower()


@dataclass(frozen=True)
class Limits:
    """Per-minute limits of one organization. Each is the capacity of a bucket refilled limit/60 per s."""

    rpm: int
    itpm: int
    otpm: int

    def __post_init__(self) -> None:
        for name in ("rpm", "itpm", "otpm"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"limits.{name} must be at least 1, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class OrgSpec:
    id: str
    limits: Limits
    admin_key: str
    #: Served input+output tokens after which the org hits its spend cap (None = no cap).
    spend_cap_tokens: int | None = None


@dataclass(frozen=True)
class KeySpec:
    key: str
    org: str
    name: str

    @property
    def id(self) -> str:
        return derive_key_id(self.key)

    def __repr__(self) -> str:
        # Even fake keys stay out of logs by default; tests read ``.key`` explicitly.
        return f"KeySpec(name={self.name!r}, org={self.org!r}, key='{self.key[:16]}...')"


@dataclass(frozen=True)
class Latency:
    """Time to first token, then output at a steady rate. Zeros mean as fast as possible."""

    ttft_ms: float = 0.0
    output_tokens_per_second: float = 0.0


@dataclass(frozen=True)
class OutputSpec:
    """How long answers are: seeded ``random`` in [1, max_tokens], a ``fraction`` of max_tokens, or
    ``fixed`` ``tokens`` (capped at max_tokens)."""

    mode: OutputMode = "random"
    fraction: float = 0.5
    tokens: int = 16


@dataclass(frozen=True)
class Scenario:
    orgs: tuple[OrgSpec, ...]
    keys: tuple[KeySpec, ...]
    seed: int = 0
    latency: Latency = field(default_factory=Latency)
    output: OutputSpec = field(default_factory=OutputSpec)
    faults: tuple[FaultRule, ...] = ()
    #: None accepts any ``claude-*`` model and lists ``models_api.DEFAULT_MODELS`` on ``/v1/models``;
    #: otherwise only these, and it lists them (others get 404 not_found_error).
    models: tuple[str, ...] | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    #: Token ``remaining`` headers are rounded down to a multiple of this (1 = exact values).
    round_tokens_to: int = 1000
    #: Tokens per ``content_block_delta`` event in streams.
    stream_chunk_tokens: int = 16

    def __post_init__(self) -> None:
        org_ids = {o.id for o in self.orgs}
        for key in self.keys:
            if key.org not in org_ids:
                raise ValueError(f"key {key.name!r} names unknown organization {key.org!r}")
        if len({k.key for k in self.keys}) != len(self.keys):
            raise ValueError("two keys of the scenario have the same secret")

    @classmethod
    def uniform(
        cls,
        accounts: int = 3,
        *,
        rpm: int = 50,
        itpm: int = 30_000,
        otpm: int = 8_000,
        seed: int = 0,
        keys_per_org: int = 1,
        **options: Any,
    ) -> Scenario:
        """``accounts`` organizations with the same limits, ``keys_per_org`` keys each, named
        ``acct-1``, ``acct-2``... (``acct-1b``... for extra keys of one org)."""
        orgs: list[OrgSpec] = []
        keys: list[KeySpec] = []
        for i in range(accounts):
            org = OrgSpec(derive_org_id(seed, i), Limits(rpm, itpm, otpm), derive_admin_key(seed, i))
            orgs.append(org)
            for j in range(keys_per_org):
                suffix = "" if j == 0 else chr(ord("a") + j)
                keys.append(KeySpec(derive_api_key(seed, i, j), org.id, f"acct-{i + 1}{suffix}"))
        return cls(orgs=tuple(orgs), keys=tuple(keys), seed=seed, **options)

    def with_(self, **changes: Any) -> Scenario:
        return replace(self, **changes)

    def key(self, ref: str) -> KeySpec:
        """A key by name or secret."""
        for k in self.keys:
            if ref in (k.name, k.key):
                return k
        raise KeyError(ref)

    def org(self, org_id: str) -> OrgSpec:
        for o in self.orgs:
            if o.id == org_id:
                return o
        raise KeyError(org_id)

    # ---- files -------------------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path) -> Scenario:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: a scenario is a mapping at the top level")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        seed = int(data.get("seed", 0))
        options: dict[str, Any] = {}
        if "latency" in data:
            options["latency"] = Latency(**data["latency"])
        if "output" in data:
            options["output"] = OutputSpec(**data["output"])
        if "faults" in data:
            options["faults"] = tuple(FaultRule.from_dict(f) for f in data["faults"] or ())
        if data.get("models") is not None:
            options["models"] = tuple(data["models"])
        for name in ("max_body_bytes", "round_tokens_to", "stream_chunk_tokens"):
            if name in data:
                options[name] = int(data[name])
        if "uniform" in data:
            return cls.uniform(seed=seed, **dict(data["uniform"]), **options)
        orgs, keys = _orgs_from_dicts(data.get("organizations") or [], seed)
        return cls(orgs=tuple(orgs), keys=tuple(keys), seed=seed, **options)

    def to_dict(self) -> dict[str, Any]:
        """The scenario as plain data; ``from_dict(to_dict())`` gives it back."""
        return {
            "seed": self.seed,
            "latency": asdict(self.latency),
            "output": asdict(self.output),
            "models": list(self.models) if self.models is not None else None,
            "max_body_bytes": self.max_body_bytes,
            "round_tokens_to": self.round_tokens_to,
            "stream_chunk_tokens": self.stream_chunk_tokens,
            "faults": [f.to_dict() for f in self.faults],
            "organizations": [
                {
                    "id": o.id,
                    "limits": asdict(o.limits),
                    "admin_key": o.admin_key,
                    "spend_cap_tokens": o.spend_cap_tokens,
                    "keys": [{"name": k.name, "key": k.key} for k in self.keys if k.org == o.id],
                }
                for o in self.orgs
            ],
        }


def _orgs_from_dicts(items: Sequence[Mapping[str, Any]], seed: int) -> tuple[list[OrgSpec], list[KeySpec]]:
    orgs: list[OrgSpec] = []
    keys: list[KeySpec] = []
    for i, item in enumerate(items):
        org = OrgSpec(
            id=str(item.get("id") or derive_org_id(seed, i)),
            limits=Limits(**item["limits"]),
            admin_key=str(item.get("admin_key") or derive_admin_key(seed, i)),
            spend_cap_tokens=item.get("spend_cap_tokens"),
        )
        orgs.append(org)
        for j, k in enumerate(item.get("keys") or [{}]):
            name = str(k.get("name") or f"org{i + 1}-key{j + 1}")
            keys.append(KeySpec(str(k.get("key") or derive_api_key(seed, i, j)), org.id, name))
    return orgs, keys
