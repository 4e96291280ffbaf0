# dom0: `make demo` and `make test` each set up a fresh Debian 12 machine (as root) and then do their job.
VENV := .venv
PY := $(VENV)/bin/python
export LIBGUESTFS_BACKEND_SETTINGS := force_tcg

.PHONY: setup demo demo-clean test lint unit integration xen bench clean

setup:
	@bash scripts/setup-host.sh

demo: setup
	@$(PY) scripts/demo.py

demo-clean: setup
	@$(PY) scripts/demo.py --clean

lint: setup
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -q tests/unit

integration: setup
	$(VENV)/bin/pytest -q tests/integration

# Xen 4.17 under QEMU with dom0's Xen suite inside (tests/xen/lab.py); `make test` runs it too.
xen: setup
	$(VENV)/bin/pytest -q tests/xen

test: setup lint
	$(VENV)/bin/pytest -q tests

# bench/save_bench.py (issue 5) boots 4 QEMU guests of 256 MiB and saves/restores them both ways: ~3 min here.
bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: demo-clean
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
