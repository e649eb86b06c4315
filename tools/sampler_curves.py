"""Texture quality against cost for each sampler: SWD per (sampler, steps) and seconds per texture.

    tools/gimp3-env --python python3 tools/sampler_curves.py --model weights/ddpm-texture \\
        --ddpm build/cli/ddpm --data /var/cache/gimp-ddpm/work/data/textures.pt \\
        --samplers ddpm,ddim,dpm-solver++ --steps 10,20,50,100,250,1000 --images 48 --size 64 \\
        --ms-per-eval 930 --plot weights/ddpm-texture/sampler_curves.png --csv sampler_curves.csv

For every sampler and step count K, `ddpm generate --sampler S --steps K`
makes --images independent images of --size^2 (seeds 1, 2, ...; tileable, as
tools/evaluate.py does), each cut into 64x64 tiles, and
tools/texture_metrics.py's SWD compares the tiles with 256 real crops of the
held-out textures and, separately, of the training textures (lower is better).
Many small independent images, not a few large ones: each generated image is
one texture, and the real sets hold 25 and 208 different textures, so a
handful of large images would measure how few textures they show.  Each
reference gets its own floor, SWD between two real sets of the same sizes.

Cost: with --ms-per-eval (median ms of one network evaluation at the size the
user pays for, from `ddpm bench --size 512x512` on an idle machine) the
seconds axis is K x that, the cost of a 512x512 texture whatever else runs on
the machine meanwhile; without it, the measured wall time per image, which is
only comparable within one run on a quiet machine.  --merge adds the rows of
an earlier run's CSV (e.g. the DDPM chain with the other variance) to the
table and the plot."""
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


def plot(rows, floors, out, title, xlabel):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    refs = list(floors)
    fig, axes = plt.subplots(len(refs), 2, figsize=(11, 4.2 * len(refs)), squeeze=False)
    plain = matplotlib.ticker.FormatStrFormatter("%g")
    for (ax_k, ax_t), ref in zip(axes, refs):
        for name in dict.fromkeys(r["label"] for r in rows):
            rs = sorted((r for r in rows if r["label"] == name), key=lambda r: r["steps"])
            ks = [r["steps"] for r in rs]
            swd = [r["swd_" + ref] for r in rs]
            secs = [r["seconds"] for r in rs]
            ax_k.plot(ks, swd, marker="o", label=name)
            line, = ax_t.plot(secs, swd, marker="o", label=name)
            for k, s, w in zip(ks, secs, swd):
                ax_t.annotate(str(k), (s, w), textcoords="offset points", xytext=(4, 4), fontsize=7,
                              color=line.get_color())
        for ax in (ax_k, ax_t):
            ax.axhline(floors[ref], color="gray", linestyle="--", linewidth=1, label="real vs real (floor)")
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(plain)
            ax.xaxis.set_minor_formatter(plain)
            ax.tick_params(axis="x", which="minor", labelsize=7)
            ax.set_ylabel(f"SWD vs {ref} crops (lower is better)")
            ax.grid(True, which="both", alpha=0.3)
        ks = sorted({r["steps"] for r in rows})
        ax_k.set_xticks(ks)
        ax_k.set_xticks([], minor=True)
        ax_k.set_xlabel("steps K")
        ax_t.set_xlabel(xlabel)
        ax_k.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
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
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ms-per-eval", type=float, default=0,
                    help="ms per network evaluation at the size that matters (ddpm bench); "
                    "the seconds axis becomes K x this")
    ap.add_argument("--cost-size", default="512x512", help="the size --ms-per-eval was measured at (labels)")
    ap.add_argument("--merge", help="add the rows of this earlier CSV")
    ap.add_argument("--floor-draws", type=int, default=5, help="real sets averaged for the floor")
    ap.add_argument("--name", help="the model's name in the plot's title (default: its folder's)")
    ap.add_argument("--plot", help="write the curves here (PNG)")
    ap.add_argument("--csv", help="write the table here")
    ap.add_argument("--keep", help="keep the generated images in this folder")
    a = ap.parse_args()

    samplers = [s for s in a.samplers.split(",") if s]
    steps = [int(s) for s in a.steps.split(",")]
    data = torch.load(a.data, weights_only=False)
    # One real set per reference, and the floor: another real set of the same
    # size as the generated one (--images x tiles per image).
    tiles = a.images * (a.size // 64) ** 2
    reals, floors = {}, {}
    for ref, items in (("held-out", data["heldout"]), ("training", data["train"])):
        reals[ref] = tm.real_crops(items, 256, 64, seed=1)
        draws = [tm.swd(reals[ref], tm.real_crops(items, tiles, 64, seed=2 + d))[0] for d in range(a.floor_draws)]
        floors[ref] = float(np.mean(draws))
        print(f"floor vs {ref} crops ({tiles} other real crops, {a.floor_draws} draws): SWD {floors[ref]:.0f} "
              f"(sd {np.std(draws):.0f})")
    cost = "s per image" if not a.ms_per_eval else f"s per {a.cost_size} (K x {a.ms_per_eval:g} ms)"
    print(f"| sampler | steps | SWD vs held-out | SWD vs training | {cost} |\n|---|---|---|---|---|", flush=True)

    rows = []
    if a.merge:
        with open(a.merge) as f:
            for r in csv.DictReader(f):
                rows.append({k: (int(v) if k in ("steps", "tiles") else v if k in ("sampler", "label")
                                 else float(v)) for k, v in r.items()})
                if a.ms_per_eval:          # re-cost the earlier rows with this run's figure
                    rows[-1]["seconds"] = rows[-1]["steps"] * a.ms_per_eval / 1e3
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
                seconds = k * a.ms_per_eval / 1e3 if a.ms_per_eval else float(np.mean(secs))
                row = {"sampler": sampler, "label": name, "steps": k,
                       "swd_held-out": tm.swd(reals["held-out"], fake)[0],
                       "swd_training": tm.swd(reals["training"], fake)[0],
                       "seconds": seconds, "wall_per_image": float(np.mean(secs)), "tiles": len(fake)}
                rows.append(row)
                print(f"| {name} | {k} | {row['swd_held-out']:.0f} | {row['swd_training']:.0f} | {seconds:.1f} |",
                      flush=True)

    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
        print(f"table: {a.csv}")
    if a.plot:
        title = (f"{a.name or os.path.basename(os.path.normpath(a.model))}: {a.images} independent {a.size}x{a.size} "
                 f"images per point, SWD on 64x64 tiles")
        xlabel = (f"seconds for a {a.cost_size} texture (K x {a.ms_per_eval:g} ms per evaluation)"
                  if a.ms_per_eval else "seconds per image (wall time)")
        plot(rows, floors, a.plot, title, xlabel)
        print(f"plot: {a.plot}")


if __name__ == "__main__":
    main()
