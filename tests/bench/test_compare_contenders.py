"""The comparison's contenders are configured as their users would configure them: a contender's
configuration override must reach claude-pool's configuration, not be a variable it ignores."""

from __future__ import annotations

from pathlib import Path

from bench.compare.contenders import KNOWN, _pool_environment
from claude_pool.core.config import load_config


def test_the_patient_contenders_queue_target_reaches_the_pools_configuration(tmp_path: Path) -> None:
    patient = next(c for c in KNOWN if c.name == "claude-pool queue 2 s")
    default = next(c for c in KNOWN if c.name == "claude-pool")

    env = _pool_environment(tmp_path, "http://127.0.0.1:1", patient, "prefix")
    plain = _pool_environment(tmp_path, "http://127.0.0.1:1", default, "prefix")

    assert load_config(None, env=env).admission.target_queue_seconds == 2.0
    assert load_config(None, env=plain).admission.target_queue_seconds == 0.1
