"""Local stand-ins for the Anthropic API and Slack that the real clients cannot tell from the services.

They reproduce what makes pooling accounts hard (per-organization token buckets, their headers, 429s,
spend caps, outages, broken connections) and count everything, so tests can prove what the pool did.

May import ``core``, ``accounts``, ``runtime`` and ``pool`` (to register simulated accounts, to share
the token estimate); nothing above. ``demo`` is the demo's rig.
"""

from __future__ import annotations

from claude_pool.simulator.accounts import register_simulated_accounts
from claude_pool.simulator.anthropic_server import AnthropicSimulator
from claude_pool.simulator.buckets import OrgBuckets, TokenBucket
from claude_pool.simulator.faults import FAULT_KINDS, FaultRule
from claude_pool.simulator.harness import RunningSimulator, RunningSlackSimulator, simulator, slack_simulator
from claude_pool.simulator.models_api import DEFAULT_MODELS
from claude_pool.simulator.scenario import KeySpec, Latency, Limits, OrgSpec, OutputSpec, Scenario
from claude_pool.simulator.slack_server import DEFAULT_SLACK_TOKEN, SlackConfig, SlackMessage, SlackSimulator
from claude_pool.simulator.state import COUNTERS, REQUEST_LOG_SIZE, RequestRecord, SimulatorState, Stats
from claude_pool.simulator.tokens import count_input_tokens, output_text

__all__ = [
    "COUNTERS",
    "DEFAULT_MODELS",
    "DEFAULT_SLACK_TOKEN",
    "FAULT_KINDS",
    "REQUEST_LOG_SIZE",
    "AnthropicSimulator",
    "FaultRule",
    "KeySpec",
    "Latency",
    "Limits",
    "OrgBuckets",
    "OrgSpec",
    "OutputSpec",
    "RequestRecord",
    "RunningSimulator",
    "RunningSlackSimulator",
    "Scenario",
    "SimulatorState",
    "SlackConfig",
    "SlackMessage",
    "SlackSimulator",
    "Stats",
    "TokenBucket",
    "count_input_tokens",
    "output_text",
    "register_simulated_accounts",
    "simulator",
    "slack_simulator",
]
