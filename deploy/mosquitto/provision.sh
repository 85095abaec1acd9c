#!/usr/bin/env bash
# Broker accounts for edgeferry: a device's ACL block and password, or a role user's password. Run on the broker
# host, then reload the broker (`systemctl reload mosquitto`, i.e. SIGHUP: Mosquitto re-reads both files and the
# new rights apply to connected clients too).
#
#   provision.sh device <fleet> <device-id> [--sensor-topic FILTER]... [--ha-prefix PREFIX] [--password-stdin]
#   provision.sh remove <fleet> <device-id>
#   provision.sh password <user> [--password-stdin]
#   common: [--dir DIR]   where edgeferry.acl and the two password files live (default /etc/mosquitto)
#
# A device's username is `<fleet>.<device-id>`, in edgeferry-devices.passwd (the devices' listener only); role
# users are in edgeferry-services.passwd (the services' listener only). Without --password-stdin a random password
# is made and printed once as `<username> <password>` (a device's mqtt.username / mqtt.password). Running `device`
# again replaces that device's block (and password), so it is safe to repeat. Password files are written 0640 with
# the broker's group (mosquitto; EDGEFERRY_BROKER_GROUP names another), or 0600 where there is no such group.
# Install the ACL (deploy/mosquitto/edgeferry.acl -> DIR/edgeferry.acl) first: every action refuses to run without it.
set -euo pipefail
# Byte-wise regex ranges: in some locales [A-Za-z] also matches letters like 'ä'.
export LC_ALL=C

DIR=/etc/mosquitto
HA_PREFIX=homeassistant
# The group the broker runs as (Debian's mosquitto package: mosquitto); override with EDGEFERRY_BROKER_GROUP.
BROKER_GROUP=${EDGEFERRY_BROKER_GROUP:-mosquitto}
# Fleet and device ids: the agent's own rule (shared/names.py), so ids can never hold '/', '+', '#' or '.'.
IDENT='^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'

die() { echo "provision: $*" >&2; exit 2; }

check_ident() {
  [[ $2 =~ $IDENT ]] || die "invalid $1 '$2': use 1-64 letters, digits, '_' or '-', starting with a letter or digit"
}

# A subscription filter a device may read: well-formed, and never reaching into other devices' or HA's topics.
check_sensor_filter() {
  local filter=$1 own=$2 level i
  local -a levels
  [[ -n $filter && $filter != *[[:space:]]* && $filter != \$* ]] ||
    die "invalid sensor topic '$filter': a non-empty MQTT filter without spaces, not under \$SYS"
  IFS=/ read -r -a levels <<<"$filter"
  for i in "${!levels[@]}"; do
    level=${levels[$i]}
    if [[ $level == *[+#]* && $level != "+" && $level != "#" ]]; then
      die "invalid sensor topic '$filter': '+' and '#' must fill a whole level"
    fi
    [[ $level != "#" || $i -eq $((${#levels[@]} - 1)) ]] || die "invalid sensor topic '$filter': '#' only at the end"
  done
  [[ ${levels[0]} != "+" && ${levels[0]} != "#" ]] || die "sensor topic '$filter' would match every tree"
  if [[ ${levels[0]} == edgeferry && $filter != "$own"/* ]]; then
    die "sensor topic '$filter' is under edgeferry/ but not under this device's own $own/"
  fi
  if [[ $filter == "$HA_PREFIX" || $filter == "$HA_PREFIX"/* ]]; then
    die "sensor topic '$filter' is under Home Assistant's $HA_PREFIX/"
  fi
}

new_password() {
  local pw
  if [ "$password_stdin" = true ]; then
    IFS= read -r pw || true
    [ -n "$pw" ] || die "--password-stdin: no password on stdin"
  else
    pw=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
  fi
  printf '%s' "$pw"
}

# Password files hold hashes that can be guessed offline: never readable by other users of the host. 0640 with
# the broker's group where one exists (Mosquitto reads them again as that user on a reload), else 0600.
protect() {
  local file=$1
  if getent group "$BROKER_GROUP" >/dev/null 2>&1; then
    chgrp "$BROKER_GROUP" "$file" || die "could not give $file to group $BROKER_GROUP"
    chmod 0640 "$file"
  else
    chmod 0600 "$file"
  fi
}

set_password() {
  local file=$1 user=$2 pw=$3
  local -a create=()
  [ -e "$file" ] || create=(-c)
  # -b puts the password on mosquitto_passwd's command line for a moment; this runs as root on the broker host.
  # umask 077: the file is never readable by others, not even between its creation and protect().
  (umask 077 && mosquitto_passwd "${create[@]}" -b "$file" "$user" "$pw") ||
    die "mosquitto_passwd could not write $file"
  protect "$file"
}

# Rewrite the ACL without the block of $1, plus whatever is on stdin, in one rename (keeping mode and owner).
rewrite_acl() {
  local user=$1 tmp
  [ -f "$ACL" ] || die "ACL file $ACL not found: install deploy/mosquitto/edgeferry.acl there first"
  tmp=$(mktemp "$ACL.XXXXXX")
  chmod --reference="$ACL" "$tmp"
  chown --reference="$ACL" "$tmp" 2>/dev/null || true  # only root may give a file away
  {
    awk -v begin="# >>> device $user" -v end="# <<< device $user" \
      '$0 == begin {skip = 1; next} $0 == end {skip = 0; next} !skip' "$ACL"
    cat
  } >"$tmp" || { rm -f "$tmp"; die "could not write $tmp"; }
  mv -f "$tmp" "$ACL"
}

device_block() {
  local fleet=$1 device=$2 user=$3 base="edgeferry/$1/$2" filter
  echo "# >>> device $user"
  echo "user $user"
  # objects/...: tracked-object events and best-frame snapshots of detection models (shared/object_events.py).
  for leaf in status state telemetry events benchmark cmd/+/reply objects/events objects/snapshots/+; do
    echo "topic write $base/$leaf"
  done
  echo "topic read $base/cmd/#"
  echo "topic read $base/desired"
  # Home Assistant discovery configs: <prefix>/<component>/<node id>/<object>/config, with the agent's node id
  # (edge/ha_discovery.py node_id): ids holding '_' carry the fleet's length so no two (fleet, device) share one.
  local node="edgeferry_${fleet}_${device}"
  if [[ $fleet == *_* || $device == *_* ]]; then
    node="edgeferry_${#fleet}_${fleet}_${device}"
  fi
  echo "topic write $HA_PREFIX/+/$node/#"
  echo "topic read $HA_PREFIX/status"
  for filter in "${sensor_topics[@]}"; do
    echo "topic read $filter"
  done
  echo "# <<< device $user"
}

[ $# -ge 1 ] || die "usage: provision.sh device|remove|password ... (see the top of this file)"
action=$1
shift
positional=()
sensor_topics=()
password_stdin=false
while [ $# -gt 0 ]; do
  case $1 in
    --sensor-topic) [ $# -ge 2 ] || die "--sensor-topic needs a filter"; sensor_topics+=("$2"); shift 2 ;;
    --ha-prefix) [ $# -ge 2 ] || die "--ha-prefix needs a prefix"; HA_PREFIX=$2; shift 2 ;;
    --dir) [ $# -ge 2 ] || die "--dir needs a directory"; DIR=$2; shift 2 ;;
    --password-stdin) password_stdin=true; shift ;;
    -*) die "unknown option $1" ;;
    *) positional+=("$1"); shift ;;
  esac
done
ACL=$DIR/edgeferry.acl
DEVICES_PASSWD=$DIR/edgeferry-devices.passwd
SERVICES_PASSWD=$DIR/edgeferry-services.passwd
[[ $HA_PREFIX =~ ^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$ ]] || die "invalid --ha-prefix '$HA_PREFIX'"

case $action in
  device)
    [ ${#positional[@]} -eq 2 ] || die "usage: provision.sh device <fleet> <device-id> [options]"
    check_ident fleet "${positional[0]}"
    check_ident "device id" "${positional[1]}"
    user="${positional[0]}.${positional[1]}"
    for filter in "${sensor_topics[@]}"; do
      check_sensor_filter "$filter" "edgeferry/${positional[0]}/${positional[1]}"
    done
    pw=$(new_password)
    device_block "${positional[0]}" "${positional[1]}" "$user" | rewrite_acl "$user"
    set_password "$DEVICES_PASSWD" "$user" "$pw"
    [ "$password_stdin" = true ] || printf '%s %s\n' "$user" "$pw"
    ;;
  remove)
    [ ${#positional[@]} -eq 2 ] || die "usage: provision.sh remove <fleet> <device-id>"
    check_ident fleet "${positional[0]}"
    check_ident "device id" "${positional[1]}"
    user="${positional[0]}.${positional[1]}"
    rewrite_acl "$user" </dev/null
    if [ -e "$DEVICES_PASSWD" ]; then
      (umask 077 && mosquitto_passwd -D "$DEVICES_PASSWD" "$user" >/dev/null 2>&1) || true
      protect "$DEVICES_PASSWD"
    fi
    ;;
  password)
    [ ${#positional[@]} -eq 1 ] || die "usage: provision.sh password <user>"
    user=${positional[0]}
    [ -f "$ACL" ] || die "ACL file $ACL not found: install deploy/mosquitto/edgeferry.acl there first"
    grep -qx "user $user" "$ACL" || die "no user '$user' in $ACL: add its rights there first"
    pw=$(new_password)
    set_password "$SERVICES_PASSWD" "$user" "$pw"
    [ "$password_stdin" = true ] || printf '%s %s\n' "$user" "$pw"
    ;;
  *) die "unknown action '$action': device, remove or password" ;;
esac
echo "provision: $DIR updated; reload the broker to apply (systemctl reload mosquitto)" >&2
