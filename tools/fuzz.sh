#!/usr/bin/env bash
# tools/fuzz.sh [SECONDS]: fuzz the model loader and the scheduler config
# parser with libFuzzer for SECONDS each (default 60).
#
#   1. configures build-fuzz/ with clang, ASan and UBSan, -Dfuzz=true, and
#      builds the harnesses of tests/fuzz;
#   2. writes the seed corpora from the test models (tests/engine/data/*,
#      weights/ddpm-texture) into build-fuzz/fuzz/seed/ (fuzz_seeds);
#   3. runs each harness; new inputs are kept in build-fuzz/fuzz/corpus/ for
#      the next run, crashes go to build-fuzz/fuzz/artifacts/;
#   4. prints one line per harness: executions, time, exec/s, cov, ft,
#      corpus size, peak RSS (libFuzzer's final stats).
# Exits nonzero on any crash, hang (> 10 s for one input), leak, sanitizer
# report or out-of-memory (> 2 GiB).  Runs inside tools/gimp3-env when the
# host lacks the tool chain.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
if [ -z "${DDPM_IN_ENV:-}" ]; then
  export DDPM_IN_ENV=1
  exec "$here/gimp3-env" env DDPM_IN_ENV=1 "$here/fuzz.sh" "$@"
fi
cd "$repo"

seconds=${1:-60}
case "$seconds" in ''|*[!0-9]*) echo "usage: tools/fuzz.sh [SECONDS]" >&2; exit 2 ;; esac
dir=build-fuzz
work=$dir/fuzz

if [ ! -f "$dir/build.ninja" ]; then
  mkdir -p "$dir"
  CC=clang meson setup "$dir" -Dfuzz=true -Dplugin=disabled -Dbuildtype=debugoptimized \
    -Db_sanitize=address,undefined -Db_lundef=false >"$dir.setup.log" 2>&1 \
    || { cat "$dir.setup.log" >&2; exit 1; }
fi
ninja -C "$dir" tests/fuzz/fuzz_model tests/fuzz/fuzz_scheduler_config tests/fuzz/fuzz_seeds \
  >"$dir.build.log" 2>&1 || { tail -40 "$dir.build.log" >&2; exit 1; }

rm -rf "$work/seed"
mkdir -p "$work/seed/model" "$work/seed/scheduler_config" "$work/corpus/model" \
         "$work/corpus/scheduler_config" "$work/artifacts"
"$dir/tests/fuzz/fuzz_seeds" "$work/seed/model" "$work/seed/scheduler_config" \
  tests/engine/data/*/ weights/ddpm-texture

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

status=0
for h in model scheduler_config; do
  log=$work/$h.log
  # -max_len: the small seeds are a few KB, the packed test models ~300 KB.
  case $h in model) max_len=400000 ;; *) max_len=4096 ;; esac
  set +e
  "$dir/tests/fuzz/fuzz_$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=$max_len -print_final_stats=1 -artifact_prefix="$work/artifacts/$h-" \
    "$work/corpus/$h" "$work/seed/$h" >"$log" 2>&1
  rc=$?
  set -e
  # libFuzzer's last status line ("#N DONE cov: C ft: F corp: U/S ...")
  # and its final stats ("stat::number_of_executed_units: N", ...).
  awk -v h="$h" -v rc=$rc '
    /^#[0-9]+/ && / cov: / { for (i = 1; i <= NF; i++) { if ($i == "cov:") cov = $(i+1); if ($i == "ft:") ft = $(i+1); if ($i == "corp:") corp = $(i+1) } }
    /^stat::number_of_executed_units:/ { execs = $2 }
    /^stat::average_exec_per_sec:/ { eps = $2 }
    /^stat::peak_rss_mb:/ { rss = $2 }
    /^Done [0-9]+ runs in [0-9]+ second/ { secs = $5 }
    END { printf "fuzz_%s: %s executions in %s s (%s exec/s), cov: %s ft: %s corpus: %s, peak RSS %s MB, %s\n",
                 h, execs, secs, eps, cov, ft, corp, rss, rc == 0 ? "no crash" : "FAILED (exit " rc ")" }' "$log"
  if [ $rc -ne 0 ]; then
    status=1
    grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$log" | head -20 >&2 || true
    echo "full log: $log" >&2
  fi
done
exit $status
