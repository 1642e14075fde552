# pullprint: `make demo` runs the whole path end to end, `make test` runs ruff, mypy and pytest.
# Both install what they need first (Debian packages as root, and a virtualenv in .venv).
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:/usr/sbin:/usr/bin:/sbin:/bin

.PHONY: deps demo test lint typecheck pytest bench reliability deb deb-test clean

deps:
	@VENV=$(VENV) bash scripts/install-deps.sh

demo: deps
	$(PY) -m pullprint.demo

lint: deps
	$(VENV)/bin/ruff check pullprint tests bench
	$(VENV)/bin/ruff format --check pullprint tests bench

typecheck: deps
	$(VENV)/bin/mypy

pytest: deps
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

# One JSON line per figure; scale_out and reliability are run on their own (make reliability).
BENCHES := submit_hold release_latency throughput cloud memory finishing
bench: deps
	@for b in $(BENCHES); do $(PY) -m bench.$$b || exit 1; done
	@$(PY) -m bench.memory --submitd

# Bounded (~10 min): faults, soak (scaled down; FULL=1 for 10,000 jobs / 200 clients / 5 min),
# the fault and bad-input tests; ends with one summary JSON line.
reliability: deps
	$(PY) -m bench.reliability $(if $(FULL),--full)

deb:
	bash scripts/build-deb.sh

deb-test:
	bash scripts/deb-test.sh

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache artifacts
