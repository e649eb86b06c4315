"""Train the shipped texture DDPM on the CPU (development tool; PyTorch from Debian).

    tools/gimp3-env --python python3 tools/train.py --data DATA/textures.pt --run RUN_DIR
    tools/gimp3-env --python python3 tools/train.py --run RUN_DIR --export weights/NAME

DDPM training as in Ho et al. 2020, Algorithm 1: x_0 from the data, t uniform
in 1..T, eps ~ N(0, I), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, and a
gradient step on || eps - eps_theta(x_t, t) ||^2, with the linear beta schedule
1e-4 .. 0.02, T = 1000.  Two changes make it converge faster per CPU-hour:
the Min-SNR-gamma weight min(SNR_t, gamma) / SNR_t on the per-sample loss
(Hang et al. 2023; gamma = 5) and Adam with a warm-up to a higher learning
rate.  An exponential moving average of the weights (with the usual warm-up of
its decay) is what ships.  --prediction v_prediction trains the network to output
v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 instead (Salimans & Ho 2022), which
the engine reads from scheduler_config.json like diffusers.

The run folder holds ckpt.pt (resumable: model, EMA, optimiser, step, RNG,
elapsed time), log.tsv (step, hours, loss, SWD), ema/ (the EMA model as a
diffusers folder, F32) and, with --snapshot-every, snapshots/ (the weights
themselves every N steps, for tools/posthoc_ema.py).  Rerunning the same command
resumes; `kill PID` writes a checkpoint and stops."""
import argparse
import json
import math
import os
import random
import signal
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet_ref import Conv, UNet2DModel, save_model_dir, load_model_dir, prediction_type  # noqa: E402
import texture_metrics  # noqa: E402

DEFAULT_MODEL = {
    "sample_size": 64,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": [32, 64, 128, 128],
    "down_block_types": ["DownBlock2D"] * 4,
    "up_block_types": ["UpBlock2D"] * 4,
    "layers_per_block": 1,
    "add_attention": False,
    "attention_head_dim": None,
    "norm_num_groups": 16,
    "norm_eps": 1e-6,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "downsample_padding": 1,
}


class Schedule:
    """Linear betas, abar_t = prod(1 - beta_s) in double (paper eq. 4 needs abar only)."""

    def __init__(self, T=1000, beta_start=1e-4, beta_end=0.02):
        self.T = T
        betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1 - betas, 0)


class Textures:
    """Random training crops: scale jitter, wrap-around for tileable sources, flips, 90 degree turns."""

    def __init__(self, items, crop, seed):
        self.items = [(it["pixels"].permute(2, 0, 1).float() / 127.5 - 1, it["tileable"]) for it in items]
        # Sample images in proportion to the square root of their area: big photos
        # give more distinct crops than 64x64 patterns, but should not drown them.
        w = torch.tensor([math.sqrt(px.shape[1] * px.shape[2]) for px, _ in self.items])
        self.weights = w / w.sum()
        self.crop = crop
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)

    def one(self):
        idx = torch.multinomial(self.weights, 1, generator=self.gen).item()
        px, tileable = self.items[idx]
        h, w = px.shape[1:]
        c = self.crop
        smin = max(0.5, c / min(h, w)) if not tileable else 0.5
        s = math.exp(self.rng.uniform(math.log(smin), math.log(max(smin, 1.25))))
        if abs(s - 1) > 0.02:
            nh, nw = max(4, round(h * s)), max(4, round(w * s))
            px = F.interpolate(px[None], size=(nh, nw), mode="bilinear", antialias=s < 1,
                               align_corners=False)[0]
            h, w = nh, nw
        if tileable:  # wrap-around crop: any offset is a valid crop of the infinite tiling
            y, x = self.rng.randrange(h), self.rng.randrange(w)
            reps = (1, math.ceil((c + y) / h), math.ceil((c + x) / w))
            px = px.repeat(*reps)[:, y:y + c, x:x + c]
        else:
            y, x = self.rng.randrange(h - c + 1), self.rng.randrange(w - c + 1)
            px = px[:, y:y + c, x:x + c]
        if self.rng.random() < 0.5:
            px = px.flip(2)
        px = torch.rot90(px, self.rng.randrange(4), dims=(1, 2))
        return px

    def batch(self, n):
        return torch.stack([self.one() for _ in range(n)]).contiguous()

    def _periods(self, px, c):
        """(ny, nx) repeats of a tile that make one c x c period within the scale jitter, nearly isotropic."""
        h, w = px.shape[1:]
        return [(ny, nx) for ny in (1, 2, 3, 4) for nx in (1, 2, 3, 4)
                if 0.5 <= c / (ny * h) <= 1.25 and 0.5 <= c / (nx * w) <= 1.25
                and abs(math.log(ny * h / (nx * w))) < 0.2]

    def plan_periods(self, sizes):
        """Give every tileable source the smallest period size in `sizes` that holds a whole period of it.

        With one 64 x 64 size only tiles of about 26-128 px had a period: 132 of the 208 training textures, 37 %
        of the sampling weight, small and darker than the rest (their crops score 163 against held-out crops,
        plain crops 103), so the tileable mode learned that subset alone.  Larger sizes take the larger tiles at
        their own scale.  A tile too large for the largest size is left out: shrinking it further (to 0.25)
        made crops that scored far from real ones (250 against held-out crops with the 64 size alone)."""
        self.period_sizes = sorted(sizes)
        self.period_size = []
        for px, tileable in self.items:
            fits = [c for c in self.period_sizes if tileable and self._periods(px, c)]
            self.period_size.append(fits[0] if fits else None)
        self.size_weights = {c: self.weights * torch.tensor([s == c for s in self.period_size],
                                                            dtype=self.weights.dtype) for c in self.period_sizes}

    def periodic(self, c):
        """A c x c crop that is one whole period of a tileable source (the tile repeated ny x nx times, resampled),
        so that with circular padding every pixel sees its true neighbours, as in a tileable run."""
        idx = torch.multinomial(self.size_weights[c], 1, generator=self.gen).item()
        px = self.items[idx][0]
        ny, nx = self.rng.choice(self._periods(px, c))
        # Resample the middle of a 3 x 3 tiling: output pixels c apart then read source points exactly one
        # period apart, so the crop stays periodic (resampling the period alone would clamp at its edges).
        big = px.repeat(1, 3 * ny, 3 * nx)[None]
        px = F.interpolate(big, size=(3 * c, 3 * c), mode="bilinear", antialias=True, align_corners=False)[0]
        px = px[:, c:2 * c, c:2 * c].roll((self.rng.randrange(c), self.rng.randrange(c)), dims=(1, 2))
        if self.rng.random() < 0.5:
            px = px.flip(2)
        return torch.rot90(px, self.rng.randrange(4), dims=(1, 2))

    def periodic_batch(self, n, sizes):
        """n crops of sizes[0]^2 pixels' worth: a size is drawn by the sampling weight of the sources it holds,
        and n (sizes[0] / c)^2 periods of c x c are taken, so that every step costs the same."""
        if getattr(self, "period_sizes", None) != sorted(sizes):
            self.plan_periods(sizes)
        mass = torch.stack([self.size_weights[c].sum() for c in self.period_sizes])
        c = self.period_sizes[torch.multinomial(mass, 1, generator=self.gen).item()]
        k = max(1, round(n * (self.period_sizes[0] / c) ** 2))
        return torch.stack([self.periodic(c) for _ in range(k)]).contiguous()


def eps_from_output(out, xt, abar, prediction):
    """The network's output as a prediction of eps.  v-prediction (Salimans & Ho 2022) outputs
    v = sqrt(abar) eps - sqrt(1 - abar) x_0, so eps = sqrt(1 - abar) x_t + sqrt(abar) v."""
    if prediction == "epsilon":
        return out
    abar = torch.as_tensor(abar, dtype=out.dtype)
    return (1 - abar).sqrt() * xt + abar.sqrt() * out


@torch.no_grad()
def sample(model, sched, n, size, steps, gen, prediction="epsilon"):
    """Respaced DDPM ancestral sampling (diffusers 'leading' spacing, sigma^2 = beta~), for evaluation."""
    ac = sched.alphas_cumprod
    ts = [i * (sched.T // steps) for i in range(steps)][::-1]
    x = torch.randn(n, 3, size, size, generator=gen)
    for i, t in enumerate(ts):
        prev = ts[i + 1] if i + 1 < len(ts) else -1
        a_t, a_p = ac[t].item(), (ac[prev].item() if prev >= 0 else 1.0)
        beta = 1 - a_t / a_p
        eps = eps_from_output(model(x, torch.full((n,), t)), x, a_t, prediction)
        x0 = ((x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)).clamp(-1, 1)
        mean = (math.sqrt(a_p) * beta / (1 - a_t)) * x0 + (math.sqrt(1 - beta) * (1 - a_p) / (1 - a_t)) * x
        if t > 0:
            var = (1 - a_p) / (1 - a_t) * beta
            mean = mean + math.sqrt(var) * torch.randn(x.shape, generator=gen)
        x = mean
    return x


def save_atomic(obj, path):
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)


def save_snapshot(model, run, step):
    """The weights themselves at this step: one EMA decay fixed before training cannot be chosen by measurement,
    an average of snapshots can (Karras et al. 2024, "post-hoc EMA")."""
    from safetensors.torch import save_file
    folder = os.path.join(run, "snapshots")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"step_{step:06d}.safetensors")
    save_file({k: v.detach().float().contiguous() for k, v in model.state_dict().items()}, path + ".tmp",
              metadata={"step": str(step)})
    os.replace(path + ".tmp", path)


def bf16_is_faster(model, size=48, n=8, repeats=2):
    """Time one forward and backward pass of a small batch with and without bfloat16 autocast and say whether
    autocast is faster here.  It was about 3x faster on the first session's machine; on an AMD EPYC
    with AVX2 and no AVX-512 (thirtieth session) a training step took about 30 s with it and 1.9 s without."""
    m = UNet2DModel(model.config)
    m.load_state_dict(model.state_dict())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, model.config["in_channels"], size, size, generator=gen)
    t = torch.randint(0, 1000, (n,), generator=gen)

    def seconds(bf16):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = m(x, t)
            out.float().pow(2).mean().backward()
            best = min(best, time.perf_counter() - t0)
        return best

    f32, bf16 = seconds(False), seconds(True)
    print(f"one pass of {n} crops of {size}x{size}: float32 {f32:.2f} s, bfloat16 autocast {bf16:.2f} s")
    return bf16 < f32


def ddpm_loss(model, x0, ac, weight, a):
    """Algorithm 1's loss on one batch: (the weighted loss to minimise, plain L_simple for the log)."""
    t = torch.randint(0, len(ac), (len(x0),))
    eps = torch.randn_like(x0)
    at = ac[t][:, None, None, None]
    xt = at.sqrt() * x0 + (1 - at).sqrt() * eps                      # q_sample, eq. (4)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(a.bf16)):
        pred = model(xt, t)
    if a.prediction == "v_prediction":
        # v's error is eps's divided by sqrt(abar): the same minimiser, but at high t, where x_t is nearly all
        # noise, the network predicts x_0 itself instead of a tiny deviation of eps from x_t that the sampler
        # then magnifies by sqrt((1 - abar) / abar), up to 150 at t = 999
        target = at.sqrt() * eps - (1 - at).sqrt() * x0
        v_err = pred.float() - target
        per_sample = v_err.pow(2).mean(dim=(1, 2, 3))
        err = at.sqrt() * v_err                                          # eps_theta - eps, for the log
        simple = err.pow(2).mean().item()
    else:
        err = pred.float() - eps
        per_sample = err.pow(2).mean(dim=(1, 2, 3))                       # L_simple per sample
        simple = per_sample.mean().item()
    if a.dc_weight > 0:
        # the image mean of the error counted like a whole image of it (Parseval: the mean is one of
        # HW frequencies); the same minimiser E[eps | x_t], another weighting of the errors
        dc = err.mean(dim=(2, 3)).pow(2).mean(dim=1) * err.shape[2] * err.shape[3]
        per_sample = per_sample + a.dc_weight * (1 - ac[t]) * dc
    return (weight[t] * per_sample).mean(), simple


def run_prediction(state):
    """What a run's checkpoint trains the network to output (checkpoints from before --prediction trained eps)."""
    return state["args"].get("prediction") or "epsilon"


def resolve_prediction(a, state):
    """The run's prediction type: a resumed run keeps the one it was trained with (a checkpoint from before the
    option trained eps), a run started --init-from a model takes that model's unless --prediction says otherwise,
    and a new run predicts eps unless told."""
    if state:
        own = run_prediction(state)
        if a.prediction and a.prediction != own:
            sys.exit(f"{a.run} trains {own}; resume it without --prediction, or start a new run with "
                     f"--init-from to switch")
        return own
    if a.prediction:
        return a.prediction
    if a.init_from:
        return prediction_type(a.init_from)
    return "epsilon"


def check_gradients(model, size=32, n=4):
    """Compare the parameter gradient of one small batch, float32 with the CPU's fast kernels, against float64
    on PyTorch's plain kernels.  Session 11's machine (AMD EPYC, AVX-512) got 96 % of conv_out's backward-data
    pass wrong from oneDNN without any error; unet_ref.Conv works around that case, and this refuses to train
    on a machine where some other case is wrong.  Returns the relative L2 error."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, model.config["in_channels"], size, size, generator=gen)
    t = torch.randint(0, 1000, (n,), generator=gen)
    target = torch.randn(n, model.config["out_channels"], size, size, generator=gen)

    def grads(dtype):
        m = UNet2DModel(model.config).to(dtype)
        m.load_state_dict(model.state_dict())
        F.mse_loss(m(x.to(dtype), t), target.to(dtype)).backward()
        return torch.cat([p.grad.double().flatten() for p in m.parameters()])

    fast = grads(torch.float32)
    mkldnn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        ref = grads(torch.float64)
    finally:
        torch.backends.mkldnn.enabled = mkldnn
    return ((fast - ref).norm() / ref.norm()).item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="textures.pt (tools/fetch_textures.sh)")
    ap.add_argument("--run", required=True, help="run folder (checkpoints, log, EMA export)")
    ap.add_argument("--config", help="UNet2DModel config JSON (default: the shipped texture architecture)")
    ap.add_argument("--steps", type=int, default=200000, help="total optimiser steps")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--crop", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--cooldown", type=int, default=0,
                    help="decay the learning rate linearly to 0 over the last N steps before --steps (0 = "
                    "constant); copy a run's ckpt.pt into a new run folder to cool a branch down and keep the "
                    "original going")
    ap.add_argument("--min-snr", type=float, default=0.0,
                    help="gamma of Min-SNR weighting (Hang et al. 2023); 0 = the paper's plain L_simple.  The "
                    "first 12k steps used 5: its weight min(SNR, 5)/SNR is ~0.01 at t = 10, and the samples kept "
                    "about twice the real pixel gradient (grain the last steps should remove)")
    ap.add_argument("--dc-weight", type=float, default=0.0,
                    help="lambda of the image-mean term: + lambda (1 - abar_t) HW |mean_hw(eps_theta - eps)|^2 "
                    "per channel.  The mean colour of a sample is set at high t, where x0-hat = (x_t - "
                    "sqrt(1 - abar) eps_theta) / sqrt(abar) magnifies the image mean of eps_theta's error by up to "
                    "150; in L_simple that mean is 1 of HW frequencies and was hardly learned (0 = off).  Tried at 0.05 "
                    "for 1,603 steps from step 20,000: the image-mean error at high t got worse (MODEL_CARD.md)")
    ap.add_argument("--prediction", choices=("epsilon", "v_prediction"),
                    help="what the network outputs: eps (the paper's, default for a new run) or v = sqrt(abar) eps - "
                    "sqrt(1 - abar) x_0 (loss |v - v_theta|^2 = L_simple / abar per sample).  A resumed run keeps "
                    "its own; given with --init-from an eps model, it switches the objective (fine-tuning)")
    ap.add_argument("--circular-fraction", type=float, default=0.0,
                    help="share of steps trained with circular padding on periodic crops of tileable sources "
                         "(--circular-batch crops of --circular-crop pixels), as tileable runs pad (default 0)")
    ap.add_argument("--mix-batches", action="store_true",
                    help="every step takes a plain batch and a circular one, their losses weighted by "
                    "--circular-fraction, instead of one kind chosen at random (twice the work per step)")
    ap.add_argument("--circular-crop", default="64",
                    help="period sizes of circular crops, comma-separated (e.g. 64,128,256): each tileable source "
                    "trains at the smallest that holds a whole period of it (default 64: tiles of 26-128 px only)")
    ap.add_argument("--circular-batch", type=int, default=16, help="circular crops per step at the smallest size")
    ap.add_argument("--ema", type=float, default=0.9995,
                    help="EMA decay per step, capped by the warm-up (1+n)/(10+n), n being the run's step count "
                    "(not the steps since --reset-ema): with 0.9999 the cap rules until step 89,990, e.g. 0.9997 "
                    "at step 30,000, a memory 1/(1-decay) of about 3,300 steps")
    ap.add_argument("--reset-ema", action="store_true",
                    help="on resuming, restart the EMA from the current weights: after a change of recipe, so that "
                    "the EMA averages the new trajectory only (at step 20,000 the EMA of the old one was grainier "
                    "than the weights themselves); give it once, then resume without it")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", type=int, default=-1,
                    help="1: bfloat16 autocast for the forward pass (weights, optimiser and EMA stay float32), "
                    "2-3x faster on CPUs with AMX or AVX512-BF16 and many times slower on others; 0: float32; "
                    "-1 (default): whichever a timed pass at start-up finds faster")
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--snapshot-every", type=int, default=0, metavar="N",
                    help="also keep the weights themselves every N steps (F32, RUN/snapshots/step_NNNNNN.safetensors), "
                    "so that tools/posthoc_ema.py can average them afterwards with any EMA length (0 = off)")
    ap.add_argument("--eval-every", type=int, default=2000)
    ap.add_argument("--hours", type=float, default=0, help="stop after this many hours of this process (0 = no limit)")
    ap.add_argument("--export", help="write the EMA weights (F16) as a diffusers folder here and exit")
    ap.add_argument("--export-weights", choices=("ema", "model"), default="ema",
                    help="with --export: the EMA (what ships) or the optimiser's current weights (for study)")
    ap.add_argument("--init-from", help="start a new run from a shipped model folder (its EMA weights and "
                    "training_state.json): how a fresh machine continues the committed model")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    os.makedirs(a.run, exist_ok=True)
    ckpt_path = os.path.join(a.run, "ckpt.pt")
    state = torch.load(ckpt_path, weights_only=False) if os.path.exists(ckpt_path) else None

    init = None
    if not state and a.init_from:
        init = load_model_dir(a.init_from)
        cfg = {k: v for k, v in init.config.items() if not k.startswith("_")}
    else:
        cfg = state["config"] if state else (json.load(open(a.config)) if a.config else DEFAULT_MODEL)
    model = UNet2DModel(cfg)
    ema = UNet2DModel(cfg)
    if state:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["model"] if a.reset_ema else state["ema"])
    else:
        if init is not None:
            model.load_state_dict(init.state_dict())
        ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    a.prediction = resolve_prediction(a, state)
    scheduler = {"variance_type": "fixed_large", "prediction_type": a.prediction}
    nparam = sum(p.numel() for p in model.parameters())

    if a.export:
        if not state:
            sys.exit(f"no checkpoint in {a.run}")
        save_model_dir(ema if a.export_weights == "ema" else model, a.export, dtype=torch.float16,
                       scheduler=scheduler)
        with open(os.path.join(a.export, "training_state.json"), "w") as f:
            json.dump({"step": state["step"], "hours": round(state["elapsed"] / 3600, 3), "weights": a.export_weights,
                       "data": os.path.basename(state["args"].get("data") or ""),
                       "recipe": {k: v for k, v in state["args"].items()
                                  if k in ("batch", "crop", "lr", "warmup", "cooldown", "min_snr", "dc_weight",
                                           "circular_fraction", "mix_batches", "circular_crop", "circular_batch",
                                           "ema", "seed", "prediction")}},
                      f, indent=2)
            f.write("\n")
        what = "EMA" if a.export_weights == "ema" else "weights"
        print(f"exported {what} of step {state['step']} ({nparam / 1e6:.2f} M parameters) to {a.export}")
        return

    grad_err = check_gradients(model)
    if not grad_err < 1e-4:
        sys.exit(f"this machine's float32 gradients differ from a float64 reference by {grad_err:.2g} (relative L2): "
                 "training here would learn from wrong gradients")
    print(f"gradient check: float32 against float64, relative error {grad_err:.1e}")
    if a.bf16 < 0:
        a.bf16 = int(bf16_is_faster(model))
    print(f"bfloat16 autocast {'on' if a.bf16 else 'off'}")

    data = torch.load(a.data, weights_only=False)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    step, elapsed = 0, 0.0
    if state:
        opt.load_state_dict(state["opt"])
        step, elapsed = state["step"], state["elapsed"]
        torch.set_rng_state(state["torch_rng"])
    else:
        torch.manual_seed(a.seed)
        if init is not None and os.path.exists(os.path.join(a.init_from, "training_state.json")):
            ts = json.load(open(os.path.join(a.init_from, "training_state.json")))
            step, elapsed = ts["step"], ts["hours"] * 3600   # Adam restarts, with its warm-up
            torch.manual_seed(a.seed + step)
    warm_from = step if (init is not None) else 0
    textures = Textures(data["train"], a.crop, seed=a.seed + step)
    circular_sizes = [int(v) for v in str(a.circular_crop).split(",")]
    sched = Schedule()
    ac = sched.alphas_cumprod.float()
    snr = ac / (1 - ac)
    # Min-SNR's weight of eps's error; v's loss is already L_simple / abar = L_simple (snr + 1) / snr
    v = a.prediction == "v_prediction"
    weight = (snr.clamp(max=a.min_snr) / (snr + 1 if v else snr)) if a.min_snr > 0 else torch.ones_like(snr)
    # Held-out crops measure generalisation; the 25 held-out textures differ from the
    # 208 training ones (256 training crops score 109 against them, 256 other held-out
    # crops 16: MODEL_CARD.md), so a fixed set of training crops tracks convergence too.
    real = texture_metrics.real_crops(data["heldout"], 256, 64, seed=1)
    real_train = texture_metrics.real_crops(data["train"], 256, 64, seed=1)

    log_path = os.path.join(a.run, "log.tsv")
    if not os.path.exists(log_path):
        open(log_path, "w").write("step\thours\tloss\tswd_heldout\tswd_train\n")
    if state and a.reset_ema:
        print(f"EMA restarted from the weights of step {step}", flush=True)
    print(f"model {nparam / 1e6:.2f} M parameters, {len(data['train'])} training textures, "
          f"resuming at step {step}" if state else f"model {nparam / 1e6:.2f} M parameters, fresh run")

    # `kill PID` (or Ctrl-C) finishes the step in progress, writes the checkpoint and exits, so that stopping a
    # run at the end of a session loses nothing.
    stop_requested = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop_requested.append(signum))

    t_start = t_prev = time.time()
    t_ckpt = time.time()
    loss_avg, rate_t, rate_s = None, time.time(), step
    skipped = 0
    while step < a.steps:
        # Each part is (circular?, share of the loss).  --mix-batches puts both kinds in every step, so that
        # Adam's latest moves do not lean toward whichever kind of batch came last.
        if a.mix_batches:
            parts = [(False, 1 - a.circular_fraction), (True, a.circular_fraction)]
        else:
            parts = [(a.circular_fraction > 0 and textures.rng.random() < a.circular_fraction, 1.0)]
        opt.zero_grad(set_to_none=True)
        simple = 0.0
        for circular, share in parts:
            x0 = textures.periodic_batch(a.circular_batch, circular_sizes) if circular else textures.batch(a.batch)
            Conv.circular = circular
            loss, part_simple = ddpm_loss(model, x0, ac, weight, a)
            (share * loss).backward()
            Conv.circular = False
            simple += share * part_simple                                   # logged: comparable across recipes
        lr = a.lr * min(1.0, (step + 1 - warm_from) / a.warmup)
        if a.cooldown > 0:
            lr *= min(1.0, (a.steps - step) / a.cooldown)
        for g in opt.param_groups:
            g["lr"] = lr
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if not torch.isfinite(grad_norm):   # a NaN step would poison the weights, Adam and the EMA for good
            skipped += 1
            print(f"step {step}: non-finite gradient, step skipped ({skipped} in a row)", flush=True)
            if skipped >= 10:
                sys.exit("10 non-finite gradients in a row: stopping (the last checkpoint is intact)")
            continue
        skipped = 0
        opt.step()
        step += 1
        # The warm-up cap keeps an early EMA from clinging to random weights.  It counts the run's steps, so a
        # long run's EMA is shorter than --ema says: 1 - 9 / (10 + step) until the cap passes --ema.
        decay = min(a.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        loss_avg = simple if loss_avg is None else 0.99 * loss_avg + 0.01 * simple
        if a.snapshot_every and step % a.snapshot_every == 0:
            save_snapshot(model, a.run, step)

        # Training time counts optimiser steps only: a step that took over a minute was the process being
        # paused (kill -STOP while a benchmark or a measurement runs), and the evaluation below is not training.
        now = time.time()
        elapsed += min(now - t_prev, 60.0)
        t_prev = now
        if step % 50 == 0:
            rate = (step - rate_s) / (now - rate_t)
            eta_h = (a.steps - step) / max(rate, 1e-9) / 3600
            hours = elapsed / 3600
            print(f"step {step}  L_simple {loss_avg:.4f}  {rate:.2f} steps/s  trained {hours:.2f} h  "
                  f"ETA {eta_h:.1f} h", flush=True)
            rate_t, rate_s = now, step
        swd_val = ""
        if a.eval_every and step % a.eval_every == 0:
            ema.eval()
            fake = sample(ema, sched, 64, 64, 50, torch.Generator().manual_seed(123), a.prediction)
            swd_val = f"{texture_metrics.swd(real, fake)[0]:.0f}"
            swd_train = f"{texture_metrics.swd(real_train, fake)[0]:.0f}"
            print(f"step {step}  SWD {swd_val} vs held-out, {swd_train} vs training crops "
                  f"(EMA, 64 samples 64x64, 50 steps, posterior variance)", flush=True)
            swd_val = f"{swd_val}\t{swd_train}"
            t_prev = time.time()
        if step % 50 == 0 or swd_val:
            hours = elapsed / 3600
            open(log_path, "a").write(f"{step}\t{hours:.3f}\t{loss_avg:.5f}\t{swd_val}\n")
        stop = bool(stop_requested) or (a.hours and (time.time() - t_start) > a.hours * 3600)
        if time.time() - t_ckpt > a.ckpt_minutes * 60 or step == a.steps or stop:
            save_atomic({"config": cfg, "model": model.state_dict(), "ema": ema.state_dict(),
                         "opt": opt.state_dict(), "step": step, "elapsed": elapsed,
                         "torch_rng": torch.get_rng_state(), "args": vars(a)}, ckpt_path)
            save_model_dir(ema, os.path.join(a.run, "ema"), scheduler=scheduler)
            t_ckpt = time.time()
            if stop:
                break
    print(f"stopped at step {step}")


if __name__ == "__main__":
    main()
