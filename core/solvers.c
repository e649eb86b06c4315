/* solvers.c: the few-step samplers' single steps, next to DDPM's p_sample
 * (sampler.c): DDIM (Song, Meng & Ermon 2021) and DPM-Solver++(2M) (Lu et
 * al. 2022), and the samplers' names.
 *
 * Both are steps of the same respaced chain as DDPM's: from timestep t to
 * prev_t (the chain's next entry; -1 = the end, where abar = 1), so that the
 * three samplers share timesteps, noise streams and the refine machinery.
 *
 * DDIM is diffusers' DDIMScheduler.step in float32, one operation at a time
 * in its order (like p_sample; the project compiles with -ffp-contract=off),
 * so given the same alphas_cumprod it gives PyTorch's bits.  DPM-Solver++
 * takes logs and exponentials of the schedule; its per-step scalars are
 * computed here in double (more accurate than diffusers' float32 logs), and
 * only the per-pixel arithmetic is float32 in diffusers' order, so it agrees
 * with diffusers to float tolerance, not to the bit
 * (tests/core/test_solver_vectors.c). */
#include "ddpm.h"
#include "sampler_internal.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Names                                                                     */
/* ------------------------------------------------------------------------ */

static const char *const sampler_names[] = {
    [DDPM_SAMPLER_DDPM] = "ddpm",
    [DDPM_SAMPLER_DDIM] = "ddim",
    [DDPM_SAMPLER_DPM_SOLVER_PP] = "dpm-solver++",
};
#define SAMPLER_COUNT ((int)(sizeof sampler_names / sizeof sampler_names[0]))

const char *ddpm_sampler_name(ddpm_sampler s)
{
    int i = (int)s;
    return i >= 0 && i < SAMPLER_COUNT ? sampler_names[i] : NULL;
}

ddpm_status ddpm_sampler_parse(const char *name, ddpm_sampler *out)
{
    if (name == NULL || out == NULL)
        return DDPM_ERR_ARGUMENT;
    for (int i = 0; i < SAMPLER_COUNT; i++)
        if (strcmp(name, sampler_names[i]) == 0) {
            *out = (ddpm_sampler)i;
            return DDPM_OK;
        }
    return DDPM_ERR_ARGUMENT;
}

/* ------------------------------------------------------------------------ */
/* DDIM                                                                      */
/* ------------------------------------------------------------------------ */

/* x_t -> x_prev of DDIM, diffusers' DDIMScheduler.step (scheduling_ddim.py):
 *
 *   x^_0   = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)        eq. (12), "predicted x_0"
 *            clipped to [-range, range] if clip_sample
 *   sigma  = eta sqrt((1 - abar_p)/(1 - abar_t) · (1 - abar_t/abar_p))   eq. (16)
 *   x_prev = sqrt(abar_p) x^_0 + sqrt(1 - abar_p - sigma^2) eps + sigma z   eq. (12)
 *
 * with abar_p = abar[prev_t], or 1 past the end (set_alpha_to_one = True),
 * and x^_0 from any prediction type:
 *   epsilon: x^_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
 *   sample:  x^_0 = the output
 *   v:       x^_0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v
 * The "direction pointing to x_t" then uses the eps that the clipped x^_0
 * implies, eps = (x_t - sqrt(abar_t) x^_0) / sqrt(1 - abar_t), as diffusers
 * does with use_clipped_model_output = True (and GLIDE always).  Its
 * default keeps the model's own eps: where x^_0 is clipped, the two parts
 * of x_prev then disagree, and over many steps the excess goes into the
 * noise direction -- on our texture model, 100 DDIM steps turned every
 * sample grey (per-image colour spread 3-14 levels against 4-43 with 10
 * steps; tools/sampler_curves.py).  So the sample stays consistent with the
 * x^_0 it is built from, and with eta = 1 this is exactly the DDPM
 * posterior (eq. 7) with sigma^2 = beta~, clipped x^_0 included; with
 * eta = 0 it is deterministic.
 * diffusers computes prev_t as t - T // K, the chain's next entry for its
 * "leading" spacing; we take the chain's next entry for every chain. */
void ddpm_ddim_step(const ddpm_schedule *s, int t, int prev_t, float eta, const float *x_t,
                    const float *model_output, const float *z, float *x_prev, size_t n)
{
    if (s == NULL || t < 0 || t >= s->T || prev_t < -1 || prev_t >= t || !(eta >= 0.0f && eta <= 1.0f) ||
        x_t == NULL || model_output == NULL || x_prev == NULL)
        return;
    const ddpm_scheduler_config *c = &s->config;

    float alpha_prod_t = s->alphas_cumprod[t];
    float alpha_prod_t_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t] : 1.0f;
    float beta_prod_t = 1.0f - alpha_prod_t;
    float beta_prod_t_prev = 1.0f - alpha_prod_t_prev;
    float sqrt_alpha_prod_t = sqrtf(alpha_prod_t);
    float sqrt_beta_prod_t = sqrtf(beta_prod_t);

    /* _get_variance, then std_dev_t = eta · variance^0.5 */
    float variance = (beta_prod_t_prev / beta_prod_t) * (1.0f - alpha_prod_t / alpha_prod_t_prev);
    float std_dev_t = eta * sqrtf(variance);
    /* sqrt(1 - abar_p - sigma^2); positive for eta <= 1 (sigma^2 <= beta~ <
     * 1 - abar_p), 0 at the end; the guard only keeps a rounding from
     * turning it into a NaN. */
    float direction = 1.0f - alpha_prod_t_prev - std_dev_t * std_dev_t;
    float coef_eps = sqrtf(direction > 0.0f ? direction : 0.0f);
    float coef_x0 = sqrtf(alpha_prod_t_prev);

    int add_noise = eta > 0.0f && prev_t >= 0 && z != NULL;
    for (size_t i = 0; i < n; i++) {
        float xt = x_t[i];
        float x0 = ddpm_predicted_x0(c, xt, model_output[i], sqrt_alpha_prod_t, sqrt_beta_prod_t);
        float eps = (xt - sqrt_alpha_prod_t * x0) / sqrt_beta_prod_t;
        float pred_sample_direction = coef_eps * eps;
        float prev = coef_x0 * x0 + pred_sample_direction;
        x_prev[i] = add_noise ? prev + std_dev_t * z[i] : prev;
    }
}

/* ------------------------------------------------------------------------ */
/* DPM-Solver++(2M)                                                          */
/* ------------------------------------------------------------------------ */

/* The diffusion ODE in the variables of Lu et al.: x_t = alpha_t x_0 +
 * sigma_t eps with alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t) and
 * the half log-SNR lambda_t = log(alpha_t / sigma_t).  Solved exactly in
 * its linear part, its solution from s to t is (DPM-Solver++ eq. 9)
 *
 *   x_t = sigma_t/sigma_s x_s + sigma_t ∫_{lambda_s}^{lambda_t} e^lambda x^_0(lambda) dlambda,
 *
 * and the solver approximates x^_0 over the step: constant (first order,
 * = DDIM with eta = 0) or linear through this step's and the previous
 * step's x^_0 (second-order multistep, "2M"). */
typedef struct {
    double alpha, sigma, lambda;
} vp_point;

/* abar -> (alpha, sigma, lambda) in double, from the float abar the
 * schedule keeps.  (diffusers goes through sigma_VE = sqrt((1-abar)/abar)
 * and float32 logs; the values are the same to float precision.) */
static vp_point vp_at(const ddpm_schedule *s, int t)
{
    double abar = s->alphas_cumprod[t];
    vp_point p = {sqrt(abar), sqrt(1.0 - abar), 0.0};
    p.lambda = log(p.alpha) - log(p.sigma);
    return p;
}

/* convert_model_output for algorithm_type "dpmsolver++": the solver works on
 * x^_0, which is also where the model's clip_sample applies.  (For range 1,
 * clipping is exactly diffusers' thresholding with sample_max_value = 1:
 * its percentile s is clamped to [1, 1], so it clamps to [-1, 1] and
 * divides by 1; DPM-Solver++ sec. 4 motivates thresholding x^_0.) */
void ddpm_dpm_solver_x0(const ddpm_schedule *s, int t, const float *x_t, const float *model_output, float *x0,
                        size_t n)
{
    if (s == NULL || t < 0 || t >= s->T || x_t == NULL || model_output == NULL || x0 == NULL)
        return;
    const ddpm_scheduler_config *c = &s->config;
    float alpha_t = s->sqrt_alphas_cumprod[t];
    float sigma_t = s->sqrt_one_minus_alphas_cumprod[t];
    for (size_t i = 0; i < n; i++)
        x0[i] = ddpm_predicted_x0(c, x_t[i], model_output[i], alpha_t, sigma_t);
}

/* One step of diffusers' DPMSolverMultistepScheduler (solver_order 2,
 * algorithm_type "dpmsolver++", solver_type "midpoint"), from s0 = t to
 * the target prev_t, with h = lambda_prev - lambda_t > 0:
 *
 *   first order  (dpm_solver_first_order_update; DPM-Solver++ eq. 10):
 *     x_prev = sigma_p/sigma_t x_t - alpha_p (e^-h - 1) D0
 *   second order (multistep_dpm_solver_second_order_update; DPM-Solver++
 *   Algorithm 2), with s1 = t_last, h_0 = lambda_t - lambda_{s1}, r0 = h_0/h:
 *     D0 = x^_0(t),  D1 = (1/r0) (x^_0(t) - x^_0(s1))
 *     x_prev = sigma_p/sigma_t x_t - alpha_p (e^-h - 1) D0 - 1/2 alpha_p (e^-h - 1) D1
 *
 * diffusers takes the first-order update on the first step (no history yet)
 * and on the last (lower_order_final for K < 15, and always when the last
 * target is sigma = 0, its final_sigmas_type "zero" default, where r0 = 0).
 * That last update has alpha_p = 1, sigma_p = 0, e^-h = 0: x_prev = D0, as
 * below for prev_t = -1. */
void ddpm_dpm_solver_step(const ddpm_schedule *s, int t_last, int t, int prev_t, const float *x_t,
                          const float *x0, const float *x0_last, float *x_prev, size_t n)
{
    if (s == NULL || t < 0 || t >= s->T || prev_t < -1 || prev_t >= t || (t_last >= 0 && (t_last <= t ||
        t_last >= s->T)) || x_t == NULL || x0 == NULL || x_prev == NULL)
        return;
    if (prev_t < 0) {
        if (x_prev != x0)
            memmove(x_prev, x0, n * sizeof(float));
        return;
    }
    vp_point s0 = vp_at(s, t), p = vp_at(s, prev_t);
    double h = p.lambda - s0.lambda;
    float ratio = (float)(p.sigma / s0.sigma);     /* sigma_p / sigma_t        */
    double phi = p.alpha * expm1(-h);              /* alpha_p (e^-h - 1) < 0    */
    float coef_d0 = (float)phi;

    if (t_last < 0 || x0_last == NULL) {
        for (size_t i = 0; i < n; i++)
            x_prev[i] = ratio * x_t[i] - coef_d0 * x0[i];
        return;
    }
    vp_point s1 = vp_at(s, t_last);
    double r0 = (s0.lambda - s1.lambda) / h;
    float inv_r0 = (float)(1.0 / r0);
    float coef_d1 = (float)(0.5 * phi);
    for (size_t i = 0; i < n; i++) {
        float d1 = inv_r0 * (x0[i] - x0_last[i]);
        x_prev[i] = ratio * x_t[i] - coef_d0 * x0[i] - coef_d1 * d1;
    }
}
