#!/usr/bin/env bash
# Day-to-day management of the analytics-engine systemd service: a numbered menu, or subcommands.
set -euo pipefail
AE_ORIG_ARGS="$*"
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"
# shellcheck source=lib/backup.sh
. "$here/lib/backup.sh"

usage() {
    cat <<EOF
Usage: scripts/manage-service.sh [--target-dir DIR] [-y] [COMMAND [ARGS]]

Without a command (on a terminal): an interactive numbered menu.

Service (need root/sudo):
  start | stop | restart        systemctl start/stop/restart $AE_SERVICE, then wait for /health
  reload                        rolling restart of the Python workers (SIGHUP; no request dropped)
  enable | disable              start on boot / do not
  mask | unmask                 forbid / allow starting the service at all
Inspect:
  status                        systemctl status, plus the /health summary
  health                        GET /health (pretty JSON); exit 0 when healthy, 1 otherwise
  workers                       table of Python workers: id, pid, state, requests, RSS, uptime
  logs [recent|live|today|hour] journal of the service (default recent = last 100 lines)
  top                           htop on the engine and its workers (plain ps tree without htop)
Backups (need root/sudo; stored in $AE_BACKUP_DIR):
  backup                        back up the current deployment now
  backups                       list backups
  restore [NAME]                restore backup NAME (default: newest) and restart
  rollback                      restore the backup made before the last deploy (= restore newest)

Options:
  --target-dir DIR   install directory (default $AE_TARGET_DEFAULT)
  -y, --yes          do not ask for confirmation (restore/rollback)
  --help             this text
EOF
}

target="$AE_TARGET_DEFAULT"
args=()
while (( $# )); do
    case "$1" in
        --target-dir) target="${2:?--target-dir needs a directory}"; shift ;;
        -y|--yes) ASSUME_YES=1 ;;
        -h|--help|help) usage; exit 0 ;;
        *) args+=("$1") ;;
    esac
    shift
done
target="${target%/}"

listen_addr() {
    local a
    a=$(env_file_get "$target/config/env" ANALYTICS_LISTEN_ADDR 2>/dev/null || true)
    printf '%s\n' "${a:-$AE_LISTEN_DEFAULT}"
}
base_url() { local_url "$(listen_addr)"; }

py() { # a python for JSON formatting: the service's venv, else python3
    if [[ -x "$target/venv/bin/python" ]]; then "$target/venv/bin/python" "$@"; else python3 "$@"; fi
}

# shellcheck disable=SC2120  # optional timeout argument
wait_up() {
    local t0=$SECONDS url
    url=$(base_url)
    if wait_healthy "$url" "${1:-120}"; then
        log_ok "$AE_SERVICE healthy after $((SECONDS - t0)) s ($url/health)"
    else
        log_error "$AE_SERVICE is not healthy on $url/health; see: $0 logs"
        return 1
    fi
}

cmd_start()   { require_root "start";   require_systemd; systemctl start "$AE_SERVICE" && wait_up; }
cmd_stop()    { require_root "stop";    require_systemd; systemctl stop "$AE_SERVICE" && log_ok "stopped"; }
cmd_restart() { require_root "restart"; require_systemd; systemctl restart "$AE_SERVICE" && wait_up; }
cmd_enable()  { require_root "enable";  require_systemd; systemctl enable "$AE_SERVICE" && log_ok "enabled (starts on boot)"; }
cmd_disable() { require_root "disable"; require_systemd; systemctl disable "$AE_SERVICE" && log_ok "disabled"; }
cmd_mask()    { require_root "mask";    require_systemd; systemctl mask "$AE_SERVICE" && log_ok "masked (cannot be started until unmask)"; }
cmd_unmask()  { require_root "unmask";  require_systemd; systemctl unmask "$AE_SERVICE" && log_ok "unmasked"; }

cmd_reload() {
    require_root "reload"; require_systemd
    systemctl is-active --quiet "$AE_SERVICE" || die "$AE_SERVICE is not running"
    systemctl reload "$AE_SERVICE"
    # Type=notify: the unit is 'reloading' until the engine sends READY=1 again
    local deadline=$((SECONDS + 120)) state
    while (( SECONDS < deadline )); do
        state=$(systemctl show -p ActiveState --value "$AE_SERVICE")
        [[ "$state" == active ]] && break
        [[ "$state" == failed || "$state" == inactive ]] && die "$AE_SERVICE is $state after reload"
        sleep 0.5
    done
    wait_up && log_ok "workers reloaded"
}

cmd_status() {
    require_systemd
    local rc=0
    systemctl status "$AE_SERVICE" --no-pager -l || rc=$?
    echo
    if body=$(health_json "$(base_url)"); then
        printf '%s\n' "$body" | py -c '
import json, sys
h = json.load(sys.stdin)
w = (h.get("python") or {}).get("workers") or []
up = sum(1 for x in w if str(x.get("state", "")).lower() in ("ready", "idle", "busy", "running"))
print("health: %s, version %s, uptime %ss, python workers %d/%d up" % (
    h.get("status"), h.get("version"), h.get("uptime_s"), up, len(w)))'
    else
        log_warn "health: not healthy / not reachable at $(base_url)/health"
    fi
    return $rc
}

cmd_health() {
    local body rc=0
    body=$(health_json "$(base_url)") || rc=$?
    if [[ -z "$body" ]]; then
        log_error "no answer from $(base_url)/health (is $AE_SERVICE running? $0 status)"
        return 1
    fi
    printf '%s\n' "$body" | py -m json.tool 2>/dev/null || printf '%s\n' "$body"
    if (( rc == 0 )); then log_ok "healthy"; else log_error "NOT healthy"; return 1; fi
}

cmd_workers() {
    local body
    body=$(health_json "$(base_url)") || true
    [[ -n "$body" ]] || die "no answer from $(base_url)/health"
    printf '%s\n' "$body" | py -c '
import json, sys
h = json.load(sys.stdin)
workers = (h.get("python") or {}).get("workers")
if workers is None:
    sys.exit("error: /health has no python.workers list")
def rss(b):
    try:
        b = float(b)
    except (TypeError, ValueError):
        return "-"
    if b < 0:  # not measured yet
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if b < 1024 or unit == "GiB":
            return ("%.0f %s" if unit == "B" else "%.1f %s") % (b, unit)
        b /= 1024
def dur(s):
    try:
        s = int(float(s))
    except (TypeError, ValueError):
        return "-"
    d, s = divmod(s, 86400); h, s = divmod(s, 3600); m, s = divmod(s, 60)
    return (f"{d}d" if d else "") + (f"{h}h" if d or h else "") + (f"{m}m" if d or h or m else "") + f"{s}s"
rows = [("ID", "PID", "STATE", "REQUESTS", "RSS", "UPTIME")]
for w in workers:
    rows.append((str(w.get("id", "-")), str(w.get("pid", "-")), str(w.get("state", "-")),
                 str(w.get("requests", "-")), rss(w.get("rss_bytes")), dur(w.get("uptime_s"))))
widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
for r in rows:
    print("  ".join(c.rjust(widths[i]) if i in (1, 3, 4) else c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
print("%d worker(s)" % len(workers))'
}

cmd_logs() {
    local mode="${1:-recent}"
    case "$mode" in
        recent) journalctl -u "$AE_SERVICE" -n 100 --no-pager ;;
        live)   journalctl -u "$AE_SERVICE" -n 20 -f ;;
        today)  journalctl -u "$AE_SERVICE" --since today --no-pager ;;
        hour)   journalctl -u "$AE_SERVICE" --since "1 hour ago" --no-pager ;;
        *) die "logs: unknown mode '$mode' (recent|live|today|hour)" ;;
    esac
}

cmd_top() {
    require_systemd
    local main pids
    main=$(service_main_pid)
    [[ "$main" != 0 ]] || die "$AE_SERVICE is not running"
    # the engine and everything in its cgroup (the Python workers)
    pids=$(systemctl show -p ControlGroup --value "$AE_SERVICE" | {
        read -r cg
        for f in "/sys/fs/cgroup$cg/cgroup.procs" "/sys/fs/cgroup/unified$cg/cgroup.procs" "/sys/fs/cgroup/systemd$cg/cgroup.procs"; do
            [[ -r "$f" ]] && { cat "$f"; break; }
        done
    } | paste -sd, -)
    [[ -n "$pids" ]] || pids="$main"
    if have htop && [[ -t 1 ]]; then
        htop -p "$pids"
    else
        have htop || log_info "htop not installed (apt-get install htop); showing ps"
        ps -o pid,ppid,user,stat,%cpu,%mem,rss,etime,args --forest -p "$pids"
    fi
}

cmd_backups() {
    local b
    [[ -d "$AE_BACKUP_DIR" ]] || { log_info "no backups ($AE_BACKUP_DIR does not exist)"; return 0; }
    while read -r b; do
        [[ -n "$b" ]] || continue
        printf '%s  %s\n' "$b" "$(sed -n 's/^reason=//p' "$AE_BACKUP_DIR/$b/BACKUP_INFO" 2>/dev/null)"
    done < <(backup_list)
}

cmd_backup() {
    require_root "backup"
    compgen -G "$target/lib/analytics-engine*.jar" >/dev/null || die "nothing deployed in $target"
    local b
    b=$(backup_create "$target" "manual backup")
    backup_prune "$AE_KEEP_BACKUPS"
    log_ok "backup: $b"
}

cmd_restore() {
    require_root "restore"; require_systemd
    local src safety
    src=$(backup_resolve "${1:-}") || exit 1
    log_info "restore $src ($(sed -n 's/^version=//p' "$src/BACKUP_INFO"))"
    confirm "Stop $AE_SERVICE and restore $(basename "$src")?" || die "not confirmed (use -y)"
    systemctl stop "$AE_SERVICE" || true
    if compgen -G "$target/lib/analytics-engine*.jar" >/dev/null; then
        safety=$(backup_create "$target" "before restoring $(basename "$src")")
        log_ok "current deployment saved as $safety"
    fi
    backup_restore "$src" "$target"
    systemctl daemon-reload
    systemctl start "$AE_SERVICE"
    wait_up && log_ok "restored $(basename "$src")"
}

cmd_rollback() {
    local latest
    latest=$(backup_latest)
    [[ -n "$latest" ]] || die "no backups in $AE_BACKUP_DIR: nothing to roll back to"
    cmd_restore "$latest"
}

dispatch() {
    local c="$1"; shift || true
    case "$c" in
        start|stop|restart|reload|enable|disable|mask|unmask|status|health|workers|top|backup|backups) "cmd_$c" "$@" ;;
        logs) cmd_logs "$@" ;;
        restore) cmd_restore "$@" ;;
        rollback) cmd_rollback ;;
        *) usage >&2; die "unknown command: $c" ;;
    esac
}

menu() {
    local items=(
        "status" "health" "workers" "logs recent" "logs live" "logs today" "logs hour"
        "start" "stop" "restart" "reload" "enable" "disable" "mask" "unmask" "top"
        "backup" "backups" "restore" "rollback"
    )
    local choice i
    while true; do
        printf '\n%sAnalytics Engine — %s%s (%s)\n' "$C_BOLD" "$AE_SERVICE" "$C_RESET" \
            "$(systemctl is-active "$AE_SERVICE" 2>/dev/null || true)"
        for i in "${!items[@]}"; do printf '  %2d) %s\n' $((i + 1)) "${items[$i]}"; done
        printf '   0) quit\n'
        read -r -p "Choose: " choice || return 0
        [[ "$choice" == 0 || "$choice" == q ]] && return 0
        if [[ "$choice" =~ ^[0-9]+$ ]] && (( choice >= 1 && choice <= ${#items[@]} )); then
            # shellcheck disable=SC2086  # "logs recent" -> two words
            ( dispatch ${items[$((choice - 1))]} ) || log_warn "command failed"
        else
            log_warn "invalid choice: $choice"
        fi
    done
}

if (( ${#args[@]} == 0 )); then
    if [[ -t 0 ]]; then menu; exit 0; fi
    usage; exit 1
fi
dispatch "${args[@]}"
