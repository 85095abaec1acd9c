#!/usr/bin/env bash
# Install the Debian packages whose real tools the test suite runs, when any is missing. Idempotent: with
# everything present it only looks at PATH (no apt, a few ms). Not root and something missing: one line naming
# the exact apt-get command, exit 1. Used by `make test` / `make check-integrations` and by .ci/run.
set -euo pipefail

# One place for the list: "<debian package>:<command it provides>". Later suites add theirs here, for example
#   chromium:chromium  openssh-server:sshd  postgresql:pg_ctlcluster
REQUIRED=(
  mosquitto:mosquitto                 # the broker the MQTT tests start (also mosquitto_passwd)
  mosquitto-clients:mosquitto_sub     # mosquitto_sub/pub, the README's way to watch a device
  iproute2:ip                         # ip and tc for the network-namespace (HIL) tests
  prometheus:promtool                 # promtool check metrics on a live scrape (server + promtool)
  shellcheck:shellcheck               # every shell script in the tree
  systemd:systemd-analyze             # verify + security rating of the agent unit (--offline, no running systemd)
  openssh-server:sshd                 # the HIL SSH target: a real sshd in the lab's device namespace
  openssh-client:ssh                  # the harness's side of the HIL SSH target
  nftables:nft                        # random packet loss on the HIL link (these kernels have no netem)
  faketime:faketime                   # the HIL clock step: a per-process clock offset (LD_PRELOAD)
  chromium:chromium                   # the web app's browser tests (Playwright drives it; never downloads one)
  postgresql:pg_ctlcluster            # the fleet's PostgreSQL back-end, started by the storage tests' fixture
)
# More entries of the same form, space-separated, without editing this file (a local suite, a CI image).
read -r -a extra <<<"${EDGEFERRY_EXTRA_PACKAGES:-}"
REQUIRED+=("${extra[@]}")

# sbin holds mosquitto and ip; a non-root PATH often lacks it.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

missing=()
for entry in "${REQUIRED[@]}"; do
  command -v "${entry#*:}" >/dev/null 2>&1 || missing+=("${entry%%:*}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

install_cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "bootstrap-system: missing ${missing[*]}; run: sudo apt-get update && sudo $install_cmd" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "bootstrap-system: missing ${missing[*]} and no apt-get here; install them with this system's package manager" >&2
  exit 1
fi

echo "bootstrap-system: installing ${missing[*]}" >&2
log=$(mktemp)
# The tests start their own brokers on free ports: keep apt from starting packaged services (mosquitto on 1883,
# prometheus on 9090) through a policy-rc.d of our own, removed again afterwards.
policy=/usr/sbin/policy-rc.d
made_policy=false
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && made_policy=true
fi
cleanup() {
  rm -f "$log"
  if [ "$made_policy" = true ]; then rm -f "$policy"; fi
}
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "bootstrap-system: '$install_cmd' failed (output above)" >&2
  exit 1
fi

still=()
for entry in "${REQUIRED[@]}"; do
  command -v "${entry#*:}" >/dev/null 2>&1 || still+=("${entry#*:} (${entry%%:*})")
done
if [ ${#still[@]} -gt 0 ]; then
  echo "bootstrap-system: installed, yet still not on PATH: ${still[*]}" >&2
  exit 1
fi
