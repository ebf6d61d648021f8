# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test bench lint system-deps clean

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

# Debian packages the browser tests need (root installs them; otherwise say what is missing).
system-deps:
	@bash scripts/system-deps.sh

test: install system-deps
	$(BIN)/pytest

bench: install
	$(BIN)/python benchmarks/render_and_build.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy worker emails schedules benchmarks tests

clean:
	rm -rf $(VENV) var artifacts .pytest_cache .mypy_cache .ruff_cache
