"""How well a model predicts the noise, by range of t, on real crops.

    tools/gimp3-env --python python3 tools/denoise_error.py MODEL_DIR [--data textures.pt] [--size 64]
                                                                      [--split train|heldout] [--n 32]
                                                                      [--circular]

For each range of t: N crops noised by q(x_t | x_0), the model's eps_theta, and
  - the per-pixel mean square of eps_theta - eps (L_simple, what training minimises);
  - HW |image mean of (eps_theta - eps)|^2 per channel, averaged: the error of the image mean counted like a whole
    image of it.  1 means the image mean of eps is not predicted at all; where x_t is mostly noise it is nearly
    all predictable, since it is nearly the image mean of x_t;
  - the rms error of x0-hat's image mean that it causes, (1 - abar)^(1/2) / abar^(1/2) times the mean's error: the
    colour error of the sampler's prediction at those steps.
The same crops and noise for every model (fixed seeds), so models can be compared.  --circular asks the same of the
tileable mode: the crops are whole periods of tileable sources (as train.py's circular batches) and the network pads
circularly, as a tileable run does.  A v-prediction model's output is turned into its eps_theta first."""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import Schedule, Textures, eps_from_output  # noqa: E402
from unet_ref import Conv, load_model_dir, prediction_type  # noqa: E402

RANGES = [(0, 10), (10, 50), (50, 200), (200, 400), (400, 700), (700, 900), (900, 1000)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--data", default="/var/cache/gimp-ddpm/work/data/textures.pt")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--split", choices=["train", "heldout"], default="train",
                    help="crops of the training textures or of the held-out ones (an error much lower on training "
                         "crops than on held-out ones means memorisation)")
    ap.add_argument("--n", type=int, default=32, help="crops per range of t")
    ap.add_argument("--circular", action="store_true",
                    help="whole --size periods of the tileable sources, with circular padding (the tileable mode)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = load_model_dir(a.model).eval()
    prediction = prediction_type(a.model)
    data = torch.load(a.data, weights_only=False)
    textures = Textures(data[a.split], a.size, seed=7)
    x0 = textures.periodic_batch(a.n, [a.size]) if a.circular else textures.batch(a.n)
    Conv.circular = a.circular
    ac = Schedule().alphas_cumprod.float()
    gen = torch.Generator().manual_seed(0)
    print(f"{'t':>10}  {'per-pixel mse':>13}  {'HW |mean err|^2':>15}  {'x0-hat mean rms':>15}")
    with torch.no_grad():
        for lo, hi in RANGES:
            t = torch.randint(lo, hi, (len(x0),), generator=gen)
            eps = torch.randn(x0.shape, generator=gen)
            abar = ac[t][:, None, None, None]
            xt = abar.sqrt() * x0 + (1 - abar).sqrt() * eps                     # q_sample, eq. (4)
            err = eps_from_output(model(xt, t), xt, abar, prediction) - eps
            mean_err = err.mean(dim=(2, 3))                                       # N x C
            x0_mean_err = mean_err * ((1 - abar) / abar).sqrt()[:, :, 0, 0]
            print(f"{lo:>4}..{hi - 1:<4}  {err.pow(2).mean():13.4f}  "
                  f"{(err.shape[2] * err.shape[3] * mean_err.pow(2)).mean():15.3f}  "
                  f"{x0_mean_err.pow(2).mean().sqrt():15.3f}")


if __name__ == "__main__":
    main()
