"""Prefect flows: compositions of the tasks in claude_pool_tasks, nothing else.

``prefect.yaml`` points at these files (``flows/delegation.py:delegate`` ...); the package is also
installed as ``claude_pool_flows`` so the Python API is ``from claude_pool_flows import delegate``.

The flows are imported when first named, not with the package: ``claude_pool_flows.cli`` must set
Prefect's environment (``PREFECT_HOME``, logging) before Prefect is imported, since Prefect reads its
settings then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from claude_pool_flows.batch import delegate_batch
    from claude_pool_flows.delegation import delegate
    from claude_pool_flows.maintenance import capacity_sync, health_check
    from claude_pool_flows.quota import quota_sweep

__all__ = ["capacity_sync", "delegate", "delegate_batch", "health_check", "quota_sweep"]

_MODULES = {
    "capacity_sync": "maintenance",
    "delegate": "delegation",
    "delegate_batch": "batch",
    "health_check": "maintenance",
    "quota_sweep": "quota",
}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(f"claude_pool_flows.{_MODULES[name]}"), name)
    raise AttributeError(f"module 'claude_pool_flows' has no attribute {name!r}")
