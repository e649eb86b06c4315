#!/usr/bin/env python3
"""Test vectors for the C U-Net engine (meson suite 'engine').

Writes small random-weight diffusers model folders and, next to their weights,
vectors.safetensors holding an input batch and the reference outputs:

    x             [N, C, H, W]  float32 input
    t             [N]           timesteps (one per image)
    eps           [N, C, H, W]  UNet2DModel(x, t), zero padding
    eps_circular  [N, C, H, W]  the same with circular padding (when made)
    flops         [1]           2 x multiply-adds of the batch (convolutions,
                                linears, attention products), counted by hooks
    x_small, t_small, eps_small, eps_small_circular
                                the same at the smallest size (the lowest level
                                1 pixel high), when the case asks for it

The reference is tools/unet_ref.py run in float64 on the weights exactly as
stored (F32, F16 or BF16 rounding included); the outputs are stored as F32.
Every norm and bias parameter is perturbed so none of them is trivial.

    tools/gimp3-env --python python3 tools/make_engine_vectors.py [OUTDIR]

OUTDIR defaults to tests/engine/data.  Deterministic: same seed, same files.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unet_ref  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

# Each case: the config.json written to disk (keys omitted on purpose where
# the case tests diffusers' defaults), weight dtype, attention spelling, image
# size, timesteps, whether a circular-padding output is made, scheduler.
CASES = {
    # google/ddpm-cifar10-32 style (spec 1.2): one attention head,
    # downsample_padding 0, [sin | cos], freq_shift 1, eps 1e-6; legacy
    # query/key/value/proj_attn names, as in the 2022 checkpoints.
    "google": dict(
        config={
            "_class_name": "UNet2DModel",
            "_diffusers_version": "0.0.4",
            "act_fn": "silu",
            "attention_head_dim": None,
            "block_out_channels": [8, 16, 16],
            "center_input_sample": False,
            "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
            "downsample_padding": 0,
            "flip_sin_to_cos": False,
            "freq_shift": 1,
            "in_channels": 3,
            "layers_per_block": 1,
            "mid_block_scale_factor": 1,
            "norm_eps": 1e-06,
            "norm_num_groups": 4,
            "out_channels": 3,
            "sample_size": 16,
            "time_embedding_type": "positional",
            "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
        },
        dtype=torch.float32, legacy=True, size=(16, 24), t=[10.0, 999.0], circular=True,
        scheduler={"variance_type": "fixed_large"}),
    # Only what must differ from diffusers' UNet2DModel defaults: missing keys
    # mean flip_sin_to_cos True, freq_shift 0, attention_head_dim 8 (two heads
    # at 16 channels), norm_eps 1e-5, downsample_padding 1, add_attention
    # True, layers_per_block 2 and the default block types.  No
    # scheduler_config.json: the DDPM defaults apply.
    "defaults": dict(
        config={"block_out_channels": [8, 8, 16, 16], "norm_num_groups": 4},
        dtype=torch.bfloat16, legacy=False, size=(24, 16), t=[0.0, 500.0], circular=True,
        scheduler=None),
    # The shipped texture model's shape (tools/train.py DEFAULT_MODEL), smaller:
    # no attention anywhere, F16 weights, a non-square size, both paddings.
    "texture": dict(
        config={
            "sample_size": 16,
            "in_channels": 3,
            "out_channels": 3,
            "block_out_channels": [8, 16, 16, 24],
            "down_block_types": ["DownBlock2D"] * 4,
            "up_block_types": ["UpBlock2D"] * 4,
            "layers_per_block": 1,
            "add_attention": False,
            "attention_head_dim": None,
            "norm_num_groups": 8,
            "norm_eps": 1e-6,
            "flip_sin_to_cos": False,
            "freq_shift": 1,
            "downsample_padding": 1,
        },
        dtype=torch.float16, legacy=False, size=(16, 40), t=[37.0, 912.0], circular=True,
        scheduler={"variance_type": "fixed_small"}, small=(8, 24)),
}


def perturb(model, gen):
    """Every 1-D parameter (GroupNorm gains and shifts, biases) moved off its init:
    gains 1 + 0.2 n, shifts and biases 0.2 n.  Matrices keep PyTorch's random init."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                base = 1.0 if "norm" in name and name.endswith(".weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=gen))


def count_flops(model, x, t):
    """2 x MACs of every Conv2d / Linear call plus Q K^T and P V of attention."""
    total = [0]

    def conv_hook(mod, inp, out):
        total[0] += 2 * out.numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]

    def linear_hook(mod, inp, out):
        total[0] += 2 * out.numel() * mod.in_features

    def attn_hook(mod, inp, out):
        n, c, h, w = inp[0].shape
        total[0] += 2 * 2 * n * (h * w) ** 2 * c

    hooks = []
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            hooks.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, torch.nn.Linear):
            hooks.append(mod.register_forward_hook(linear_hook))
        elif isinstance(mod, unet_ref.Attention):
            hooks.append(mod.register_forward_hook(attn_hook))
    with torch.no_grad():
        model(x, t)
    for h in hooks:
        h.remove()
    return float(total[0])


def make(name, case, outdir, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = unet_ref.UNet2DModel(case["config"])
    perturb(model, gen)
    path = os.path.join(outdir, name)
    unet_ref.save_model_dir(model, path, dtype=case["dtype"], scheduler=case["scheduler"] or {},
                            legacy_attention_names=case["legacy"])
    # config.json exactly as the case gives it (defaults left implicit)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(case["config"], f, indent=2, sort_keys=True)
        f.write("\n")
    if case["scheduler"] is None:
        os.remove(os.path.join(path, "scheduler_config.json"))

    # The reference: the weights as stored, in float64.
    ref = unet_ref.load_model_dir(path, dtype=torch.float64).eval()
    H, W = case["size"]
    N = len(case["t"])
    x = torch.randn((N, ref.config["in_channels"], H, W), generator=gen, dtype=torch.float32)
    t = torch.tensor(case["t"], dtype=torch.float32)
    out = {"x": x, "t": t}
    modes = [("eps", False)] + ([("eps_circular", True)] if case["circular"] else [])
    with torch.no_grad():
        for key, circular in modes:
            unet_ref.Conv.circular = circular
            out[key] = ref(x.double(), t).float().contiguous()
    unet_ref.Conv.circular = False
    out["flops"] = torch.tensor([count_flops(ref, x.double(), t)], dtype=torch.float64)
    if case.get("small"):
        hs, ws = case["small"]
        xs = torch.randn((1, ref.config["in_channels"], hs, ws), generator=gen, dtype=torch.float32)
        ts = torch.tensor([499.0])
        out["x_small"], out["t_small"] = xs, ts
        with torch.no_grad():
            for key, circular in modes:
                unet_ref.Conv.circular = circular
                out[key.replace("eps", "eps_small")] = ref(xs.double(), ts).float().contiguous()
        unet_ref.Conv.circular = False
    save_file(out, os.path.join(path, "vectors.safetensors"))
    size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
    print(f"{path}: {sum(p.numel() for p in ref.parameters())} parameters, {str(case['dtype'])[6:]}, "
          f"N={N} {H}x{W}, max|eps| {out['eps'].abs().max():.3f}, {size / 1024:.0f} KB")


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "engine", "data")
    torch.set_num_threads(1)
    for i, (name, case) in enumerate(CASES.items()):
        make(name, case, outdir, 1234 + i)


if __name__ == "__main__":
    main()
