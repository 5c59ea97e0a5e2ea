from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import anthropic
from click.testing import CliRunner
from slack_sdk import WebClient

from claude_pool.cli.simulate_cmd import simulate

from .conftest import HELLO, MODEL

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "simulator-scenario.example.yaml"


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(simulate, ["--help"])
    assert result.exit_code == 0
    for option in ("--accounts", "--port", "--scenario", "--slack-port", "--seed"):
        assert option in result.output


def test_bad_scenario_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("organizations: [{limits: {rpm: 0, itpm: 1, otpm: 1}}]\n")
    result = CliRunner().invoke(simulate, ["--scenario", str(bad), "--port", "0"])
    assert result.exit_code == 2 and "rpm" in result.output


def test_serves_until_interrupted() -> None:
    code = "from claude_pool.cli import main; main()"
    args = [sys.executable, "-c", code, "simulate", "--port", "0", "--slack-port", "0", "--json",
            "--scenario", str(EXAMPLE)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        served = json.loads(proc.stdout.readline())
        assert [k["name"] for k in served["keys"]] == ["team-a", "team-a-ci", "team-b", "team-c"]
        key = served["keys"][3]["key"]
        assert key.startswith("sk-ant-api03-")
        client = anthropic.Anthropic(api_key=key, base_url=served["base_url"], max_retries=0, timeout=5)
        # The example scenario injects faults: that the request reached the server is what counts.
        with client, contextlib.suppress(anthropic.APIError):
            client.messages.create(model=MODEL, max_tokens=2, messages=HELLO)
        with urllib.request.urlopen(served["base_url"] + "/_sim/stats", timeout=5) as response:  # noqa: S310
            assert json.loads(response.read())["keys"]["team-c"]["received"] == 1
        web = WebClient(token=served["slack"]["token"], base_url=served["slack"]["base_url"])
        assert web.auth_test()["ok"]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "stopped" in err


def test_human_output_prints_keys_and_limits() -> None:
    code = "from claude_pool.cli import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, "simulate", "--accounts", "2", "--port", "0", "--seed", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(6)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    text = "".join(lines)
    assert "50 RPM, 30000 ITPM, 8000 OTPM" in text
    assert "sk-ant-admin01-" in text and "acct-1" in text and "sk-ant-api03-" in text
