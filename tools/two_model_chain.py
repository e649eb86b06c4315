"""Generate textures with a reverse chain shared by two models: HIGH denoises the steps from t >= --switch, LOW the
rest.  It asks whether one model's start of the chain (layout and colour) and another's finish (detail) make better
textures than either alone, without the re-noising that a cross `ddpm refine` adds at the hand-over.

    tools/gimp3-env --python python3 tools/two_model_chain.py HIGH LOW --switch 900 --out DIR [--n 256]
    tools/gimp3-env --python python3 tools/texture_metrics.py --real $W/data/textures.pt --fake DIR --n 256

The chain is the C engine's default one (core/ddpm.h), written again in PyTorch: DDIM (Song et al. 2021) over 20
'leading' timesteps 950, 900, ..., 0, eta 0.5 on the steps from t <= 500 and 0 above, x0-hat clipped to [-1, 1]
and eps recomputed from it, circular padding (tileable), 64 x 64.  Its noise comes from torch, not the engine's
streams, so image N is not the engine's seed N: compare two models' figures from this script with each other, and
with HIGH = LOW for the baseline.  Each model's own scheduler_config.json says whether it outputs eps or v."""
import argparse
import math
import os
import sys

import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import Schedule, eps_from_output  # noqa: E402
from unet_ref import Conv, load_model_dir, prediction_type  # noqa: E402


def ddim_step(x, x0, abar_t, abar_prev, eta, gen):
    """x_{t'} = sqrt(abar_t') x0 + sqrt(1 - abar_t' - sigma^2) eps + sigma z, with eps re-derived from the clipped
    x0 and sigma = eta sqrt((1 - abar_t') / (1 - abar_t) (1 - abar_t / abar_t')), Song et al. eq. (12)/(16)."""
    eps = (x - math.sqrt(abar_t) * x0) / math.sqrt(1 - abar_t)
    sigma = eta * math.sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))
    x = math.sqrt(abar_prev) * x0 + math.sqrt(max(1 - abar_prev - sigma * sigma, 0.0)) * eps
    return x + sigma * torch.randn(x.shape, generator=gen) if sigma > 0 else x


def sample(models, switch, ac, n, gen, steps=20, eta=0.5, eta_t_max=500, size=64):
    """n images down the chain; ac is the schedule's alphas_cumprod."""
    ts = [i * (len(ac) // steps) for i in range(steps)][::-1]
    x = torch.randn(n, 3, size, size, generator=gen)
    for i, t in enumerate(ts):
        abar_t = ac[t].item()
        abar_prev = ac[ts[i + 1]].item() if i + 1 < len(ts) else 1.0
        model, prediction = models["high"] if t >= switch else models["low"]
        eps = eps_from_output(model(x, torch.full((n,), t)), x, abar_t, prediction)
        x0 = ((x - math.sqrt(1 - abar_t) * eps) / math.sqrt(abar_t)).clamp(-1, 1)
        x = ddim_step(x, x0, abar_t, abar_prev, eta if t <= eta_t_max else 0.0, gen)
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("high", help="model folder for the steps from t >= --switch")
    ap.add_argument("low", help="model folder for the steps below --switch")
    ap.add_argument("--switch", type=int, required=True, help="first timestep of the chain that LOW denoises, + 1")
    ap.add_argument("--out", required=True, help="folder for the PNGs, 1.png ... N.png")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    Conv.circular = True
    models = {k: (load_model_dir(path).eval(), prediction_type(path)) for k, path in (("high", a.high), ("low", a.low))}
    ac = Schedule().alphas_cumprod.double()
    os.makedirs(a.out, exist_ok=True)
    with torch.no_grad():
        for first in range(0, a.n, a.batch):
            n = min(a.batch, a.n - first)
            x = sample(models, a.switch, ac, n, torch.Generator().manual_seed(1 + first))
            pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
            for j in range(n):
                Image.fromarray(pixels[j]).save(os.path.join(a.out, f"{1 + first + j}.png"))
            print(f"{first + n} / {a.n}", flush=True)


if __name__ == "__main__":
    main()
