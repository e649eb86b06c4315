/* sampler_internal.h: internals of the diffusion math (schedule.c, noise.c,
 * sampler.c, solvers.c) that the core tests need to reach; not part of the
 * public API and not installed.  Everything else goes through ddpm.h. */
#ifndef DDPM_SAMPLER_INTERNAL_H
#define DDPM_SAMPLER_INTERNAL_H

#include "ddpm.h"

/* The Philox-4x32-10 bijection (Salmon et al. 2011): 4 x 32-bit counter and
 * 2 x 32-bit key in, 4 x 32-bit random words out (noise.c).  Exposed for the
 * known-answer test. */
void ddpm_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);

/* ddpm_schedule_init with the T betas given instead of computed from
 * c->beta_schedule (schedule.c).  Tests use it to load PyTorch's own
 * linspace betas, whose last bit depends on the PyTorch build (spec 5.2). */
ddpm_status ddpm_schedule_init_from_betas(ddpm_schedule *s, const ddpm_scheduler_config *c,
                                          const float *betas, char *err, size_t errlen);

/* The refine chain (sampler.c): min(K, t_start + 1) timesteps from t_start
 * down to 0, evenly spaced and rounded (see the comment in sampler.c).
 * Returns the number written, or -1 if K < 1 or t_start < 0. */
int ddpm_refine_timesteps(int t_start, int K, int *out);

/* x^_0 as every sampler predicts it from the model's output at x_t (eq. 15
 * for eps; x_0 and v predictions as diffusers has them), clipped to
 * [-range, range] when the model says clip_sample (torch.clamp: a NaN stays
 * NaN).  One element; sqrt_abar = sqrt(abar_t), sqrt_one_minus_abar =
 * sqrt(1 - abar_t). */
static inline float ddpm_predicted_x0(const ddpm_scheduler_config *c, float x_t, float out, float sqrt_abar,
                                      float sqrt_one_minus_abar)
{
    float x0;
    switch (c->prediction_type) {
    case DDPM_PREDICT_SAMPLE:
        x0 = out;
        break;
    case DDPM_PREDICT_V: /* v = sqrt(abar) eps - sqrt(1 - abar) x_0 */
        x0 = sqrt_abar * x_t - sqrt_one_minus_abar * out;
        break;
    default: /* DDPM_PREDICT_EPSILON */
        x0 = (x_t - sqrt_one_minus_abar * out) / sqrt_abar;
        break;
    }
    if (c->clip_sample) {
        float lo = -(float)c->clip_sample_range, hi = (float)c->clip_sample_range;
        x0 = x0 < lo ? lo : (x0 > hi ? hi : x0);
    }
    return x0;
}

/* The few-step samplers' single steps (solvers.c).  Like ddpm_p_sample they
 * take every per-step quantity from abar at t and prev_t (-1 = the end of
 * the chain, abar = 1), check their arguments and do nothing on bad ones,
 * and allow x_prev to alias x_t.  The loops in sampler.c call them; the
 * tests compare them with diffusers' arithmetic. */

/* DDIM (Song et al. 2021, eqs. 12, 16), diffusers' DDIMScheduler.step:
 * model_output is eps (or x_0 / v per prediction_type), z the noise (read
 * only when eta > 0 and prev_t >= 0). */
void ddpm_ddim_step(const ddpm_schedule *s, int t, int prev_t, float eta, const float *x_t,
                    const float *model_output, const float *z, float *x_prev, size_t n);

/* DPM-Solver++'s data prediction at t (diffusers' convert_model_output):
 * x^_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) (or x_0 / v per
 * prediction_type), clipped as configured.  x0 may alias model_output. */
void ddpm_dpm_solver_x0(const ddpm_schedule *s, int t, const float *x_t, const float *model_output, float *x0,
                        size_t n);

/* One DPM-Solver++(2M) step t -> prev_t from x_t, x0 = x^_0 at t and, for
 * the second-order update, x0_last = x^_0 at t_last, the chain's previous
 * timestep (t_last > t).  t_last = -1 or x0_last = NULL: first order (DDIM
 * with eta = 0).  prev_t = -1: x_prev = x0 (the update's limit at sigma = 0). */
void ddpm_dpm_solver_step(const ddpm_schedule *s, int t_last, int t, int prev_t, const float *x_t,
                          const float *x0, const float *x0_last, float *x_prev, size_t n);

#endif /* DDPM_SAMPLER_INTERNAL_H */
