# shellcheck shell=bash
# Shared helpers for the Analytics Engine operations scripts (setup-user.sh, deploy.sh,
# manage-service.sh, test-deploy.sh, assemble-dist.sh). Source it; it defines functions and
# defaults only and has no side effects besides colour detection.

# ---- names and default locations (the old engine's deployment guide) ----
AE_SERVICE="${AE_SERVICE:-analytics-engine}"
AE_USER="${AE_USER:-analytics}"
AE_GROUP="${AE_GROUP:-analytics}"
AE_BASE="${AE_BASE:-/opt/v7}"
AE_TARGET_DEFAULT="${AE_TARGET_DEFAULT:-$AE_BASE/analytics-engine}"
AE_BACKUP_DIR="${AE_BACKUP_DIR:-$AE_BASE/backups}"
AE_LISTEN_DEFAULT="127.0.0.1:50051"
# The unit goes to the administrator's unit directory, not /etc/systemd/system: /etc stays free for
# `systemctl mask` (a /dev/null symlink there) and `systemctl edit` drop-ins, which override it.
AE_UNIT_DIR="${AE_UNIT_DIR:-/usr/local/lib/systemd/system}"
AE_ETC_UNIT="${AE_ETC_UNIT:-/etc/systemd/system/$AE_SERVICE.service}"
AE_KEEP_BACKUPS="${AE_KEEP_BACKUPS:-5}"

# ---- colours (only on a terminal, and never when NO_COLOR is set) ----
if [[ -t 2 && -z "${NO_COLOR:-}" && "${TERM:-dumb}" != dumb ]]; then
    C_RED=$'\e[31m'; C_GREEN=$'\e[32m'; C_YELLOW=$'\e[33m'; C_BLUE=$'\e[34m'; C_BOLD=$'\e[1m'; C_RESET=$'\e[0m'
else
    C_RED=; C_GREEN=; C_YELLOW=; C_BLUE=; C_BOLD=; C_RESET=
fi

# ---- logging (to stderr, so stdout stays clean for data such as `workers` tables) ----
log_info()  { printf '%s==>%s %s\n' "$C_BLUE" "$C_RESET" "$*" >&2; }
log_ok()    { printf '%s ok%s %s\n' "$C_GREEN" "$C_RESET" "$*" >&2; }
log_warn()  { printf '%swarning:%s %s\n' "$C_YELLOW" "$C_RESET" "$*" >&2; }
log_error() { printf '%serror:%s %s\n' "$C_RED" "$C_RESET" "$*" >&2; }
log_step()  { printf '\n%s%s%s\n' "$C_BOLD" "$*" "$C_RESET" >&2; }
die()       { log_error "$*"; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }

# require_root "what needs it": exit with a clear message unless running as root (e.g. via sudo).
require_root() {
    if [[ ${EUID:-$(id -u)} -ne 0 ]]; then
        log_error "${1:-this command} needs root privileges."
        if have sudo; then
            log_error "run it as: sudo $0 ${AE_ORIG_ARGS:-}"
        else
            log_error "run it as root (sudo is not installed)."
        fi
        exit 1
    fi
}

# require_systemd: systemctl must be present and systemd must be PID 1 (booted).
require_systemd() {
    have systemctl || die "systemctl not found: this host does not use systemd."
    [[ -d /run/systemd/system ]] || die "systemd is not running as the init system (no /run/systemd/system)."
}

# DRY_RUN=1 makes `run` print instead of execute. Commands are printed shell-quoted.
DRY_RUN="${DRY_RUN:-0}"
run() {
    if [[ "$DRY_RUN" == 1 ]]; then
        printf '%s[dry-run]%s' "$C_YELLOW" "$C_RESET" >&2
        printf ' %q' "$@" >&2
        printf '\n' >&2
        return 0
    fi
    "$@"
}

# listen_host_port ADDR -> "HOST PORT" (IPv6 in brackets supported: [::1]:50051)
listen_host_port() {
    local addr="$1" host port
    if [[ "$addr" =~ ^\[(.*)\]:([0-9]+)$ ]]; then
        host="${BASH_REMATCH[1]}"; port="${BASH_REMATCH[2]}"
    elif [[ "$addr" =~ ^([^:]*):([0-9]+)$ ]]; then
        host="${BASH_REMATCH[1]}"; port="${BASH_REMATCH[2]}"
    else
        return 1
    fi
    (( port >= 1 && port <= 65535 )) || return 1
    printf '%s %s\n' "${host:-0.0.0.0}" "$port"
}

# valid_listen_addr ADDR: true if ADDR is HOST:PORT with a usable port.
valid_listen_addr() { listen_host_port "$1" >/dev/null; }

# local_url ADDR -> the http URL to reach a server listening on ADDR from this host
local_url() {
    local hp host port
    hp=$(listen_host_port "$1") || return 1
    host=${hp% *}; port=${hp#* }
    case "$host" in
        0.0.0.0|'') host=127.0.0.1 ;;
        ::|'[::]') host='[::1]' ;;
        *:*) host="[$host]" ;;
    esac
    printf 'http://%s:%s\n' "$host" "$port"
}

# env_file_get FILE KEY -> value of KEY=VALUE in a systemd EnvironmentFile (last one wins; quotes stripped)
env_file_get() {
    local file="$1" key="$2" line val=
    [[ -r "$file" ]] || return 1
    while IFS= read -r line || [[ -n "$line" ]]; do
        line="${line#"${line%%[![:space:]]*}"}"
        [[ "$line" == "$key="* ]] || continue
        val="${line#*=}"
        val="${val%\"}"; val="${val#\"}"; val="${val%\'}"; val="${val#\'}"
    done < "$file"
    printf '%s\n' "$val"
}

# env_file_set FILE KEY VALUE: replace KEY=... (first occurrence; commented "#KEY=" too) or append it.
env_file_set() {
    local file="$1" key="$2" value="$3" tmp
    tmp=$(mktemp "${file}.XXXXXX")
    awk -v k="$key" -v v="$value" '
        BEGIN { done = 0 }
        !done && ($0 ~ "^[[:space:]]*#?[[:space:]]*" k "=") { print k "=" v; done = 1; next }
        { print }
        END { if (!done) print k "=" v }' "$file" > "$tmp"
    chmod --reference="$file" "$tmp" 2>/dev/null || true
    chown --reference="$file" "$tmp" 2>/dev/null || true
    mv -f "$tmp" "$file"
}

# health_json URL_BASE -> prints the /health body; returns 0 only on HTTP 200.
health_json() {
    local base="$1" body code
    have curl || { log_error "curl is required for health checks (apt-get install curl)"; return 2; }
    body=$(curl -sS --max-time 3 -w '\n%{http_code}' "$base/health" 2>/dev/null) || return 1
    code=${body##*$'\n'}
    body=${body%$'\n'*}
    printf '%s\n' "$body"
    [[ "$code" == 200 ]]
}

# wait_healthy URL_BASE TIMEOUT_S: poll /health until 200 (returns 0) or the deadline passes (1).
wait_healthy() {
    local base="$1" timeout="${2:-60}" deadline
    deadline=$(( $(date +%s) + timeout ))
    while (( $(date +%s) < deadline )); do
        if health_json "$base" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    return 1
}

# service_main_pid -> MainPID of the unit (0 when not running)
service_main_pid() { systemctl show -p MainPID --value "$AE_SERVICE" 2>/dev/null || echo 0; }

# confirm "question": yes unless stdin is not a terminal and ASSUME_YES is unset (then no).
confirm() {
    [[ "${ASSUME_YES:-0}" == 1 ]] && return 0
    [[ -t 0 ]] || return 1
    local reply
    read -r -p "$1 [y/N] " reply
    [[ "$reply" =~ ^[Yy] ]]
}
