#!/usr/bin/env bash
# Fetch freely licensed texture images from Debian packages (nothing is committed):
#   tools/gimp3-env --python tools/fetch_textures.sh [DATA_DIR]
# Downloads the packages with apt-get download, unpacks them with dpkg -x and
# builds with tools/prepare_textures.py DATA_DIR/textures.pt (GIMP's and
# MyPaint's textures, split into train and held-out: the set every figure in
# the model card is measured on) and DATA_DIR/textures-wide.pt (the same
# held-out set; training adds krita-data, extremetuxracer-data, sweethome3d).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)   # before the cd below: $0 may be a relative path
DATA=${1:-${DDPM_DATA:-/var/cache/gimp-ddpm/work/data}}
# gimp-data: GIMP's own patterns; gimp-data-extras: extra patterns; mypaint-data(-extras):
# paper and canvas backgrounds; krita-data: Krita's patterns; extremetuxracer-data: its
# terrains (snow, ice, rock, grass); sweethome3d: floor and wall textures.  Licences are
# printed below and listed in the model card.
PACKAGES=${DDPM_TEXTURE_PACKAGES:-"gimp-data gimp-data-extras mypaint-data mypaint-data-extras krita-data
  extremetuxracer-data sweethome3d"}
mkdir -p "$DATA/deb" "$DATA/root"
cd "$DATA/deb"
apt-get update -qq || true
for p in $PACKAGES; do
  ls ${p}_*.deb >/dev/null 2>&1 || apt-get download "$p" >/dev/null
done
for d in *.deb; do dpkg -x "$d" "$DATA/root"; done
for p in $PACKAGES; do
  f=$(ls "$DATA/root/usr/share/doc/$p/copyright" 2>/dev/null) && echo "licence of $p: $f"
done
python3 "$here/prepare_textures.py" "$DATA/root" "$DATA/textures.pt"
python3 "$here/prepare_textures.py" "$DATA/root" "$DATA/textures-wide.pt" --wide
