# pullprint: `make demo` runs the whole path end to end, `make test` runs ruff, mypy and pytest.
# Both install what they need first (Debian packages as root, and a virtualenv in .venv).
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:/usr/sbin:/usr/bin:/sbin:/bin

.PHONY: deps demo test lint typecheck pytest bench deb deb-test clean

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

bench: deps
	@for b in bench/[a-z]*.py; do $(PY) -m bench.$$(basename $$b .py) || exit 1; done

deb:
	bash scripts/build-deb.sh

deb-test:
	bash scripts/deb-test.sh

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache artifacts
