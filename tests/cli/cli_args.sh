#!/bin/sh
# cli_args.sh: the ddpm command line rejects bad input with the right exit
# code and a message that names the problem.  Needs no model: every check
# here fails before (or while) a model is loaded.
#
# usage: cli_args.sh DDPM SCRATCH_DIR DEFAULT_MODEL_INSTALLED DEFAULT_MODEL_SOURCE

ddpm=$1
dir=$2/cli_args
installed=$3
source_model=$4
case $ddpm in /*) ;; *) ddpm=$(pwd)/$ddpm ;; esac
mkdir -p "$dir" && cd "$dir" || exit 1
failures=0
nomodel="$dir/no-such-model"

# expect CODE TEXT ARGS...: `ddpm ARGS` exits with CODE and prints TEXT
# (a fixed string, on stdout or stderr; "" = anything).
expect() {
    code=$1
    text=$2
    shift 2
    command_line="ddpm $*"
    "$ddpm" "$@" >stdout.txt 2>stderr.txt
    got=$?
    if [ "$got" -ne "$code" ]; then
        echo "FAIL: ddpm $*: exit $got, expected $code"
        sed 's/^/    /' stderr.txt
        failures=$((failures + 1))
    elif [ -n "$text" ] && ! cat stdout.txt stderr.txt | grep -qF -e "$text"; then
        echo "FAIL: ddpm $*: output lacks '$text'"
        sed 's/^/    /' stdout.txt stderr.txt
        failures=$((failures + 1))
    else
        echo "ok   ddpm $*  ->  $got"
    fi
}

# An error is exactly one line, starting "ddpm: ".
expect_one_line_error() {
    expect "$@"
    if [ "$(wc -l <stderr.txt)" -ne 1 ] || ! grep -q '^ddpm: ' stderr.txt; then
        echo "FAIL: $command_line: error is not one 'ddpm: ...' line:"
        sed 's/^/    /' stderr.txt
        failures=$((failures + 1))
    fi
}

gen="generate --model $nomodel --output out.png"

# Commands and help.
expect 2 "usage: ddpm COMMAND"
expect 0 "generate" --help
expect 0 "refine" help
expect 2 "unknown command 'frobnicate'" frobnicate
for cmd in generate refine forward info bench; do
    expect 0 "usage: ddpm $cmd" $cmd --help
    expect 0 "usage: ddpm $cmd" help $cmd
done
expect 0 "--size WxH" generate -h
expect 0 "--mask FILE" refine --help
expect 0 "--circular" forward --help

# Option syntax.
expect_one_line_error 2 "unknown option '--frob'" $gen --size 8x8 --frob 1
expect_one_line_error 2 "--size needs a value" generate --size
expect_one_line_error 2 "unexpected argument 'extra'" $gen --size 8x8 extra
expect_one_line_error 2 "--seed is given twice" $gen --size 8x8 --seed 1 --seed 2
expect_one_line_error 2 "--tileable takes no value" $gen --size 8x8 --tileable=yes
expect_one_line_error 2 "--size WxH is required" $gen
expect_one_line_error 2 "--output FILE is required" generate --model "$nomodel" --size 8x8
expect_one_line_error 2 "must end in .png or .safetensors" generate --model "$nomodel" --size 8x8 --output out.jpg

# Sizes: WxH (or N), whole numbers, 1 .. 16384 per side.
for bad in 0x64 64x0 64x x64 abc 64x-1 -64 +64 " 64" "64 " 64x64x3 1e3 6.4x8 16385x8 8x16385 \
           99999999999999999999x8 ""; do
    expect_one_line_error 2 "--size" $gen --size "$bad"
done
expect_one_line_error 2 "--size" $gen --size=0x5

# Numbers.
for bad in 0 -1 5a "" 1.5 0x10 99999999999999999999 2000000; do
    expect_one_line_error 2 "--steps" $gen --size 8x8 --steps "$bad"
done
expect_one_line_error 2 "--steps" $gen --size 8x8 --steps=0
for bad in -1 abc 0x10 18446744073709551616 " 1" ""; do
    expect_one_line_error 2 "--seed" $gen --size 8x8 --seed "$bad"
done
expect_one_line_error 2 "--variance: 'large' is neither" $gen --size 8x8 --variance large
expect 0 "--sampler NAME" generate --help
expect 0 "dpm-solver++" refine --help
expect_one_line_error 2 "--sampler: 'euler' is not one of ddpm, ddim, dpm-solver++" $gen --size 8x8 --sampler euler
expect_one_line_error 2 "--sampler" $gen --size 8x8 --sampler DDIM
expect_one_line_error 2 "--eta is only for --sampler ddim (the sampler is ddpm)" $gen --size 8x8 --sampler ddpm --eta 0.5
expect_one_line_error 2 "--eta is only for --sampler ddim (the sampler is dpm-solver++)" \
    $gen --size 8x8 --sampler dpm-solver++ --eta 0
for bad in 1.5 -0.1 nan inf 0x1 abc " 0.5" "0.5 " ""; do
    expect_one_line_error 2 "--eta" $gen --size 8x8 --sampler ddim --eta "$bad"
done
expect_one_line_error 2 "--eta-t-max is only for --sampler ddim (the sampler is ddpm)" \
    $gen --size 8x8 --sampler ddpm --eta-t-max 300
for bad in -1 abc 1.5 ""; do
    expect_one_line_error 2 "--eta-t-max" $gen --size 8x8 --eta-t-max "$bad"
done
expect 0 "--eta-t-max T" generate --help
expect 0 "--period P" generate --help
expect_one_line_error 2 "--period-t is not for --period 0" $gen --size 8x8 --period 0 --period-t 300
for bad in -8 abc 1.5 ""; do
    expect_one_line_error 2 "--period" $gen --size 8x8 --period "$bad"
done
expect_one_line_error 2 "--period-t" $gen --size 8x8 --period 16 --period-t 0
expect 0 "--period-eta E" generate --help
expect_one_line_error 2 "--period-eta is not for --period 0" $gen --size 8x8 --period 0 --period-eta 0.5
expect_one_line_error 2 "--period-eta is only for --sampler ddim (the sampler is ddpm)" \
    $gen --size 8x8 --sampler ddpm --period-eta 0.5
for bad in 1.5 -0.1 nan abc ""; do
    expect_one_line_error 2 "--period-eta" $gen --size 8x8 --period-eta "$bad"
done
expect 0 "--period-steps K" generate --help
expect_one_line_error 2 "--period-steps is not for --period 0" $gen --size 8x8 --period 0 --period-steps 50
for bad in 0 -1 1.5 abc ""; do
    expect_one_line_error 2 "--period-steps" $gen --size 8x8 --period-steps "$bad"
done
expect_one_line_error 2 "--threads" $gen --size 8x8 --threads -1
expect_one_line_error 2 "--memory-budget" $gen --size 8x8 --memory-budget -5

# refine
ref="refine --model $nomodel --output out.png"
expect_one_line_error 2 "--input FILE is required" $ref --t 10
expect_one_line_error 2 "--t T is required" $ref --input in.png
for bad in 0 -3 x; do
    expect_one_line_error 2 "--t" $ref --input in.png --t "$bad"
done
expect_one_line_error 2 "must end in .png or .safetensors" $ref --input in.jpg --t 10
expect_one_line_error 4 "cannot open 'missing.png'" $ref --input missing.png --t 10
expect_one_line_error 4 "missing.safetensors" $ref --input missing.safetensors --t 10
printf 'not a png' >text.png
expect_one_line_error 4 "not a PNG file" $ref --input text.png --t 10

# forward, info, bench
expect_one_line_error 2 "--input FILE is required" forward --model "$nomodel" --output o.safetensors
expect_one_line_error 2 "--output FILE is required" forward --model "$nomodel" --input i.safetensors
expect_one_line_error 2 "must end in .safetensors" forward --model "$nomodel" --input i.safetensors --output o.png
expect_one_line_error 4 "i.safetensors" forward --model "$nomodel" --input i.safetensors --output o.safetensors
expect_one_line_error 2 "--size" info --model "$nomodel" --size 0x8
expect_one_line_error 2 "--iters" bench --model "$nomodel" --iters 0
expect_one_line_error 2 "--batch" bench --model "$nomodel" --batch abc

# Outputs whose directory does not exist fail before any work.
expect_one_line_error 4 "cannot write 'no/such/dir/out.png'" generate --model "$nomodel" --size 8x8 \
    --output no/such/dir/out.png

# A model folder that is not there: exit 3, naming it.
expect_one_line_error 3 "loading model '$nomodel'" $gen --size 8x8
expect_one_line_error 3 "loading model '$nomodel'" info --model "$nomodel"
expect_one_line_error 3 "loading model '$nomodel'" bench --model "$nomodel" --size 8x8
[ -e out.png ] && { echo "FAIL: a failed run created out.png"; failures=$((failures + 1)); }

# Without --model and no shipped model anywhere: exit 2 and say where we looked.
if [ ! -f "$installed/config.json" ] && [ ! -f "$source_model/config.json" ]; then
    expect_one_line_error 2 "no model installed (looked in $installed and $source_model); pass --model DIR" \
        generate --size 8x8 --output out.png
else
    echo "skip default-model check: a shipped model exists"
fi

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "cli_args: all checks passed"
