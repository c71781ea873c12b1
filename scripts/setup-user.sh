#!/usr/bin/env bash
# Creates the service account and the directory layout of the Analytics Engine (idempotent).
set -euo pipefail
AE_ORIG_ARGS="$*"
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

usage() {
    cat <<EOF
Usage: sudo scripts/setup-user.sh [--target-dir DIR] [--dry-run] [--help]

Idempotent; run as root (or with sudo). Creates:
  - system group and user '$AE_USER' (no login shell, home = the install dir, no home files)
  - DIR/{bin,lib,runtime,python,venv,config,data,logs}   (DIR default: $AE_TARGET_DEFAULT)
  - $AE_BACKUP_DIR                                   (deployment backups, root-only)
Ownership and modes:
  DIR and its code directories   $AE_USER:$AE_GROUP 755 (files in bin/ are 755)
  DIR/config                      root:$AE_GROUP 750 (the service reads it, cannot change it)
  DIR/data, DIR/logs              $AE_USER:$AE_GROUP 750 (the only writable paths of the service)
  the unit file                   root:root 644 (installed by deploy.sh)
Running it again fixes ownership and modes and changes nothing else.

Options:
  --target-dir DIR   install directory (default $AE_TARGET_DEFAULT)
  --dry-run          print what would be done, change nothing
  --help             this text
EOF
}

target="$AE_TARGET_DEFAULT"
while (( $# )); do
    case "$1" in
        --target-dir) target="${2:?--target-dir needs a directory}"; shift ;;
        --dry-run) DRY_RUN=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done
[[ "$target" == /* ]] || die "--target-dir must be an absolute path: $target"
target="${target%/}"
[[ "$DRY_RUN" == 1 ]] || require_root "setup-user.sh"

nologin=$(command -v nologin || echo /usr/sbin/nologin)

if getent group "$AE_GROUP" >/dev/null; then
    log_ok "group $AE_GROUP exists"
else
    log_info "creating system group $AE_GROUP"
    run groupadd --system "$AE_GROUP"
fi

if id -u "$AE_USER" >/dev/null 2>&1; then
    log_ok "user $AE_USER exists ($(id "$AE_USER" 2>/dev/null))"
    if [[ "$(id -gn "$AE_USER")" != "$AE_GROUP" ]]; then
        log_warn "user $AE_USER's primary group is $(id -gn "$AE_USER"), adding it to $AE_GROUP"
        run usermod -a -G "$AE_GROUP" "$AE_USER"
    fi
else
    log_info "creating system user $AE_USER"
    run useradd --system --gid "$AE_GROUP" --home-dir "$target" --no-create-home \
        --shell "$nologin" --comment "Analytics Engine service" "$AE_USER"
fi

# dir OWNER:GROUP MODE PATH
mkdir_owned() {
    local owner="$1" mode="$2" path="$3"
    if [[ -d "$path" ]]; then
        log_ok "$path"
    else
        log_info "creating $path"
    fi
    run mkdir -p "$path"
    run chown "$owner" "$path"
    run chmod "$mode" "$path"
}

mkdir_owned root:root 755 "$AE_BASE"
mkdir_owned "$AE_USER:$AE_GROUP" 755 "$target"
for d in bin lib runtime python venv; do
    mkdir_owned "$AE_USER:$AE_GROUP" 755 "$target/$d"
done
mkdir_owned "root:$AE_GROUP" 750 "$target/config"
mkdir_owned "$AE_USER:$AE_GROUP" 750 "$target/data"
mkdir_owned "$AE_USER:$AE_GROUP" 750 "$target/logs"
mkdir_owned root:root 700 "$AE_BACKUP_DIR"

# Files already there (re-run after a deploy): fix what a manual copy may have broken.
if [[ -d "$target/bin" ]]; then
    shopt -s nullglob
    for f in "$target"/bin/*; do
        run chown "$AE_USER:$AE_GROUP" "$f"
        run chmod 755 "$f"
    done
    shopt -u nullglob
fi
for f in "$target/config/env" "$target/config/analytics.toml"; do
    if [[ -f "$f" ]]; then
        run chown "root:$AE_GROUP" "$f"
        run chmod 640 "$f"
    fi
done
for unit in "$AE_UNIT_DIR/$AE_SERVICE.service" "$AE_ETC_UNIT"; do
    if [[ -f "$unit" && ! -L "$unit" ]]; then
        run chown root:root "$unit"
        run chmod 644 "$unit"
    fi
done

log_ok "user $AE_USER and $target are ready"
