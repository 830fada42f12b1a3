# Plugboard on one Debian bookworm machine, as root:
#   make setup   packages, libvirtd, the pbbr0 bridge, the test guest, and .venv (with tox)
#   make test    lint (ruff, mypy), then the test suite through tox (SQLite, then the engine's tests on PostgreSQL;
#                the unit tiers on every CPU, the tiers with guests one test at a time)
#   make run     agent + engine + a demo VM (plugboard up); make stop stops them
#   make clean   tox envs, the built guest, logs and run state (make distclean: also .venv)
#   make testhost  only the test-host tier (tests/testhost: the agent on a host made of QEMU)
# make test TOX_ARGS='-e unit -- tests/unit -x' passes arguments to tox.

SHELL := /bin/bash
VENV := .venv
PYTHON ?= python3
EXTRAS := .[engine,libvirt,test]
STAMP := $(VENV)/.plugboard-installed
TOX_ARGS ?=

.PHONY: setup host venv test testhost run stop clean distclean

setup: host venv

host:
	@bash scripts/setup-host.sh

venv: $(STAMP)

# Reinstalled when the project's dependencies change; needs the host's python3-venv and libvirt-dev.
$(STAMP): pyproject.toml | host
	@echo "venv: installing plugboard[engine,libvirt,test] and tox into $(VENV)"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@mkdir -p var/log
	@$(VENV)/bin/python -m pip install --disable-pip-version-check -e '$(EXTRAS)' 'tox>=4.6' \
		>var/log/venv.log 2>&1 || { tail -n 30 var/log/venv.log; exit 1; }
	@touch $@

test: setup
	@bash scripts/start-postgres.sh
	$(VENV)/bin/tox $(TOX_ARGS)

testhost: setup
	$(VENV)/bin/tox -e integration -- tests/testhost

run: setup
	$(VENV)/bin/plugboard up

stop:
	@if $(VENV)/bin/plugboard down --help >/dev/null 2>&1; then \
		$(VENV)/bin/plugboard down; \
	else \
		$(VENV)/bin/python -c 'from pathlib import Path; from plugboard import demo; demo.down(Path("var/run"))'; \
	fi

clean:
	rm -rf .tox .pytest_cache var
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
