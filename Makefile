# The two commands that do everything on a fresh machine: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test venv default-model clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch and torchvision first, pinned: these exact versions lie on this machine's disk.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/tumorlens audit --demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

DATA ?= ../shared/data/brain-tumor-mri
# Trains the default model on Kaggle Training (a stratified 10 % held out for validation and
# temperature scaling), evaluates and audits it on Testing, and ships it with its model card into
# src/tumorlens/assets (26 min of training measured on 2 cores shared with a second run).
default-model: $(STAMP)
	$(BIN)/tumorlens train --data $(DATA) --split Training --model efficientnet_lite0 --pretrained imagenet \
		--size 224 --epochs 5 --patience 3 --batch-size 32 --lr 1e-3 --seed 0 --split-seed 0 --out runs/default \
		--clip-low 0 --clip-high 100 --augment flip --val-fraction 0.1 --no-class-weights --label-smoothing 0
	$(BIN)/tumorlens evaluate --model runs/default/model.pt --data $(DATA) --out runs/default/testing
	$(BIN)/tumorlens audit --model runs/default/model.pt --data $(DATA) --out runs/default/audit
	$(BIN)/python scripts/ship_default_model.py runs/default

clean:
	rm -rf $(VENV) runs .pytest_cache
