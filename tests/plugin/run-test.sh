#!/bin/sh
# run-test.sh: one test of the GIMP plug-in.  GIMP (gimp-console-3.0, no
# display) runs a Script-Fu script against the freshly built plug-in in a
# throw-away GIMP profile; then png_check looks at the PNGs it exported.
#
#   run-test.sh TEST              TEST: generate refine formats cli-match
#                                 shipped errors-unchanged i18n
#   run-test.sh error CASE TEXT   (bad-CASE) of errors.scm fails saying TEXT
#
# Environment (tests/plugin/meson.build sets it):
#   DDPM_PLUGIN  the plug-in executable       DDPM_CLI   the `ddpm` CLI
#   PNG_CHECK    tests/plugin/png_check       PO_BUILD   build dir of po/
#   TEST_SRC     this folder                  TEST_WORK  scratch folder
#   DDPM_TEST_MODEL  model folder to test with (default: the engine suite's
#                tiny random-weight tests/engine/data/texture, else the
#                first model folder there)
#
# The profile is what `meson install` or a user would make:
#   <profile>/plug-ins/ddpm/ddpm, <profile>/plug-ins/ddpm/locale/ko/...,
#   <profile>/ddpm-models/<test model>, <profile>/ddpm-models/corrupt
# Exit 0 pass, 1 fail, 77 skip (no gimp-console-3.0 or no test model).
set -u

test_name=$1

command -v gimp-console-3.0 >/dev/null || { echo "skip: no gimp-console-3.0"; exit 77; }

is_model() { [ -f "$1/config.json" ] && [ -f "$1/diffusion_pytorch_model.safetensors" ]; }
model=${DDPM_TEST_MODEL:-}
if [ -z "$model" ]; then
  for d in "$TEST_SRC"/../engine/data/texture/ "$TEST_SRC"/../engine/data/*/; do
    d=${d%/}
    if is_model "$d"; then model=$d; break; fi
  done
fi
if [ -z "$model" ] || ! is_model "$model"; then
  echo "skip: no test model folder (tests/engine/data/*/ or DDPM_TEST_MODEL)"
  exit 77
fi
model=$(cd "$model" && pwd)
model_name=$(basename "$model")
T=$(sed -n 's/.*"num_train_timesteps" *: *\([0-9][0-9]*\).*/\1/p' "$model/scheduler_config.json" 2>/dev/null)
T=${T:-1000}

work=$TEST_WORK/$test_name${2:+-$2}
rm -rf "$work"
mkdir -p "$work/out" "$TEST_WORK/home"
export HOME="$TEST_WORK/home"
unset DISPLAY

fail() { echo "FAIL: $*"; exit 1; }

# Sanitized builds (-Db_sanitize=address,undefined): a finding aborts the
# plug-in, so its call fails.  Leaks are reported when it exits; libgimp
# leaks some of its own, so only those allocated by our code count, which
# needs full stacks (glib has no frame pointers).
if [ -n "${ASAN_OPTIONS:-}" ]; then
  export ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0"
fi
# The plug-in may still be writing its leak report after gimp-console quit.
wait_for_plugin_exit() {
  i=0
  while [ $i -lt 100 ]; do
    running=0
    for exe in /proc/[0-9]*/exe; do
      if [ "$(readlink "$exe" 2>/dev/null)" = "$plugdir/ddpm" ]; then running=1; break; fi
    done
    [ $running = 1 ] || return 0
    sleep 0.2
    i=$((i + 1))
  done
}
check_sanitizers() {
  wait_for_plugin_exit
  if grep -q 'runtime error:\|ERROR: AddressSanitizer' "$work/gimp.log"; then
    grep -A20 'runtime error:\|ERROR: AddressSanitizer' "$work/gimp.log" | head -40
    fail "sanitizer error"
  fi
  # A direct leak whose first frames are in plugin/ or core/.
  awk '/^Direct leak/ { block = 1; frames = 0; next }
       block && /#[0-9]+ / { frames++; if (frames <= 6 && /\.\.\/(plugin|core)\//) { print; bad = 1 } }
       /^$/ { block = 0 }
       END { exit bad }' "$work/gimp.log" || fail "memory leaked by the plug-in"
}

# A GIMP profile made once (the first start queries every plug-in, ~5 s),
# then copied for each test; the copies only have to query ours.
template=$TEST_WORK/profile-template
(
  flock 9
  if [ ! -f "$template/.done" ]; then
    rm -rf "$template" && mkdir -p "$template"
    GIMP3_DIRECTORY=$template timeout 300 gimp-console-3.0 -i --quit \
      --batch-interpreter=plug-in-script-fu-eval -b '(display "")' >/dev/null 2>&1
    touch "$template/.done"
  fi
) 9>"$TEST_WORK/profile-template.lock"
profile=$work/profile
cp -a "$template" "$profile" && rm -f "$profile/.done"

plugdir=$profile/plug-ins/ddpm
mkdir -p "$plugdir" "$profile/ddpm-models/corrupt"
cp "$DDPM_PLUGIN" "$plugdir/ddpm"
for mo in "$PO_BUILD"/*/LC_MESSAGES/gimp-ddpm.mo; do
  [ -f "$mo" ] || continue
  lang=$(basename "$(dirname "$(dirname "$mo")")")
  mkdir -p "$plugdir/locale/$lang/LC_MESSAGES"
  cp "$mo" "$plugdir/locale/$lang/LC_MESSAGES/"
done
cp -r "$model" "$profile/ddpm-models/$model_name"
cp "$model/config.json" "$profile/ddpm-models/corrupt/"
printf 'these are not the weights you are looking for' \
  >"$profile/ddpm-models/corrupt/diffusion_pytorch_model.safetensors"

# run_gimp SCRIPT.scm [SCHEME]: the definitions, common.scm, the script and
# an optional last expression, as one batch command (a failing expression
# then stops the batch and makes gimp-console exit non-zero).  Sets $rc.
run_gimp() {
  {
    echo '(script-fu-use-v3)'
    echo "(define out-dir \"$work/out\")"
    echo "(define test-model \"$model\")"
    echo "(define test-model-T $T)"
    echo "(define test-model-name \"$model_name\")"
    cat "$TEST_SRC/common.scm" "$TEST_SRC/$1"
    [ $# -gt 1 ] && echo "$2"
  } >"$work/script.scm"
  GIMP3_DIRECTORY=$profile timeout 600 gimp-console-3.0 -i --quit \
    --batch-interpreter=plug-in-script-fu-eval -b "$(cat "$work/script.scm")" \
    >"$work/gimp.log" 2>&1
  rc=$?
  grep -E '^ok - |FAILED|Error' "$work/gimp.log"
  check_sanitizers
}

run_ok() {
  run_gimp "$@"
  [ $rc -eq 0 ] || { tail -30 "$work/gimp.log"; fail "gimp-console exited with $rc"; }
}

# png_check MODE FILES... with files in $work/out.
check() {
  mode=$1; shift
  a=$work/out/$1; shift
  case $mode in
    texture) "$PNG_CHECK" texture "$a" "$@" ;;
    *) b=$work/out/$1; shift; "$PNG_CHECK" "$mode" "$a" "$b" "$@" ;;
  esac || fail "png_check $mode $(basename "$a") $*"
}

cli() {
  "$DDPM_CLI" "$@" --model "$model" >"$work/cli.log" 2>&1 ||
    { cat "$work/cli.log"; fail "ddpm $*"; }
}

refine_t=$(( T * 6 / 10 )); [ $refine_t -ge 3 ] || refine_t=3

case $test_name in
  generate)
    run_ok generate.scm
    check texture gen-a.png 40 24
    check same gen-a.png gen-b.png
    check texture gen-c.png 40 24
    "$PNG_CHECK" same "$work/out/gen-a.png" "$work/out/gen-c.png" >/dev/null &&
      fail "another seed and variance gave the same pixels"
    check texture gen-d.png 64 48
    check texture gen-e.png 37 19
    ;;
  refine)
    run_ok refine.scm
    check inside rect-before.png rect-after.png 16 8 24 24
    check inside ellipse-before.png ellipse-after.png 4 4 40 32
    check alpha alpha-before.png alpha-after.png
    check inside alpha-before.png alpha-after.png 0 0 64 48
    check inside offset-before.png offset-after.png 4 4 12 10
    ;;
  formats)
    run_ok formats.scm
    check texture u8.png 48 32
    check close u8.png u16.png 1
    check close u8.png float.png 1
    check texture float-linear.png 48 32
    check texture gray-gen.png 48 32
    check inside gray-before.png gray-after.png 8 8 16 16
    check inside u16-before.png u16-after.png 4 4 20 12
    ;;
  cli-match)
    run_ok cli-match.scm
    out=$work/out
    cli generate --size 64x48 --steps 3 --variance posterior --seed 1234 --output "$out/cli-posterior.png"
    check same match-posterior.png cli-posterior.png
    cli generate --size 37x29 --steps 2 --variance beta --seed 99 --tileable --output "$out/cli-beta-tileable.png"
    check same match-beta-tileable.png cli-beta-tileable.png
    cli generate --size 48x32 --steps 3 --sampler ddim --eta 0.5 --seed 5 --output "$out/cli-ddim.png"
    check same match-ddim.png cli-ddim.png
    cli generate --size 48x32 --steps 3 --sampler ddim --eta 1 --eta-t-max 0 --seed 5 \
        --output "$out/cli-ddim-every-step.png"
    check same match-ddim-every-step.png cli-ddim-every-step.png
    cli generate --size 48x32 --steps 3 --sampler dpm-solver++ --seed 6 --output "$out/cli-dpm-solver.png"
    check same match-dpm-solver.png cli-dpm-solver.png
    cli generate --size 64x48 --steps 3 --seed 7 --tileable --period 16 --period-t $refine_t \
        --output "$out/cli-period.png"
    check same match-period.png cli-period.png
    cli generate --size 64x48 --steps 3 --seed 7 --tileable --period 16 --period-t $refine_t \
        --period-eta 0.75 --output "$out/cli-period-eta.png"
    check same match-period-eta.png cli-period-eta.png
    cli generate --size 64x48 --steps 3 --seed 7 --tileable --period 16 --period-t $refine_t \
        --period-steps 5 --output "$out/cli-period-steps.png"
    check same match-period-steps.png cli-period-steps.png
    "$PNG_CHECK" same "$work/out/match-period.png" "$work/out/match-period-steps.png" >/dev/null &&
      fail "#:period-steps 5 gave the image of the default period steps"
    cli generate --size 64x48 --steps 3 --seed 7 --tileable --period 0 --output "$out/cli-no-period.png"
    check same match-no-period.png cli-no-period.png
    cli refine --input "$out/match-refine-in.png" --t $refine_t --steps 3 --variance posterior \
        --seed 8 --output "$out/cli-refine.png"
    check same match-refine-out.png cli-refine.png
    cli refine --input "$out/match-refine-out.png" --t $refine_t --steps 3 --sampler ddim \
        --seed 9 --output "$out/cli-refine-ddim.png"
    check same match-refine-ddim.png cli-refine-ddim.png
    ;;
  shipped)
    mkdir -p "$plugdir/models"
    cp -r "$model" "$plugdir/models/ddpm-texture"
    run_ok shipped.scm
    check same shipped.png explicit.png
    check same shipped.png by-name.png
    ;;
  errors-unchanged)
    run_ok errors.scm '(all-bad-calls-leave-image-unchanged)'
    check same unchanged-before.png unchanged-after.png
    check alpha unchanged-before.png unchanged-after.png
    # GIMP logs each failed call's message, caught or not.
    for message in 'Unknown model "no-such-model": there is no model folder' \
                   "steps = $((T + 1)) is out of range: this model has T = $T" \
                   "timestep = $((T + 1)) is out of range" \
                   'Cannot load the model in' \
                   'not a model folder' \
                   'works on exactly one selected layer'; do
      grep -qF -- "$message" "$work/gimp.log" || fail "no message '$message' in the log"
      echo "message: $message"
    done
    ;;
  i18n)
    # The Korean catalog is installed and used: needs the ko_KR.UTF-8 locale.
    locale -a 2>/dev/null | grep -qi '^ko_KR\.utf-\?8$' ||
      { echo "skip: no ko_KR.UTF-8 locale (locale-gen)"; exit 77; }
    export LANG=ko_KR.UTF-8 LANGUAGE=ko
    unset LC_ALL LC_MESSAGES
    run_gimp errors.scm "(bad-unknown-model)"
    [ $rc -ne 0 ] || fail "(bad-unknown-model) succeeded"
    grep -F '알 수 없는 모델 "no-such-model"' "$work/gimp.log" ||
      { tail -20 "$work/gimp.log"; fail "no Korean message"; }
    ;;
  error)
    case_name=$2
    message=$3
    run_gimp errors.scm "(bad-$case_name)"
    [ $rc -ne 0 ] || fail "(bad-$case_name) succeeded"
    grep -F -- "$message" "$work/gimp.log" || { tail -20 "$work/gimp.log"; fail "no message '$message'"; }
    ;;
  *)
    fail "unknown test $test_name"
    ;;
esac
echo "pass: $test_name"
exit 0
