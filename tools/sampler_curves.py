"""Texture quality against cost for each sampler: SWD per (sampler, steps) and wall time per image.

    tools/gimp3-env --python python3 tools/sampler_curves.py --model weights/ddpm-texture \\
        --ddpm build/cli/ddpm --data /var/cache/gimp-ddpm/work/data/textures.pt \\
        --samplers ddpm,ddim,dpm-solver++ --steps 10,20,50,100,250,1000 --images 2 --size 256 \\
        --plot weights/ddpm-texture/sampler_curves.png --csv weights/ddpm-texture/sampler_curves.csv

For every sampler and step count K, `ddpm generate --sampler S --steps K`
makes --images images of --size^2 (seeds 1, 2, ...; tileable, as
tools/evaluate.py does), each cut into 64x64 tiles, and
tools/texture_metrics.py's SWD compares the tiles with held-out real crops
(lower is better; the floor is real vs real).  The wall time is the
command's, per image, model loading included.  Prints a Markdown table,
optionally writes a CSV, and plots SWD against K and against seconds per
image, one curve per sampler, with the floor and the blurred-real ceiling
for reference.

Wall times are only comparable within one run on a quiet machine: any
other load (e.g. a training job) slows every setting, not evenly."""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import texture_metrics as tm  # noqa: E402


def generate(ddpm, model, size, sampler, steps, seed, out, eta=None, variance=None, threads=None, tileable=True):
    """One `ddpm generate`; returns its wall time in seconds."""
    cmd = [ddpm, "generate", "--model", model, "--size", f"{size}x{size}", "--steps", str(steps),
           "--sampler", sampler, "--seed", str(seed), "--output", out]
    if sampler == "ddim" and eta is not None:
        cmd += ["--eta", str(eta)]
    if sampler == "ddpm" and variance:
        cmd += ["--variance", variance]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if tileable:
        cmd.append("--tileable")
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.time() - t0


def label(sampler, eta, variance):
    if sampler == "ddim":
        return f"ddim (eta {eta:g})"
    if sampler == "ddpm":
        return f"ddpm ({variance})" if variance else "ddpm"
    return sampler


def plot(rows, floor, ceiling, out, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax_k, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in dict.fromkeys(r["label"] for r in rows):
        rs = sorted((r for r in rows if r["label"] == name), key=lambda r: r["steps"])
        ks = [r["steps"] for r in rs]
        swd = [r["swd"] for r in rs]
        secs = [r["seconds"] for r in rs]
        ax_k.plot(ks, swd, marker="o", label=name)
        line, = ax_t.plot(secs, swd, marker="o", label=name)
        for k, s, w in zip(ks, secs, swd):
            ax_t.annotate(str(k), (s, w), textcoords="offset points", xytext=(4, 4), fontsize=7,
                          color=line.get_color())
    plain = matplotlib.ticker.FormatStrFormatter("%g")
    for ax in (ax_k, ax_t):
        ax.axhline(floor, color="gray", linestyle="--", linewidth=1, label="real vs real (floor)")
        ax.axhline(ceiling, color="gray", linestyle=":", linewidth=1, label="blurred real")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_ylabel("SWD x 1e3 (lower is better)")
        ax.grid(True, which="both", alpha=0.3)
    ks = sorted({r["steps"] for r in rows})
    ax_k.set_xticks(ks)
    ax_k.set_xticks([], minor=True)
    ax_k.set_xlabel("steps K")
    ax_t.set_xlabel("seconds per image (wall time)")
    ax_k.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ddpm", default="build/cli/ddpm")
    ap.add_argument("--data", required=True, help="textures.pt (tools/fetch_textures.sh)")
    ap.add_argument("--samplers", default="ddpm,ddim,dpm-solver++")
    ap.add_argument("--steps", default="10,20,50,100,250,1000")
    ap.add_argument("--eta", type=float, default=0.0, help="DDIM's eta (default 0: deterministic)")
    ap.add_argument("--variance", default="", help="DDPM's variance (default: the model's)")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--plot", help="write the curves here (PNG)")
    ap.add_argument("--csv", help="write the table here")
    ap.add_argument("--keep", help="keep the generated images in this folder")
    a = ap.parse_args()

    samplers = a.samplers.split(",")
    steps = [int(s) for s in a.steps.split(",")]
    data = torch.load(a.data, weights_only=False)
    real = tm.heldout_crops(data["heldout"], 256, 64, seed=1)
    real2 = tm.heldout_crops(data["heldout"], 256, 64, seed=2)
    floor = tm.swd(real, real2)[0]
    ceiling = tm.swd(real, tm._blur(tm._blur(tm._blur(real2))))[0]
    print(f"floor (real vs real) SWD {floor:.0f}; blurred real {ceiling:.0f}")
    print("| sampler | steps | SWD | s per image |\n|---|---|---|---|", flush=True)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = a.keep or tmp
        for sampler in samplers:
            name = label(sampler, a.eta, a.variance)
            for k in steps:
                d = os.path.join(root, f"{sampler}-{k}")
                os.makedirs(d, exist_ok=True)
                secs = [generate(a.ddpm, a.model, a.size, sampler, k, seed, os.path.join(d, f"{seed}.png"),
                                 eta=a.eta, variance=a.variance, threads=a.threads)
                        for seed in range(1, a.images + 1)]
                fake = tm.load_pngs(d, 64)
                value = tm.swd(real, fake)[0]
                rows.append({"sampler": sampler, "label": name, "steps": k, "swd": value,
                             "seconds": float(np.mean(secs)), "tiles": len(fake)})
                print(f"| {name} | {k} | {value:.0f} | {np.mean(secs):.1f} |", flush=True)

    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
        print(f"table: {a.csv}")
    if a.plot:
        title = (f"{os.path.basename(os.path.normpath(a.model))}: {a.images} image(s) of {a.size}^2 per point, "
                 f"SWD on 64x64 tiles vs held-out crops")
        plot(rows, floor, ceiling, a.plot, title)
        print(f"plot: {a.plot}")


if __name__ == "__main__":
    main()
