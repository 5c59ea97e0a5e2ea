"""Prefect flows: compositions of the tasks in claude_pool_tasks, nothing else.

``prefect.yaml`` points at these files (``flows/delegation.py:delegate`` ...); the package is also
installed as ``claude_pool_flows`` so the Python API is ``from claude_pool_flows import delegate``.
"""

from claude_pool_flows.batch import delegate_batch
from claude_pool_flows.delegation import delegate
from claude_pool_flows.maintenance import capacity_sync, health_check
from claude_pool_flows.quota import quota_sweep

__all__ = ["capacity_sync", "delegate", "delegate_batch", "health_check", "quota_sweep"]
