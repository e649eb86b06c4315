#!/usr/bin/env python3
"""make_scheduler_vectors.py: reference numbers for the core's scheduler tests.

The C core's schedule and reverse step must reproduce diffusers'
DDPMScheduler bit for bit (spec: /work/shared/research/diffusers-unet2d-spec.md
§5).  diffusers is not installed in the development environment, so this
tool re-implements the parts of `diffusers/schedulers/scheduling_ddpm.py`
the core mirrors -- `__init__`'s arrays, `set_timesteps`,
`previous_timestep`, `_get_variance`, `step` and `add_noise` -- in PyTorch
float32, one tensor operation per line in diffusers' order (torch.linspace,
torch.cumprod, 0-d float32 scalars, separate mul/add kernels), and NumPy for
the integer timestep chains, exactly as diffusers computes them.

Output: one small safetensors file (tests/core/data/scheduler_vectors.safetensors
by default) with F32 tensors

    linear.betas, linear.alphas_cumprod, linear.variance_fixed_small,
    scaled_linear.betas, squaredcos_cap_v2.betas,
    input.sample, input.model_output, input.noise        (N values each)
    step.<i>.prev_sample, step.<i>.pred_original_sample  (one pair per case)
    add_noise.<t>                                         (q_sample of input.sample)

and in the header's __metadata__ two JSON strings: "cases" (one object per
step case: variance_type, prediction_type, clip_sample, clip_sample_range,
spacing, steps, t, prev_t) and "timesteps" (set_timesteps outputs for several
spacings, T and K).  No test runs Python: the file is committed.

Usage (from the repository root):
    tools/gimp3-env --python python3 tools/make_scheduler_vectors.py [OUT]
"""
import json
import math
import sys

import numpy as np
import torch
from safetensors.torch import save_file

N = 128  # values per input vector
OUT = "tests/core/data/scheduler_vectors.safetensors"


def betas_for_alpha_bar(num_diffusion_timesteps, max_beta=0.999):
    """diffusers' cosine schedule ("squaredcos_cap_v2"), in Python doubles."""

    def alpha_bar(time_step):
        return math.cos((time_step + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = []
    for i in range(num_diffusion_timesteps):
        t1 = i / num_diffusion_timesteps
        t2 = (i + 1) / num_diffusion_timesteps
        betas.append(min(1 - alpha_bar(t2) / alpha_bar(t1), max_beta))
    return torch.tensor(betas, dtype=torch.float32)


class DDPMSchedulerRef:
    """DDPMScheduler's arithmetic (diffusers scheduling_ddpm.py), float32."""

    def __init__(self, num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                 variance_type="fixed_small", clip_sample=True, clip_sample_range=1.0,
                 prediction_type="epsilon", timestep_spacing="leading", steps_offset=0):
        self.T = num_train_timesteps
        self.variance_type = variance_type
        self.clip_sample = clip_sample
        self.clip_sample_range = clip_sample_range
        self.prediction_type = prediction_type
        self.timestep_spacing = timestep_spacing
        self.steps_offset = steps_offset
        if beta_schedule == "linear":
            self.betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
        elif beta_schedule == "scaled_linear":
            self.betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps,
                                        dtype=torch.float32) ** 2
        elif beta_schedule == "squaredcos_cap_v2":
            self.betas = betas_for_alpha_bar(num_train_timesteps)
        else:
            raise ValueError(beta_schedule)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.one = torch.tensor(1.0)
        self.num_inference_steps = None
        self.timesteps = torch.from_numpy(np.arange(0, num_train_timesteps)[::-1].copy())

    def set_timesteps(self, num_inference_steps):
        if num_inference_steps > self.T:
            raise ValueError("num_inference_steps > num_train_timesteps")
        self.num_inference_steps = num_inference_steps
        self.timesteps = torch.from_numpy(spaced_timesteps(self.timestep_spacing, self.T, num_inference_steps,
                                                           self.steps_offset))

    def previous_timestep(self, timestep):
        if self.num_inference_steps:
            index = (self.timesteps == timestep).nonzero(as_tuple=True)[0][0]
            if index == self.timesteps.shape[0] - 1:
                return torch.tensor(-1)
            return self.timesteps[index + 1]
        return timestep - 1

    def _get_variance(self, t):
        prev_t = self.previous_timestep(t)
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        current_beta_t = 1 - alpha_prod_t / alpha_prod_t_prev
        variance = (1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * current_beta_t
        variance = torch.clamp(variance, min=1e-20)
        if self.variance_type == "fixed_small":
            pass
        elif self.variance_type == "fixed_large":
            variance = current_beta_t
        else:
            raise ValueError(self.variance_type)
        return variance

    def step(self, model_output, t, sample, variance_noise):
        prev_t = self.previous_timestep(t)
        # 1. alphas, betas
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        current_alpha_t = alpha_prod_t / alpha_prod_t_prev
        current_beta_t = 1 - current_alpha_t
        # 2. predicted x_0
        if self.prediction_type == "epsilon":
            pred_original_sample = (sample - beta_prod_t ** (0.5) * model_output) / alpha_prod_t ** (0.5)
        elif self.prediction_type == "sample":
            pred_original_sample = model_output
        elif self.prediction_type == "v_prediction":
            pred_original_sample = (alpha_prod_t**0.5) * sample - (beta_prod_t**0.5) * model_output
        else:
            raise ValueError(self.prediction_type)
        # 3. clip
        if self.clip_sample:
            pred_original_sample = pred_original_sample.clamp(-self.clip_sample_range, self.clip_sample_range)
        # 4. coefficients of eq. (7)
        pred_original_sample_coeff = (alpha_prod_t_prev ** (0.5) * current_beta_t) / beta_prod_t
        current_sample_coeff = current_alpha_t ** (0.5) * beta_prod_t_prev / beta_prod_t
        # 5. posterior mean
        pred_prev_sample = pred_original_sample_coeff * pred_original_sample + current_sample_coeff * sample
        # 6. noise
        variance = 0
        if t > 0:
            variance = (self._get_variance(t) ** 0.5) * variance_noise
        pred_prev_sample = pred_prev_sample + variance
        return pred_prev_sample, pred_original_sample

    def add_noise(self, original_samples, noise, t):
        sqrt_alpha_prod = self.alphas_cumprod[t] ** 0.5
        sqrt_one_minus_alpha_prod = (1 - self.alphas_cumprod[t]) ** 0.5
        return sqrt_alpha_prod * original_samples + sqrt_one_minus_alpha_prod * noise


def spaced_timesteps(spacing, T, K, steps_offset=0):
    """set_timesteps' NumPy code, unchanged (int64, descending)."""
    if spacing == "linspace":
        ts = np.linspace(0, T - 1, K).round()[::-1].copy().astype(np.int64)
    elif spacing == "leading":
        step_ratio = T // K
        ts = (np.arange(0, K) * step_ratio).round()[::-1].copy().astype(np.int64)
        ts += steps_offset
    elif spacing == "trailing":
        step_ratio = T / K
        ts = np.round(np.arange(T, 0, -step_ratio)).astype(np.int64)
        ts -= 1
    else:
        raise ValueError(spacing)
    return ts


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else OUT
    tensors = {}

    linear = DDPMSchedulerRef()
    tensors["linear.betas"] = linear.betas
    tensors["linear.alphas_cumprod"] = linear.alphas_cumprod
    tensors["linear.variance_fixed_small"] = torch.stack([linear._get_variance(t) for t in range(linear.T)])
    tensors["scaled_linear.betas"] = DDPMSchedulerRef(beta_start=0.00085, beta_end=0.012,
                                                      beta_schedule="scaled_linear").betas
    tensors["squaredcos_cap_v2.betas"] = DDPMSchedulerRef(beta_schedule="squaredcos_cap_v2").betas

    # Inputs: x_t wide enough that x^_0 is clipped at both ends of the chain.
    g = torch.Generator().manual_seed(20240611)
    sample = 1.5 * torch.randn(N, generator=g, dtype=torch.float32)
    model_output = torch.randn(N, generator=g, dtype=torch.float32)
    noise = torch.randn(N, generator=g, dtype=torch.float32)
    tensors["input.sample"] = sample
    tensors["input.model_output"] = model_output
    tensors["input.noise"] = noise

    # Step cases: (variance, prediction, clip, clip range, spacing, K, which chain positions)
    def positions(K):
        return sorted(set([0, 1, K // 2, K - 3, K - 2, K - 1]))

    groups = []
    for variance in ("fixed_small", "fixed_large"):
        for K in (1000, 50):
            groups.append((variance, "epsilon", True, 1.0, "leading", K, positions(K)))
    groups += [
        ("fixed_small", "epsilon", False, 1.0, "leading", 50, [0, 24, 48, 49]),
        ("fixed_large", "epsilon", False, 1.0, "leading", 1000, [0, 999]),
        ("fixed_small", "epsilon", True, 2.0, "leading", 50, [0, 25, 49]),
        ("fixed_large", "v_prediction", True, 1.0, "leading", 50, [0, 25, 49]),
        ("fixed_small", "sample", True, 1.0, "leading", 50, [1, 49]),
        ("fixed_small", "epsilon", True, 1.0, "leading", 7, [0, 5, 6]),
        ("fixed_large", "epsilon", True, 1.0, "leading", 7, [0, 6]),
        ("fixed_small", "epsilon", True, 1.0, "trailing", 50, [0, 1, 49]),
        ("fixed_large", "epsilon", True, 1.0, "linspace", 50, [0, 48, 49]),
    ]
    cases = []
    for variance, prediction, clip, clip_range, spacing, K, where in groups:
        sched = DDPMSchedulerRef(variance_type=variance, prediction_type=prediction, clip_sample=clip,
                                 clip_sample_range=clip_range, timestep_spacing=spacing)
        sched.set_timesteps(K)
        for pos in where:
            t = int(sched.timesteps[pos])
            prev_t = int(sched.previous_timestep(t))
            prev_sample, pred_x0 = sched.step(model_output, t, sample, noise)
            i = len(cases)
            tensors[f"step.{i}.prev_sample"] = prev_sample
            tensors[f"step.{i}.pred_original_sample"] = pred_x0
            cases.append({"variance_type": variance, "prediction_type": prediction, "clip_sample": clip,
                          "clip_sample_range": clip_range, "spacing": spacing, "steps": K, "t": t,
                          "prev_t": prev_t})

    for t in (0, 1, 499, 998, 999):
        tensors[f"add_noise.{t}"] = linear.add_noise(sample, noise, t)

    # Timestep chains.  Some (trailing, T=1000, K=61) come out with K+1
    # entries, the last -1; the C core keeps the first K.
    timesteps = []
    chains = [(1000, K) for K in (1, 2, 3, 7, 10, 50, 61, 100, 103, 333, 400, 999)]
    chains += [(777, K) for K in (1, 3, 7, 50, 100, 776)]
    for T, K in chains:
        for spacing in ("leading", "linspace", "trailing"):
            timesteps.append({"T": T, "spacing": spacing, "steps": K, "steps_offset": 0,
                              "timesteps": spaced_timesteps(spacing, T, K).tolist()})
    timesteps.append({"T": 1000, "spacing": "leading", "steps": 1000, "steps_offset": 0,
                      "timesteps": spaced_timesteps("leading", 1000, 1000).tolist()})
    for K in (1, 50, 999, 1000):
        timesteps.append({"T": 1000, "spacing": "leading", "steps": K, "steps_offset": 1,
                          "timesteps": spaced_timesteps("leading", 1000, K, 1).tolist()})

    tensors = {k: v.contiguous().to(torch.float32) for k, v in tensors.items()}
    metadata = {"generator": "tools/make_scheduler_vectors.py", "torch": torch.__version__,
                "numpy": np.__version__, "cases": json.dumps(cases, separators=(",", ":")),
                "timesteps": json.dumps(timesteps, separators=(",", ":"))}
    save_file(tensors, out_path, metadata=metadata)
    print(f"{out_path}: {len(cases)} step cases, {len(timesteps)} timestep chains, {len(tensors)} tensors")


if __name__ == "__main__":
    main()
