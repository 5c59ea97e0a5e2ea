"""The clients each contender's worker process drives: one call per offered request.

Each client is configured as its users would configure it: claude-pool from the environment
(``Runtime.from_env``), LiteLLM's ``Router`` with the keys as deployments and their limits, the
naive floor as plain ``anthropic`` clients with their own retries. A call raises on failure.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Protocol

__all__ = ["Client", "make_client"]


class Client(Protocol):
    async def call(self, index: int, deadline: float) -> None: ...

    async def aclose(self) -> None: ...


def _question(index: int) -> str:
    return f"Bench question {index}: say something short."


class PoolClient:
    """The library: ``Pool.delegate`` with the request's deadline, so a busy pool waits for capacity."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        from claude_pool.pool import Pool
        from claude_pool.runtime import Runtime

        self.runtime = Runtime.from_env()
        self.pool = Pool.open(self.runtime)
        self.max_tokens = int(cfg["max_tokens"])

    async def call(self, index: int, deadline: float) -> None:
        from claude_pool.pool.models import DelegationRequest

        await self.pool.delegate(
            DelegationRequest(
                organization_id="bench", message=_question(index), max_tokens=self.max_tokens, deadline=deadline
            )
        )

    async def aclose(self) -> None:
        await self.pool.aclose()
        self.runtime.close()


class LiteLLMClient:
    """LiteLLM's Router: each key a deployment of the model group ``claude`` with its rpm/tpm."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download at import
        import litellm
        from litellm import Router

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        model_list = [
            {
                "model_name": "claude",
                "litellm_params": {
                    "model": "anthropic/claude-sonnet-5-5",
                    "api_key": k["key"],
                    "api_base": cfg["base_url"],  # LiteLLM appends /v1/messages itself
                    "rpm": k["rpm"],
                    "tpm": k["tpm"],
                },
                # Ids carry the run's prefix so the Redis keys LiteLLM derives from them are ours to clean.
                "model_info": {"id": f"{cfg['redis_prefix']}-{k['name']}"},  # no ":" (LiteLLM splits on it)
            }
            for k in cfg["keys"]
        ]
        options: dict[str, Any] = {
            "routing_strategy": cfg["strategy"],
            # What users configure from LiteLLM's docs: a few retries, a deployment set aside after
            # repeated failures, and a timeout equal to the request's budget.
            "num_retries": 3,
            "allowed_fails": 3,
            "cooldown_time": 30,
            "timeout": float(cfg["budget_s"]),
        }
        if cfg.get("redis"):
            options.update(redis_host="127.0.0.1", redis_port=6379)
        self.router = Router(model_list=model_list, **options)
        self.max_tokens = int(cfg["max_tokens"])

    async def call(self, index: int, deadline: float) -> None:
        await self.router.acompletion(
            model="claude",
            messages=[{"role": "user", "content": _question(index)}],
            max_tokens=self.max_tokens,
        )

    async def aclose(self) -> None:
        return None  # the Router has no close; the process ends right after


class NaiveClient:
    """The floor: round-robin over the keys, each an ``AsyncAnthropic`` with its own retries (2)."""

    def __init__(self, cfg: dict[str, Any], *, max_retries: int = 2) -> None:
        from anthropic import AsyncAnthropic

        self.clients = [
            AsyncAnthropic(api_key=k["key"], base_url=cfg["base_url"], max_retries=max_retries,
                           timeout=float(cfg["budget_s"]))
            for k in cfg["keys"]
        ]
        self.turn = itertools.cycle(range(len(self.clients)))
        self.max_tokens = int(cfg["max_tokens"])

    async def call(self, index: int, deadline: float) -> None:
        client = self.clients[next(self.turn)]
        await client.messages.create(
            model="claude-sonnet-5-5",
            max_tokens=self.max_tokens,
            messages=[{"role": "user", "content": _question(index)}],
        )

    async def aclose(self) -> None:
        for client in self.clients:
            await client.close()


def make_client(cfg: dict[str, Any]) -> Client:
    kind = cfg["client"]
    started = time.perf_counter()
    client: Client
    if kind == "pool":
        client = PoolClient(cfg)
    elif kind == "litellm":
        client = LiteLLMClient(cfg)
    elif kind == "naive":
        client = NaiveClient(cfg)
    elif kind == "bare":
        client = NaiveClient(cfg, max_retries=0)
    else:
        raise ValueError(f"unknown client {kind!r}")
    cfg["setup_s"] = time.perf_counter() - started
    return client
