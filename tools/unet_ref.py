"""PyTorch reference of diffusers' UNet2DModel, written from
shared/research/diffusers-unet2d-spec.md (sections 2 and 3).

Module and parameter names are diffusers' own, so a state_dict saved from this
module is a diffusers checkpoint and the C engine loads it.  Used only by the
development tools (training, test vectors, benchmarks); the product never runs
Python.

    model = UNet2DModel(config_dict)
    eps = model(x, t)                    # x [N,C,H,W] in [-1,1], t [N]
    save_model_dir(model, "weights/x", dtype=torch.float16)
"""
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

# Defaults of diffusers' UNet2DModel.__init__ (spec 1.4): a missing key means these.
CONFIG_DEFAULTS = {
    "_class_name": "UNet2DModel",
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896],
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "add_attention": True,
}

SCHEDULER_DEFAULTS = {
    "_class_name": "DDPMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
    "variance_type": "fixed_small",
    "clip_sample": True,
    "clip_sample_range": 1.0,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "steps_offset": 0,
}


def full_config(cfg):
    out = dict(CONFIG_DEFAULTS)
    out.update(cfg)
    return out


class Conv(nn.Conv2d):
    """Conv2d whose padding mode (zeros or circular) is chosen at run time.

    Textures are generated seamless by padding every convolution circularly.
    A model trained with zero padding only tolerates it with enough sampler
    noise (MODEL_CARD.md, "Sampler settings"); train.py --circular-fraction
    trains with it.  The parameters are those of nn.Conv2d, so names stay
    diffusers' (conv.weight, conv.bias)."""

    circular = False

    def __init__(self, cin, cout, k, stride=1, padding=0):
        super().__init__(cin, cout, k, stride=stride, padding=0)
        self.pad = padding

    def forward(self, x, pad=None):
        p = self.pad if pad is None else pad  # (left, right, top, bottom)
        if isinstance(p, int):
            p = (p, p, p, p)
        if any(p):
            x = F.pad(x, p, mode="circular" if Conv.circular else "constant")
        w, b, n = self.weight, self.bias, self.weight.shape[0]
        if n < 16:
            # oneDNN's backward-data pass for a convolution with 3 output channels (conv_out) is wrong on an AMD
            # EPYC with AVX-512: 96 % of the input gradient off against a float64 reference, and sometimes NaN
            # (float32 and bf16 alike; widened to 8 still NaN in 3 of 12 bf16 batches).  Widened with zero
            # filters to 16 outputs, then cut back, it is exact (2e-7) and was finite on 72 of 72 batches.
            w = torch.cat([w, w.new_zeros((16 - n,) + w.shape[1:])])
            b = None if b is None else torch.cat([b, b.new_zeros(16 - n)])
        return F.conv2d(x, w, b, self.stride)[:, :n]

class ResnetBlock2D(nn.Module):
    """spec 3.4: norm1-SiLU-conv1 + time, norm2-SiLU-conv2, plus shortcut."""

    def __init__(self, cin, cout, temb, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = Conv(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = Conv(cout, cout, 3, padding=1)
        self.conv_shortcut = Conv(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Attention(nn.Module):
    """spec 3.7: GroupNorm, q/k/v over the H*W tokens, heads of head_dim channels."""

    def __init__(self, c, head_dim, groups, eps):
        super().__init__()
        self.heads = c // head_dim
        self.group_norm = nn.GroupNorm(groups, c, eps=eps)
        self.to_q = nn.Linear(c, c)
        self.to_k = nn.Linear(c, c)
        self.to_v = nn.Linear(c, c)
        self.to_out = nn.ModuleList([nn.Linear(c, c)])

    def forward(self, x):
        n, c, hgt, wid = x.shape
        h = self.group_norm(x).reshape(n, c, hgt * wid).transpose(1, 2)   # [N, HW, C]
        d = c // self.heads

        def split(t):
            return t.reshape(n, hgt * wid, self.heads, d).transpose(1, 2)  # [N, heads, HW, d]

        q, k, v = split(self.to_q(h)), split(self.to_k(h)), split(self.to_v(h))
        s = (q @ k.transpose(-1, -2)) * (d ** -0.5)
        o = s.softmax(-1) @ v                                             # [N, heads, HW, d]
        o = o.transpose(1, 2).reshape(n, hgt * wid, c)
        o = self.to_out[0](o)
        return o.transpose(1, 2).reshape(n, c, hgt, wid) + x


class Downsample2D(nn.Module):
    def __init__(self, c, padding):
        super().__init__()
        self.padding = padding
        self.conv = Conv(c, c, 3, stride=2, padding=padding)

    def forward(self, x):
        # downsample_padding 0: pad right and bottom by one (TF 'SAME'), spec 3.5
        return self.conv(x, pad=(0, 1, 0, 1) if self.padding == 0 else None)


class Upsample2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = Conv(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Block(nn.Module):
    """DownBlock2D / AttnDownBlock2D / UpBlock2D / AttnUpBlock2D (spec 3.8)."""

    def __init__(self):
        super().__init__()
        self.resnets = nn.ModuleList()
        self.attentions = None


class UNet2DModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        cfg = self.config = full_config(config)
        C = cfg["block_out_channels"]
        n, L = len(C), cfg["layers_per_block"]
        G, eps = cfg["norm_num_groups"], cfg["norm_eps"]
        T = 4 * C[0]
        hd = cfg["attention_head_dim"]
        for key, want in (("time_embedding_type", "positional"), ("act_fn", "silu"),
                          ("center_input_sample", False), ("mid_block_scale_factor", 1)):
            if cfg[key] != want:
                raise ValueError(f"unsupported {key}={cfg[key]!r}")

        self.conv_in = Conv(cfg["in_channels"], C[0], 3, padding=1)
        self.time_embedding = nn.Module()
        self.time_embedding.linear_1 = nn.Linear(C[0], T)
        self.time_embedding.linear_2 = nn.Linear(T, T)

        self.down_blocks = nn.ModuleList()
        out_ch = C[0]
        for i, kind in enumerate(cfg["down_block_types"]):
            in_ch, out_ch = out_ch, C[i]
            b = Block()
            for j in range(L):
                b.resnets.append(ResnetBlock2D(in_ch if j == 0 else out_ch, out_ch, T, G, eps))
            if kind == "AttnDownBlock2D":
                b.attentions = nn.ModuleList(Attention(out_ch, hd or out_ch, G, eps) for _ in range(L))
            elif kind != "DownBlock2D":
                raise ValueError(f"unsupported down block {kind}")
            if i != n - 1:
                b.downsamplers = nn.ModuleList([Downsample2D(out_ch, cfg["downsample_padding"])])
            self.down_blocks.append(b)

        self.mid_block = Block()
        self.mid_block.resnets.append(ResnetBlock2D(C[-1], C[-1], T, G, eps))
        if cfg["add_attention"]:
            self.mid_block.attentions = nn.ModuleList([Attention(C[-1], hd or C[-1], G, eps)])
        self.mid_block.resnets.append(ResnetBlock2D(C[-1], C[-1], T, G, eps))

        self.up_blocks = nn.ModuleList()
        R = list(reversed(C))
        out_ch = R[0]
        for i, kind in enumerate(cfg["up_block_types"]):
            prev, out_ch, skip_in = out_ch, R[i], R[min(i + 1, n - 1)]
            b = Block()
            for j in range(L + 1):
                res_skip = skip_in if j == L else out_ch
                res_in = prev if j == 0 else out_ch
                b.resnets.append(ResnetBlock2D(res_in + res_skip, out_ch, T, G, eps))
            if kind == "AttnUpBlock2D":
                b.attentions = nn.ModuleList(Attention(out_ch, hd or out_ch, G, eps) for _ in range(L + 1))
            elif kind != "UpBlock2D":
                raise ValueError(f"unsupported up block {kind}")
            if i != n - 1:
                b.upsamplers = nn.ModuleList([Upsample2D(out_ch)])
            self.up_blocks.append(b)

        self.conv_norm_out = nn.GroupNorm(G, C[0], eps=eps)
        self.conv_out = Conv(C[0], cfg["out_channels"], 3, padding=1)

    def time_proj(self, t):
        """Sinusoidal embedding, spec 3.2 (f32, exponent rounded as diffusers does)."""
        dim = self.config["block_out_channels"][0]
        half = dim // 2
        exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device)
        exponent = exponent / (half - self.config["freq_shift"])
        arg = t.float()[:, None] * torch.exp(exponent)[None, :]
        emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)
        if self.config["flip_sin_to_cos"]:
            emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
        return emb

    def forward(self, x, t):
        if not torch.is_tensor(t):
            t = torch.tensor([t])
        t = t.reshape(-1) * torch.ones(x.shape[0], dtype=t.dtype, device=x.device)
        emb = self.time_embedding.linear_2(F.silu(self.time_embedding.linear_1(self.time_proj(t).to(x.dtype))))

        h = self.conv_in(x)
        stack = [h]
        for b in self.down_blocks:
            for j, r in enumerate(b.resnets):
                h = r(h, emb)
                if b.attentions is not None:
                    h = b.attentions[j](h)
                stack.append(h)
            if hasattr(b, "downsamplers"):
                h = b.downsamplers[0](h)
                stack.append(h)

        h = self.mid_block.resnets[0](h, emb)
        if self.mid_block.attentions is not None:
            h = self.mid_block.attentions[0](h)
        h = self.mid_block.resnets[1](h, emb)

        for b in self.up_blocks:
            for j, r in enumerate(b.resnets):
                h = r(torch.cat([h, stack.pop()], dim=1), emb)   # current first, skip second
                if b.attentions is not None:
                    h = b.attentions[j](h)
            if hasattr(b, "upsamplers"):
                h = b.upsamplers[0](h)
        assert not stack
        return self.conv_out(F.silu(self.conv_norm_out(h)))


LEGACY_NAMES = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}


def save_model_dir(model, path, dtype=torch.float32, scheduler=None, legacy_attention_names=False,
                   state_dict=None):
    """Write a diffusers model folder: config.json, safetensors weights, scheduler_config.json."""
    from safetensors.torch import save_file
    os.makedirs(path, exist_ok=True)
    sd = state_dict if state_dict is not None else model.state_dict()
    tensors = {}
    for k, v in sd.items():
        if legacy_attention_names:
            for new, old in LEGACY_NAMES.items():
                k = k.replace(new, old)
        tensors[k] = v.detach().to(dtype).contiguous()
    save_file(tensors, os.path.join(path, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    cfg = dict(model.config)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    sch = dict(SCHEDULER_DEFAULTS)
    sch.update(scheduler or {})
    with open(os.path.join(path, "scheduler_config.json"), "w") as f:
        json.dump(sch, f, indent=2, sort_keys=True)
        f.write("\n")


def prediction_type(path):
    """What a model folder's network outputs: "epsilon" or "v_prediction" (scheduler_config.json)."""
    with open(os.path.join(path, "scheduler_config.json")) as f:
        return json.load(f).get("prediction_type", SCHEDULER_DEFAULTS["prediction_type"])


def load_model_dir(path, dtype=torch.float32):
    from safetensors.torch import load_file
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    model = UNet2DModel(cfg)
    sd = load_file(os.path.join(path, "diffusion_pytorch_model.safetensors"))
    fixed = {}
    for k, v in sd.items():
        for new, old in LEGACY_NAMES.items():
            k = k.replace(old, new)
        fixed[k] = v.to(dtype)
    model.load_state_dict(fixed)
    return model.to(dtype)
