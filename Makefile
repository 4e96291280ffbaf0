# dom0: `make demo` and `make test` each set up a fresh Debian 12 machine (as root) and then do their job.
VENV := .venv
PY := $(VENV)/bin/python
export LIBGUESTFS_BACKEND_SETTINGS := force_tcg

.PHONY: setup demo demo-clean test lint unit integration xen storagelab bench clean man completion dist deb

setup:
	@bash scripts/setup-host.sh

demo: setup
	@$(PY) scripts/demo.py

demo-clean: setup
	@$(PY) scripts/demo.py --clean

# The shell completion scripts, generated from dom0's argument parser (a unit test checks they are up to date).
completion: setup
	$(VENV)/bin/dom0 completion bash > contrib/completion/dom0.bash
	$(VENV)/bin/dom0 completion zsh > contrib/completion/_dom0

lint: setup
	$(VENV)/bin/ruff check src tests bench scripts setup.py
	$(VENV)/bin/ruff format --check src tests bench scripts setup.py
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -q tests/unit

integration: setup
	$(VENV)/bin/pytest -q tests/integration

# Xen 4.17 under QEMU with dom0's Xen suite inside (tests/xen/lab.py); `make test` runs it too.
xen: setup
	$(VENV)/bin/pytest -q tests/xen

# tests/storagelab (LVM on real device-mapper, and the bond drill: the host kernel has neither) inside a QEMU guest
# booting Debian's kernel (tests/storagelab/vm.py); `make test` runs it too.
storagelab: setup
	$(VENV)/bin/pytest -q tests/storagelab/test_storagelab_stage.py

test: setup lint
	$(VENV)/bin/pytest -q tests

# dom0(1) and a page per command, generated from the parser itself, plus man/*.5; `man -l build/man/dom0.1` reads one.
man: setup
	$(PY) scripts/manpages.py build/man

# The sdist and the wheel (pip, pipx) into dist/: console script, manual pages, completion, units, example config.
dist: setup
	rm -rf dist/dom0-*.tar.gz dist/dom0-*.whl
	$(PY) -m build --outdir dist .

# dist/dom0_<version>_all.deb from that sdist, by dpkg-buildpackage (debian/); installs its build dependencies.
deb: dist
	@bash scripts/build-deb.sh

# Every benchmark runs (a missed bar does not stop the others); bench/save_bench.py boots 4 guests of 256 MiB.
bench: setup
	@failed=""; for b in bench/*_bench.py; do echo "== $$b"; $(PY) $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "bars missed in:$$failed"; exit 1; fi

clean: demo-clean
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist
