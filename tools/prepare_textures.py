"""Collect texture images from unpacked Debian packages into one tensor file.

    python3 tools/prepare_textures.py ROOT OUT.pt [--wide]

Reads GIMP patterns (.pat) and PNG/JPEG images under ROOT/usr/share, converts
them to RGB uint8, marks which ones tile seamlessly, and splits them into a
training set and a held-out set (about 1 in 8, chosen by a hash of the file
name so the split never changes when files are added).

The held-out set is the yardstick of every figure in the model card, so it
comes only from the first sources, GIMP's patterns and MyPaint's
backgrounds, and never changes.  --wide adds the textures of krita-data,
extremetuxracer-data and sweethome3d to the training set only (WIDE_SOURCES
below), minus any near copy of a held-out texture."""
import hashlib
import io
import os
import struct
import sys
import zipfile

import numpy as np
import torch


def to_rgb(px):
    if px.ndim == 2:
        px = px[:, :, None]
    c = px.shape[2]
    if c in (2, 4):  # drop patterns that are mostly transparent (brush-like stamps)
        if (px[:, :, -1] < 128).mean() > 0.1:
            return None
        px = px[:, :, :c - 1]
    if px.shape[2] == 1:
        px = np.repeat(px, 3, axis=2)
    return np.ascontiguousarray(px)


def is_tileable(px):
    """A texture tiles when the wrap-around seam is no rougher than its interior."""
    f = px.astype(np.float32)
    inner = (np.abs(np.diff(f, axis=0)).mean() + np.abs(np.diff(f, axis=1)).mean()) / 2
    seam = (np.abs(f[0] - f[-1]).mean() + np.abs(f[:, 0] - f[:, -1]).mean()) / 2
    return seam <= 1.5 * inner + 1.0


# Where the split (and so the held-out set) comes from: the packages of the
# first data set, gimp-data, gimp-data-extras, mypaint-data(-extras).
SPLIT_SOURCES = ("usr/share/gimp", "usr/share/mypaint")

# Training-only sources (the eighteenth session's survey of 14 texture
# packages, MODEL_CARD.md "Data"): a folder, or a .jar and the folder inside
# it, and the files to leave out.  Images smaller than 64 px were not part of
# that survey and are left out too.
WIDE_SOURCES = (
    ("usr/share/krita/patterns", None, ()),
    ("usr/share/games/etr/terrains", None, ()),
    ("usr/share/sweethome3d/sweethome3d.jar", "com/eteks/sweethome3d/io/resources/textures/",
     ("blueSky.jpg", "cloudy.jpg", "veryCloudy.jpg")),   # skies, not surfaces
)
WIDE_MIN_SIDE = 64


def decode(data, ext):
    """Pixels of a .pat, .png or .jpg file's bytes.  A GIMP pattern is a
    big-endian header (size, version, w, h, bytes, 'GPAT'), a name, pixels."""
    if ext == "pat":
        hsize, version, w, h, nb = struct.unpack(">5I", data[:20])
        if data[20:24] != b"GPAT" or nb not in (1, 2, 3, 4):
            raise ValueError("not a GIMP pattern")
        return np.frombuffer(data[hsize:hsize + w * h * nb], dtype=np.uint8).reshape(h, w, nb)
    from PIL import Image
    im = Image.open(io.BytesIO(data))
    im.load()
    if im.mode not in ("RGB", "RGBA", "L", "LA"):
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
    return np.asarray(im)


def wide_files(root):
    """(name, extension, a function reading its bytes) of every file of
    WIDE_SOURCES, in a fixed order."""
    for source, inner, skip in WIDE_SOURCES:
        path = os.path.join(root, source)
        if inner is None:
            if not os.path.isdir(path):
                print(f"missing {path} (is its package fetched?)")
                continue
            for name in sorted(os.listdir(path)):
                if name not in skip:
                    read = lambda p=os.path.join(path, name): open(p, "rb").read()  # noqa: E731
                    yield os.path.join(source, name), name.lower().rsplit(".", 1)[-1], read
        elif not os.path.isfile(path):
            print(f"missing {path} (is its package fetched?)")
        else:
            z = zipfile.ZipFile(path)
            for member in sorted(z.namelist()):
                name = member.rsplit("/", 1)[-1]
                if member.startswith(inner) and name and name not in skip:
                    yield f"{source}!/{member}", name.lower().rsplit(".", 1)[-1], lambda m=member: z.read(m)


def thumbnail(px, side=16):
    """side x side x 3 block means (px cropped to a multiple of side)."""
    h, w = px.shape[0] // side * side, px.shape[1] // side * side
    return px[:h, :w].astype(np.float32).reshape(side, h // side, side, w // side, 3).mean(axis=(1, 3))


def near_copy(px, held_thumbs):
    """The held-out texture px nearly copies, or None.  Packages share
    textures (krita-data ships one of MyPaint's papers), and a copy in the
    training set would score as a perfect sample of the held-out set."""
    t = thumbnail(px)
    for name, h in held_thumbs:
        if np.abs(t.mean(axis=(0, 1)) - h.mean(axis=(0, 1))).max() > 12:
            continue
        a, b = (t - t.mean()).ravel(), (h - h.mean()).ravel()
        if a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-6) > 0.9 or np.abs(t - h).mean() < 4:
            return name
    return None


def wide_textures(root, held):
    """Training items from WIDE_SOURCES."""
    held_thumbs = [(i["name"], thumbnail(i["pixels"].numpy())) for i in held]
    items = []
    for name, ext, read in wide_files(root):
        if ext not in ("pat", "png", "jpg", "jpeg"):
            continue
        try:
            px = to_rgb(decode(read(), ext))
        except Exception as e:  # skip unreadable files, say which
            print(f"skip {name}: {e}")
            continue
        if px is None or min(px.shape[:2]) < WIDE_MIN_SIDE or px.std() < 4:
            continue
        copy = near_copy(px, held_thumbs)
        if copy:
            print(f"left out {name}: a near copy of the held-out {copy}")
            continue
        items.append({"name": name, "pixels": torch.from_numpy(px.copy()), "tileable": is_tileable(px),
                      "heldout": False})
    print(f"--wide: {len(items)} training textures from {len(WIDE_SOURCES)} more sources, "
          f"{sum(i['tileable'] for i in items)} tileable")
    return items


def main(root, out, wide=False):
    items = []
    for dirpath, _, files in sorted(os.walk(root)):
        if not any(k in dirpath for k in ("/patterns", "/textures", "/backgrounds")):
            continue
        if not dirpath.startswith(tuple(os.path.join(root, d) for d in SPLIT_SOURCES)):
            continue
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            ext = name.lower().rsplit(".", 1)[-1]
            try:
                px = decode(open(path, "rb").read(), ext) if ext in ("pat", "png", "jpg", "jpeg") else None
            except Exception as e:  # skip unreadable files, say which
                print(f"skip {path}: {e}")
                continue
            if px is None:
                continue
            px = to_rgb(px)
            if px is None or min(px.shape[:2]) < 32 or px.std() < 4:
                continue
            rel = os.path.relpath(path, root)
            held = int(hashlib.sha1(rel.encode()).hexdigest(), 16) % 8 == 0
            items.append({"name": rel, "pixels": torch.from_numpy(px.copy()), "tileable": is_tileable(px),
                          "heldout": held})
    train = [i for i in items if not i["heldout"]]
    held = [i for i in items if i["heldout"]]
    if wide:
        train += wide_textures(root, held)
    items = train + held
    print(f"{len(items)} textures: {len(train)} train, {len(held)} held out; "
          f"{sum(i['tileable'] for i in items)} tileable; "
          f"{sum(i['pixels'].shape[0] * i['pixels'].shape[1] for i in items) / 1e6:.1f} Mpixel")
    torch.save({"train": train, "heldout": held}, out)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or sys.argv[3:] not in ([], ["--wide"]):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], wide=sys.argv[3:] == ["--wide"])
