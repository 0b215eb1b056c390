# Two commands run everything (see README): `make demo` and `make test`.
# Both create .venv with Python 3.11 on first use; torch is installed first and pinned, because an
# unpinned resolver pass pulls a multi-GB CUDA build.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

# The main job on the embedded default: VLsI on the shipped toy pair, then export the new student
# for Android (ExecuTorch + ONNX, fp32/int8/int4) and validate it against the float model (gated).
demo: install
	$(BIN)/python -m vlsi_edge.train
	$(BIN)/python -m vlsi_edge.export --target android-arm64

test: install
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
