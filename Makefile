# Two commands (see README): `make demo` and `make test`. Both set up .venv first.
SHARED ?= $(abspath $(CURDIR)/../shared)
# Real models and sample data: the folder beside the checkout when it exists; override with the variables.
CROSSVIEW_MODELS ?= $(if $(wildcard $(SHARED)/models),$(SHARED)/models)
CROSSVIEW_DATA ?= $(if $(wildcard $(SHARED)/data),$(SHARED)/data)
export CROSSVIEW_MODELS CROSSVIEW_DATA
export YOLO_OFFLINE = 1

.PHONY: setup demo test lint protos
setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/crossview demo $(ARGS)

lint: setup
	.venv/bin/ruff check .

test: setup lint
	.venv/bin/python -m pytest $(PYTEST_ARGS)

protos: setup
	.venv/bin/python tools/gen_protos.py
