# The two commands of the README:
#   make reproduce   set everything up, run the default experiment (snakemake --cores all)
#   make test        set everything up, run the tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all

.PHONY: setup reproduce test test-fast bench dag clean-results paper report

setup: $(STAMP)

# Re-installs only when the dependency files change (quick when already done).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip -c constraints.txt
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# The console shows progress, time left, where results go and failed jobs' logs (--logger activedet:
# src/snakemake_logger_plugin_activedet); the full shell commands go to .snakemake/log/ (--printshellcmds).
SNAKEMAKE_LOG := --logger activedet --printshellcmds

reproduce: setup
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_LOG)

# The papers' figures and tables of the experiment (runs it first if needed): results/<experiment>/paper/
paper: setup
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_LOG) paper

# The Snakemake HTML report of the params.yaml experiment (runs what is missing first):
# results/<experiment>/report.html - learning curves, tables, per-class AP, compute, stopping, selections, params.
report: setup
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report "$$($(BIN)/python -c 'import yaml; p = yaml.safe_load(open("params.yaml")); print(p.get("output_dir") or "results", p["experiment"], sep="/")')/report.html"

test: setup
	$(BIN)/python -m pytest -q --durations=20  # the 20 slowest tests: where CI time goes

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not slurm"

bench: setup
	$(BIN)/python -m bench

dag: setup
	$(BIN)/snakemake --dag | dot -Tpng > results/dag.png
