# nsdml: `make run` trains on the default config, `make test` runs the tests.
# Both create .venv and install the pinned dependencies on first use.

VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= experiments/configs/default.toml
# Extras installed with the rest (requirements-<extra>.txt): EXTRAS= leaves them out (their tests skip).
EXTRAS ?= ray notebook docs
# Opt-in: install torch from this index first, e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu where
# plain PyPI would pick the CUDA build (the pin is the CPU build 2.13.0 either way).
TORCH_INDEX ?=

.PHONY: setup run test check-reports docs bench sweep table table-esgd table-hyperprism table-detag table-energy table-time table-barrier-map table-ladder table-async table-robust table-scale sweep-density sweep-devices sweep-alpha sweep-controls tables plots bench-ns3 density-table clean-cache

setup: $(STAMP)

$(STAMP): requirements.txt $(wildcard requirements-*.txt) pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet --index-url $(TORCH_INDEX) torch==2.13.0)
	$(PY) -m pip install --quiet -r requirements.txt $(foreach extra,$(EXTRAS),-r requirements-$(extra).txt)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/nsdml run $(CONFIG)

# One test process per core (pytest-xdist); tests that share an ns-3 fixture or the Ray cluster stay in one
# process (their modules' xdist_group marks).
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadgroup

# Each checked report's cheapest cell, re-made at HEAD from nothing, equals its row in the report's per-seed CSV
# (experiments/campaigns/check_reports.py; a few minutes). CI runs it after the tests.
check-reports: $(STAMP)
	$(PY) -m experiments.campaigns.check_reports

# The docs site: the project's Markdown, a config reference and a JSON Schema generated from the config
# dataclasses (experiments/docs.py), built by mkdocs-material into build/site (the docs extra).
docs: $(STAMP)
	$(PY) -m experiments.docs build/docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --quiet --config-file mkdocs.yml
	@echo "site in build/site/index.html; the schema in build/site/nsdml-config.schema.json"

# make sweep SWEEP=path/to/sweep.toml: run the missing runs, then the summary, table and plots.
sweep: $(STAMP)
	$(VENV)/bin/nsdml sweep $(SWEEP)

# make table SWEEP=...: rebuild the summary, table and plots from the run CSVs only.
table: $(STAMP)
	$(VENV)/bin/nsdml table $(SWEEP)

# eSGD at 50, 25 and 12.5 % kept, dense parameter-server SGD, DGC, FedAvg and threshold SGD through the access
# point over ns-3 and its control; rates by nsdml tune on seed 0, seeds 1-5; the report experiments/reports/esgd.md.
ESGD_SWEEPS := experiments/configs/esgd_table.toml experiments/configs/esgd_table_baselines.toml \
               experiments/configs/esgd_table_threshold.toml
table-esgd: $(STAMP)
	$(VENV)/bin/nsdml tune experiments/configs/esgd_tuning.toml --algorithms esgd,dense_sgd,dgc,fedavg --seeds 0 \
	  $(SWEEP_FLAGS)
	$(VENV)/bin/nsdml tune experiments/configs/esgd_tuning_threshold.toml --algorithms threshold_sgd --seeds 0 \
	  $(SWEEP_FLAGS)
	for sweep in $(ESGD_SWEEPS); do $(VENV)/bin/nsdml sweep $$sweep $(SWEEP_FLAGS) || exit 1; done
	$(PY) -m experiments.campaigns.esgd_table $(ESGD_SWEEPS) --tuning results/tune/esgd-tuning \
	  --tuning results/tune/esgd-tuning-threshold --report esgd

# Joules to a stated accuracy: dense D-PSGD vs CHOCO-SGD over ns-3 (its radio energy model) and the ideal
# control (airtime estimate); rates by nsdml tune on seed 0, seeds 1-5; the report experiments/reports/energy.md.
ENERGY_TABLE := experiments/configs/energy_table.toml
table-energy: $(STAMP)
	$(VENV)/bin/nsdml tune experiments/configs/energy_tuning.toml --algorithms dpsgd,choco_sgd --seeds 0 $(SWEEP_FLAGS)
	$(VENV)/bin/nsdml sweep $(ENERGY_TABLE) $(SWEEP_FLAGS)
	$(PY) -m experiments.campaigns.energy_table $(ENERGY_TABLE) --tuning results/tune/energy-tuning --report energy

# Time and energy on the network's clock: rounds against the local barrier for D-PSGD, HyperPrism and DSGT over
# ns-3 at 20 and 50 devices, with and without stragglers, radio sleep off and on, five seeds; the report
# experiments/reports/time.md.
TIME_TABLE := experiments/configs/time_table.toml
table-time: $(STAMP)
	$(VENV)/bin/nsdml sweep $(TIME_TABLE) $(SWEEP_FLAGS)
	$(PY) -m experiments.campaigns.time_table $(TIME_TABLE)
	$(PY) -m experiments.campaigns.report time $(TIME_TABLE) --extra results/sweeps/time-table/time_table.md --extra-only \
	  --target table-time

# The local barrier's map (quorum x time-out x what it counts from, 20 and 50 devices over ns-3, seeds held out):
# the defaults of network.barrier_* come from it; the report experiments/reports/barrier-map.md.
BARRIER_MAP := experiments/configs/barrier_map.toml
table-barrier-map: $(STAMP)
	$(VENV)/bin/nsdml sweep $(BARRIER_MAP) $(SWEEP_FLAGS)
	$(PY) -m experiments.campaigns.barrier_map $(BARRIER_MAP)
	$(PY) -m experiments.campaigns.report barrier-map $(BARRIER_MAP) --extra results/sweeps/barrier-map/barrier_map.md \
	  --extra-only --target table-barrier-map

# The ablation ladder: ideal graph -> random graph at ns-3's measured density -> geometry -> independent loss ->
# ns-3, for D-PSGD, HyperPrism, DSGT, DeTAG and CHOCO-SGD at densities 0.2, 0.5, 0.8; learning rates tuned on
# seed 0, five evaluation seeds; the report experiments/reports/ladder.md.
LADDER_TUNING := experiments/configs/ladder_tuning.toml
LADDER_TABLE  := experiments/configs/ladder_table.toml
table-ladder: $(STAMP)
	$(VENV)/bin/nsdml sweep $(LADDER_TUNING) $(SWEEP_FLAGS)
	$(VENV)/bin/nsdml sweep $(LADDER_TABLE) $(SWEEP_FLAGS)
	$(PY) -m experiments.campaigns.ladder_table $(LADDER_TUNING) $(LADDER_TABLE)
	$(PY) -m experiments.campaigns.report ladder $(LADDER_TUNING) $(LADDER_TABLE) \
	  --extra results/sweeps/ladder-table/ladder_table.md --extra-only --target table-ladder

# Asynchronous learning (experiments/reports/async.md): AD-PSGD, SwarmSGD and gossip learning as published (unicast)
# and read for broadcast, asynchronous D-PSGD, against D-PSGD (rounds, local barrier), its two ablations and
# HyperPrism, over ns-3 and the random graph, 20 devices, with slow stragglers and an unthrottled loop on the
# control; every rate by `nsdml tune` on seed 0 (the same grid rule for every method), seeds 1-5 reported.
ASYNC_ALGORITHMS := async_dpsgd,adpsgd,adpsgd_broadcast,swarm_sgd,swarm_sgd_broadcast,gossip_learning,gossip_learning_broadcast
ASYNC_TABLE := $(foreach name,table table_sync table_barrier,experiments/configs/async_$(name).toml)
table-async: $(STAMP)
	$(VENV)/bin/nsdml tune experiments/configs/async_tuning.toml --algorithms $(ASYNC_ALGORITHMS) --seeds 0 $(SWEEP_FLAGS)
	$(VENV)/bin/nsdml tune experiments/configs/async_tuning_sync.toml --algorithms dpsgd,dpsgd_one_way,dpsgd_cached,hyperprism \
	  --seeds 0 $(SWEEP_FLAGS)
	for sweep in $(ASYNC_TABLE); do $(VENV)/bin/nsdml sweep $$sweep $(SWEEP_FLAGS) || exit 1; done
	$(PY) -m experiments.campaigns.async_table $(ASYNC_TABLE) --tuning results/tune/async-tuning \
	  --tuning results/tune/async-tuning-sync --report async --target table-async

# Byzantine devices (experiments/reports/robust.md): D-PSGD's mean against trimmed mean, median, ClippedGossip and
# BRIDGE-T under sign flip, ALIE and IPM at 10 and 20 %, and a jammer, over the ideal graph, the random graph and
# ns-3; 20 devices, every rate by `nsdml tune` on seed 0 without attackers, seeds 1-5 reported.
ROBUST_TABLE := experiments/configs/robust_table.toml experiments/configs/robust_table_jammer.toml
table-robust: $(STAMP)
	$(VENV)/bin/nsdml tune experiments/configs/robust_tuning.toml --algorithms dpsgd,trimmed_mean,median,clipped_gossip,bridge \
	  --seeds 0 $(SWEEP_FLAGS)
	for sweep in $(ROBUST_TABLE); do $(VENV)/bin/nsdml sweep $$sweep $(SWEEP_FLAGS) || exit 1; done
	$(PY) -m experiments.campaigns.robust_table $(ROBUST_TABLE) --tuning results/tune/robust-tuning --report robust

# 1,000 devices over 802.11a (experiments/reports/scale.md): cost per round from 20 to 1,000 devices on the pruned
# and unpruned channels, what pruning changes, chunked traces in parallel, a 1,000-device 100-round trace, and
# D-PSGD against HyperPrism at 200, 500 and 1,000 devices (experiments/campaigns/scale_table.py says what each sweep gives).
SCALE_SWEEPS := $(foreach name,tuning cost cnn trace table,experiments/configs/scale_$(name).toml)
table-scale: $(STAMP)
	$(VENV)/bin/nsdml sweep experiments/configs/scale_pruning.toml --traces-only $(SWEEP_FLAGS)
	for sweep in $(SCALE_SWEEPS); do $(VENV)/bin/nsdml sweep $$sweep $(SWEEP_FLAGS) || exit 1; done
	$(PY) -m experiments.campaigns.scale_table --speedup
	$(PY) -m experiments.campaigns.scale_table
	$(PY) -m experiments.campaigns.report scale $(SCALE_SWEEPS) \
	  --extra results/sweeps/scale-table/scale_table.md --extra-only --target table-scale

# The standard campaigns; QUICK=1 picks the preset that finishes in minutes. Each writes its report
# experiments/reports/campaign-<sweep name>.md.
sweep-density sweep-devices sweep-alpha sweep-controls: sweep-%: $(STAMP)
	$(VENV)/bin/nsdml sweep experiments/sweeps/$*$(if $(QUICK),-quick,).toml $(SWEEP_FLAGS)
	$(PY) -m experiments.campaigns.report campaign-$*$(if $(QUICK),-quick,) experiments/sweeps/$*$(if $(QUICK),-quick,).toml \
	  --target "sweep-$*$(if $(QUICK), QUICK=1,)"

# DeTAG's comparison (experiments/reports/detag.md): DeTAG against DeFacto, D², DSGT, SGP and D-PSGD in the paper's
# setting (fixed circulant graphs of spectral gap 1 to 0.0096, shuffled data) and over ns-3 802.11a (Dirichlet alpha x
# link density); gradients, bytes, seconds and joules to the target; each setting's rates by `nsdml tune` on seed 0,
# seeds 1-5 reported. Pre-simulate the ns-3 traces with `nsdml sweep experiments/configs/detag_wireless.toml
# --traces-only` (about 2 min each here, DeTAG's 400 exchanges the longest).
DETAG_ALGORITHMS := detag,defacto,d2,dsgt,sgp,dpsgd
DETAG_TABLE := experiments/configs/detag_paper.toml experiments/configs/detag_wireless.toml
table-detag: $(STAMP)
	for setting in paper wireless; do $(VENV)/bin/nsdml tune experiments/configs/detag_$${setting}_tuning.toml \
	  --algorithms $(DETAG_ALGORITHMS) --seeds 0 $(SWEEP_FLAGS) || exit 1; done
	for sweep in $(DETAG_TABLE); do $(VENV)/bin/nsdml sweep $$sweep $(SWEEP_FLAGS) || exit 1; done
	$(PY) -m experiments.campaigns.detag_table $(DETAG_TABLE) --tuning results/tune/detag-paper-tuning \
	  --tuning results/tune/detag-wireless-tuning --report detag

# Redraw every table and plot of the campaigns that have results, from their CSVs.
tables plots: $(STAMP)
	@for file in experiments/sweeps/*.toml; do \
	  if [ -d results/sweeps/$$(basename $$file .toml) ]; then $(VENV)/bin/nsdml table $$file --quiet; fi; \
	done

# Learner, aggregation, replay, worker start-up and end-to-end figures beside their references
# (results/bench.csv), then the ns-3 bench. BENCH_FLAGS=--quick for a short version.
bench: $(STAMP)
	$(PY) -m experiments.bench $(BENCH_FLAGS)
	$(PY) -m ns3_scenarios.bench

# Wall seconds per simulated round and events/s for N in {20, 50, 100} and two payloads,
# stepping one simulation vs rebuilding it every round (a few minutes; results/bench_ns3.csv).
bench-ns3: $(STAMP)
	$(PY) -m ns3_scenarios.bench

# Target vs measured idle density for N in {20, 50, 100} x {0.2, 0.5, 0.8}, without and with fading.
density-table: $(STAMP)
	$(PY) -m ns3_scenarios.bench --density

# HyperPrism's three comparisons (alpha, density, devices) with logistic regression and the base setting with
# cnn-small, each over ns-3 and a random graph, and cnn-small at lr 0.1 on the random graph (where it learns),
# three seeds; then one HyperPrism-style table per setting
# (Max Acc, Conv. Rds, HyperPrism's % change, seconds to target) and the report experiments/reports/hyperprism.md.
# Pre-simulate the ns-3 traces with `nsdml sweep FILE --traces-only` (they outlive code changes); ADOM+'s and
# Mudag's 100-device traces need more memory than 24 GB (ns3_scenarios/README.md, "Worker memory").
HYPERPRISM_COMPARISONS := alpha density devices cnn cnn_lr
HYPERPRISM_SWEEPS := $(foreach c,$(HYPERPRISM_COMPARISONS),experiments/configs/hyperprism_$(c).toml)
table-hyperprism: $(STAMP)
	for sweep in $(HYPERPRISM_SWEEPS); do $(VENV)/bin/nsdml sweep $$sweep $(SWEEP_FLAGS) || exit 1; done
	for sweep in $(HYPERPRISM_SWEEPS); do $(PY) -m experiments.campaigns.paper_table $$sweep > /dev/null || exit 1; done
	$(PY) -m experiments.campaigns.report hyperprism $(HYPERPRISM_SWEEPS) \
	  $(foreach c,$(HYPERPRISM_COMPARISONS),--extra results/sweeps/hyperprism-$(subst _,-,$(c))/paper_table.md) \
	  --extra-only --target table-hyperprism

clean-cache:
	rm -rf .cache/traces
