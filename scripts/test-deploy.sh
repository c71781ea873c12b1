#!/usr/bin/env bash
# End-to-end deployment test against a real systemd (PID 1 of a systemd-nspawn container).
# See --help. Exit status: 0 passed, 1 failed, 77 SKIPPED (no root / no nspawn / cannot boot).
# The whole script is one brace group, so bash parses it completely before running it: editing the
# file during a (long) run cannot break that run.
{
set -euo pipefail
repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
# shellcheck source=lib/common.sh
. "$repo/scripts/lib/common.sh"

usage() {
    cat <<'EOF'
Usage: sudo scripts/test-deploy.sh [--no-build] [--keep] [--cache DIR] [--help]

Boots Debian bookworm with systemd as PID 1 in a systemd-nspawn container (private network,
volatile overlay: the cached root filesystem is never modified) and does, inside it, what an
operator does: setup-user -> deploy -> systemctl status -> grpcurl Analyze (native and Python)
and curl /health -> systemctl restart -> systemctl stop / restart with Python requests in flight
(all answered, no worker started while stopping, stop time <= longest request + 2 s) -> kill -9 of
the JVM (back by itself, no orphan worker) -> systemctl reload under client load (zero failed requests) -> journalctl -> manage-service.sh
health|workers|status -> second deploy (backup made) -> broken deploys roll back by themselves
-> --enable-remote listens on 0.0.0.0 -> --remote-host deploy over ssh (the host's ssh/scp into the
container's sshd) -> --dry-run changes nothing -> systemd-analyze security -> systemctl stop.
The container has no Java and no internet: the build's jlink runtime and offline wheels are used.

Options:
  --no-build    use the existing test build in the cache (skip mvn + assemble-dist --with-wheels)
  --keep        leave the container running at the end (prints how to enter it)
  --cache DIR   cache for the root filesystem, grpcurl and the test build
                (default /var/cache/analytics-engine-test; ~1 GB)
  --help        this text

Needs root, systemd-nspawn (apt-get install systemd-container), debootstrap, and network access
to the Debian mirror, PyPI and the Go module proxy on the first run (later runs use the cache).
Exit status 77 with a loud SKIPPED banner when the machine cannot run the container.
EOF
}

cache=/var/cache/analytics-engine-test; build=1; keep=0
while (( $# )); do
    case "$1" in
        --no-build) build=0 ;;
        --keep) keep=1 ;;
        --cache) cache="${2:?--cache needs a directory}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done

skip() {
    {
        echo
        echo "################################################################################"
        echo "##  SKIPPED: analytics-engine deployment test (real systemd) DID NOT RUN"
        echo "##  reason: $*"
        echo "##  This is NOT a pass. Exit status 77."
        echo "################################################################################"
    } >&2
    exit 77
}

[[ "${SKIP_DEPLOY_TEST:-0}" == 1 ]] && skip "SKIP_DEPLOY_TEST=1 is set"
[[ $(id -u) -eq 0 ]] || skip "needs root (systemd-nspawn, debootstrap): run with sudo"
if ! have systemd-nspawn || ! have debootstrap; then
    if have apt-get; then
        log_info "installing systemd-container and debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd-container debootstrap >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd-container debootstrap >/dev/null 2>&1; } \
            || skip "systemd-nspawn/debootstrap missing and apt-get install systemd-container debootstrap failed"
    else
        skip "systemd-nspawn/debootstrap missing (install systemd-container and debootstrap)"
    fi
fi
[[ -d /sys/fs/cgroup ]] || skip "no /sys/fs/cgroup"

# ------------------------------------------------------------------ results bookkeeping
passes=0; failures=0
declare -a summary=()
pass() { passes=$((passes + 1)); printf '%sPASS%s %s\n' "$C_GREEN" "$C_RESET" "$*" >&2; }
fail() { failures=$((failures + 1)); printf '%sFAIL%s %s\n' "$C_RED" "$C_RESET" "$*" >&2; }
check() { # check "description" cmd...
    local what="$1"; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
fatal() { fail "$*"; dump_diagnostics; finish; }
ok() { eval "$1"; }
note() { summary+=("$*"); log_info "$*"; }
now_ms() { date +%s%3N; }

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -n 9 || die "another test-deploy.sh is running (lock $cache/.lock)"

# ------------------------------------------------------------------ root filesystem (cached)
rootfs="$cache/rootfs"
pkgs="systemd,systemd-sysv,dbus,iproute2,procps,python3,python3-venv,curl,ca-certificates,sudo,htop,openssh-server"
if [[ "$(cat "$rootfs/.analytics-test-rootfs" 2>/dev/null)" != "$pkgs" ]]; then
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
    mirror=${mirror:-http://deb.debian.org/debian}
    log_info "debootstrap bookworm into $rootfs (once, ~90 s) from $mirror"
    rm -rf "$rootfs" "$rootfs.tmp"
    debootstrap --variant=minbase --include="$pkgs" bookworm "$rootfs.tmp" "$mirror" > "$cache/debootstrap.log" 2>&1 \
        || skip "debootstrap failed (no access to $mirror?): see $cache/debootstrap.log"
    printf '%s' "$pkgs" > "$rootfs.tmp/.analytics-test-rootfs"
    mv "$rootfs.tmp" "$rootfs"
fi

# ------------------------------------------------------------------ grpcurl (cached)
grpcurl="$cache/bin/grpcurl"
if [[ ! -x "$grpcurl" ]]; then
    if have grpcurl; then
        mkdir -p "$cache/bin"; cp "$(command -v grpcurl)" "$grpcurl"
    elif have go; then
        log_info "building grpcurl (go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest)"
        (cd /tmp && GOBIN="$cache/bin" CGO_ENABLED=0 go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest) \
            || die "could not build grpcurl"
    else
        die "grpcurl is needed: install Go (then this script builds it) or put grpcurl on PATH"
    fi
fi

# ------------------------------------------------------------------ the build under test
dist="$cache/build/analytics-engine"
if (( build )); then
    log_info "building the engine (mvn -B -q package -DskipTests)"
    (cd "$repo" && mvn -B -q package -DskipTests -Dgit.commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)") \
        || die "maven build failed"
    log_info "assembling the distribution with offline wheels into $dist"
    "$repo/scripts/lib/assemble-dist.sh" --with-wheels --output "$dist" || die "assemble-dist.sh --with-wheels failed"
fi
[[ -x "$dist/bin/analytics-server" && -d "$dist/wheels" ]] || die "no test build at $dist (run without --no-build)"
ct_py=$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ "$(cat "$dist/wheels/PYTHON_VERSION")" == "$ct_py" ]] \
    || die "wheels were built for Python $(cat "$dist/wheels/PYTHON_VERSION"), the container has $ct_py: pass a matching --python to assemble-dist.sh"

# ------------------------------------------------------------------ boot the container
name="ae-deploy-test-$$"
work=$(mktemp -d /tmp/ae-deploy-test.XXXXXX)
nspawn_pid=; leader=
cgroups=("/sys/fs/cgroup/systemd/$name" "/sys/fs/cgroup/unified/$name")

cleanup() {
    local rc=$?
    if (( keep )) && [[ -n "$leader" ]]; then
        log_warn "--keep: container left running. Enter: nsenter -t $leader -a -- bash ; stop: kill $nspawn_pid, then rmdir ${cgroups[*]}"
        return $rc
    fi
    if [[ -n "$nspawn_pid" ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill -TERM "$nspawn_pid" 2>/dev/null || true
        local deadline=$((SECONDS + 20))
        while kill -0 "$nspawn_pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
        kill -KILL "$nspawn_pid" 2>/dev/null || true
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    local cg
    for cg in "${cgroups[@]}"; do
        [[ -d "$cg" ]] && find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    rm -rf "$work"
    return $rc
}
trap cleanup EXIT

log_info "booting systemd in container $name (private network)"
for cg in "${cgroups[@]}"; do
    [[ -d "$(dirname "$cg")" ]] && mkdir -p "$cg"
done
(
    for cg in "${cgroups[@]}"; do
        [[ -d "$cg" ]] && echo "$BASHPID" > "$cg/cgroup.procs"
    done
    exec systemd-nspawn -D "$rootfs" -b --register=no --keep-unit --console=read-only -M "$name" \
        --volatile=overlay --private-network \
        --bind-ro="$dist:/srv/build/analytics-engine" \
        --bind-ro="$grpcurl:/usr/local/bin/grpcurl" \
        --bind-ro="$repo/proto:/srv/proto"
) > "$work/nspawn.log" 2>&1 < /dev/null &
nspawn_pid=$!

deadline=$((SECONDS + 60))
while [[ -z "$leader" ]] && (( SECONDS < deadline )); do
    kill -0 "$nspawn_pid" 2>/dev/null || { cat "$work/nspawn.log" >&2; skip "systemd-nspawn exited while booting (see above)"; }
    leader=$(pgrep -x systemd -P "$nspawn_pid" || true)
    [[ -n "$leader" ]] || sleep 0.2
done
[[ -n "$leader" ]] || { cat "$work/nspawn.log" >&2; skip "the container's systemd did not start within 60 s"; }

trap 'fail "unexpected error at line $LINENO"; dump_diagnostics' ERR
CT_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb NO_COLOR=1)
ct() { nsenter -t "$leader" -a -- "${CT_ENV[@]}" "$@"; }
ctsh() { ct bash -c "$1"; }
state=; deadline=$((SECONDS + 90))
while (( SECONDS < deadline )); do   # the manager's bus socket appears a moment after PID 1 starts
    state=$(ct timeout 60 systemctl is-system-running --wait 2>/dev/null || true)
    [[ -n "$state" && "$state" != offline ]] && break
    sleep 0.2
done
[[ "$state" == running || "$state" == degraded ]] || { cat "$work/nspawn.log" >&2; skip "container systemd is '$state', not running"; }
pass "container booted: systemd $(ct systemctl --version | head -n1 | awk '{print $2}') is PID 1 ($state)"

dump_diagnostics() {
    [[ -n "$leader" ]] || return 0
    log_warn "---- diagnostics: systemctl status / journal (last 80 lines) ----"
    ct systemctl status analytics-engine --no-pager -l 2>&1 | head -n 30 >&2 || true
    ct journalctl -u analytics-engine -n 80 --no-pager 2>&1 >&2 || true
}

finish() {
    if [[ -n "$leader" ]]; then   # keep the evidence of this run outside the (volatile) container
        rm -rf "$cache/last-run"; mkdir -p "$cache/last-run"
        cp -a "$work"/. "$cache/last-run/" 2>/dev/null || true
        ct journalctl -u analytics-engine --no-pager -o short-monotonic > "$cache/last-run/journal-full.txt" 2>&1 || true
        log_info "logs of this run: $cache/last-run/"
    fi
    echo >&2
    log_step "summary"
    local s
    for s in "${summary[@]}"; do printf '  %s\n' "$s" >&2; done
    if (( failures )); then
        printf '%sFAILED%s: %d failed, %d passed\n' "$C_RED" "$C_RESET" "$failures" "$passes" >&2
        exit 1
    fi
    printf '%sPASSED%s: %d checks\n' "$C_GREEN" "$C_RESET" "$passes" >&2
    exit 0
}

# ------------------------------------------------------------------ helpers inside the container
T=/opt/v7/analytics-engine
B=/srv/build/analytics-engine
health_code() { ct curl -s -o /dev/null -w '%{http_code}' --max-time 3 http://127.0.0.1:50051/health || true; }
health_body() { ct curl -s --max-time 3 http://127.0.0.1:50051/health || true; }
main_pid() { ct systemctl show -p MainPID --value analytics-engine; }
unit_prop() { ct systemctl show -p "$1" --value analytics-engine; }
wait_health_200() { # wait_health_200 TIMEOUT_S -> 0 when /health answers 200
    local deadline=$(( $(date +%s) + $1 ))
    while (( $(date +%s) < deadline )); do
        [[ "$(health_code)" == 200 ]] && return 0
        sleep 0.1
    done
    return 1
}
wait_new_main_pid() { # wait_new_main_pid OLD TIMEOUT_S -> prints the new MainPID
    local old="$1" deadline=$(( $(date +%s) + $2 )) p
    while (( $(date +%s) < deadline )); do
        p=$(main_pid)
        if [[ "$p" != 0 && "$p" != "$old" ]]; then echo "$p"; return 0; fi
        sleep 0.05
    done
    return 1
}
worker_pids() { health_body | python3 -c 'import json,sys; print(" ".join(str(w["pid"]) for w in json.load(sys.stdin)["python"]["workers"]))'; }
cgroup_pids() { ctsh 'cat /sys/fs/cgroup/systemd/system.slice/analytics-engine.service/cgroup.procs 2>/dev/null || cat /sys/fs/cgroup/system.slice/analytics-engine.service/cgroup.procs 2>/dev/null' | sort -n | paste -sd' ' -; }
GRPC=(grpcurl -plaintext -max-time 30 -import-path /srv/proto -proto analytics.proto)
analyze() { # analyze JSON -> grpcurl response JSON
    ct "${GRPC[@]}" -d "$1" 127.0.0.1:50051 analytics.AnalyticsEngine/Analyze
}
json_get() { python3 -c 'import json,sys
d = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    d = d[int(k)] if isinstance(d, list) else d.get(k)
print(json.dumps(d) if not isinstance(d, str) else d)' "$1"; }
tree_snapshot() { ctsh 'find /opt/v7 /etc/systemd/system /usr/local/lib/systemd -xdev -printf "%p %s %T@ %m %u:%g\n" 2>/dev/null | sort | md5sum'; }

# ------------------------------------------------------------------ 1. setup-user
log_step "1. setup-user.sh"
ct "$B/scripts/setup-user.sh" --help | grep -q "Usage:" && pass "setup-user.sh --help" || fail "setup-user.sh --help"
if ct "$B/scripts/setup-user.sh" > "$work/setup1.log" 2>&1; then pass "setup-user.sh (first run)"; else cat "$work/setup1.log" >&2; fatal "setup-user.sh failed"; fi
check "user and group analytics exist (system account, nologin)" \
    ctsh 'id analytics >/dev/null && [ "$(id -gn analytics)" = analytics ] && [ "$(id -u analytics)" -lt 1000 ] && getent passwd analytics | grep -q nologin'
layout() { ctsh 'stat -c "%n %U:%G %a" /opt/v7/backups /opt/v7/analytics-engine /opt/v7/analytics-engine/{bin,lib,runtime,python,venv,config,data,logs}'; }
layout1=$(layout)
check "directories with owners and modes" grep -q "/opt/v7/analytics-engine/data analytics:analytics 750" <<<"$layout1"
check "config is root:analytics 750, backups root 700" ok 'grep -q "/config root:analytics 750" <<<"$layout1" && grep -q "/opt/v7/backups root:root 700" <<<"$layout1"'
ct "$B/scripts/setup-user.sh" > "$work/setup2.log" 2>&1 && [[ "$(layout)" == "$layout1" ]] \
    && pass "setup-user.sh is idempotent (second run: same layout)" || fail "setup-user.sh second run"

# ------------------------------------------------------------------ 2. deploy
log_step "2. deploy.sh"
ct "$B/scripts/deploy.sh" --help | grep -q -- "--enable-remote" && pass "deploy.sh --help" || fail "deploy.sh --help"
# the previous engine's unit, as an older installation left it in /etc/systemd/system
cat > "/proc/$leader/root/etc/systemd/system/analytics-engine.service" <<'OLDUNIT'
[Unit]
Description=the previous analytics engine (stand-in for an older installation's unit)
[Service]
ExecStart=/bin/sleep infinity
OLDUNIT
ct systemctl daemon-reload
t0=$(now_ms)
if ct "$B/scripts/deploy.sh" > "$work/deploy1.log" 2>&1; then
    pass "deploy.sh (first deploy) in $(( ($(now_ms) - t0) / 1000 )) s"
else
    cat "$work/deploy1.log" >&2; fatal "first deploy failed"
fi
note "first deploy (venv from offline wheels included): $(( ($(now_ms) - t0) / 1000 )) s"
check "deploy prints how backends connect" grep -q "Backends connect" "$work/deploy1.log"
check "the old /etc/systemd/system unit was saved to /opt/v7/backups and removed" \
    ok 'ctsh "! test -e /etc/systemd/system/analytics-engine.service && ls /opt/v7/backups/analytics-engine.service.old-* >/dev/null"'
[[ "$(ct systemctl is-active analytics-engine)" == active ]] && pass "systemctl is-active analytics-engine = active" || fatal "service not active after deploy"
[[ "$(ct systemctl is-enabled analytics-engine)" == enabled ]] && pass "service enabled (starts on boot)" || fail "service not enabled"
ct systemctl status analytics-engine --no-pager > "$work/status.txt" 2>&1 || true
check "systemctl status shows active (running)" grep -q "active (running)" "$work/status.txt"
check "unit file root:root 644, launcher analytics 755" \
    ctsh '[ "$(stat -c "%U:%G %a" /usr/local/lib/systemd/system/analytics-engine.service)" = "root:root 644" ] && [ "$(stat -c "%U %a" /opt/v7/analytics-engine/bin/analytics-server)" = "analytics 755" ]'
check "no Java installed in the container (the jlink runtime is used)" ctsh '! command -v java && [ -x /opt/v7/analytics-engine/runtime/bin/java ]'
mp=$(main_pid)
check "pgrep -f analytics-server finds the main process ($mp)" ok 'ct pgrep -f analytics-server | grep -qx "$mp"'
check "the main process runs as analytics" ok '[[ "$(ct ps -o user= -p "$mp")" == analytics ]]'
ct ps -o comm=,args= -p "$mp" > "$work/ps.txt" || true
check "ps shows the name: $(cut -c1-60 "$work/ps.txt")" grep -q "^analytics-serve *analytics-server " "$work/ps.txt"
check "analytics-server --version: $(ct /opt/v7/analytics-engine/bin/analytics-server --version 2>&1 | head -n1)" ok 'ct /opt/v7/analytics-engine/bin/analytics-server --version | grep -q .'
check "analytics-server --health-check (exit 0 against the running service)" ok 'ct /opt/v7/analytics-engine/bin/analytics-server --health-check >/dev/null'
ct runuser -u analytics -- /opt/v7/analytics-engine/bin/analytics-server --test-python > "$work/test-python.txt" 2>&1 \
    && pass "analytics-server --test-python as user analytics: $(tail -n1 "$work/test-python.txt" | cut -c1-80)" \
    || { cat "$work/test-python.txt" >&2; fail "analytics-server --test-python"; }
check "Type=notify unit is active, status text: $(unit_prop StatusText)" ok '[[ "$(unit_prop Type)" == notify ]]'

# A host with its own Java 17+ and no runtime/: a copy of bin/ and lib/ only. The "host Java" is a
# JDK-independent Java 17 at another path (the build's runtime, bind-mounted read-only).
ctsh 'rm -rf /tmp/nort && mkdir /tmp/nort && cp -a /opt/v7/analytics-engine/bin /opt/v7/analytics-engine/lib /tmp/nort/'
out=$(ct env JAVA_HOME=/srv/build/analytics-engine/runtime /tmp/nort/bin/analytics-server --version 2>&1 || true)
check "without runtime/: the launcher uses \$JAVA_HOME (Java 17 elsewhere)" grep -q "^java 17" <<<"$out"
ct ln -s /srv/build/analytics-engine/runtime/bin/java /usr/local/bin/java
out=$(ct /tmp/nort/bin/analytics-server --version 2>&1 || true)
ct rm -f /usr/local/bin/java
check "without runtime/: the launcher uses java on PATH" grep -q "^java 17" <<<"$out"
out=$(ct /tmp/nort/bin/analytics-server --version 2>&1 || true)
check "without runtime/ and without any Java: a clear error" grep -q "no Java runtime found" <<<"$out"
ct mkdir -p /tmp/fj/bin
cat > "/proc/$leader/root/tmp/fj/bin/java" <<'FAKEJAVA'
#!/bin/sh
echo 'openjdk version "11.0.2" 2019-01-15' >&2
FAKEJAVA
chmod 755 "/proc/$leader/root/tmp/fj/bin/java"
out=$(ct env JAVA_HOME=/tmp/fj /tmp/nort/bin/analytics-server --version 2>&1 || true)
check "a Java 11 is refused: $(head -n1 <<<"$out" | cut -c1-70)" grep -q "Java 17 or newer is required" <<<"$out"
ct rm -rf /tmp/nort /tmp/fj

# ------------------------------------------------------------------ 3. requests
log_step "3. health and gRPC"
check "curl /health = 200" ok '[[ "$(health_code)" == 200 ]]'
health_body > "$work/health.json"
check "/health lists python workers" python3 -c 'import json,sys; w=json.load(open(sys.argv[1]))["python"]["workers"]; sys.exit(0 if w and all(x["pid"] for x in w) else 1)' "$work/health.json"
# the launcher's glibc malloc settings are the JVM's alone (README "JVM flags"; workers/launch/WorkerEnvironment)
env_of() { ct cat "/proc/$1/environ" | tr '\0' '\n'; }
check "MALLOC_ARENA_MAX=1 in the engine's environment, in none of its workers'" ok '
    env_of "$(main_pid)" | grep -x MALLOC_ARENA_MAX=1 >/dev/null && [[ -n "$(worker_pids)" ]] &&
    ! { for w in $(worker_pids); do env_of "$w"; done | grep "^MALLOC_\|^ANALYTICS_JVM_ONLY_ENV=" >/dev/null; }'
r=$(analyze '{"request_id":"n1","algorithm":"mean","data":[1,2,3,4,5]}' 2>&1 || true)
if [[ "$(json_get success <<<"$r" 2>/dev/null)" == true && "$(json_get resultJson <<<"$r")" == 3* ]]; then
    pass "grpcurl Analyze mean (native) = $(json_get resultJson <<<"$r")"
else fail "grpcurl Analyze mean: $r"; fi
PY_REQ='{"request_id":"p1","algorithm":"anomaly_detection","data":[1,1.1,0.9,1,1.05,25,1,0.95,1.02,1],"params":{"method":"zscore","threshold":"2"},"options":{"allow_python":true,"include_metadata":true,"timeout_ms":30000}}'
r=$(analyze "$PY_REQ" 2>&1 || true)
if [[ "$(json_get success <<<"$r" 2>/dev/null)" == true && "$(json_get metadata.implementation <<<"$r")" == python ]]; then
    pass "grpcurl Analyze anomaly_detection (python worker): anomalies $(json_get resultJson <<<"$r" | python3 -c 'import json,sys; print(json.load(sys.stdin)["anomalies"])')"
else fail "grpcurl Analyze anomaly_detection (python): $r"; fi

# ------------------------------------------------------------------ 4. restart
log_step "4. systemctl restart"
old=$(main_pid)
t0=$(now_ms)
ct systemctl restart analytics-engine || fail "systemctl restart returned non-zero"
t_active=$(( $(now_ms) - t0 ))
if wait_health_200 120; then
    t=$(( $(now_ms) - t0 ))
    pass "systemctl restart -> healthy in ${t} ms (restart returned after ${t_active} ms)"
    note "systemctl restart -> healthy: ${t} ms (systemctl restart itself returned after ${t_active} ms: READY=1)"
else fatal "not healthy after restart"; fi
check "new main process after restart" ok '[[ "$(main_pid)" != "$old" ]]'

# ------------------------------------------------------------------ 4b. stop / restart with Python requests in flight
log_step "4b. systemctl stop and systemctl restart while Python requests run"
# random_forest over 2000 points with 100 trees: about a second on one worker, long enough to be in flight.
python3 - > "$work/slow-req.json" <<'PYEOF'
import json, random
rng = random.Random(5)
data = [rng.gauss(0, 1) + (i % 50) * 0.1 for i in range(2000)]
print(json.dumps({"request_id": "slow", "algorithm": "random_forest", "data": data,
                  "params": {"n_estimators": "100"},
                  "options": {"allow_python": True, "timeout_ms": 60000}}))
PYEOF
ctsh "cat > /tmp/slow-req.json" < "$work/slow-req.json"
busy_workers() { health_body | python3 -c 'import json,sys
try: print(sum(1 for w in json.load(sys.stdin)["python"]["workers"] if w["state"] == "busy"))
except Exception: print(0)'; }
stop_under_load() { # stop_under_load stop|restart
    local action="$1" n i t0 t_stop longest=0 mark pids=() ok=0 bad=0
    mark=$(ct journalctl -u analytics-engine --no-pager -o cat | wc -l)
    : > "$work/inflight-$action.txt"
    n=$(wc -w <<<"$(worker_pids)")
    for (( i = 0; i < n; i++ )); do
        # (set -e is on: a failing grpcurl must still write its "fail" line)
        ( s=$(now_ms); rc=0
          out=$(ct bash -c "${GRPC[*]} -max-time 90 -d @ 127.0.0.1:50051 analytics.AnalyticsEngine/Analyze < /tmp/slow-req.json" 2>&1) || rc=$?
          e=$(now_ms)
          if (( rc == 0 )) && grep -q '"success": true' <<<"$out"; then echo "ok $s $e"; else echo "fail $s $e rc=$rc $(tr '\n' ' ' <<<"$out" | cut -c1-200)"; fi
        ) >> "$work/inflight-$action.txt" &
        pids+=($!)
    done
    local deadline=$((SECONDS + 60))
    while (( $(busy_workers) < n && SECONDS < deadline )); do sleep 0.05; done
    local old_mp; old_mp=$(main_pid)
    t0=$(now_ms)
    ct systemctl --no-block "$action" analytics-engine || fail "systemctl $action returned non-zero"
    # stop time = until the old engine process is gone (a restart then starts a new one)
    deadline=$((SECONDS + 90))
    while ct kill -0 "$old_mp" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.05; done
    t_stop=$(( $(now_ms) - t0 ))
    wait "${pids[@]}" || true
    deadline=$((SECONDS + 120))
    while (( $(wc -l < "$work/inflight-$action.txt") < n && SECONDS < deadline )); do sleep 0.1; done
    ok=$(grep -c '^ok ' "$work/inflight-$action.txt" || true); bad=$(grep -vc '^ok ' "$work/inflight-$action.txt" || true)
    while read -r _ s e _; do (( e - t0 > longest )) && longest=$(( e - t0 )); done < "$work/inflight-$action.txt"
    if (( ok == n && bad == 0 )); then pass "systemctl $action: all $n in-flight Python requests answered successfully"
    else fail "systemctl $action: $ok of $n in-flight Python requests answered successfully: $(grep -v '^ok ' "$work/inflight-$action.txt" | head -n 2)"; fi
    # the old engine's lines from the stop request to its "stopped"
    ct journalctl -u analytics-engine --no-pager -o cat | tail -n +"$((mark + 1))" | sed '/^stopped$\|] stopped$\| stopped$/q' > "$work/stop-$action.log"
    if grep -qE "restarting in|spawned pid|forked pid" "$work/stop-$action.log"; then
        fail "systemctl $action: a worker was (re)started while stopping: $(grep -E 'restarting in|spawned pid|forked pid' "$work/stop-$action.log" | head -n 2)"
    else pass "systemctl $action: no 'restarting'/'spawned'/'forked' line between the stop and the exit"; fi
    if (( t_stop <= longest + 2000 )); then pass "systemctl $action: old engine gone after ${t_stop} ms (longest in-flight request ended ${longest} ms after the stop request; limit +2000 ms)"
    else fail "systemctl $action: old engine gone only after ${t_stop} ms, more than the longest in-flight request (${longest} ms) + 2 s"; fi
    note "systemctl $action with $n Python requests in flight: ${t_stop} ms (longest request answered at ${longest} ms)"
}
stop_under_load stop
check "after systemctl stop: no analytics process left" ok '[[ -z "$(ct pgrep -u analytics || true)" ]]'
ct systemctl start analytics-engine || fail "systemctl start returned non-zero"
wait_health_200 120 || fatal "not healthy after systemctl start"
deadline=$((SECONDS + 60)); while (( $(wc -w <<<"$(worker_pids)") < 1 && SECONDS < deadline )); do sleep 0.1; done
stop_under_load restart
wait_health_200 120 || fatal "not healthy after systemctl restart under load"

# ------------------------------------------------------------------ 5. kill -9
log_step "5. kill -9 of the JVM"
# every worker up (a starting slot shows pid -1), so the orphan check below looks at real processes
deadline=$((SECONDS + 60)); while [[ "$(worker_pids)" == *-1* || -z "$(worker_pids)" ]] && (( SECONDS < deadline )); do sleep 0.1; done
old=$(main_pid); old_workers=$(worker_pids)
old_python=$(ct pgrep -u analytics -f 'analytics-worker|analytics_worker' | paste -sd' ' - || true)  # template + workers (retitled)
restart_sec=$(unit_prop RestartUSec)
n0=$(unit_prop NRestarts)
t0=$(now_ms)
ct kill -9 "$old"
if new=$(wait_new_main_pid "$old" 60) && wait_health_200 120; then
    t=$(( $(now_ms) - t0 ))
    pass "kill -9 $old -> new main process $new, healthy in ${t} ms (RestartSec=$restart_sec)"
    note "kill -9 JVM -> healthy: ${t} ms (RestartSec=$restart_sec + start-up)"
else fatal "service did not come back after kill -9"; fi
check "NRestarts went up ($n0 -> $(unit_prop NRestarts))" ok '(( $(unit_prop NRestarts) > n0 ))'
orphans=()
for p in $old_workers; do ct kill -0 "$p" 2>/dev/null && orphans+=("$p"); done
(( ${#orphans[@]} == 0 )) && pass "no orphan worker: old workers ($old_workers) are gone" || fail "orphan workers still alive: ${orphans[*]}"
left=()
for p in $old_python; do ct kill -0 "$p" 2>/dev/null && left+=("$p"); done
(( ${#left[@]} == 0 )) && pass "no Python process of the killed engine left (template and workers: ${old_python:-none})" \
    || fail "Python processes of the killed engine still alive: ${left[*]}"
check "every analytics process is in the service's cgroup" ok '
    a=$(ct pgrep -u analytics | sort -n | paste -sd" " -); c=$(cgroup_pids); [[ -n "$a" && "$a" == "$c" ]] || { echo "user procs: $a / cgroup: $c" >&2; false; }'

# ------------------------------------------------------------------ 6. reload under load
log_step "6. systemctl reload under client load"
deadline=$((SECONDS + 60)); while [[ "$(worker_pids)" == *-1* || -z "$(worker_pids)" ]] && (( SECONDS < deadline )); do sleep 0.1; done
before_workers=$(worker_pids); mp=$(main_pid)
ctsh "cat > /tmp/load.sh" <<EOF
#!/bin/bash
# sequential clients until /tmp/stop exists; one line per request: ok|fail
i=0
while [ ! -e /tmp/stop ] || [ \$i -lt 20 ]; do
  i=\$((i+1))
  if [ \$((i % 2)) -eq 0 ]; then req='{"request_id":"l'\$i'","algorithm":"median","data":[3,1,2,5,4]}'
  else req='$PY_REQ'; fi
  out=\$(${GRPC[*]} -d "\$req" 127.0.0.1:50051 analytics.AnalyticsEngine/Analyze 2>&1)
  if printf '%s' "\$out" | grep -q '"success": true'; then echo ok; else echo "fail \$out" | tr '\n' ' '; echo; fi
done
EOF
ct rm -f /tmp/stop
: > "$work/load1.txt"; : > "$work/load2.txt"
ct bash /tmp/load.sh > "$work/load1.txt" 2>&1 &
load1=$!
ct bash /tmp/load.sh > "$work/load2.txt" 2>&1 &
load2=$!
# let the clients get going, then reload
deadline=$((SECONDS + 30)); while (( $(cat "$work/load1.txt" "$work/load2.txt" | wc -l) < 10 && SECONDS < deadline )); do sleep 0.1; done
t0=$(now_ms)
ct systemctl reload analytics-engine || fail "systemctl reload returned non-zero"
# the reload is over when every worker has been replaced and the unit is active again
deadline=$((SECONDS + 120)); reloaded=0
while (( SECONDS < deadline )); do
    now_workers=$(worker_pids 2>/dev/null || true)
    if [[ -n "$now_workers" && "$(unit_prop ActiveState)" == active ]]; then
        common=$(comm -12 <(tr ' ' '\n' <<<"$before_workers" | sort) <(tr ' ' '\n' <<<"$now_workers" | sort) | wc -l)
        (( common == 0 )) && { reloaded=1; break; }
    fi
    sleep 0.2
done
t=$(( $(now_ms) - t0 ))
ct touch /tmp/stop
wait "$load1" "$load2" || true
(( reloaded )) && pass "rolling reload replaced every worker ($before_workers -> $now_workers) in ${t} ms" || fail "workers not all replaced within 120 s after reload ($before_workers -> ${now_workers:-?})"
note "systemctl reload (rolling worker restart) completed in ${t} ms"
check "reload kept the JVM (MainPID $mp unchanged)" ok '[[ "$(main_pid)" == "$mp" ]]'
total=$(cat "$work/load1.txt" "$work/load2.txt" | wc -l); failed=$(cat "$work/load1.txt" "$work/load2.txt" | grep -vc '^ok$' || true)
if (( total >= 40 && failed == 0 )); then pass "zero failed requests during reload ($total requests)"
else fail "$failed of $total requests failed during reload: $(grep -v '^ok$' "$work/load1.txt" "$work/load2.txt" | head -n 3)"; fi
note "requests during reload: $total, failed: $failed"

# ------------------------------------------------------------------ 7. journal
log_step "7. journalctl"
ct journalctl -u analytics-engine --no-pager -o cat > "$work/journal.txt" 2>&1 || true
check "journal has the engine's lines" grep -qiE "listening|started|ready" "$work/journal.txt"
check "journal has the workers' lines" grep -qiE "worker" "$work/journal.txt"
check "journal shows the reload" grep -qiE "reload" "$work/journal.txt"

# ------------------------------------------------------------------ 8. manage-service
log_step "8. manage-service.sh"
M="$T/scripts/manage-service.sh"
ct "$M" --help | grep -q rollback && pass "manage-service.sh --help" || fail "manage-service.sh --help"
ct "$M" health > "$work/m-health.txt" 2>&1 && grep -q '"status"' "$work/m-health.txt" && pass "manage-service.sh health" || { cat "$work/m-health.txt" >&2; fail "manage-service.sh health"; }
ct "$M" workers > "$work/m-workers.txt" 2>&1 || true
nw=$(wc -w <<<"$(worker_pids)")
if head -n1 "$work/m-workers.txt" | grep -q "ID.*PID.*STATE.*REQUESTS.*RSS.*UPTIME" && grep -q "^$nw worker(s)" "$work/m-workers.txt"; then
    pass "manage-service.sh workers: table of $nw workers"
else cat "$work/m-workers.txt" >&2; fail "manage-service.sh workers"; fi
ct "$M" status > "$work/m-status.txt" 2>&1 && grep -q "active (running)" "$work/m-status.txt" && grep -q "^health: " "$work/m-status.txt" \
    && pass "manage-service.sh status" || { cat "$work/m-status.txt" >&2; fail "manage-service.sh status"; }
ct "$M" logs recent > "$work/m-logs.txt" 2>&1 && [[ -s "$work/m-logs.txt" ]] && pass "manage-service.sh logs recent" || fail "manage-service.sh logs recent"
ct bash -c "printf '3\n0\n' | script -qec $M /dev/null" > "$work/m-menu.txt" 2>&1 || true
grep -q "20) rollback" "$work/m-menu.txt" && grep -q "ID.*PID.*STATE" "$work/m-menu.txt" \
    && pass "manage-service.sh menu (on a terminal): choice 3 = workers table" || { cat "$work/m-menu.txt" >&2; fail "manage-service.sh menu"; }
ct "$M" top > "$work/m-top.txt" 2>&1 && grep -q "analytics-server" "$work/m-top.txt" && pass "manage-service.sh top (ps tree without a terminal)" || { cat "$work/m-top.txt" >&2; fail "manage-service.sh top"; }

# ------------------------------------------------------------------ 9. second deploy (update)
log_step "9. second deploy (update)"
nb0=$(ct bash -c 'ls -d /opt/v7/backups/analytics-engine-*/ 2>/dev/null | wc -l')
if ct "$B/scripts/deploy.sh" > "$work/deploy2.log" 2>&1; then pass "second deploy"; else cat "$work/deploy2.log" >&2; fail "second deploy"; fi
nb1=$(ct bash -c 'ls -d /opt/v7/backups/analytics-engine-*/ 2>/dev/null | wc -l')
check "a backup was made ($nb0 -> $nb1)" ok '(( nb1 == nb0 + 1 ))'
check "the backup has the code, the config, the venv and the unit" ctsh 'b=$(ls -d /opt/v7/backups/analytics-engine-* | tail -n1); [ -f $b/BACKUP_INFO ] && [ -d $b/lib ] && [ -f $b/config/env ] && [ -x $b/venv/bin/python ] && [ -f $b/unit.service ]'
[[ "$(health_code)" == 200 ]] && pass "healthy after the update" || fail "not healthy after the update"

# ------------------------------------------------------------------ 10. broken deploys roll back
log_step "10. broken deploys roll back by themselves"
good_version=$(ct cat "$T/VERSION")
broken_deploy() { # broken_deploy LABEL SETUP_SHELL
    local label="$1" setup="$2" rc=0 mp0
    mp0=$(main_pid)
    ctsh "rm -rf /tmp/broken && cp -a $B /tmp/broken && echo '0.0.0-broken $label' > /tmp/broken/VERSION && $setup" \
        || { fail "preparing broken build ($label)"; return; }
    ct /tmp/broken/scripts/deploy.sh --health-timeout 30 > "$work/broken-$label.log" 2>&1 || rc=$?
    if (( rc != 0 )) && grep -q "ROLLED BACK" "$work/broken-$label.log"; then
        pass "broken deploy ($label) failed (exit $rc) and said ROLLED BACK"
    else
        tail -n 30 "$work/broken-$label.log" >&2; fail "broken deploy ($label): exit $rc, no ROLLED BACK"
    fi
    [[ "$(ct cat "$T/VERSION")" == "$good_version" && "$(health_code)" == 200 && "$(ct systemctl is-active analytics-engine)" == active ]] \
        && pass "after rollback ($label): previous version $good_version active and healthy" \
        || fail "after rollback ($label): version $(ct cat "$T/VERSION"), health $(health_code)"
    [[ "$(main_pid)" != "$mp0" ]] || fail "rollback ($label) did not restart the service"
}
# a build that installs fine but whose engine cannot start under systemd
broken_deploy start-fails "sed -i 's|^ExecStart=.*|ExecStart=@INSTALL_DIR@/bin/analytics-server --config /nonexistent/analytics.toml|' /tmp/broken/systemd/analytics-engine.service"
# a build with a corrupt engine jar (caught by --test-python before the unit is touched)
broken_deploy corrupt-jar "head -c 1000 $B/lib/analytics-engine.jar > /tmp/broken/lib/analytics-engine.jar"

# ------------------------------------------------------------------ 11. --enable-remote
log_step "11. deploy --enable-remote"
if ct "$B/scripts/deploy.sh" --enable-remote > "$work/deploy-remote.log" 2>&1; then pass "deploy --enable-remote"; else tail -n 30 "$work/deploy-remote.log" >&2; fail "deploy --enable-remote"; fi
check "listening on all interfaces: $(ct ss -Hltn "sport = :50051" | awk '{print $4}' | paste -sd' ' -)" ok 'ct ss -Hltn "sport = :50051" | awk "{print \$4}" | grep -qE "^(0\.0\.0\.0|\*|\[::\]):50051$"'
check "config/env has ANALYTICS_LISTEN_ADDR=0.0.0.0:50051" ctsh 'grep -qx "ANALYTICS_LISTEN_ADDR=0.0.0.0:50051" /opt/v7/analytics-engine/config/env'
check "the container's address is listed for backends" grep -q "Backends connect" "$work/deploy-remote.log"
check "--enable-remote generated a bearer token and printed how to use it" grep -q "generated a bearer token" "$work/deploy-remote.log"
tok=$(ctsh 'sed -n "s/^ANALYTICS_AUTH_TOKEN=//p" /opt/v7/analytics-engine/config/env' | tail -n1)
check "the token is in config/env (64 hex characters)" ok '[[ "$tok" =~ ^[0-9a-f]{64}$ ]]'
noauth=$(ct "${GRPC[@]}" 127.0.0.1:50051 analytics.AnalyticsEngine/HealthCheck 2>&1 || true)   # grpcurl exits non-zero here
check "gRPC without the token: Unauthenticated" grep -q "Code: Unauthenticated" <<<"$noauth"
check "gRPC with the token: answered" ok 'ct "${GRPC[@]}" -H "authorization: Bearer $tok" 127.0.0.1:50051 analytics.AnalyticsEngine/HealthCheck 2>&1 | grep -q "\"healthy\": true"'
check "/health stays open, /metrics needs the token" ok '[[ "$(health_code)" == 200 ]] && ct curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:50051/metrics | grep -qx 401'
check "the token never appears in the journal" ok '! ct journalctl -u analytics-engine --no-pager | grep -qF "$tok"'

# ------------------------------------------------------------------ 11b. cross server (--remote-host)
log_step "11b. deploy --remote-host over ssh (host -> container's sshd)"
if have ssh && have scp && have ssh-keygen; then
    ssh-keygen -q -t ed25519 -N '' -C ae-deploy-test -f "$work/id_ed25519"
    install -d -m 700 "/proc/$leader/root/root/.ssh"
    install -m 600 "$work/id_ed25519.pub" "/proc/$leader/root/root/.ssh/authorized_keys"
    ct systemctl start ssh.service
    nb0=$(ct bash -c 'ls -d /opt/v7/backups/analytics-engine-*/ 2>/dev/null | wc -l')
    # the host's ssh/scp and this checkout's build, inside the container's network namespace only
    if nsenter -t "$leader" -n -- "$dist/scripts/deploy.sh" --remote-host 127.0.0.1 --ssh-user root \
            --ssh-key "$work/id_ed25519" --ssh-option StrictHostKeyChecking=no --ssh-option UserKnownHostsFile=/dev/null \
            --ssh-option LogLevel=ERROR --listen-addr 127.0.0.1:50051 < /dev/null > "$work/deploy-ssh.log" 2>&1; then
        pass "deploy --remote-host 127.0.0.1 --ssh-user root --ssh-key ... (over ssh/scp)"
    else
        tail -n 30 "$work/deploy-ssh.log" >&2; fail "deploy --remote-host"
    fi
    check "the remote run installed the venv offline (wheels)" grep -q "offline, from the build's wheels" "$work/deploy-ssh.log"
    nb1=$(ct bash -c 'ls -d /opt/v7/backups/analytics-engine-*/ 2>/dev/null | wc -l')
    check "remote deploy made a backup ($nb0 -> $nb1, keeping the last $AE_KEEP_BACKUPS)" ok '(( nb1 == nb0 + 1 || (nb0 == AE_KEEP_BACKUPS && nb1 == nb0) ))'
    check "healthy after the remote deploy" ok '[[ "$(health_code)" == 200 ]]'
    check "listening on 127.0.0.1:50051 again: $(ct ss -Hltn "sport = :50051" | awk '{print $4}' | paste -sd' ' -)" \
        ok 'ct ss -Hltn "sport = :50051" | awk "{print \$4}" | grep -qxE "(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]):50051"'
    check "the shipped build was removed from the remote /tmp" ok '! ct bash -c "ls -d /tmp/analytics-engine-deploy.* 2>/dev/null | grep -q ."'
else
    fail "ssh/scp/ssh-keygen missing on this host (apt-get install openssh-client): cross-server deploy not tested"
fi

# ------------------------------------------------------------------ 12. --dry-run
log_step "12. deploy --dry-run"
snap0=$(tree_snapshot); mp=$(main_pid); nr=$(unit_prop NRestarts)
if ct "$B/scripts/deploy.sh" --dry-run --listen-addr 127.0.0.1:50052 > "$work/dry.log" 2>&1; then pass "deploy --dry-run exits 0"; else cat "$work/dry.log" >&2; fail "deploy --dry-run"; fi
check "--dry-run prints the commands" grep -q "\[dry-run\]" "$work/dry.log"
[[ "$(tree_snapshot)" == "$snap0" && "$(main_pid)" == "$mp" && "$(unit_prop NRestarts)" == "$nr" ]] \
    && pass "--dry-run changed nothing (files, unit, process)" || fail "--dry-run changed something"
ct setpriv --reuid=65534 --regid=65534 --clear-groups /srv/build/analytics-engine/scripts/deploy.sh > "$work/nonroot.log" 2>&1 || true
grep -q "needs root" "$work/nonroot.log" && pass "non-root deploy gets a clear message" || { cat "$work/nonroot.log" >&2; fail "non-root deploy: no clear message"; }

# ------------------------------------------------------------------ 12b. manage-service: service and backup commands
log_step "12b. manage-service.sh restart/reload/disable/enable/mask/unmask/backups/rollback"
M="$T/scripts/manage-service.sh"
mp=$(main_pid)
ct "$M" restart > "$work/m-restart.txt" 2>&1 && [[ "$(main_pid)" != "$mp" && "$(health_code)" == 200 ]] \
    && pass "manage-service.sh restart: $(grep -o 'healthy after [0-9]* s' "$work/m-restart.txt")" || { cat "$work/m-restart.txt" >&2; fail "manage-service.sh restart"; }
mp=$(main_pid)
ct "$M" reload > "$work/m-reload.txt" 2>&1 && [[ "$(main_pid)" == "$mp" && "$(health_code)" == 200 ]] \
    && pass "manage-service.sh reload (same JVM, healthy)" || { cat "$work/m-reload.txt" >&2; fail "manage-service.sh reload"; }
ct "$M" disable >/dev/null 2>&1 || true; s1=$(ct systemctl is-enabled analytics-engine || true)
ct "$M" enable >/dev/null 2>&1 || true; s2=$(ct systemctl is-enabled analytics-engine || true)
check "manage-service.sh disable/enable ($s1 -> $s2)" ok '[[ "$s1" == disabled && "$s2" == enabled ]]'
ct "$M" stop >/dev/null 2>&1 || true; ct "$M" mask >/dev/null 2>&1 || true; s1=$(ct systemctl is-enabled analytics-engine || true)
ct systemctl start analytics-engine >/dev/null 2>&1 && started_masked=1 || started_masked=0
ct "$M" unmask >/dev/null 2>&1 || true; s2=$(ct systemctl is-enabled analytics-engine || true)
check "manage-service.sh mask forbids starting, unmask allows it ($s1 -> $s2)" ok '[[ "$s1" == masked && $started_masked == 0 && "$s2" != masked ]]'
ct "$M" start > "$work/m-start.txt" 2>&1 && [[ "$(health_code)" == 200 ]] && pass "manage-service.sh start" || { cat "$work/m-start.txt" >&2; fail "manage-service.sh start"; }
ct "$M" backups > "$work/m-backups.txt" 2>&1 || true
check "manage-service.sh backups lists $(grep -c . "$work/m-backups.txt") backups" grep -q "^analytics-engine-" "$work/m-backups.txt"
newest=$(tail -n1 "$work/m-backups.txt" | awk '{print $1}')
nb0=$(ct bash -c 'ls -d /opt/v7/backups/analytics-engine-*/ 2>/dev/null | wc -l')
if ct "$M" -y rollback > "$work/m-rollback.txt" 2>&1 && [[ "$(health_code)" == 200 ]] && grep -q "restored $newest" "$work/m-rollback.txt"; then
    pass "manage-service.sh -y rollback restored $newest, healthy"
else cat "$work/m-rollback.txt" >&2; fail "manage-service.sh rollback"; fi
check "rollback first saved the current deployment" grep -q "current deployment saved as" "$work/m-rollback.txt"
out=$(ct "$M" restore no-such-backup 2>&1 || true)
check "manage-service.sh restore NAME with a wrong name: clear error" grep -q "not a backup" <<<"$out"

# ------------------------------------------------------------------ 13. hardening
log_step "13. systemd-analyze security"
ct systemd-analyze security analytics-engine.service --no-pager > "$work/security.txt" 2>&1 || true
after=$(grep -o 'Overall exposure level for analytics-engine.service: .*' "$work/security.txt" | sed 's/.*: //')
ctsh "sed '/^# --- hardening/,/^# --- end hardening/d' /usr/local/lib/systemd/system/analytics-engine.service > /etc/systemd/system/ae-unhardened.service && systemctl daemon-reload"
before=$(ct systemd-analyze security ae-unhardened.service --no-pager 2>&1 | grep -o 'Overall exposure level.*' | sed 's/.*: //')
ctsh "rm -f /etc/systemd/system/ae-unhardened.service && systemctl daemon-reload"
[[ -n "$after" ]] && pass "systemd-analyze security: $after (without the hardening block: $before)" || fail "systemd-analyze security gave no score"
note "systemd-analyze security: before hardening $before, after $after"
[[ "$(ct systemctl is-active analytics-engine)" == active && "$(health_code)" == 200 ]] && pass "still active and healthy under full hardening" || fail "not healthy at the end"
wd=$(unit_prop WatchdogUSec); mp=$(main_pid); nr=$(unit_prop NRestarts)
start_s=$(date -d "$(unit_prop ExecMainStartTimestamp)" +%s)
wd_s=$(( $(ct systemd-analyze timespan "$wd" | awk 'NR == 2 {print $NF}') / 1000000 ))
log_info "waiting until the service has run for WatchdogSec ($wd) + 5 s without a ping timeout"
up_s() { echo $(( $(date +%s) - start_s )); }
deadline=$((SECONDS + wd_s + 30))
while (( $(up_s) < wd_s + 5 && SECONDS < deadline )); do sleep 1; done
check "watchdog: up $(up_s) s > WatchdogSec $wd_s s, same process, no restart (the engine pings)" \
    ok '(( wd_s > 0 && $(up_s) >= wd_s + 5 )) && [[ "$(main_pid)" == "$mp" && "$(unit_prop NRestarts)" == "$nr" ]]'
check "no watchdog timeouts in the journal" ok '[[ "$(ct journalctl -u analytics-engine --no-pager -o cat | grep -c "Watchdog timeout")" == 0 ]]'

# ------------------------------------------------------------------ 14. stop drains and exits cleanly
log_step "14. systemctl stop"
t0=$(now_ms)
ct systemctl stop analytics-engine
t=$(( $(now_ms) - t0 ))
check "stop: Result=success, no process left (${t} ms)" ok '[[ "$(unit_prop Result)" == success && -z "$(ct pgrep -u analytics)" ]]'
note "systemctl stop: ${t} ms"

finish
exit
}
