# The README's two commands, `make train-cloud` and `make test`, bootstrap .venv themselves.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
EF := $(VENV)/bin/edgeferry
BOOTSTRAP := deploy/scripts/bootstrap-venv.sh
# Checks that run the real tools (systemd-analyze, hadolint, shellcheck, mosquitto, promtool, Prometheus); append yours.
INTEGRATION_TESTS := tests/deploy tests/edge/test_prometheus_exporter.py tests/dashboards/test_prometheus_queries.py \
	tests/dashboards/test_fleet_metrics.py tests/dashboards/test_grafana_schema.py

.PHONY: venv system check-integrations check-ha train-cloud train-reference train-detect train-sensor test test-fast check lint typecheck bench-export bench-edge bench-fleet bench-dashboard edge-agent demo dashboard keygen hil clean

venv:
	@bash $(BOOTSTRAP)

## Debian packages whose real tools the tests run (mosquitto, promtool, shellcheck, ...), installed when missing
system:
	@bash deploy/scripts/bootstrap-system.sh

## Train the default digits model, export FP32/FP16/INT8, verify, sign and publish to .store/
train-cloud: venv
	$(EF) train --config configs/train-default.yaml

## Train the camera-sized 3x224x224 reference model and publish it as package 'reference'
train-reference: venv
	$(EF) train --config configs/train-reference.yaml

## Train the synthetic-scene detector (digits + shapes, CenterNet-style), export FP32/FP16/INT8 gated on mAP,
## sign and publish it as package 'shapes-digits' (figures: bench/results/detect.md)
## OMP_WAIT_POLICY=PASSIVE: torch's threads sleep instead of spinning at barriers, so its CPU-time budget buys the
## same work on a busy machine (here at load 3-6: 114 vs 50 training images per CPU-second; bench/results/detect.md)
train-detect: venv
	OMP_WAIT_POLICY=PASSIVE $(EF) train --config configs/train-detect.yaml

## Train the sensor models on BasicMotions (shipped in sktime): a window classifier ('motions') and an anomaly
## autoencoder with its calibrated threshold ('motions-anomaly'); export FP32/FP16/INT8, gate, sign and publish
train-sensor: venv
	$(EF) train --config configs/train-sensor-classification.yaml
	$(EF) train --config configs/train-sensor-anomaly.yaml

## The whole test suite; installs the system packages it needs first (as root, or says the apt-get command)
test: venv system
	@rc=0; $(PY) -m pytest -q -p no:cacheprovider || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "test: pytest collected no tests" >&2; fi; exit $$rc

## The real tools' own checks of what we ship: systemd-analyze, hadolint, shellcheck, mosquitto with our ACL, ...
check-integrations: venv system check-ha
	$(PY) -m pytest -q -p no:cacheprovider $(INTEGRATION_TESTS)

## Home Assistant's own MQTT discovery code over our configs (first run installs it into .cache/, ~3.5 min, with a
## progress line every 30 s; -s lets them through)
check-ha: venv
	$(PY) -m pytest -q -s -p no:cacheprovider tests/integrations/check_ha_discovery.py

## Lint and type-check
check: lint typecheck
lint: venv
	$(VENV)/bin/ruff check .
typecheck: venv
	$(VENV)/bin/mypy cloud edge shared edgeferry fleet bench hil dashboards

## Benchmark every variant of the default, reference and detector packages (trains what is missing)
bench-export: venv
	@$(PY) -c "import sys; from shared.object_store import LocalStore; sys.exit(0 if LocalStore('.store').exists('models/digits/latest.json') else 1)" || $(MAKE) train-cloud
	@$(PY) -c "import sys; from shared.object_store import LocalStore; sys.exit(0 if LocalStore('.store').exists('models/reference/latest.json') else 1)" || $(MAKE) train-reference
	@$(PY) -c "import sys; from shared.object_store import LocalStore; sys.exit(0 if LocalStore('.store').exists('models/shapes-digits/latest.json') else 1)" || $(MAKE) train-detect
	$(PY) -m bench.bench_export

## Agent pipeline vs bare runtimes vs torch eager on the reference, digits and detector packages (the detector's
## candidates with their mAP, the agent's throughput against its ceiling); four cameras through one agent
## (bench/results/streams.md); where decode and resize time goes, threads vs processes (bench/results/decode.md)
bench-edge: venv
	@$(PY) -c "import sys; from shared.object_store import LocalStore; sys.exit(0 if LocalStore('.store').exists('models/reference/latest.json') else 1)" || $(MAKE) train-reference
	@$(PY) -c "import sys; from shared.object_store import LocalStore; sys.exit(0 if LocalStore('.store').exists('models/shapes-digits/latest.json') else 1)" || $(MAKE) train-detect
	$(PY) -m bench.bench_edge
	$(PY) -m bench.bench_latency
	$(PY) -m bench.bench_streams
	$(PY) -m bench.bench_decode
	$(PY) -m bench.edge_targets

## Control plane at 1,000 devices x 1 Hz and 10,000 x 0.1 Hz (one and two workers): registry staleness, CPU, RSS
bench-fleet: venv
	$(PY) -m bench.bench_fleet $(if $(QUICK),--quick,)

## Mosquitto + fleet serve (web app, /metrics) + one real agent + 50 simulated devices; Ctrl-C stops them all
demo: venv system
	@$(PY) -c "import sys; from shared.object_store import LocalStore; sys.exit(0 if LocalStore('.store').exists('models/digits/latest.json') else 1)" || $(MAKE) train-cloud
	$(PY) -m dashboards.demo

## fleet serve with the web app on http://127.0.0.1:8080 (demo logins in configs/web-demo.yaml), against the broker
## and database of FLEET_CONFIG (default: localhost:1883, .fleet/fleet.sqlite), BROKER=HOST[:PORT] over it;
## `make demo` brings its own devices
dashboard: venv
	$(EF) fleet serve --web-config configs/web-demo.yaml $(if $(FLEET_CONFIG),--config $(FLEET_CONFIG),) \
		$(if $(BROKER),--broker $(BROKER),)

## The fleet page with 1,000 simulated devices at 1 Hz in chromium: first load and the browser's CPU for live updates
bench-dashboard: venv system
	$(PY) -m bench.bench_dashboard $(if $(QUICK),--quick,)

## Run the agent against .store/ with a synthetic camera (after make train-cloud)
edge-agent: venv
	$(EF) agent --config configs/edge-demo.yaml

## Hardware-in-the-loop (root): every scenario x variant on the netns target and on an sshd in the lab's device
## namespace (ssh target), then hil-results/ (report.md, results.json, junit.xml, plots); about 10 minutes
hil: venv system
	$(EF) hil run --target netns --target ssh-lab --out hil-results

keygen: venv
	$(EF) keygen .keys/edgeferry.key

clean:
	rm -rf build runs lightning_logs .edge-cache
