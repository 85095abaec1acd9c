#!/usr/bin/env bash
# Create or update .venv with the project and its extras; idempotent, keyed on the dependency files.
# CPU machines pin torch to the CPU wheel (constraints-cpu.txt); set EDGEFERRY_TORCH_CONSTRAINTS=none
# on a GPU machine to let pip resolve CUDA torch, or to a path of your own constraints file.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${VENV:-.venv}
EXTRAS=${EDGEFERRY_EXTRAS:-edge,openvino,cloud,dev,web,fleet,hil}
PYTHON=${PYTHON:-python3}
stamp_key=$(cat pyproject.toml constraints-cpu.txt | sha256sum | cut -c1-16)-$EXTRAS
stamp="$VENV/.edgeferry-installed"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_key" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

constraints=()
case "${EDGEFERRY_TORCH_CONSTRAINTS:-auto}" in
  none) ;;
  auto)
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      echo "bootstrap: NVIDIA GPU found; torch resolves to a CUDA build" >&2
    else
      constraints=(-c constraints-cpu.txt)
    fi ;;
  *) constraints=(-c "$EDGEFERRY_TORCH_CONSTRAINTS") ;;
esac

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
echo "bootstrap: installing edgeferry[$EXTRAS] into $VENV (first run takes a few minutes)" >&2
# setuptools' "Editable installation" banner (a UserWarning in the build backend) says nothing a user can act on.
PYTHONWARNINGS="ignore:Editable installation:UserWarning" \
  "$VENV/bin/python" -m pip install -q "${constraints[@]}" -e ".[$EXTRAS]" 2>&1 | grep -v "^WARNING: Location" >&2 || true
"$VENV/bin/python" -c "import edgeferry" 
echo "$stamp_key" > "$stamp"
