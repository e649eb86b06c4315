#!/bin/sh
# screenshots.sh: PNG screenshots of the plug-in's two dialogs, rendered by
# GIMP 3 on a virtual X display (Xvfb), for the README.
#
#   tools/screenshots.sh [BUILD_DIR] [OUT_DIR]
#
# BUILD_DIR (default build-plugin) holds the built plug-in; the PNGs go to
# OUT_DIR (default plugin/screenshots): dialog-generate.png and dialog-refine.png.  Set
# LANG (e.g. LANG=ko_KR.UTF-8, needs the locale and a CJK font) for a
# translated dialog.  Runs inside tools/gimp3-env if GIMP 3 is not on the
# host:  tools/gimp3-env tools/screenshots.sh
#
# gimp-console-3.0 (no main window) runs with a throw-away profile holding
# the plug-in; a Script-Fu batch command calls the procedure interactively,
# so the plug-in shows its dialog alone on the virtual screen.  The screen
# is grabbed with ImageMagick's `import` until the dialog has settled, and
# trimmed to it.  (No window manager, so no title bar.)
set -eu

build=$(cd "${1:-build-plugin}" && pwd)
mkdir -p "${2:-plugin/screenshots}"
out=$(cd "${2:-plugin/screenshots}" && pwd)
for tool in xvfb-run gimp-console-3.0 import convert; do
  command -v $tool >/dev/null || { echo "screenshots.sh: $tool is missing" >&2; exit 1; }
done
[ -x "$build/plugin/ddpm" ] || { echo "screenshots.sh: no $build/plugin/ddpm (build first)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/ddpm-shots.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The default profile location under a throw-away home, so the dialog shows
# ~/.config/GIMP/3.0/ddpm-models as a user would see it.
export HOME="$work/home"
unset GIMP3_DIRECTORY
profile=$HOME/.config/GIMP/3.0
mkdir -p "$profile/plug-ins/ddpm"
cp "$build/plugin/ddpm" "$profile/plug-ins/ddpm/ddpm"
for mo in "$build"/po/*/LC_MESSAGES/gimp-ddpm.mo; do
  [ -f "$mo" ] || continue
  lang=$(basename "$(dirname "$(dirname "$mo")")")
  mkdir -p "$profile/plug-ins/ddpm/locale/$lang/LC_MESSAGES"
  cp "$mo" "$profile/plug-ins/ddpm/locale/$lang/LC_MESSAGES/"
done

# The script run on the virtual display: GIMP in the background, then grab
# the screen every 2 s; once something is on the black screen and has the
# same size twice, the dialog is drawn: keep it, stop GIMP.
cat >"$work/grab.sh" <<'EOF'
#!/bin/sh
# grab.sh SCHEME LOG OUT.png
gimp-console-3.0 --no-fonts --batch-interpreter=plug-in-script-fu-eval -b "$1" >"$2" 2>&1 &
gimp=$!
prev="" i=0
while [ $i -lt 60 ]; do
  sleep 2
  import -window root "$3.screen.png"
  size=$(convert "$3.screen.png" -trim -format '%wx%h' info: 2>/dev/null || true)
  if [ -n "$size" ] && [ "$size" != 1x1 ] && [ "$size" = "$prev" ]; then
    convert "$3.screen.png" -trim +repage "$3"
    break
  fi
  prev=$size i=$((i + 1))
done
rm -f "$3.screen.png"
kill $gimp 2>/dev/null
sleep 1
kill -9 $gimp 2>/dev/null || true
[ -f "$3" ]
EOF
chmod +x "$work/grab.sh"

# shoot NAME SCHEME: the dialog SCHEME opens, as OUT_DIR/dialog-NAME.png.
shoot() {
  rm -f "$out/dialog-$1.png"
  if xvfb-run -a -s "-screen 0 1280x1024x24" "$work/grab.sh" "$2" "$work/gimp-$1.log" \
       "$out/dialog-$1.png"; then
    echo "wrote $out/dialog-$1.png"
  else
    echo "screenshots.sh: the $1 dialog did not appear; GIMP said:" >&2
    tail -20 "$work/gimp-$1.log" >&2
    return 1
  fi
}

image='(gimp-image-new 256 192 RGB)'
layer='(gimp-layer-new img "texture" 256 192 RGB-IMAGE 100 LAYER-MODE-NORMAL)'

shoot generate "(let* ((img (car $image)) (layer (car $layer)))
  (gimp-image-insert-layer img layer 0 0)
  (plug-in-ddpm-generate #:run-mode RUN-INTERACTIVE #:image img #:drawables (vector layer)))"

shoot refine "(let* ((img (car $image)) (layer (car $layer)))
  (gimp-image-insert-layer img layer 0 0)
  (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 64 48 128 96)
  (plug-in-ddpm-refine #:run-mode RUN-INTERACTIVE #:image img #:drawables (vector layer)))"
