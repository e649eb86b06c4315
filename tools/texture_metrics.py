"""Texture quality: sliced Wasserstein distance on Laplacian-pyramid patches.

The SWD of Karras et al. 2018 (ProgressiveGAN, sec. 5): from every image of a
set, take random 7x7 neighbourhoods at each level of a Laplacian pyramid,
normalise each channel over the whole set, project on random directions and
compare the sorted projections.  Lower is better; reported x 1e3 and averaged
over the pyramid levels, so pure noise scores about 1000 and two sets of real
crops of the same textures score the floor.

    python3 tools/texture_metrics.py --real data.pt --fake DIR_OF_PNGS [--size 64]
    python3 tools/texture_metrics.py --real data.pt --baselines 256  # floors and ceilings for 256 images
    python3 tools/texture_metrics.py --real data.pt --write-crops DIR  # 256 held-out crops to refine

--fake compares the generated set with 256 held-out crops and with 256
training crops, and prints the pixel gradient, the share of images with colour
speckle (the failure of deterministic chains) and the mean colour of each set.
Use a few hundred generated images: with 48, SWD mostly measures which of the
233 textures the set happens to show (48 training crops score 279 against
1024 others, 256 score 21), and favours sets that blend textures over sets
that show a few of them.

Used by tools/train.py during training and by the model card measurements."""
import argparse
import glob
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

_GAUSS = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(x):
    c = x.shape[1]
    k = (_GAUSS[:, None] * _GAUSS[None, :]).to(x)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=c)


def laplacian_pyramid(x, levels):
    """x [N,3,H,W] in [-1,1] -> list of band-pass images, finest first, coarsest last (low-pass)."""
    out = []
    for _ in range(levels - 1):
        low = _blur(x)[:, :, ::2, ::2]
        up = F.interpolate(low, scale_factor=2, mode="nearest")
        out.append(x - _blur(up))
        x = low
    out.append(x)
    return out


def descriptors(level, per_image, gen, patch=7):
    """per_image random 7x7 neighbourhoods of every image, flattened: [N*per_image, C*49]."""
    n, c, h, w = level.shape
    ys = torch.randint(0, h - patch + 1, (n, per_image), generator=gen)
    xs = torch.randint(0, w - patch + 1, (n, per_image), generator=gen)
    p = level.unfold(2, patch, 1).unfold(3, patch, 1)        # N,C,h',w',7,7
    d = p[torch.arange(n)[:, None], :, ys, xs]               # N,per,C,7,7
    return d.reshape(-1, c, patch * patch)


def normalise(d, ref):
    """Per-channel standardisation with the statistics of the REAL set.  (Karras et
    al. standardise each set by its own statistics, which hides a loss of contrast:
    blurred crops would then score almost as well as real ones.)"""
    mu = ref.mean(dim=(0, 2), keepdim=True)
    sd = ref.std(dim=(0, 2), keepdim=True) + 1e-8
    return ((d - mu) / sd).reshape(d.shape[0], -1)


def sliced_wasserstein(a, b, gen, directions=128, repeats=4):
    total = 0.0
    for _ in range(repeats):
        d = torch.randn(a.shape[1], directions, generator=gen)
        d = d / d.norm(dim=0, keepdim=True)
        pa, _ = torch.sort(a @ d, dim=0)
        pb, _ = torch.sort(b @ d, dim=0)
        m = min(len(pa), len(pb))
        pa = pa[torch.linspace(0, len(pa) - 1, m).long()]
        pb = pb[torch.linspace(0, len(pb) - 1, m).long()]
        total += (pa - pb).abs().mean().item()
    return total / repeats


def swd(real, fake, levels=3, per_image=128, seed=0):
    """real, fake: [N,3,S,S] float in [-1,1]. Returns (mean, per-level list) x 1e3."""
    gen = torch.Generator().manual_seed(seed)
    pr = laplacian_pyramid(real.float(), levels)
    pf = laplacian_pyramid(fake.float(), levels)
    per = []
    for lr, lf in zip(pr, pf):
        a = descriptors(lr, per_image, gen)
        b = normalise(descriptors(lf, per_image, gen), a)
        a = normalise(a, a)
        per.append(1e3 * sliced_wasserstein(a, b, gen))
    return float(np.mean(per)), per


def gradient(x):
    """Per image: mean |difference| between vertical neighbours, in grey levels (0-255).  Grain left by an
    unfinished reverse chain raises it; blur lowers it."""
    a = (x.float() + 1) * 127.5
    return (a[:, :, 1:, :] - a[:, :, :-1, :]).abs().mean(dim=(1, 2, 3))


def contrast(x):
    """Per image: the standard deviation of its brightness, in grey levels.  A model that blends its training
    textures, or a sampler that smooths, makes too few high-contrast images (bold stripes, dark cracks) and some
    nearly flat ones; SWD's coarsest level sees that, this says it in grey levels."""
    a = (x.float() + 1) * 127.5
    return a.mean(dim=1).flatten(1).std(dim=1)


def colour_speckle(x):
    """Per image: the fine detail of its colour, apart from its brightness.  A deterministic chain that has gone
    wrong leaves saturated red, green and blue pixels side by side; real textures keep their fine detail mostly in
    brightness (stone, fabric, bark), so pixel gradient alone cannot tell speckle from a rough texture (12-16 % of
    training crops are rougher than 95 % of held-out ones).  Mean |c - 3x3 box mean of c| over the two opponent
    channels c = R - G and (R + G)/2 - B, in grey levels."""
    a = (x.float() + 1) * 127.5
    opponent = torch.stack([a[:, 0] - a[:, 1], (a[:, 0] + a[:, 1]) / 2 - a[:, 2]], dim=1)
    local_mean = F.avg_pool2d(opponent, 3, stride=1, padding=1, count_include_pad=False)
    return (opponent - local_mean).abs().mean(dim=(1, 2, 3))


def repetition(x, lag):
    """Per image: how exactly its fine detail repeats `lag` pixels away (the period of period-first generation),
    the correlation of the brightness's finest Laplacian band with itself shifted by lag, averaged over the two
    axes: 1 for a tile repeated exactly, about 0 for detail that does not repeat.  SWD cannot see repetition (a
    repeated texture has the patches of the texture), the eye does.  Real crops of textures smaller than the crop
    repeat too (real_crops wraps them around)."""
    a = x.float().mean(dim=1, keepdim=True)
    band = a - _blur(a)
    def corr(u, v):
        dot = lambda a, b: (a * b).sum(dim=(1, 2, 3))  # noqa: E731
        return dot(u, v) / (dot(u, u) * dot(v, v)).sqrt().clamp_min(1e-12)
    across = corr(band[:, :, :, :-lag], band[:, :, :, lag:])
    down = corr(band[:, :, :-lag, :], band[:, :, lag:, :])
    return (across + down) / 2


def real_crops(items, n, size, seed):
    """n random size x size crops of the textures `items` (wrap-around for small ones).  Textures are taken in
    shuffled rounds, each once per round, so a set smaller than the texture list is a random subset of textures
    rather than the first ones by name."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(items)) for _ in range(math.ceil(n / len(items)))])
    out = []
    for k in order[:n]:
        px = items[k]["pixels"].permute(2, 0, 1).float() / 127.5 - 1
        h, w = px.shape[1:]
        if min(h, w) < size:
            px = px.repeat(1, math.ceil(size / h), math.ceil(size / w))
            h, w = px.shape[1:]
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        out.append(px[:, y:y + size, x:x + size])
    return torch.stack(out)


def tiles(x, size):
    """[N,3,H,W] -> the size x size tiles of every image, image by image, row by row."""
    n, c, h, w = x.shape
    x = x[:, :, :h - h % size, :w - w % size].unfold(2, size, size).unfold(3, size, size)
    return x.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, size, size)


def real_tiles(items, n, size, image_size, seed):
    """n tiles of size x size cut from n / k crops of image_size x image_size (k tiles each): the real counterpart of
    large generated images cut into tiles.  The tiles of one image are alike, so a set of them covers fewer textures
    than n independent crops and scores higher against any reference; comparing like with like keeps the floor
    meaningful."""
    k = (image_size // size) ** 2
    return tiles(real_crops(items, n // k, image_size, seed), size)


def load_pngs(folder, size):
    from PIL import Image
    ims = []
    for f in sorted(glob.glob(os.path.join(folder, "*.png"))):
        a = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 127.5 - 1
        ims.append(tiles(torch.from_numpy(a).permute(2, 0, 1)[None], size))   # cut big samples into tiles
    return torch.cat(ims)


def write_crops(x, folder):
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    pixels = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(os.path.join(folder, f"{i + 1}.png"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", required=True, help="textures.pt from tools/fetch_textures.sh")
    ap.add_argument("--fake", help="folder of generated PNGs")
    ap.add_argument("--size", type=int, default=64, help="tile size scored (default 64)")
    ap.add_argument("--image-size", type=int, default=0, metavar="S",
                    help="the generated images are S x S, cut into tiles: cut the real references from S x S crops "
                    "the same way (default: the tile size, independent crops)")
    ap.add_argument("--levels", type=int, default=3,
                    help="Laplacian pyramid levels (default 3; 5 with --size 256 sees structure up to about 112 px)")
    ap.add_argument("--n", type=int, default=256, help="crops in each real reference set")
    ap.add_argument("--repetition", type=int, default=0, metavar="LAG",
                    help="also print how exactly the images repeat LAG pixels away (e.g. 64, the period)")
    ap.add_argument("--baselines", type=int, default=0, metavar="N",
                    help="also print the references for generated sets of N images, averaged over 5 draws")
    ap.add_argument("--write-crops", metavar="DIR",
                    help="write --n held-out crops of --image-size (or --size) as DIR/1.png ... and stop: inputs "
                    "for a refine, drawn apart from the reference sets (which use crop seeds 1 and 2)")
    a = ap.parse_args()
    data = torch.load(a.real, weights_only=False)
    image_size = a.image_size or a.size
    if a.write_crops:
        write_crops(real_crops(data["heldout"], a.n, image_size, seed=3), a.write_crops)
        return
    if image_size % a.size or a.n % (image_size // a.size) ** 2:
        ap.error("--image-size must be a multiple of --size, and --n a multiple of the tiles in one image")
    score = lambda real, fake: swd(real, fake, levels=a.levels)  # noqa: E731
    crops = lambda items, n, size, seed: real_tiles(items, n, size, image_size, seed)  # noqa: E731
    refs = {"held-out": crops(data["heldout"], a.n, a.size, seed=1),
            "training": crops(data["train"], a.n, a.size, seed=1)}
    if a.baselines:
        n, draws = a.baselines, range(5)
        held = [score(refs["held-out"], crops(data["heldout"], n, a.size, seed=100 + d))[0] for d in draws]
        train = [score(refs["held-out"], crops(data["train"], n, a.size, seed=100 + d))[0] for d in draws]
        tt = [score(refs["training"], crops(data["train"], n, a.size, seed=100 + d))[0] for d in draws]
        ms = lambda v: f"{np.mean(v):.0f} +- {np.std(v):.0f}"
        print(f"{n} held-out crops vs held-out (floor)           SWD {ms(held)}")
        print(f"{n} training crops vs held-out (the training set) SWD {ms(train)}")
        print(f"{n} training crops vs training (floor)           SWD {ms(tt)}")
        real2 = crops(data["heldout"], n, a.size, seed=2)
        print(f"ceiling vs held-out: noise {score(refs['held-out'], torch.randn_like(real2).clamp(-1, 1))[0]:.0f}, "
              f"flat colour {score(refs['held-out'], real2.mean(dim=(2, 3), keepdim=True).expand_as(real2))[0]:.0f}, "
              f"blurred {score(refs['held-out'], _blur(_blur(_blur(real2))))[0]:.0f}")
    if a.fake:
        fake = load_pngs(a.fake, a.size)
        for name, real in refs.items():
            m, per = score(real, fake)
            print(f"SWD vs {name} {m:.0f}  (levels: {', '.join(f'{p:.0f}' for p in per)})  on {len(fake)} tiles")
        q = lambda v: ", ".join(f"{t:.0f}" for t in np.percentile(v.numpy(), [10, 50, 90]))
        g_fake, g_real = gradient(fake), gradient(refs["held-out"])
        print(f"pixel gradient (10/50/90th percentile, grey levels): generated {q(g_fake)}; "
              f"held-out real {q(g_real)}")
        print(f"contrast (10/50/90th percentile, grey levels): generated {q(contrast(fake))}; "
              f"held-out real {q(contrast(refs['held-out']))}; training {q(contrast(refs['training']))}")
        # Speckle shows in some samples and not others, so a median hides it: count the images past a threshold
        # set by real crops, and say how many other real crops pass it too.
        share = lambda v, limit: float((v > limit).float().mean()) * 100
        others = {"held-out": crops(data["heldout"], a.n, a.size, seed=2),
                  "training": crops(data["train"], a.n, a.size, seed=2)}
        p95 = float(np.percentile(g_real.numpy(), 95))
        print(f"rougher than 95 % of held-out crops (gradient > {p95:.0f}): {share(g_fake, p95):.0f} % of "
              f"generated images; other real crops: {share(gradient(others['held-out']), p95):.0f} % held-out, "
              f"{share(gradient(others['training']), p95):.0f} % training")
        p99 = float(np.percentile(colour_speckle(refs["training"]).numpy(), 99))
        print(f"colour speckle past 99 % of training crops (> {p99:.0f}): {share(colour_speckle(fake), p99):.0f} % "
              f"of generated images; other real crops: {share(colour_speckle(others['held-out']), p99):.0f} % "
              f"held-out, {share(colour_speckle(others['training']), p99):.0f} % training")
        if a.repetition:
            r = lambda v: ", ".join(f"{t:.2f}" for t in np.percentile(v.numpy(), [10, 50, 90]))
            r_fake, r_held = repetition(fake, a.repetition), repetition(refs["held-out"], a.repetition)
            print(f"repetition at {a.repetition} px (10/50/90th percentile, 1 = exact): generated {r(r_fake)}; "
                  f"held-out real {r(r_held)}; training {r(repetition(refs['training'], a.repetition))}; "
                  f"past 0.5: {share(r_fake, 0.5):.0f} % of generated images, {share(r_held, 0.5):.0f} % held-out")
        c = lambda x: " ".join(f"{v:.0f}" for v in ((x.mean(dim=(0, 2, 3)) + 1) * 127.5).tolist())
        print(f"mean RGB: generated {c(fake)}; held-out {c(refs['held-out'])}; training {c(refs['training'])}")


if __name__ == "__main__":
    main()
