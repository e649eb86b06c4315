"""Write the crops train.py trains on as PNGs, so that tools/texture_metrics.py can score the training data itself.

    tools/gimp3-env --python python3 tools/training_crops.py --data textures.pt --out DIR [--circular-crop 64,128,256]

DIR/plain/ gets 256 crops of 64 x 64 as the plain batches make them (scale jitter, wrap-around, flips, turns), and
DIR/periodic/ a 64 x 64 window of each of 256 periods as the circular batches make them (whole periods of tileable
sources, each period size drawn by its share of the pixels trained on).  A model's samples cannot be closer to real crops
than what it was shown: `texture_metrics.py --real textures.pt --fake DIR/periodic` is the tileable mode's own
reference (TRAINING_LOG.md, "Circular batches")."""
import argparse
import os
import sys

import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import Textures  # noqa: E402


def save_png(x, path):
    """x: [3, H, W] in [-1, 1]."""
    Image.fromarray(((x.permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()).save(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="textures.pt (tools/fetch_textures.sh)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--circular-crop", default="64", help="period sizes, as train.py's option")
    ap.add_argument("--tiles", type=int, default=256, help="64 x 64 tiles' worth of each kind")
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args()

    data = torch.load(a.data, weights_only=False)
    tex = Textures(data["train"], 64, seed=a.seed)
    sizes = [int(v) for v in a.circular_crop.split(",")]
    tex.plan_periods(sizes)
    for c in tex.period_sizes:
        held = [i for i, s in enumerate(tex.period_size) if s == c]
        print(f"period {c}: {len(held)} sources, {tex.size_weights[c].sum():.2f} of the sampling weight")
    print(f"no period: {sum(s is None for s in tex.period_size)} sources (not tileable, or too large)")

    os.makedirs(os.path.join(a.out, "plain"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "periodic"), exist_ok=True)
    for i in range(a.tiles):
        save_png(tex.one(), os.path.join(a.out, "plain", f"{i}.png"))
    # One 64 x 64 window of each period, the period's size drawn by its share of the pixels trained on: the 16
    # tiles of one 256 x 256 period are one texture, and SWD on fewer independent textures reads higher.
    mass = torch.stack([tex.size_weights[c].sum() for c in tex.period_sizes])
    for i in range(a.tiles):
        c = tex.period_sizes[torch.multinomial(mass, 1, generator=tex.gen).item()]
        y, x = tex.rng.randrange(c - 63), tex.rng.randrange(c - 63)
        save_png(tex.periodic(c)[:, y:y + 64, x:x + 64], os.path.join(a.out, "periodic", f"{i}.png"))
    print(f"wrote {a.tiles} plain crops and {a.tiles} windows of periods to {a.out}")

if __name__ == "__main__":
    main()
