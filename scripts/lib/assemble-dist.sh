#!/usr/bin/env bash
# Assembles the self-contained distribution dist/analytics-engine/ from a built checkout.
# Called by scripts/build.sh after `mvn package`; can be run on its own.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/lib/assemble-dist.sh [--with-wheels] [--python PY] [--output DIR] [--no-jlink] [--help]

Builds dist/analytics-engine/ from engine/target (run `mvn -B package` first):
  bin/analytics-server    launcher (picks runtime/bin/java, else $JAVA_HOME, else java; Java 17+)
  lib/                    the engine jar and its dependencies
  runtime/                a Java runtime made with jlink from the build JDK (the host needs no JDK)
  python/                 the worker package source (analytics_worker) and its requirements.txt
  requirements.txt        what `pip install -r requirements.txt` needs for the workers' venv
  config/analytics.toml   example configuration
  config/env              example environment file (systemd EnvironmentFile=)
  systemd/analytics-engine.service, scripts/   unit template and the operations scripts
  wheels/                 (--with-wheels) offline wheels so a target host needs no internet
  VERSION

Options:
  --with-wheels   also download/build wheels of every Python dependency (slow, ~200 MB);
                  deploy.sh then installs the venv offline. Wheels match the Python of --python.
  --python PY     Python used to build wheels (default: py-worker/.venv/bin/python, else python3).
                  Use the same minor version as the target hosts' python3.
  --output DIR    output directory (default: <repo>/dist/analytics-engine)
  --no-jlink      do not bundle a Java runtime (the target then needs its own Java 17+)
  --help          this text
EOF
}

repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
# shellcheck source=common.sh
. "$repo/scripts/lib/common.sh"

with_wheels=0; jlink_runtime=1; out="$repo/dist/analytics-engine"; py=
while (( $# )); do
    case "$1" in
        --with-wheels) with_wheels=1 ;;
        --no-jlink) jlink_runtime=0 ;;
        --python) py="${2:?--python needs a path}"; shift ;;
        --output) out="${2:?--output needs a directory}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done

jar="$repo/engine/target/analytics-engine.jar"
[[ -f "$jar" && -d "$repo/engine/target/lib" ]] || die "engine not built: $jar missing (run: mvn -B package)"
[[ -f "$repo/py-worker/requirements.txt" ]] || die "py-worker/requirements.txt missing"

version=$(unzip -p "$jar" META-INF/MANIFEST.MF 2>/dev/null | sed -n 's/^Implementation-Version: *\([^[:space:]]*\).*/\1/p' | tr -d '\r')
[[ -n "$version" ]] || version=$(sed -n 's:.*<version>\(.*\)</version>.*:\1:p' "$repo/pom.xml" | head -n1)
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)

log_info "assembling $out (version $version, commit $commit)"
rm -rf "$out"
mkdir -p "$out"/{bin,lib,python,config,systemd,scripts/lib}

# --- launcher, jars ---
install -m 755 "$repo/scripts/analytics-server" "$out/bin/analytics-server"
cp "$jar" "$out/lib/"
cp "$repo"/engine/target/lib/*.jar "$out/lib/"

# --- jlink'd runtime (cached in target/jlink-runtime, keyed by JDK + module list) ---
if (( jlink_runtime )); then
    have jlink || die "jlink not found: install a full JDK 17+ (or use --no-jlink)"
    jdk_home=$(dirname "$(dirname "$(readlink -f "$(command -v jlink)")")")
    [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/jlink" ]] && jdk_home="$JAVA_HOME"
    deps=$("$jdk_home/bin/jdeps" --print-module-deps --ignore-missing-deps --multi-release 17 \
        --class-path "$repo/engine/target/lib/*" "$jar" "$repo"/engine/target/lib/*.jar 2>/dev/null | tail -n1)
    [[ "$deps" == java.base* ]] || die "jdeps failed to compute the module list (got: $deps)"
    # jdk.unsupported: Netty's sun.misc.Unsafe; jdk.crypto.ec: TLS; jdk.management: JVM metrics;
    # jdk.jcmd: jcmd/jstack for operators; java.logging: grpc-java's java.util.logging.
    modules=$(printf '%s\n' "${deps//,/$'\n'}" java.logging java.management java.naming jdk.unsupported \
        jdk.crypto.ec jdk.management jdk.jcmd | sort -u | paste -sd, -)
    cache="$repo/target/jlink-runtime"
    jlink_opts=(--strip-debug --no-man-pages --no-header-files --compress=2)
    # the JDK's default CDS archive (lib/server/classes.jsa) makes JVM start-up faster
    "$jdk_home/bin/jlink" --list-plugins 2>/dev/null | grep -q -- --generate-cds-archive && jlink_opts+=(--generate-cds-archive)
    key="$("$jdk_home/bin/java" -version 2>&1 | tr '\n' ' ')|$modules|${jlink_opts[*]}"
    if [[ ! -x "$cache/bin/java" || "$(cat "$cache.key" 2>/dev/null)" != "$key" ]]; then
        log_info "jlink: $modules"
        rm -rf "$cache" "$cache.key"
        mkdir -p "$(dirname "$cache")"
        "$jdk_home/bin/jlink" --add-modules "$modules" --output "$cache" "${jlink_opts[@]}"
        printf '%s' "$key" > "$cache.key"
    else
        log_info "jlink: reusing $cache"
    fi
    cp -a "$cache" "$out/runtime"
    ln -s java "$out/runtime/bin/analytics-server"   # comm of the JVM process = "analytics-serve"
fi

# --- Python worker package ---
tar -C "$repo/py-worker" --exclude=.venv --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
    --exclude=.pytest_cache --exclude=build -cf - . | tar -C "$out/python" -xf -
{
    echo "# Python dependencies of the Analytics Engine workers (install into <install>/venv)."
    echo "-r python/requirements.txt"
    echo "./python"
} > "$out/requirements.txt"

# --- configuration examples ---
if [[ -f "$repo/config/analytics.toml" ]]; then
    cp "$repo/config/analytics.toml" "$out/config/analytics.toml"
else
    cp "$repo/systemd/analytics.toml.example" "$out/config/analytics.toml"
fi
cp "$repo/systemd/env.example" "$out/config/env"

# --- unit template and operations scripts (deploy.sh runs from the dist too) ---
cp "$repo/systemd/analytics-engine.service" "$out/systemd/"
for s in deploy.sh setup-user.sh manage-service.sh; do
    install -m 755 "$repo/scripts/$s" "$out/scripts/$s"
done
install -m 644 "$repo/scripts/lib/common.sh" "$repo/scripts/lib/backup.sh" "$out/scripts/lib/"
[[ -f "$repo/docs/DEPLOY.md" ]] && cp "$repo/docs/DEPLOY.md" "$out/"

# --- offline wheels ---
if (( with_wheels )); then
    if [[ -z "$py" ]]; then
        if [[ -x "$repo/py-worker/.venv/bin/python" ]]; then py="$repo/py-worker/.venv/bin/python"; else py=python3; fi
    fi
    log_info "building offline wheels with $("$py" --version 2>&1) (slow)"
    mkdir -p "$out/wheels"
    (cd "$out" && "$py" -m pip wheel --quiet --wheel-dir wheels -r requirements.txt)
    "$py" -m pip download --quiet --dest "$out/wheels" --only-binary=:all: pip setuptools wheel
    "$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' > "$out/wheels/PYTHON_VERSION"
fi

printf '%s %s\n' "$version" "$commit" > "$out/VERSION"
log_ok "dist ready: $out ($(du -sh "$out" | cut -f1))"
