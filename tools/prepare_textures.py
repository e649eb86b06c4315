"""Collect texture images from unpacked Debian packages into one tensor file.

    python3 tools/prepare_textures.py ROOT OUT.pt

Reads GIMP patterns (.pat) and PNG/JPEG images under ROOT/usr/share, converts
them to RGB uint8, marks which ones tile seamlessly, and splits them into a
training set and a held-out set (about 1 in 8, chosen by a hash of the file
name so the split never changes when files are added)."""
import hashlib
import os
import struct
import sys

import numpy as np
import torch


def read_pat(path):
    """GIMP pattern: big-endian header (size, version, w, h, bytes, 'GPAT'), name, pixels."""
    data = open(path, "rb").read()
    hsize, version, w, h, nb = struct.unpack(">5I", data[:20])
    if data[20:24] != b"GPAT" or nb not in (1, 2, 3, 4):
        raise ValueError("not a GIMP pattern")
    px = np.frombuffer(data[hsize:hsize + w * h * nb], dtype=np.uint8).reshape(h, w, nb)
    return px


def read_image(path):
    from PIL import Image
    im = Image.open(path)
    im.load()
    if im.mode not in ("RGB", "RGBA", "L", "LA"):
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
    return np.asarray(im)


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


def main(root, out):
    items = []
    for dirpath, _, files in sorted(os.walk(root)):
        if not any(k in dirpath for k in ("/patterns", "/textures", "/backgrounds")):
            continue
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            ext = name.lower().rsplit(".", 1)[-1]
            try:
                px = read_pat(path) if ext == "pat" else read_image(path) if ext in ("png", "jpg", "jpeg") else None
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
    print(f"{len(items)} textures: {len(train)} train, {len(held)} held out; "
          f"{sum(i['tileable'] for i in items)} tileable; "
          f"{sum(i['pixels'].shape[0] * i['pixels'].shape[1] for i in items) / 1e6:.1f} Mpixel")
    torch.save({"train": train, "heldout": held}, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
