# The two front doors: `make demo` and `make test`. Each builds its own virtual environment.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/wardwatch demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts

# pytest exits 5 when it collected no tests: that is a broken suite, not a pass.
test: lint
	@$(VENV)/bin/pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

clean:
	rm -rf $(VENV) var .pytest_cache
