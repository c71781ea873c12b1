#!/usr/bin/env bash
# Bounded coverage-guided fuzzing with Jazzer (libFuzzer for the JVM) of
#   - the worker frame decoder   (analytics.engine.fuzz.WireCodecFuzzTarget  -> WireCodec.decode)
#   - the request validator      (analytics.engine.fuzz.ValidatorFuzzTarget  -> Dispatcher.analyze)
# seeded from the committed corpus in tests/fuzz/corpus/<target>/ (read only: new inputs go to a temp dir;
# FUZZ_UPDATE_CORPUS=1 merges them back). Any crash, uncaught exception, OOM or timeout fails the run and
# leaves the reproducer in the printed directory.
# Usage: tests/fuzz.sh [seconds-per-target (default 20)]     (needs engine/target/{classes,test-classes}:
#        mvn -q -B test-compile, which scripts/test.sh has done through mvn test)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS="${1:-15}"
WORK="$(mktemp -d -t analytics-fuzz.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mvn -q -B -Dgit.commit=fuzz test-compile >/dev/null   # up to date → a few seconds
mvn -q -B -pl engine dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$WORK/cp.txt" >/dev/null
CP="engine/target/test-classes:engine/target/classes:$(cat "$WORK/cp.txt")"
status=0
for target in wire-codec:WireCodecFuzzTarget validator:ValidatorFuzzTarget; do
  name="${target%%:*}"; cls="analytics.engine.fuzz.${target##*:}"
  mkdir -p "$WORK/$name/new" "$WORK/$name/artifacts"
  echo "== fuzzing $cls for ${SECS}s (corpus tests/fuzz/corpus/$name, $(ls tests/fuzz/corpus/$name | wc -l) inputs)"
  set +e
  java -Xmx768m -XX:+UseSerialGC --add-opens java.base/java.nio=ALL-UNNAMED --add-opens java.base/sun.nio.ch=ALL-UNNAMED \
    -cp "$CP" com.code_intelligence.jazzer.Jazzer \
    --target_class="$cls" \
    --instrumentation_includes='analytics.engine.**:org.msgpack.**:com.fasterxml.jackson.**' \
    --keep_going=1 \
    -seed=1 -max_total_time="$SECS" -rss_limit_mb=3072 -timeout=30 -max_len=4096 -len_control=0 \
    -artifact_prefix="$WORK/$name/artifacts/" \
    "$WORK/$name/new" "tests/fuzz/corpus/$name" >"$WORK/$name/log" 2>&1
  rc=$?
  set -e
  runs=$(grep -aoE '^#[0-9]+' "$WORK/$name/log" | tail -1 | tr -d '#' || true)
  cov=$(grep -aoE 'cov: [0-9]+' "$WORK/$name/log" | tail -1 || true)
  newin=$(ls "$WORK/$name/new" | wc -l)
  echo "   executions: ${runs:-?}  ${cov:-}  new corpus inputs: $newin  exit: $rc"
  echo "FUZZ-RESULT target=$name seconds=$SECS executions=${runs:-0} ${cov/: /=} new_inputs=$newin crashes=$(ls "$WORK/$name/artifacts" | wc -l) exit=$rc"
  if (( rc != 0 )) || [[ -n "$(ls "$WORK/$name/artifacts")" ]]; then
    status=1
    keep="$(mktemp -d -t analytics-fuzz-finding.XXXXXX)"
    cp -r "$WORK/$name" "$keep/"
    echo "   FINDING: reproducer and log kept in $keep/$name"
    grep -a -A15 "== Java Exception\|ERROR: libFuzzer" "$WORK/$name/log" | head -40 || true
  fi
  if [[ "${FUZZ_UPDATE_CORPUS:-0}" == 1 && "$newin" -gt 0 ]]; then
    cp -n "$WORK/$name/new/"* "tests/fuzz/corpus/$name/"
    echo "   merged $newin new inputs into tests/fuzz/corpus/$name"
  fi
done
exit $status
