#!/bin/sh
# screenshots.sh: PNG screenshots of the plug-in's two dialogs, rendered by
# GIMP 3 on a virtual X display (Xvfb), for the README.
#
#   tools/screenshots.sh [BUILD_DIR] [OUT_DIR]
#
# BUILD_DIR (default build-plugin) holds the built plug-in; the PNGs go to
# OUT_DIR (default docs): dialog-generate.png and dialog-refine.png.  Set
# LANG (e.g. LANG=ko_KR.UTF-8, needs the locale and a CJK font) for a
# translated dialog.  Runs inside tools/gimp3-env if GIMP 3 is not on the
# host:  tools/gimp3-env tools/screenshots.sh
#
# GIMP runs with a throw-away profile holding the plug-in; a Script-Fu batch
# command opens an image and calls the procedure interactively, which shows
# its dialog; ImageMagick's `import` grabs the dialog's window by its title,
# then GIMP is stopped.
set -eu

build=$(cd "${1:-build-plugin}" && pwd)
mkdir -p "${2:-docs}"
out=$(cd "${2:-docs}" && pwd)
for tool in xvfb-run gimp-3.0 import; do
  command -v $tool >/dev/null || { echo "screenshots.sh: $tool is missing" >&2; exit 1; }
done
[ -x "$build/plugin/ddpm" ] || { echo "screenshots.sh: no $build/plugin/ddpm (build first)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/ddpm-shots.XXXXXX")
trap 'rm -rf "$work"' EXIT
profile=$work/profile
mkdir -p "$profile/plug-ins/ddpm"
cp "$build/plugin/ddpm" "$profile/plug-ins/ddpm/ddpm"
for mo in "$build"/po/*/LC_MESSAGES/gimp-ddpm.mo; do
  [ -f "$mo" ] || continue
  lang=$(basename "$(dirname "$(dirname "$mo")")")
  mkdir -p "$profile/plug-ins/ddpm/locale/$lang/LC_MESSAGES"
  cp "$mo" "$profile/plug-ins/ddpm/locale/$lang/LC_MESSAGES/"
done
# No first-start welcome dialog in front of ours.
printf '(show-welcome-dialog no)\n(show-tips no)\n' >"$profile/gimprc"

# shoot NAME TITLE SCHEME: run SCHEME in GIMP, save the window TITLE.
shoot() {
  name=$1 title=$2 scheme=$3
  cat >"$work/run.sh" <<EOF
#!/bin/sh
GIMP3_DIRECTORY="$profile" gimp-3.0 -n --no-splash --no-fonts \\
  --batch-interpreter=plug-in-script-fu-eval -b '$scheme' >"$work/gimp-$name.log" 2>&1 &
gimp=\$!
i=0
while [ \$i -lt 120 ]; do
  sleep 1
  if import -window "$title" "$work/$name.png" 2>/dev/null; then
    sleep 2   # let it finish drawing, then take it again
    import -window "$title" "$out/dialog-$name.png"
    break
  fi
  i=\$((i + 1))
done
kill \$gimp 2>/dev/null
sleep 1
kill -9 \$gimp 2>/dev/null || true
[ -f "$out/dialog-$name.png" ]
EOF
  chmod +x "$work/run.sh"
  if xvfb-run -a -s "-screen 0 1280x1024x24" "$work/run.sh"; then
    echo "wrote $out/dialog-$name.png"
  else
    echo "screenshots.sh: no window '$title' appeared; GIMP said:" >&2
    tail -20 "$work/gimp-$name.log" >&2
    return 1
  fi
}

image='(gimp-image-new 256 192 RGB)'
layer='(gimp-layer-new img "texture" 256 192 RGB-IMAGE 100 LAYER-MODE-NORMAL)'

shoot generate "DDPM Texture" "(let* ((img (car $image)) (layer (car $layer)))
  (gimp-image-insert-layer img layer 0 0)
  (gimp-display-new img)
  (plug-in-ddpm-generate #:run-mode RUN-INTERACTIVE #:image img #:drawables (vector layer)))"

shoot refine "DDPM Refine" "(let* ((img (car $image)) (layer (car $layer)))
  (gimp-image-insert-layer img layer 0 0)
  (gimp-drawable-fill layer FILL-FOREGROUND)
  (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 64 48 128 96)
  (gimp-display-new img)
  (plug-in-ddpm-refine #:run-mode RUN-INTERACTIVE #:image img #:drawables (vector layer)))"
