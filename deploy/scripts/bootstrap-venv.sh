#!/usr/bin/env bash
# Create or update .venv with the project and its extras; idempotent, keyed on the dependency files.
# CPU machines pin torch to the CPU wheel (constraints-cpu.txt); set EDGEFERRY_TORCH_CONSTRAINTS=none
# on a GPU machine to let pip resolve CUDA torch, or to a path of your own constraints file.
# Progress: one line per step with its elapsed time; on a terminal pip shows its own progress bars, elsewhere (CI,
# logs) a "still installing" line every EDGEFERRY_PROGRESS_EVERY_S seconds (default 30) instead of one per package.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${VENV:-.venv}
EXTRAS=${EDGEFERRY_EXTRAS:-edge,openvino,cloud,dev,web,fleet,hil}
PYTHON=${PYTHON:-python3}
EVERY=${EDGEFERRY_PROGRESS_EVERY_S:-30}
stamp_key=$(cat pyproject.toml constraints-cpu.txt | sha256sum | cut -c1-16)-$EXTRAS
stamp="$VENV/.edgeferry-installed"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_key" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

started=$SECONDS
step_no=0
steps=4
elapsed() { local s=$((SECONDS - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }
log() { echo "bootstrap: $*" >&2; }

# run_step TITLE COMMAND...: one line when it starts, one when it ends (with its time); while it runs off a
# terminal, a line every $EVERY seconds so a log shows it is alive.
run_step() {
  local title=$1; shift
  step_no=$((step_no + 1))
  local t0=$SECONDS ticker=""
  log "[$step_no/$steps] $title"
  if [ ! -t 2 ]; then
    ( while sleep "$EVERY"; do log "[$step_no/$steps] $title: still running ($(elapsed "$t0"))"; done ) &
    ticker=$!
  fi
  local rc=0
  "$@" || rc=$?
  if [ -n "$ticker" ]; then kill "$ticker" 2>/dev/null || true; wait "$ticker" 2>/dev/null || true; fi
  if [ "$rc" -ne 0 ]; then
    log "[$step_no/$steps] $title FAILED after $(elapsed "$t0") (exit $rc)"
    exit "$rc"
  fi
  log "[$step_no/$steps] $title: done in $(elapsed "$t0")"
}

constraints=()
case "${EDGEFERRY_TORCH_CONSTRAINTS:-auto}" in
  none) ;;
  auto)
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      log "NVIDIA GPU found; torch resolves to a CUDA build"
    else
      constraints=(-c constraints-cpu.txt)
    fi ;;
  *) constraints=(-c "$EDGEFERRY_TORCH_CONSTRAINTS") ;;
esac

make_venv() { [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"; }
upgrade_pip() { "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true; }
install_project() {
  # On a terminal pip draws its own progress bars; elsewhere it stays quiet and the ticker reports.
  local quiet=(-q)
  [ -t 2 ] && quiet=(--progress-bar on)
  # setuptools' "Editable installation" banner (a UserWarning in the build backend) says nothing a user can act on.
  local rc=0
  PYTHONWARNINGS="ignore:Editable installation:UserWarning" \
    "$VENV/bin/python" -m pip install "${quiet[@]}" "${constraints[@]}" -e ".[$EXTRAS]" 2>&1 \
    | grep --line-buffered -v "^WARNING: Location" >&2 || rc=${PIPESTATUS[0]}
  return "$rc"
}
check_import() { "$VENV/bin/python" -c "import edgeferry"; }

log "setting up $VENV with edgeferry[$EXTRAS] (the first run takes a few minutes)"
run_step "virtual environment $VENV" make_venv
run_step "upgrading pip" upgrade_pip
run_step "installing edgeferry[$EXTRAS] and its dependencies" install_project
run_step "checking that edgeferry imports" check_import
echo "$stamp_key" > "$stamp"
log "ready in $(elapsed "$started"): $VENV/bin/edgeferry (or 'source $VENV/bin/activate' once per shell)"
