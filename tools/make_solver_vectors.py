#!/usr/bin/env python3
"""make_solver_vectors.py: reference numbers for the few-step samplers of the C core.

The core's DDIM and DPM-Solver++(2M) steps (core/solvers.c) follow diffusers'
DDIMScheduler.step and DPMSolverMultistepScheduler.step.  diffusers is not
installed in the development environment, so this tool re-implements the
parts of diffusers/schedulers/scheduling_ddim.py and
scheduling_dpmsolver_multistep.py the core mirrors, in PyTorch float32, one
tensor operation per line in diffusers' order (0-d float32 scalars, the same
pow / sqrt / log / exp kernels), written from their source and the papers:

  DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models"):
    x^_0   = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)                 eq. (12)
    sigma  = eta sqrt((1 - abar_p)/(1 - abar_t)) sqrt(1 - abar_t/abar_p)  eq. (16)
    x_prev = sqrt(abar_p) x^_0 + sqrt(1 - abar_p - sigma^2) eps + sigma z eq. (12)
  DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided
  Sampling of Diffusion Probabilistic Models", eq. (10) and Algorithm 2):
    alpha = sqrt(abar), sigma = sqrt(1 - abar), lambda = log(alpha/sigma), h = lambda_p - lambda_s0
    first order:  x_prev = sigma_p/sigma_s0 x - alpha_p (e^-h - 1) D0
    second order: x_prev = sigma_p/sigma_s0 x - alpha_p (e^-h - 1) D0 - 1/2 alpha_p (e^-h - 1) D1,
                  D0 = x^_0(s0), D1 = (x^_0(s0) - x^_0(s1)) h / (lambda_s0 - lambda_s1)

Settings mirrored: DDIMScheduler with set_alpha_to_one=True,
use_clipped_model_output=True (eps re-derived from the clipped x^_0, as GLIDE
does; diffusers' default False keeps the model's eps, which with clip_sample
drains colour and contrast over many steps), clip_sample and
clip_sample_range from the model's config; DPMSolverMultistepScheduler with
solver_order=2, algorithm_type="dpmsolver++", solver_type="midpoint",
lower_order_final=True, euler_at_final=False, final_sigmas_type="zero" (its
defaults), and -- for models with clip_sample -- thresholding=True with
sample_max_value=1.0, which is exactly clipping x^_0 to [-1, 1] (the
percentile is clamped to [1, 1]).

Timesteps: the core runs all samplers on DDPM's respaced chain (leading
spacing for generate, its own evenly rounded chain for refine).  DDIM's
set_timesteps uses leading spacing and prev_t = t - T // K, which is that
chain's next entry; for the refine chain prev_t is passed explicitly.
DPMSolverMultistepScheduler defaults to "linspace" spacing (without t = 0);
here it is given the core's chain as custom timesteps
(set_timesteps(timesteps=[...])), which diffusers supports, so its sigmas are
exactly those of the chain's timesteps followed by sigma = 0.

Output (tests/core/data/solver_vectors.safetensors by default), F32 tensors:
  linear.betas                                   torch's linspace betas (T = 1000)
  input.sample, input.model_output, input.noise  N_STEP values each
  ddim.<i>.prev_sample, ddim.<i>.pred_original_sample   one pair per DDIM step case
  chain.x, chain.g, chain.z                      [N_CHAIN], [KMAX, N_CHAIN], [KMAX, N_CHAIN]
  chain.<j>.states                               [K + 1, N_CHAIN]: x at each timestep, then the result
and in __metadata__ the JSON strings "ddim_cases" and "chains".  In a chain
the "model" is eps_i = 0.8 x_i + 0.3 g_i (float32), so each step's input
depends on the previous step's output; DDIM with eta > 0 adds sigma z_i.

Usage (from the repository root):
    tools/gimp3-env --python python3 tools/make_solver_vectors.py [OUT]
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_scheduler_vectors import spaced_timesteps  # noqa: E402

N_STEP = 128   # values per single-step input
N_CHAIN = 64   # values per chain state
KMAX = 20      # longest chain
OUT = "tests/core/data/solver_vectors.safetensors"


def linear_betas(T=1000, beta_start=0.0001, beta_end=0.02):
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float32)


def refine_timesteps(t_start, K):
    """The core's refine chain (ddpm_refine_timesteps): round(t_start (K-1-i)/(K-1)), halves up."""
    K = min(K, t_start + 1)
    if K == 1:
        return [t_start]
    d = K - 1
    return [(2 * t_start * (K - 1 - i) + d) // (2 * d) for i in range(K)]


class DDIMSchedulerRef:
    """DDIMScheduler's step (diffusers scheduling_ddim.py), float32."""

    def __init__(self, betas, clip_sample=True, clip_sample_range=1.0, prediction_type="epsilon",
                 set_alpha_to_one=True):
        self.T = len(betas)
        self.betas = betas
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]
        self.clip_sample = clip_sample
        self.clip_sample_range = clip_sample_range
        self.prediction_type = prediction_type
        self.num_inference_steps = None

    def set_timesteps(self, num_inference_steps):
        self.num_inference_steps = num_inference_steps
        self.timesteps = torch.from_numpy(spaced_timesteps("leading", self.T, num_inference_steps))

    def _get_variance(self, timestep, prev_timestep):
        alpha_prod_t = self.alphas_cumprod[timestep]
        alpha_prod_t_prev = self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else self.final_alpha_cumprod
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        variance = (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)
        return variance

    def step(self, model_output, timestep, sample, eta=0.0, variance_noise=None, prev_timestep=None):
        # 1. previous step value: diffusers' t - T // K, unless given (custom chain)
        if prev_timestep is None:
            prev_timestep = timestep - self.T // self.num_inference_steps
        # 2. alphas, betas
        alpha_prod_t = self.alphas_cumprod[timestep]
        alpha_prod_t_prev = self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else self.final_alpha_cumprod
        beta_prod_t = 1 - alpha_prod_t
        # 3. predicted x_0 and eps, eq. (12)
        if self.prediction_type == "epsilon":
            pred_original_sample = (sample - beta_prod_t ** (0.5) * model_output) / alpha_prod_t ** (0.5)
            pred_epsilon = model_output
        elif self.prediction_type == "sample":
            pred_original_sample = model_output
            pred_epsilon = (sample - alpha_prod_t ** (0.5) * pred_original_sample) / beta_prod_t ** (0.5)
        elif self.prediction_type == "v_prediction":
            pred_original_sample = (alpha_prod_t**0.5) * sample - (beta_prod_t**0.5) * model_output
            pred_epsilon = (alpha_prod_t**0.5) * model_output + (beta_prod_t**0.5) * sample
        else:
            raise ValueError(self.prediction_type)
        # 4. clip "predicted x_0"
        if self.clip_sample:
            pred_original_sample = pred_original_sample.clamp(-self.clip_sample_range, self.clip_sample_range)
        # 5. sigma_t(eta), eq. (16)
        variance = self._get_variance(timestep, prev_timestep)
        std_dev_t = eta * variance ** (0.5)
        # use_clipped_model_output=True: eps re-derived from the clipped x^_0
        pred_epsilon = (sample - alpha_prod_t ** (0.5) * pred_original_sample) / beta_prod_t ** (0.5)
        # 6. "direction pointing to x_t", eq. (12)
        pred_sample_direction = (1 - alpha_prod_t_prev - std_dev_t**2) ** (0.5) * pred_epsilon
        # 7. x_{t-1} without noise, eq. (12)
        prev_sample = alpha_prod_t_prev ** (0.5) * pred_original_sample + pred_sample_direction
        if eta > 0:
            variance = std_dev_t * variance_noise
            prev_sample = prev_sample + variance
        return prev_sample, pred_original_sample


class DPMSolverMultistepRef:
    """DPMSolverMultistepScheduler (diffusers scheduling_dpmsolver_multistep.py), float32, with
    solver_order=2, dpmsolver++, midpoint, lower_order_final, final_sigmas_type="zero"."""

    def __init__(self, betas, prediction_type="epsilon", thresholding=False, sample_max_value=1.0,
                 dynamic_thresholding_ratio=0.995, solver_order=2, lower_order_final=True, euler_at_final=False,
                 final_sigmas_type="zero"):
        self.T = len(betas)
        self.betas = betas
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.prediction_type = prediction_type
        self.thresholding = thresholding
        self.sample_max_value = sample_max_value
        self.dynamic_thresholding_ratio = dynamic_thresholding_ratio
        self.solver_order = solver_order
        self.lower_order_final = lower_order_final
        self.euler_at_final = euler_at_final
        self.final_sigmas_type = final_sigmas_type

    def set_timesteps(self, timesteps):
        """The custom-timesteps branch of set_timesteps."""
        timesteps = np.array(timesteps).astype(np.int64)
        sigmas = np.array((((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5).numpy())
        sigmas = np.interp(timesteps, np.arange(0, len(sigmas)), sigmas)
        if self.final_sigmas_type == "sigma_min":
            sigma_last = ((1 - self.alphas_cumprod[0]) / self.alphas_cumprod[0]) ** 0.5
        else:
            sigma_last = 0
        sigmas = np.concatenate([sigmas, [sigma_last]]).astype(np.float32)
        self.sigmas = torch.from_numpy(sigmas)
        self.timesteps = torch.from_numpy(timesteps).to(dtype=torch.int64)
        self.num_inference_steps = len(timesteps)
        self.model_outputs = [None] * self.solver_order
        self.lower_order_nums = 0
        self._step_index = None

    def _threshold_sample(self, sample):
        batch_size = 1
        shape = sample.shape
        sample = sample.reshape(batch_size, -1)
        abs_sample = sample.abs()
        s = torch.quantile(abs_sample, self.dynamic_thresholding_ratio, dim=1)
        s = torch.clamp(s, min=1, max=self.sample_max_value)
        s = s.unsqueeze(1)
        sample = torch.clamp(sample, -s, s) / s
        return sample.reshape(shape)

    def _sigma_to_alpha_sigma_t(self, sigma):
        alpha_t = 1 / ((sigma**2 + 1) ** 0.5)
        sigma_t = sigma * alpha_t
        return alpha_t, sigma_t

    def convert_model_output(self, model_output, sample):
        sigma = self.sigmas[self._step_index]
        alpha_t, sigma_t = self._sigma_to_alpha_sigma_t(sigma)
        if self.prediction_type == "epsilon":
            x0_pred = (sample - sigma_t * model_output) / alpha_t
        elif self.prediction_type == "sample":
            x0_pred = model_output
        elif self.prediction_type == "v_prediction":
            x0_pred = alpha_t * sample - sigma_t * model_output
        else:
            raise ValueError(self.prediction_type)
        if self.thresholding:
            x0_pred = self._threshold_sample(x0_pred)
        return x0_pred

    def dpm_solver_first_order_update(self, model_output, sample):
        sigma_t, sigma_s = self.sigmas[self._step_index + 1], self.sigmas[self._step_index]
        alpha_t, sigma_t = self._sigma_to_alpha_sigma_t(sigma_t)
        alpha_s, sigma_s = self._sigma_to_alpha_sigma_t(sigma_s)
        lambda_t = torch.log(alpha_t) - torch.log(sigma_t)
        lambda_s = torch.log(alpha_s) - torch.log(sigma_s)
        h = lambda_t - lambda_s
        x_t = (sigma_t / sigma_s) * sample - (alpha_t * (torch.exp(-h) - 1.0)) * model_output
        return x_t

    def multistep_dpm_solver_second_order_update(self, model_output_list, sample):
        sigma_t, sigma_s0, sigma_s1 = (self.sigmas[self._step_index + 1], self.sigmas[self._step_index],
                                       self.sigmas[self._step_index - 1])
        alpha_t, sigma_t = self._sigma_to_alpha_sigma_t(sigma_t)
        alpha_s0, sigma_s0 = self._sigma_to_alpha_sigma_t(sigma_s0)
        alpha_s1, sigma_s1 = self._sigma_to_alpha_sigma_t(sigma_s1)
        lambda_t = torch.log(alpha_t) - torch.log(sigma_t)
        lambda_s0 = torch.log(alpha_s0) - torch.log(sigma_s0)
        lambda_s1 = torch.log(alpha_s1) - torch.log(sigma_s1)
        m0, m1 = model_output_list[-1], model_output_list[-2]
        h, h_0 = lambda_t - lambda_s0, lambda_s0 - lambda_s1
        r0 = h_0 / h
        D0, D1 = m0, (1.0 / r0) * (m0 - m1)
        # solver_type "midpoint", algorithm_type "dpmsolver++"
        x_t = ((sigma_t / sigma_s0) * sample - (alpha_t * (torch.exp(-h) - 1.0)) * D0
               - 0.5 * (alpha_t * (torch.exp(-h) - 1.0)) * D1)
        return x_t

    def step(self, model_output, timestep, sample):
        if self._step_index is None:
            self._step_index = int((self.timesteps == timestep).nonzero()[0].item())
        lower_order_final = (self._step_index == len(self.timesteps) - 1) and (
            self.euler_at_final or (self.lower_order_final and len(self.timesteps) < 15)
            or self.final_sigmas_type == "zero")
        model_output = self.convert_model_output(model_output, sample)
        for i in range(self.solver_order - 1):
            self.model_outputs[i] = self.model_outputs[i + 1]
        self.model_outputs[-1] = model_output
        sample = sample.to(torch.float32)
        if self.solver_order == 1 or self.lower_order_nums < 1 or lower_order_final:
            prev_sample = self.dpm_solver_first_order_update(model_output, sample)
        else:
            prev_sample = self.multistep_dpm_solver_second_order_update(self.model_outputs, sample)
        if self.lower_order_nums < self.solver_order:
            self.lower_order_nums += 1
        self._step_index += 1
        return prev_sample


def chain_model(x, g):
    """The chains' stand-in for the network: eps = 0.8 x + 0.3 g, float32."""
    return 0.8 * x + 0.3 * g


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else OUT
    betas = linear_betas()
    tensors = {"linear.betas": betas}

    # Single-step inputs: x_t wide enough that x^_0 is clipped at both ends.
    gen = torch.Generator().manual_seed(20240612)
    sample = 1.5 * torch.randn(N_STEP, generator=gen, dtype=torch.float32)
    model_output = torch.randn(N_STEP, generator=gen, dtype=torch.float32)
    noise = torch.randn(N_STEP, generator=gen, dtype=torch.float32)
    tensors["input.sample"] = sample
    tensors["input.model_output"] = model_output
    tensors["input.noise"] = noise

    def positions(K):
        return sorted(set([0, 1, K // 2, K - 2, K - 1]))

    # DDIM single steps: (eta, prediction, clip, clip range, K, chain positions)
    groups = []
    for eta in (0.0, 0.5, 1.0):
        for K in (1000, 50):
            groups.append((eta, "epsilon", True, 1.0, K, positions(K)))
    groups += [
        (0.0, "epsilon", False, 1.0, 50, [0, 25, 49]),
        (1.0, "epsilon", False, 1.0, 50, [0, 25, 48, 49]),
        (1.0, "epsilon", True, 2.0, 50, [0, 25, 49]),
        (0.5, "v_prediction", True, 1.0, 50, [0, 25, 49]),
        (0.0, "sample", True, 1.0, 50, [1, 49]),
        (1.0, "epsilon", True, 1.0, 7, [0, 5, 6]),
        (0.25, "epsilon", True, 1.0, 10, [0, 8, 9]),
    ]
    ddim_cases = []
    for eta, prediction, clip, clip_range, K, where in groups:
        sched = DDIMSchedulerRef(betas, clip_sample=clip, clip_sample_range=clip_range, prediction_type=prediction)
        sched.set_timesteps(K)
        for pos in where:
            t = int(sched.timesteps[pos])
            prev_t = t - sched.T // K
            chain_next = int(sched.timesteps[pos + 1]) if pos + 1 < K else -1
            assert prev_t == chain_next or (prev_t < 0 and chain_next == -1), (t, prev_t, chain_next)
            prev_sample, pred_x0 = sched.step(model_output, t, sample, eta=eta, variance_noise=noise)
            i = len(ddim_cases)
            tensors[f"ddim.{i}.prev_sample"] = prev_sample
            tensors[f"ddim.{i}.pred_original_sample"] = pred_x0
            ddim_cases.append({"eta": eta, "prediction_type": prediction, "clip_sample": clip,
                               "clip_sample_range": clip_range, "steps": K, "t": t,
                               "prev_t": max(prev_t, -1)})

    # Chains: x -> model -> step, K steps, every state kept.
    gen = torch.Generator().manual_seed(20240613)
    chain_x = torch.randn(N_CHAIN, generator=gen, dtype=torch.float32)
    chain_g = torch.randn(KMAX, N_CHAIN, generator=gen, dtype=torch.float32)
    chain_z = torch.randn(KMAX, N_CHAIN, generator=gen, dtype=torch.float32)
    tensors["chain.x"] = chain_x
    tensors["chain.g"] = chain_g
    tensors["chain.z"] = chain_z

    def leading(K):
        return [int(t) for t in spaced_timesteps("leading", 1000, K)]

    def linspace(K):
        return [int(t) for t in spaced_timesteps("linspace", 1000, K)]

    chain_specs = [
        # (sampler, eta, prediction, clip, timesteps, label)
        ("ddim", 0.0, "epsilon", True, leading(10), "leading K=10"),
        ("ddim", 1.0, "epsilon", True, leading(10), "leading K=10"),
        ("ddim", 0.5, "epsilon", False, leading(10), "leading K=10"),
        ("ddim", 0.0, "epsilon", False, leading(20), "leading K=20"),
        ("ddim", 0.25, "epsilon", True, refine_timesteps(399, 8), "refine t0=400 K=8"),
        ("dpm-solver++", 0.0, "epsilon", True, leading(10), "leading K=10"),
        ("dpm-solver++", 0.0, "epsilon", False, leading(10), "leading K=10"),
        ("dpm-solver++", 0.0, "epsilon", True, leading(20), "leading K=20"),
        ("dpm-solver++", 0.0, "epsilon", False, leading(20), "leading K=20"),
        ("dpm-solver++", 0.0, "epsilon", True, leading(3), "leading K=3"),
        ("dpm-solver++", 0.0, "epsilon", True, leading(1), "leading K=1"),
        ("dpm-solver++", 0.0, "epsilon", True, linspace(10), "linspace K=10"),
        ("dpm-solver++", 0.0, "epsilon", True, refine_timesteps(399, 8), "refine t0=400 K=8"),
        ("dpm-solver++", 0.0, "v_prediction", False, refine_timesteps(599, 12), "refine t0=600 K=12"),
        ("dpm-solver++", 0.0, "sample", True, leading(10), "leading K=10"),
    ]
    chains = []
    for j, (sampler, eta, prediction, clip, ts, label) in enumerate(chain_specs):
        K = len(ts)
        assert K <= KMAX
        x = chain_x.clone()
        states = [x]
        if sampler == "ddim":
            sched = DDIMSchedulerRef(betas, clip_sample=clip, prediction_type=prediction)
            sched.num_inference_steps = K
            for i, t in enumerate(ts):
                prev_t = ts[i + 1] if i + 1 < K else -1
                x, _ = sched.step(chain_model(x, chain_g[i]), t, x, eta=eta, variance_noise=chain_z[i],
                                  prev_timestep=prev_t)
                states.append(x)
        else:
            sched = DPMSolverMultistepRef(betas, prediction_type=prediction, thresholding=clip, sample_max_value=1.0)
            sched.set_timesteps(timesteps=ts)
            for i, t in enumerate(ts):
                x = sched.step(chain_model(x, chain_g[i]), t, x)
                states.append(x)
        tensors[f"chain.{j}.states"] = torch.stack(states)
        chains.append({"sampler": sampler, "eta": eta, "prediction_type": prediction, "clip_sample": clip,
                       "clip_sample_range": 1.0, "timesteps": ts, "label": label})

    tensors = {k: v.contiguous().to(torch.float32) for k, v in tensors.items()}
    metadata = {"generator": "tools/make_solver_vectors.py", "torch": torch.__version__, "numpy": np.__version__,
                "ddim_cases": json.dumps(ddim_cases, separators=(",", ":")),
                "chains": json.dumps(chains, separators=(",", ":"))}
    save_file(tensors, out_path, metadata=metadata)
    size = os.path.getsize(out_path)
    print(f"{out_path}: {len(ddim_cases)} DDIM step cases, {len(chains)} chains, {len(tensors)} tensors, "
          f"{size // 1024} KiB")


if __name__ == "__main__":
    main()
