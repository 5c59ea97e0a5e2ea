"""claude-pool beside what users would pick instead: LiteLLM's Router and naive round-robin.

    make bench-compare        # or: .venv-bench/bin/python -m bench.compare

Each contender runs each scenario (``bench/scenarios/*.yaml``) against a fresh Anthropic simulator
process of its own, all contenders of a scenario at the same time, so every figure of one row comes
from the same run on the same machine. The simulator's ground-truth counters are the only source of
upstream figures; LiteLLM runs in ``.venv-bench`` only and is never a dependency of the library.
"""
