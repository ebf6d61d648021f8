# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

EMULATOR := tools/ses-emulator/node_modules/.package-lock.json

.PHONY: install demo web test bench bench-deps faults lint system-deps ses-emulator clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Sends the bundled sample comparison's week (2026-W47) to three sample subscribers, into
# var/outbox/. Safe to run again: the week's edition is sent once.
demo: export POSTAL_ADDRESS ?= Weekly AI Tool Verdicts, 1 Example Street, Springfield
demo: install
	$(BIN)/newsletter db upgrade
	$(BIN)/newsletter comparisons import examples/claude-4-api-vs-code-llama-4.json
	$(BIN)/newsletter subscribers import examples/subscribers.csv
	$(BIN)/newsletter send-weekly --week 2026-W47
	@echo
	@echo "Done. The emails are .eml files in $(CURDIR)/var/outbox/ (open one in a mail client),"
	@echo "and 'newsletter preview --week 2026-W47 --out var/preview' writes the HTML to open in a browser."
	@echo "'make web' serves the pages their links lead to at http://localhost:8000."

# The readers' web pages (subscribe, confirm, unsubscribe, archive, tracking) on this machine.
web: install
	$(BIN)/uvicorn worker.web:create_app --factory --host 127.0.0.1 --port 8000

# Debian packages the browser tests need (root installs them; otherwise say what is missing).
system-deps:
	@bash scripts/system-deps.sh

# The local SES v2 emulator the tests send to (npm aws-ses-v2-local, pinned by its lockfile).
$(EMULATOR): tools/ses-emulator/package.json tools/ses-emulator/package-lock.json
	npm ci --prefix tools/ses-emulator --no-audit --no-fund --loglevel=error
	touch $(EMULATOR)

ses-emulator: system-deps $(EMULATOR)

test: install system-deps ses-emulator
	$(BIN)/pytest

# Debian packages the benchmarks need (wrk for the tracking figures).
bench-deps:
	@bash scripts/bench-deps.sh

# The render figures need nothing; the queue figures need PostgreSQL and Redis (as the tests do)
# and start the SES emulator and two worker processes themselves; the tracking figures need
# PostgreSQL and wrk, and start the web app (uvicorn, two worker processes) themselves.
bench: install ses-emulator bench-deps
	$(BIN)/python benchmarks/render_and_build.py
	$(BIN)/python benchmarks/queue_bench.py
	$(BIN)/python benchmarks/tracking_bench.py
	$(BIN)/python benchmarks/stats_bench.py
	$(BIN)/python benchmarks/metrics_bench.py

# The fault-injection suite: 2,000 subscribers, three rounds of each scenario (kill -9 of a worker,
# a Redis restart, PostgreSQL connections dropped, SES throttling and server errors, two
# schedulers racing, a webhook flood of repeated SNS messages) against PostgreSQL, a Redis server
# of its own and the SES emulator; prints sent/duplicates/lost/uncertain/time. `make test` runs
# each scenario once (tests/test_faults.py).
faults: install ses-emulator
	$(BIN)/python -m faults --rounds $(or $(ROUNDS),3) --subscribers $(or $(SUBSCRIBERS),2000)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy worker emails schedules benchmarks faults tests

clean:
	rm -rf $(VENV) var artifacts .pytest_cache .mypy_cache .ruff_cache tools/ses-emulator/node_modules
