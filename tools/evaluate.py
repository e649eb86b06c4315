"""Measure a texture model with the C engine: SWD per (steps, variance) and a contact sheet.

    tools/gimp3-env --python python3 tools/evaluate.py --model weights/ddpm-texture \\
        --ddpm build/cli/ddpm --data /var/cache/gimp-ddpm/work/data/textures.pt \\
        --steps 1000,250,50,20 --variance posterior,beta --images 2 --size 256 \\
        --sheet weights/ddpm-texture/contact_sheet.png

For every setting, `ddpm generate` makes --images images of --size^2 (seeds
1, 2, ...), each cut into 64x64 tiles, and tools/texture_metrics.py compares
the tiles with held-out real crops.  Prints a Markdown table with the wall
time per image, and the floor (real vs real) and ceilings for reference."""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import texture_metrics as tm  # noqa: E402


def generate(ddpm, model, size, steps, variance, seed, out, tileable=True):
    cmd = [ddpm, "generate", "--model", model, "--size", f"{size}x{size}", "--steps", str(steps),
           "--variance", variance, "--seed", str(seed), "--output", out]
    if tileable:
        cmd.append("--tileable")
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.time() - t0


def contact_sheet(paths, real, out, cols=4):
    """Generated images (top rows) above held-out real crops (last row), 2 px gaps."""
    from PIL import Image
    ims = [Image.open(p).convert("RGB") for p in paths]
    s = ims[0].size[0]
    reals = [Image.fromarray(((c.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8))
             .resize((s, s), Image.NEAREST) for c in real[:cols]]
    rows = (len(ims) + cols - 1) // cols + 1
    sheet = Image.new("RGB", (cols * (s + 2), rows * (s + 2)), (255, 255, 255))
    for i, im in enumerate(ims + [None] * ((-len(ims)) % cols) + reals):
        if im is not None:
            sheet.paste(im, ((i % cols) * (s + 2), (i // cols) * (s + 2)))
    sheet.save(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ddpm", default="build/cli/ddpm")
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", default="1000,250,50,20")
    ap.add_argument("--variance", default="posterior,beta")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--sheet", help="write a contact sheet of the first setting's images here")
    a = ap.parse_args()

    data = torch.load(a.data, weights_only=False)
    real = tm.real_crops(data["heldout"], 256, 64, seed=1)
    real2 = tm.real_crops(data["heldout"], 256, 64, seed=2)
    print(f"floor (real vs real) SWD {tm.swd(real, real2)[0]:.0f}; "
          f"noise {tm.swd(real, torch.randn_like(real).clamp(-1, 1))[0]:.0f}; "
          f"blurred real {tm.swd(real, tm._blur(tm._blur(tm._blur(real2))))[0]:.0f}")
    print("| steps | variance | SWD | s per image |\n|---|---|---|---|")
    first = None
    with tempfile.TemporaryDirectory() as tmp:
        for steps in [int(s) for s in a.steps.split(",")]:
            for var in a.variance.split(","):
                d = os.path.join(tmp, f"{steps}-{var}")
                os.makedirs(d)
                secs = [generate(a.ddpm, a.model, a.size, steps, var, seed, os.path.join(d, f"{seed}.png"))
                        for seed in range(1, a.images + 1)]
                fake = tm.load_pngs(d, 64)
                print(f"| {steps} | {var} | {tm.swd(real, fake)[0]:.0f} | {np.mean(secs):.1f} |", flush=True)
                if first is None:
                    first = d
        if a.sheet:
            paths = sorted(os.path.join(first, f) for f in os.listdir(first))
            sheet_dir = os.path.join(tmp, "sheet")
            os.makedirs(sheet_dir)
            # 8 extra small samples for the sheet, same first setting
            steps0, var0 = int(a.steps.split(",")[0]), a.variance.split(",")[0]
            for seed in range(101, 109):
                generate(a.ddpm, a.model, 128, steps0, var0, seed, os.path.join(sheet_dir, f"{seed}.png"))
            contact_sheet(sorted(os.path.join(sheet_dir, f) for f in os.listdir(sheet_dir)),
                          real, a.sheet)
            print(f"contact sheet: {a.sheet} (rows 1-2: samples, {steps0} steps {var0}; last row: real held-out crops)")


if __name__ == "__main__":
    main()
