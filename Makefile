# The front door. `make demo` runs the local ML cycle on the embedded AWS; `make test` runs the suite.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The security gate's scanner (tests/infra/test_checkov.py), in a venv of its own: its pinned dependencies
# would fight ours.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV    := .venv-checkov
CHECKOV_STAMP   := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test lint typecheck unit synth install checkov clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> installing mlcycle and its tools into $(VENV) (first run takes about 2 minutes)"
	@$(BIN)/pip install --quiet --upgrade pip 2>&1 | grep -v 'is ignored' || true
	@$(BIN)/pip install --quiet -e '.[cdk,dev,sagemaker]' 2>&1 | grep -v 'is ignored' || true
	@$(BIN)/python -c "import mlcycle, aws_cdk, moto, sklearn, importlinter, sagemaker.core" && touch $(STAMP)

install: $(STAMP)

$(CHECKOV_STAMP):
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	@echo "==> installing checkov $(CHECKOV_VERSION) into $(CHECKOV_VENV) (the security gate; about a minute)"
	@$(CHECKOV_VENV)/bin/pip install --quiet 'checkov==$(CHECKOV_VERSION)' 2>&1 | grep -v 'is ignored' || true
	@$(CHECKOV_VENV)/bin/checkov --version >/dev/null && touch $@

checkov: $(CHECKOV_STAMP)

demo: $(STAMP)
	$(BIN)/mlcycle demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

synth: $(STAMP)
	$(BIN)/mlcycle synth

# The suite on every core (xdist): the one gated synth (CDK validation, cdk-nag, cfn-lint) happens inside it,
# shared by the infra assertions, checkov's security gate and the e2e platforms (tests/assembly.py).
test: $(STAMP) $(CHECKOV_STAMP) lint typecheck
	$(BIN)/pytest -n auto

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) cdk.out .pytest_cache .mypy_cache .ruff_cache
