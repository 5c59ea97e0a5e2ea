# Every set-up step lives here: a fresh machine needs only python3 (3.11+) and these targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast lint bench bench-compare bench-gateway clean

# -qq: errors only. What pip would print besides is informational (setuptools' note that an editable
# install maps folders, this machine's pip config naming a local index without pip in it).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq --upgrade pip
	$(BIN)/pip install -qq -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded default: SQLite, no Redis, Prefect in ephemeral mode.
demo: $(STAMP)
	$(BIN)/claude-pool demo

# The whole suite, slow tests included (CI runs exactly this).
test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check lib tests flows tasks bench
	$(BIN)/mypy lib/claude_pool tasks flows
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/bench_simulator.py
	$(BIN)/python bench/bench_capacity.py --seconds 3
	$(BIN)/python bench/bench_pool.py --seconds 9
	$(BIN)/python bench/bench_flows.py --requests 1500 --rounds 2

# claude-pool beside LiteLLM Router and naive round-robin (bench/RESULTS.md, bench/results/compare.png).
# LiteLLM lives in its own virtualenv, never in the library's dependencies.
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

# bench/litellm-proxy.txt: what LiteLLM's proxy needs to run (its [proxy] extra, as far as the
# registry has it), for the gateway benchmark.
$(BENCH_STAMP): pyproject.toml bench/litellm-proxy.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -e '.[bench]' 'litellm==1.110.*' -r bench/litellm-proxy.txt 'matplotlib>=3.8,<4'
	touch $(BENCH_STAMP)

# Then the gateway benchmark (below), whose table goes to bench/results/gateway.md.
bench-compare: $(BENCH_STAMP) $(STAMP)
	$(BENCH_VENV)/bin/python -m bench.compare
	$(BENCH_VENV)/bin/python -m bench.compare.gateway

# claude-pool's /v1/messages (claude-pool serve from .venv) beside LiteLLM's proxy (from .venv-bench)
# and the simulator called directly: added latency, time to first byte, CPU, goodput, 429s (2-3 min).
bench-gateway: $(BENCH_STAMP) $(STAMP)
	$(BENCH_VENV)/bin/python -m bench.compare.gateway

# The Prefect UI screenshots of a delegate run in docs/ (linked from the README): the simulator, a
# Prefect server and serve-flows, photographed by headless Chromium (about half a minute). Chromium is
# Debian's package; Playwright, which drives it, lives in its own virtualenv, never in the project's
# dependencies (and never `playwright install`: the browser is Debian's).
DOCS_VENV  := .venv-docs
DOCS_STAMP := $(DOCS_VENV)/.installed

$(DOCS_STAMP): pyproject.toml
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/pip install -qq --upgrade pip
	$(DOCS_VENV)/bin/pip install -qq -e . 'playwright>=1.65,<1.66'
	touch $(DOCS_STAMP)

/usr/bin/chromium:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

.PHONY: docs-screenshot
docs-screenshot: $(DOCS_STAMP) /usr/bin/chromium
	$(DOCS_VENV)/bin/python docs/ui_screenshot.py

clean:
	rm -rf $(VENV) .claude-pool logs .pytest_cache
