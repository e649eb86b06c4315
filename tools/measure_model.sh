#!/usr/bin/env bash
# The model card's quality protocol for one model folder, end to end:
#
#   tools/gimp3-env --python [env VAR=VALUE...] tools/measure_model.sh MODEL OUT [SET...]
#
# SET is any of  a      tileable, seeds 1-256
#                b      tileable, seeds 257-512
#                c      tileable, seeds 513-768 (a third draw, for seed-set spread)
#                d, e   tileable, seeds 769-1024 and 1025-1280 (a fourth and fifth)
#                period tileable, seeds 1-256, made as the period of a larger image is
#                       (--steps 50 --eta 0: the period-first defaults of core/ddpm.h)
#                plain  not tileable, seeds 1-256
#                joint  a and b scored together, 512 images against 512 crops
#                big    tileable, 128 images of 256x256, seeds 1-128
#                big2   the same, seeds 129-256 (a second draw)
#                bigplain  not tileable, the same
#                refine    256 held-out 64x64 crops (not the reference crops), each
#                          refined as the plug-in's DDPM Refine does by default
#                          (`ddpm refine --t 300`, not tileable, seed = its number;
#                          $REFINE_T sets another t)
#                refinebig 128 held-out 256x256 crops, the same
# (default: a b plain joint).  Each of a, b, c and plain is 256 independent 64x64
# images made by the C engine at its default settings (extra `ddpm generate`
# options go in $GEN_OPTS, extra `ddpm refine` ones in $REFINE_OPTS), written
# to OUT/SET/, then scored by tools/texture_metrics.py against held-out and
# training crops; the scores go to OUT/SET.txt and the SWD lines to the
# terminal.  The big sets, closer to what artists make, are scored twice: cut
# into 64x64 tiles against real 256x256 crops cut the same way (OUT/SET.txt),
# and whole on 5 pyramid levels, which see structure up to about 112 px
# (OUT/SET-whole.txt).  The refine sets say how far a refine moves real
# textures from themselves: their unrefined inputs (OUT/SET-input/, scored
# too) sit at the floor.  Images already in OUT/SET/ are kept, so an
# interrupted run resumes.  $DDPM (default
# build/cli/ddpm) and $DATA (default /var/cache/gimp-ddpm/work/data/textures.pt)
# locate the CLI and the data.
# $PAUSE_PID, a training process, is stopped while this runs and continued
# after: beside it, both ran at a third of their speed.  (gimp3-env clears the
# environment, hence the `env` form above.)
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,38p' "$0"; exit 2; }
model=$1 out=$2; shift 2
sets=${*:-a b plain joint}
DDPM=${DDPM:-build/cli/ddpm}
DATA=${DATA:-/var/cache/gimp-ddpm/work/data/textures.pt}
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${PAUSE_PID:-}" ]; then
  kill -STOP "$PAUSE_PID"
  trap 'kill -CONT "$PAUSE_PID"' EXIT
fi

make_set() {  # dir, first seed, tileable (1/0), [size, count, extra generate options]
  local dir=$1 first=$2 tile=$3 size=${4:-64} count=${5:-256} extra=${6:-} s
  mkdir -p "$dir"
  for s in $(seq "$first" $((first + count - 1))); do
    [ -s "$dir/$s.png" ] && continue
    "$DDPM" generate --model "$model" --size "${size}x$size" --seed "$s" $([ "$tile" = 1 ] && echo --tileable) \
      $extra ${GEN_OPTS:-} --output "$dir/$s.png.tmp.png" >/dev/null 2>&1
    mv "$dir/$s.png.tmp.png" "$dir/$s.png"
  done
}

refine_set() {  # dir, size, count
  local dir=$1 size=$2 count=$3 s
  [ -s "$dir-input/$count.png" ] ||
    python3 "$here/texture_metrics.py" --real "$DATA" --write-crops "$dir-input" --n "$count" --image-size "$size"
  mkdir -p "$dir"
  for s in $(seq 1 "$count"); do
    [ -s "$dir/$s.png" ] && continue
    "$DDPM" refine --model "$model" --input "$dir-input/$s.png" --t "${REFINE_T:-300}" --seed "$s" ${REFINE_OPTS:-} \
      --output "$dir/$s.png.tmp.png" >/dev/null 2>&1
    mv "$dir/$s.png.tmp.png" "$dir/$s.png"
  done
}

score() {  # dir, label, crops per reference set, [texture_metrics options]
  local dir=$1 label=$2 n=$3; shift 3
  python3 "$here/texture_metrics.py" --real "$DATA" --fake "$dir" --n "$n" "$@" >"$out/$label.txt"
  echo "$label: $(grep -i 'swd' "$out/$label.txt" | tr '\n' ' ')"
}

score_big() {  # dir, label
  score "$1" "$2" 2048 --image-size 256
  score "$1" "$2-whole" 128 --size 256 --levels 5 --repetition 64   # 64: the shipped period
}

for set in $sets; do
  case $set in
    a) make_set "$out/a" 1 1; score "$out/a" a 256 ;;
    b) make_set "$out/b" 257 1; score "$out/b" b 256 ;;
    c) make_set "$out/c" 513 1; score "$out/c" c 256 ;;
    d) make_set "$out/d" 769 1; score "$out/d" d 256 ;;
    e) make_set "$out/e" 1025 1; score "$out/e" e 256 ;;
    period) make_set "$out/period" 1 1 64 256 "--steps 50 --eta 0"; score "$out/period" period 256 ;;
    plain) make_set "$out/plain" 1 0; score "$out/plain" plain 256 ;;
    joint)
      make_set "$out/a" 1 1; make_set "$out/b" 257 1
      mkdir -p "$out/joint"
      for f in "$out"/a/*.png; do ln -sf "../a/$(basename "$f")" "$out/joint/a$(basename "$f")"; done
      for f in "$out"/b/*.png; do ln -sf "../b/$(basename "$f")" "$out/joint/b$(basename "$f")"; done
      score "$out/joint" joint 512 ;;
    big) make_set "$out/big" 1 1 256 128; score_big "$out/big" big ;;
    big2) make_set "$out/big2" 129 1 256 128; score_big "$out/big2" big2 ;;
    bigplain) make_set "$out/bigplain" 1 0 256 128; score_big "$out/bigplain" bigplain ;;
    refine)
      refine_set "$out/refine" 64 256
      score "$out/refine-input" refine-input 256; score "$out/refine" refine 256 ;;
    refinebig)
      refine_set "$out/refinebig" 256 128
      score_big "$out/refinebig-input" refinebig-input; score_big "$out/refinebig" refinebig ;;
    *) echo "measure_model: unknown set '$set' (a, b, c, d, e, period, plain, joint, big, big2, bigplain, refine, refinebig)" >&2
       exit 2 ;;
  esac
done
