#!/usr/bin/env bash
# Deploys the Analytics Engine build (dist/analytics-engine) as the systemd service analytics-engine,
# on this host or — with --remote-host — on another one over ssh. Rolls back by itself when the new
# version does not become healthy.
set -euo pipefail
AE_ORIG_ARGS="$*"
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"
# shellcheck source=lib/backup.sh
. "$here/lib/backup.sh"

usage() {
    cat <<EOF
Usage: sudo scripts/deploy.sh [options]

Installs the build into the target directory and (re)starts the systemd service $AE_SERVICE:
  check build -> stop service -> back up current deployment ($AE_BACKUP_DIR, keep last N)
  -> install files -> create/update venv (pip install -r requirements.txt) -> install unit
  -> daemon-reload -> enable -> start -> wait until /health is 200 -> print how to connect.
If the new version does not become healthy, the previous deployment is restored and started
again automatically (exit status 1, "ROLLED BACK" is printed).

Options:
  --enable-remote        listen on 0.0.0.0:<port> (all interfaces) and open the port with ufw
                         when ufw is installed (unless --skip-firewall)
  --listen-addr ADDR     listen address (default $AE_LISTEN_DEFAULT, or the address already in
                         <target>/config/env on an update)
  --target-dir DIR       install directory (default $AE_TARGET_DEFAULT)
  --skip-firewall        never touch ufw
  --remote-host HOST     deploy to HOST over ssh/scp instead of this host: ships the build (with
                         offline Python wheels when the build has them: build with --with-wheels)
                         and runs this same script there with the other options
  --ssh-user USER        ssh user for --remote-host (default: current user; non-root users need sudo)
  --ssh-port PORT        ssh port (default 22)
  --ssh-key FILE         ssh identity file
  --ssh-option OPT       extra ssh/scp -o option, repeatable (e.g. StrictHostKeyChecking=accept-new)
  --dist DIR             the build to deploy (default: the dist this script belongs to, or
                         <repo>/dist/analytics-engine)
  --keep-backups N       backups to keep (default $AE_KEEP_BACKUPS)
  --health-timeout SEC   how long to wait for /health after start (default 120)
  --dry-run              print every step and command; change nothing (works without root)
  --help                 this text

Examples:
  sudo scripts/deploy.sh                          # single server, local backends only
  sudo scripts/deploy.sh --enable-remote          # single server, reachable from other hosts
  scripts/deploy.sh --remote-host app1 --ssh-user deploy --enable-remote   # cross server
EOF
}

# ---------------------------------------------------------------- options
enable_remote=0; listen_addr=; target="$AE_TARGET_DEFAULT"; skip_firewall=0
remote_host=; ssh_user=; ssh_port=; ssh_key=; ssh_extra=(); dist=; keep="$AE_KEEP_BACKUPS"; health_timeout=120
forward=()   # options passed on to the remote run
while (( $# )); do
    case "$1" in
        --enable-remote) enable_remote=1; forward+=("$1") ;;
        --listen-addr) listen_addr="${2:?--listen-addr needs HOST:PORT}"; forward+=("$1" "$2"); shift ;;
        --target-dir) target="${2:?--target-dir needs a directory}"; forward+=("$1" "$2"); shift ;;
        --skip-firewall) skip_firewall=1; forward+=("$1") ;;
        --remote-host) remote_host="${2:?--remote-host needs a host}"; shift ;;
        --ssh-user) ssh_user="${2:?--ssh-user needs a user}"; shift ;;
        --ssh-port) ssh_port="${2:?--ssh-port needs a port}"; shift ;;
        --ssh-key) ssh_key="${2:?--ssh-key needs a file}"; shift ;;
        --ssh-option) ssh_extra+=("${2:?--ssh-option needs KEY=VALUE}"); shift ;;
        --dist) dist="${2:?--dist needs a directory}"; shift ;;
        --keep-backups) keep="${2:?--keep-backups needs a number}"; forward+=("$1" "$2"); shift ;;
        --health-timeout) health_timeout="${2:?--health-timeout needs seconds}"; forward+=("$1" "$2"); shift ;;
        --dry-run) DRY_RUN=1; forward+=("$1") ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1 (see --help)" ;;
    esac
    shift
done
[[ -z "$remote_host" && -n "$ssh_user$ssh_port$ssh_key${ssh_extra[*]}" ]] && die "--ssh-user/--ssh-port/--ssh-key/--ssh-option need --remote-host"
[[ -z "$ssh_port" || "$ssh_port" =~ ^[0-9]+$ ]] || die "--ssh-port must be a number: $ssh_port"
[[ "$keep" =~ ^[1-9][0-9]*$ ]] || die "--keep-backups must be a positive number: $keep"
[[ "$health_timeout" =~ ^[1-9][0-9]*$ ]] || die "--health-timeout must be a positive number of seconds: $health_timeout"
[[ "$target" == /* ]] || die "--target-dir must be an absolute path: $target"
target="${target%/}"
if [[ -n "$listen_addr" ]]; then
    valid_listen_addr "$listen_addr" || die "--listen-addr must be HOST:PORT (e.g. 127.0.0.1:50051): $listen_addr"
fi

# ---------------------------------------------------------------- the build
if [[ -z "$dist" ]]; then
    if [[ -x "$here/../bin/analytics-server" && -d "$here/../lib" ]]; then
        dist=$(cd "$here/.." && pwd)                       # running from inside a dist
    else
        dist="$(cd "$here/.." && pwd)/dist/analytics-engine"  # running from a checkout
    fi
fi
log_step "1/9 check build: $dist"
[[ -d "$dist" ]] || die "no build at $dist: run scripts/build.sh first (or pass --dist DIR)"
missing=()
for f in bin/analytics-server requirements.txt python systemd/analytics-engine.service config/env VERSION; do
    [[ -e "$dist/$f" ]] || missing+=("$f")
done
compgen -G "$dist/lib/analytics-engine*.jar" >/dev/null || missing+=("lib/analytics-engine.jar")
(( ${#missing[@]} == 0 )) || die "incomplete build in $dist (missing: ${missing[*]}): run scripts/build.sh"
version=$(cat "$dist/VERSION")
log_ok "build $version"

# ---------------------------------------------------------------- cross server
if [[ -n "$remote_host" ]]; then
    { have ssh && have scp; } || die "--remote-host needs ssh and scp (apt-get install openssh-client)"
    [[ -z "$ssh_key" || -r "$ssh_key" ]] || die "--ssh-key: cannot read $ssh_key"
    common=(-o ConnectTimeout=15)
    [[ -n "$ssh_key" ]] && common+=(-i "$ssh_key")
    for o in "${ssh_extra[@]}"; do common+=(-o "$o"); done
    ssh_opts=("${common[@]}"); scp_opts=("${common[@]}")
    if [[ -n "$ssh_port" ]]; then ssh_opts+=(-p "$ssh_port"); scp_opts+=(-P "$ssh_port"); fi
    dest="${ssh_user:+$ssh_user@}$remote_host"
    if [[ ! -d "$dist/wheels" ]]; then
        log_warn "the build has no wheels/: the remote host will need access to PyPI for the venv."
        log_warn "for an offline remote host: scripts/build.sh --with-wheels (or scripts/lib/assemble-dist.sh --with-wheels)"
    fi
    sudo_cmd=sudo
    [[ "${ssh_user:-$(id -un)}" == root ]] && sudo_cmd=
    tty_opt=(); [[ -t 0 ]] && tty_opt=(-t)
    remote_tmp="/tmp/analytics-engine-deploy.$$"
    archive=$(mktemp /tmp/analytics-engine-dist.XXXXXX.tar.gz)
    trap 'rm -f "$archive"' EXIT
    log_step "shipping $version to $dest"
    run tar -C "$(dirname "$dist")" -czf "$archive" "$(basename "$dist")"
    run ssh "${ssh_opts[@]}" "$dest" "mkdir -p $remote_tmp"
    run scp "${scp_opts[@]}" "$archive" "$dest:$remote_tmp/dist.tar.gz"
    remote_cmd="cd $remote_tmp && tar -xzf dist.tar.gz && $sudo_cmd bash $remote_tmp/$(basename "$dist")/scripts/deploy.sh"
    for a in "${forward[@]}"; do remote_cmd+=" $(printf '%q' "$a")"; done
    rc=0
    run ssh "${tty_opt[@]}" "${ssh_opts[@]}" "$dest" "$remote_cmd" || rc=$?
    run ssh "${ssh_opts[@]}" "$dest" "$sudo_cmd rm -rf $remote_tmp" || log_warn "could not remove $remote_tmp on $remote_host"
    (( rc == 0 )) || die "remote deploy on $remote_host failed (exit $rc)"
    log_ok "deployed $version to $remote_host"
    exit 0
fi

# ---------------------------------------------------------------- preflight (local)
if [[ "$DRY_RUN" == 1 ]]; then
    log_warn "dry run: nothing will be changed"
else
    require_root "deploy.sh"
fi
require_systemd

unit_file="$AE_UNIT_DIR/$AE_SERVICE.service"
env_file="$target/config/env"
current_listen=$(env_file_get "$env_file" ANALYTICS_LISTEN_ADDR 2>/dev/null || true)
if (( enable_remote )); then
    port=50051
    if [[ -n "$listen_addr" ]]; then hp=$(listen_host_port "$listen_addr"); port=${hp#* }
    elif [[ -n "$current_listen" ]]; then hp=$(listen_host_port "$current_listen") && port=${hp#* }
    fi
    listen_addr="0.0.0.0:$port"
fi
if [[ -z "$listen_addr" ]]; then
    listen_addr="${current_listen:-$AE_LISTEN_DEFAULT}"
    valid_listen_addr "$listen_addr" || die "ANALYTICS_LISTEN_ADDR in $env_file is not HOST:PORT: $listen_addr"
fi
hp=$(listen_host_port "$listen_addr"); port=${hp#* }
url=$(local_url "$listen_addr")

# Java: the bundled runtime, else Java 17+ on this host.
if [[ ! -x "$dist/runtime/bin/java" ]]; then
    jv=$( { "${JAVA_HOME:+$JAVA_HOME/bin/}java" -version 2>&1 || true; } | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
    [[ "${jv:-0}" -ge 17 ]] || die "the build has no bundled runtime and this host has no Java 17+ (found: ${jv:-none}); install openjdk-17-jre-headless or rebuild with jlink"
fi
# Python: python3 >= 3.9 with venv.
have python3 || die "python3 not found: install python3 (>= 3.9) and python3-venv"
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
    || die "python3 is $(python3 --version 2>&1); the workers need Python 3.9 or newer"
python3 -c 'import venv, ensurepip' 2>/dev/null \
    || die "python3 cannot create virtual environments: apt-get install python3-venv"
have curl || die "curl is needed for the health check: apt-get install curl"

was_active=0; systemctl is-active --quiet "$AE_SERVICE" && was_active=1
if [[ "$(systemctl is-enabled "$AE_SERVICE" 2>/dev/null || true)" == masked* ]]; then
    die "$AE_SERVICE is masked (systemctl mask): unmask it first: sudo $here/manage-service.sh unmask"
fi
# Port in use by something that is not our service?
if have ss; then
    holder=$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n1 || true)
    if [[ -n "$holder" ]]; then
        main_pid=$(service_main_pid)
        if [[ "$holder" != *"pid=$main_pid,"* || "$main_pid" == 0 ]]; then
            die "port $port is already in use by another program: $holder
       stop it, or deploy with --listen-addr HOST:OTHER_PORT"
        fi
    fi
fi
log_ok "preflight: listen $listen_addr, target $target, service ${AE_SERVICE} $([[ $was_active == 1 ]] && echo active || echo inactive)"

# ---------------------------------------------------------------- deploy steps
log_step "2/9 user and directories"
setup_args=(--target-dir "$target")
[[ "$DRY_RUN" == 1 ]] && setup_args+=(--dry-run)
run "$here/setup-user.sh" "${setup_args[@]}" >/dev/null

log_step "3/9 stop service"
if (( was_active )); then
    run systemctl stop "$AE_SERVICE"
    log_ok "stopped"
else
    log_ok "not running"
fi

backup=
log_step "4/9 back up current deployment"
if compgen -G "$target/lib/analytics-engine*.jar" >/dev/null; then
    if [[ "$DRY_RUN" == 1 ]]; then
        log_info "[dry-run] would back up $target to $AE_BACKUP_DIR/$AE_SERVICE-<timestamp>-<version> and keep the last $keep"
    else
        backup=$(backup_create "$target" "before deploying $version")
        log_ok "backup: $backup"
        backup_prune "$keep"
    fi
else
    log_ok "first installation: nothing to back up"
fi

# Remote mode is reachable from other hosts: it gets a bearer token unless the operator set one.
# The token goes into config/env only (root:analytics 640), is printed once at the end of the deploy,
# and the engine never logs it.
generated_token=
ensure_remote_token() {
    (( enable_remote )) || return 0
    local existing
    existing=$(env_file_get "$target/config/env" ANALYTICS_AUTH_TOKEN 2>/dev/null || true)
    [[ -n "$existing" ]] && return 0
    generated_token=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    env_file_set "$target/config/env" ANALYTICS_AUTH_TOKEN "$generated_token"
}

install_files() {
    local d
    for d in bin lib runtime python systemd scripts; do
        rm -rf "${target:?}/$d"
        if [[ -e "$dist/$d" ]]; then cp -a "$dist/$d" "$target/$d"; else mkdir -p "$target/$d"; fi
    done
    for f in requirements.txt VERSION DEPLOY.md; do
        [[ -e "$dist/$f" ]] && cp -a "$dist/$f" "$target/$f"
    done
    mkdir -p "$target/config" "$target/data" "$target/logs" "$target/venv"
    # configuration: keep the operator's files; ship the new examples next to them
    [[ -f "$target/config/env" ]] || cp "$dist/config/env" "$target/config/env"
    [[ -f "$target/config/analytics.toml" ]] || cp "$dist/config/analytics.toml" "$target/config/analytics.toml"
    cp "$dist/config/env" "$target/config/env.example"
    cp "$dist/config/analytics.toml" "$target/config/analytics.toml.example"
    env_file_set "$target/config/env" ANALYTICS_LISTEN_ADDR "$listen_addr"
    ensure_remote_token
    chown -R "$AE_USER:$AE_GROUP" "$target/bin" "$target/lib" "$target/runtime" "$target/python" \
        "$target/systemd" "$target/scripts"
    chown "$AE_USER:$AE_GROUP" "$target" "$target/data" "$target/logs" "$target/venv"
    chmod 755 "$target"/bin/*
    chown -R "root:$AE_GROUP" "$target/config"
    chmod 750 "$target/config"
    chmod 640 "$target"/config/*
}

setup_venv() {
    local venv="$target/venv" host_ver venv_ver pip_args
    host_ver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    venv_ver=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
    if [[ "$venv_ver" != "$host_ver" ]]; then
        log_info "creating venv $venv (Python $host_ver)"
        python3 -m venv --clear "$venv"
    fi
    pip_args=(--disable-pip-version-check --no-input -q)
    if [[ -d "$dist/wheels" && "$(cat "$dist/wheels/PYTHON_VERSION" 2>/dev/null)" == "$host_ver" ]]; then
        log_info "pip install -r requirements.txt (offline, from the build's wheels/)"
        (cd "$target" && "$venv/bin/python" -m pip install "${pip_args[@]}" --no-index --find-links "$dist/wheels" -r requirements.txt)
        pip_args+=(--no-index --find-links "$dist/wheels")
    else
        [[ -d "$dist/wheels" ]] && log_warn "wheels/ were built for Python $(cat "$dist/wheels/PYTHON_VERSION" 2>/dev/null), this host has $host_ver: installing from PyPI"
        log_info "pip install -r requirements.txt (from PyPI)"
        (cd "$target" && "$venv/bin/python" -m pip install "${pip_args[@]}" -r requirements.txt)
    fi
    # the same version number may carry new worker code: always reinstall the worker package itself
    (cd "$target" && "$venv/bin/python" -m pip install "${pip_args[@]}" --no-deps --force-reinstall ./python)
    rm -rf "$target"/python/build "$target"/python/*.egg-info
    chown -R "$AE_USER:$AE_GROUP" "$venv"
}

install_unit() {
    local tmp
    if [[ -f "$AE_ETC_UNIT" && ! -L "$AE_ETC_UNIT" ]]; then
        # an older installation's unit (it is in the backup): it would shadow the new one
        if [[ -z "$backup" ]]; then
            mkdir -p "$AE_BACKUP_DIR"
            cp -a "$AE_ETC_UNIT" "$AE_BACKUP_DIR/$AE_SERVICE.service.old-$(date +%Y%m%d-%H%M%S)"
        fi
        log_info "removing the old unit $AE_ETC_UNIT (saved in $AE_BACKUP_DIR)"
        rm -f "$AE_ETC_UNIT"
    fi
    mkdir -p "$AE_UNIT_DIR"
    tmp=$(mktemp)
    sed -e "s|@INSTALL_DIR@|$target|g" -e "s|@USER@|$AE_USER|g" -e "s|@GROUP@|$AE_GROUP|g" \
        "$dist/systemd/analytics-engine.service" > "$tmp"
    install -o root -g root -m 644 "$tmp" "$unit_file"
    rm -f "$tmp"
}

test_python() {
    # the engine's own check: spawns a worker with the venv's Python, as the service user
    runuser -u "$AE_USER" -- env ANALYTICS_PYTHON="$target/venv/bin/python" \
        ANALYTICS_CONFIG="$target/config/analytics.toml" "$target/bin/analytics-server" --test-python
}

journal_tail() { journalctl -u "$AE_SERVICE" -n "${1:-30}" --no-pager -o cat 2>/dev/null || true; }

start_and_wait() {
    systemctl daemon-reload
    systemctl enable --quiet "$AE_SERVICE"
    local t0=$SECONDS
    if ! systemctl start "$AE_SERVICE"; then
        log_error "systemctl start $AE_SERVICE failed"
        return 1
    fi
    if ! wait_healthy "$url" "$health_timeout"; then
        log_error "$AE_SERVICE did not report healthy on $url/health within ${health_timeout}s"
        return 1
    fi
    log_ok "healthy after $((SECONDS - t0)) s: $url/health"
}

rollback() {
    local why="$1"
    log_error "deploy of $version failed: $why"
    journal_tail 25 | sed 's/^/    | /' >&2
    systemctl stop "$AE_SERVICE" 2>/dev/null || true
    if [[ -z "$backup" ]]; then
        systemctl disable --quiet "$AE_SERVICE" 2>/dev/null || true
        log_error "first installation, no previous version to roll back to: $AE_SERVICE is stopped and disabled."
        exit 1
    fi
    log_warn "ROLLING BACK to $backup"
    backup_restore "$backup" "$target"
    listen_addr=$(env_file_get "$target/config/env" ANALYTICS_LISTEN_ADDR 2>/dev/null || echo "$AE_LISTEN_DEFAULT")
    url=$(local_url "$listen_addr")
    if start_and_wait; then
        log_warn "ROLLED BACK: the previous version ($(cat "$target/VERSION" 2>/dev/null)) is running again on $listen_addr"
    else
        log_error "ROLLBACK FAILED: the previous version did not become healthy either; see: journalctl -u $AE_SERVICE"
    fi
    exit 1
}

if [[ "$DRY_RUN" == 1 ]]; then
    log_step "5/9 install files"
    log_info "[dry-run] would copy bin lib runtime python systemd scripts requirements.txt VERSION from $dist to $target"
    log_info "[dry-run] would keep $env_file (or create it) and set ANALYTICS_LISTEN_ADDR=$listen_addr"
    (( enable_remote )) && log_info "[dry-run] would generate ANALYTICS_AUTH_TOKEN in $env_file unless one is set"
    log_step "6/9 venv"
    log_info "[dry-run] would create/update $target/venv: pip install -r requirements.txt$([[ -d "$dist/wheels" ]] && echo ' (offline wheels)')"
    log_step "7/9 unit"
    log_info "[dry-run] would install $unit_file from $dist/systemd/analytics-engine.service"
    run systemctl daemon-reload
    run systemctl enable "$AE_SERVICE"
    log_step "8/9 firewall"
    if (( enable_remote && ! skip_firewall )) && have ufw; then run ufw allow "$port/tcp"; else log_info "no firewall change"; fi
    log_step "9/9 start"
    run systemctl start "$AE_SERVICE"
    log_info "[dry-run] would wait up to ${health_timeout}s for $url/health"
    log_ok "dry run finished: nothing was changed"
    exit 0
fi

log_step "5/9 install files into $target"
install_files
log_ok "installed $version"

log_step "6/9 Python venv"
setup_venv || rollback "pip install -r requirements.txt failed (no network? use a build with --with-wheels)"
test_python >/dev/null 2>&1 || {
    test_python 2>&1 | tail -n 20 | sed 's/^/    | /' >&2 || true
    rollback "analytics-server --test-python failed: Python modules missing or broken"
}
log_ok "venv ready ($("$target/venv/bin/python" --version 2>&1))"

log_step "7/9 systemd unit"
install_unit
log_ok "$unit_file"

log_step "8/9 firewall"
if (( enable_remote )); then
    if (( skip_firewall )); then
        log_info "--skip-firewall: not touching the firewall; open TCP port $port yourself if needed"
    elif have ufw; then
        ufw allow "$port/tcp" >/dev/null && log_ok "ufw: allowed $port/tcp"
    else
        log_info "ufw not installed: make sure TCP port $port is reachable"
    fi
else
    log_ok "local only ($listen_addr): no firewall change"
fi

log_step "9/9 start $AE_SERVICE"
start_and_wait || rollback "the new version did not start or become healthy"

# ---------------------------------------------------------------- how to connect
hosts=
if [[ "${listen_addr%:*}" == 0.0.0.0 || "${listen_addr%:*}" == "[::]" ]]; then
    hosts=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -v '^$' | head -n 3 | tr '\n' ' ' || true)
fi
cat <<EOF

${C_GREEN}${C_BOLD}Analytics Engine $version is running${C_RESET} ($AE_SERVICE, listening on $listen_addr)
  health:   curl $url/health
  metrics:  curl $url/metrics
  gRPC:     grpcurl -plaintext ${url#http://} analytics.AnalyticsEngine/HealthCheck
Backends connect with gRPC (plaintext HTTP/2) to:
EOF
if [[ -n "$hosts" ]]; then
    for h in $hosts; do echo "  $h:$port      (e.g. ANALYTICS_ENGINE_URL=http://$h:$port)"; done
elif [[ "${listen_addr%:*}" == 0.0.0.0 || "${listen_addr%:*}" == "[::]" ]]; then
    echo "  <this host's address>:$port    (listening on all interfaces; no address found with hostname -I)"
else
    echo "  ${url#http://}    (this host only; redeploy with --enable-remote for other hosts)"
fi
token_now=$(env_file_get "$target/config/env" ANALYTICS_AUTH_TOKEN 2>/dev/null || true)
first_host=${hosts%% *}
first_host=${first_host:-127.0.0.1}
if [[ -n "$generated_token" ]]; then
    cat <<EOF
${C_BOLD}Remote mode: generated a bearer token${C_RESET} (saved as ANALYTICS_AUTH_TOKEN in $target/config/env,
readable by root and the analytics group only; shown here once, never logged):
  $generated_token
Every gRPC call (except grpc.health.v1 and reflection) and GET /metrics need it; /health stays open:
  grpcurl -plaintext -H 'authorization: Bearer $generated_token' $first_host:$port analytics.AnalyticsEngine/HealthCheck
  curl -H 'Authorization: Bearer $generated_token' http://$first_host:$port/metrics
  clients send the gRPC metadata   authorization: Bearer <token>
EOF
elif [[ -n "$token_now" ]]; then
    echo "Bearer token required (ANALYTICS_AUTH_TOKEN in $target/config/env): clients send metadata 'authorization: Bearer <token>'"
fi
cat <<EOF
Manage:   sudo $target/scripts/manage-service.sh   (status, logs, workers, reload, rollback, ...)
$([[ -n "$backup" ]] && echo "Backup of the previous version: $backup")
EOF
