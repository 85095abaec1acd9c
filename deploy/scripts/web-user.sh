#!/usr/bin/env bash
# Add (or replace) a person who may sign in to the fleet web app, with a generated password printed once.
#
#   web-user.sh <name> <viewer|operator> [--config FILE] [--password-stdin]
#
# FILE defaults to /etc/edgeferry/web.yaml (install deploy/config/web.yaml there first). Only the scrypt hash goes in
# the file; the password is printed as `<name> <password>` unless it came on stdin. The file is rewritten in one
# rename, keeping its mode and owner, and only if the result is a valid web config; comments outside `users:` stay.
# The Python that runs the hash is the installed agent's: EDGEFERRY_PYTHON, else /opt/edgeferry/.venv/bin/python,
# else python3 (the fleet image). Restart the fleet (systemctl restart edgeferry-fleet) to apply.
set -euo pipefail
export LC_ALL=C

die() { echo "web-user: $*" >&2; exit 2; }

config=/etc/edgeferry/web.yaml
password_stdin=false
positional=()
while [ $# -gt 0 ]; do
  case $1 in
    --config) [ $# -ge 2 ] || die "--config needs a file"; config=$2; shift 2 ;;
    --password-stdin) password_stdin=true; shift ;;
    -*) die "unknown option $1" ;;
    *) positional+=("$1"); shift ;;
  esac
done
[ ${#positional[@]} -eq 2 ] || die "usage: web-user.sh <name> <viewer|operator> [--config FILE] [--password-stdin]"
name=${positional[0]}
role=${positional[1]}
[[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$ ]] || die "invalid name '$name': 1-64 letters, digits, '_', '.', '@' or '-'"
[[ $role == viewer || $role == operator ]] || die "invalid role '$role': viewer or operator"
[ -f "$config" ] || die "web config $config not found: install deploy/config/web.yaml there first"

if [ -n "${EDGEFERRY_PYTHON:-}" ]; then
  python=$EDGEFERRY_PYTHON
elif [ -x /opt/edgeferry/.venv/bin/python ]; then
  python=/opt/edgeferry/.venv/bin/python
else
  python=python3
fi

if [ "$password_stdin" = true ]; then
  IFS= read -r password || true
  [ -n "$password" ] || die "--password-stdin: no password on stdin"
else
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
fi

WEB_USER_NAME=$name WEB_USER_ROLE=$role WEB_USER_PASSWORD=$password "$python" - "$config" <<'PY' ||
import os, re, sys, tempfile
import yaml
from dashboards.web.config import WebConfig
from dashboards.web.passwords import hash_password

path = sys.argv[1]
text = open(path).read()
data = yaml.safe_load(text) or {}
users = [u for u in data.get("users") or [] if u.get("name") != os.environ["WEB_USER_NAME"]]
users.append({"name": os.environ["WEB_USER_NAME"], "role": os.environ["WEB_USER_ROLE"],
              "password_hash": hash_password(os.environ["WEB_USER_PASSWORD"])})
block = yaml.safe_dump({"users": users}, sort_keys=False)
lines = text.splitlines(keepends=True)
start = next((i for i, line in enumerate(lines) if re.match(r"users\s*:", line)), None)
if start is None:
    lines.append(("" if not lines or lines[-1].endswith("\n") else "\n") + block)
else:
    end = next((j for j in range(start + 1, len(lines)) if re.match(r"[A-Za-z_]", lines[j])), len(lines))
    lines[start:end] = [block]
new = "".join(lines)
try:
    WebConfig.model_validate(yaml.safe_load(new))
except Exception as exc:  # noqa: BLE001 - any reason the result is not a valid config stops the write
    sys.exit(f"web-user: {path} would not be a valid web config: {str(exc).splitlines()[0]}")
st = os.stat(path)
fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".web-user.")
try:
    with os.fdopen(fd, "w") as fh:
        fh.write(new)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, st.st_mode & 0o7777)
    if os.geteuid() == 0:
        os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, path)
except BaseException:
    os.unlink(tmp)
    raise
PY
  die "could not update $config (see above)"

[ "$password_stdin" = true ] || printf '%s %s\n' "$name" "$password"
echo "web-user: $config updated; restart the fleet to apply (systemctl restart edgeferry-fleet)" >&2
