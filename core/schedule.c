/* schedule.c: the noise schedule beta_t and everything derived from it
 * (Ho et al. 2020, eqs. 2, 4, 6, 7), as diffusers' DDPMScheduler builds it.
 *
 * Index t = 0 .. T-1 is diffusers' timestep; the paper's t is index + 1.
 * The arrays are float32 like diffusers' tensors, and computed so that they
 * round like PyTorch (spec 5.2): betas by the serial float32 linspace,
 * alphas = 1 - betas in float32, and the running product abar in double,
 * rounded to float after each factor, as torch.cumprod does on the CPU. */
#include "ddpm.h"
#include "sampler_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TRAIN_TIMESTEPS 100000
#define COSINE_MAX_BETA 0.999 /* diffusers' betas_for_alpha_bar(max_beta) */

static ddpm_status fail(char *err, size_t errlen, ddpm_status status, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* torch.linspace(start, end, steps, dtype=float32): step in float32, the
 * first half counted up from start and the second half down from end, so
 * both endpoints are exact.  (Some PyTorch builds vectorise this and differ
 * in the last bit for a few hundred of 1000 entries; spec 5.2.) */
static void linspace_f32(float start, float end, int steps, float *out)
{
    if (steps == 1) {
        out[0] = start;
        return;
    }
    float step = (end - start) / (float)(steps - 1);
    int halfway = steps / 2;
    for (int i = 0; i < steps; i++) {
        if (i < halfway)
            out[i] = start + step * (float)i;
        else
            out[i] = end - step * (float)(steps - 1 - i);
    }
}

/* The cosine schedule of Nichol & Dhariwal 2021 (diffusers' "squaredcos_cap_v2"):
 *   abar(s) = cos^2((s + 0.008) / 1.008 * pi / 2),
 *   beta_i  = min(1 - abar((i+1)/T) / abar(i/T), 0.999),
 * in double like the Python original, then rounded to float. */
static double cosine_alpha_bar(double s)
{
    const double pi = 3.141592653589793;
    double c = cos((s + 0.008) / 1.008 * pi / 2.0);
    return c * c;
}

static void cosine_betas(int T, float *out)
{
    for (int i = 0; i < T; i++) {
        double t1 = (double)i / T, t2 = (double)(i + 1) / T;
        double beta = 1.0 - cosine_alpha_bar(t2) / cosine_alpha_bar(t1);
        out[i] = (float)(beta < COSINE_MAX_BETA ? beta : COSINE_MAX_BETA);
    }
}

/* beta_t for the configured schedule (eq. 2's variances). */
static void compute_betas(const ddpm_scheduler_config *c, float *betas)
{
    int T = c->num_train_timesteps;
    switch (c->beta_schedule) {
    case DDPM_BETA_LINEAR:
        linspace_f32((float)c->beta_start, (float)c->beta_end, T, betas);
        break;
    case DDPM_BETA_SCALED_LINEAR:
        /* linspace(sqrt(start), sqrt(end))^2; the roots are taken in double
         * (Python's **0.5) and the square in float32 (torch's ** 2). */
        linspace_f32((float)sqrt(c->beta_start), (float)sqrt(c->beta_end), T, betas);
        for (int t = 0; t < T; t++)
            betas[t] = betas[t] * betas[t];
        break;
    case DDPM_BETA_SQUAREDCOS_CAP_V2:
        cosine_betas(T, betas);
        break;
    }
}

/* The configuration, checked as an argument (a parsed file has already been
 * checked key by key in scheduler_config.c; this catches hand-made ones). */
static ddpm_status check_config(const ddpm_scheduler_config *c, char *err, size_t errlen)
{
    if (c->num_train_timesteps < 1 || c->num_train_timesteps > MAX_TRAIN_TIMESTEPS)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "schedule: num_train_timesteps %d is not in 1..%d",
                    c->num_train_timesteps, MAX_TRAIN_TIMESTEPS);
    if (c->beta_schedule != DDPM_BETA_LINEAR && c->beta_schedule != DDPM_BETA_SCALED_LINEAR &&
        c->beta_schedule != DDPM_BETA_SQUAREDCOS_CAP_V2)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "schedule: unknown beta_schedule %d", (int)c->beta_schedule);
    if (c->beta_schedule != DDPM_BETA_SQUAREDCOS_CAP_V2 &&
        !(c->beta_start > 0 && c->beta_start < 1 && c->beta_end > 0 && c->beta_end < 1))
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "schedule: beta_start %g and beta_end %g must be in (0, 1)",
                    c->beta_start, c->beta_end);
    if (c->variance_type != DDPM_VARIANCE_BETA && c->variance_type != DDPM_VARIANCE_POSTERIOR)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "schedule: unknown variance_type %d", (int)c->variance_type);
    if (c->prediction_type != DDPM_PREDICT_EPSILON && c->prediction_type != DDPM_PREDICT_SAMPLE &&
        c->prediction_type != DDPM_PREDICT_V)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "schedule: unknown prediction_type %d",
                    (int)c->prediction_type);
    if (c->timestep_spacing != DDPM_SPACING_LEADING && c->timestep_spacing != DDPM_SPACING_LINSPACE &&
        c->timestep_spacing != DDPM_SPACING_TRAILING)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "schedule: unknown timestep_spacing %d",
                    (int)c->timestep_spacing);
    if (c->clip_sample && !(c->clip_sample_range > 0 && isfinite(c->clip_sample_range)))
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "schedule: clip_sample_range %g must be positive",
                    c->clip_sample_range);
    if (c->steps_offset < 0 || c->steps_offset > MAX_TRAIN_TIMESTEPS)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "schedule: steps_offset %d is out of range", c->steps_offset);
    return DDPM_OK;
}

/* Everything that follows from the betas. */
static void derive(ddpm_schedule *s)
{
    int T = s->T;

    /* alpha_t = 1 - beta_t, and abar_t = prod_{s<=t} alpha_s with a double
     * accumulator that is rounded to float for storage (torch.cumprod on the
     * CPU; a float accumulator differs in 907 of 1000 entries, spec 5.2). */
    double running = 1.0;
    for (int t = 0; t < T; t++) {
        s->alphas[t] = 1.0f - s->betas[t];
        running *= (double)s->alphas[t];
        s->alphas_cumprod[t] = (float)running;
    }

    /* eq. (4)'s coefficients, in float32 as diffusers' add_noise takes them:
     * abar ** 0.5 and (1 - abar) ** 0.5, the difference rounded first. */
    for (int t = 0; t < T; t++) {
        s->sqrt_alphas_cumprod[t] = sqrtf(s->alphas_cumprod[t]);
        s->sqrt_one_minus_alphas_cumprod[t] = sqrtf(1.0f - s->alphas_cumprod[t]);
    }

    /* The posterior q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, beta~_t I),
     * eqs. (6), (7), with abar_{-1} = 1 (so beta~_0 = 0):
     *   beta~_t = (1 - abar_{t-1}) / (1 - abar_t) * beta_t
     *   coef1   = sqrt(abar_{t-1}) beta_t / (1 - abar_t)
     *   coef2   = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)
     * computed in double from the stored floats and rounded once.  The
     * sampler does not read these: ddpm_p_sample recomputes its coefficients
     * from abar at the two timesteps of a step, as diffusers does, which also
     * serves respaced chains. */
    for (int t = 0; t < T; t++) {
        double abar = s->alphas_cumprod[t];
        double abar_prev = t > 0 ? (double)s->alphas_cumprod[t - 1] : 1.0;
        double beta = s->betas[t];
        s->posterior_variance[t] = (float)((1.0 - abar_prev) / (1.0 - abar) * beta);
        s->posterior_mean_coef1[t] = (float)(sqrt(abar_prev) * beta / (1.0 - abar));
        s->posterior_mean_coef2[t] = (float)(sqrt((double)s->alphas[t]) * (1.0 - abar_prev) / (1.0 - abar));
    }
}

/* A schedule the sampler can divide by: 0 < beta_t < 1, abar_t > 0 and
 * 1 - abar_t > 0 in float32 (a tiny beta_0 makes alpha_0 round to 1). */
static ddpm_status check_schedule(const ddpm_schedule *s, char *err, size_t errlen)
{
    for (int t = 0; t < s->T; t++) {
        if (!(s->betas[t] > 0.0f && s->betas[t] < 1.0f))
            return fail(err, errlen, DDPM_ERR_ARGUMENT, "schedule: beta at timestep %d is %g, not in (0, 1)", t,
                        (double)s->betas[t]);
        if (!(s->alphas_cumprod[t] > 0.0f))
            return fail(err, errlen, DDPM_ERR_ARGUMENT,
                        "schedule: alphas_cumprod underflows to 0 at timestep %d in float32", t);
        if (!(1.0f - s->alphas_cumprod[t] > 0.0f))
            return fail(err, errlen, DDPM_ERR_ARGUMENT,
                        "schedule: 1 - alphas_cumprod is 0 at timestep %d in float32 (beta too small)", t);
    }
    return DDPM_OK;
}

/* Allocate the eight arrays as one block (betas points at its start). */
static ddpm_status allocate(ddpm_schedule *s, int T, char *err, size_t errlen)
{
    float *block = calloc((size_t)8 * (size_t)T, sizeof(float));
    if (block == NULL)
        return fail(err, errlen, DDPM_ERR_MEMORY, "schedule: cannot allocate %d timesteps", T);
    s->T = T;
    s->betas = block;
    s->alphas = block + (size_t)1 * T;
    s->alphas_cumprod = block + (size_t)2 * T;
    s->sqrt_alphas_cumprod = block + (size_t)3 * T;
    s->sqrt_one_minus_alphas_cumprod = block + (size_t)4 * T;
    s->posterior_variance = block + (size_t)5 * T;
    s->posterior_mean_coef1 = block + (size_t)6 * T;
    s->posterior_mean_coef2 = block + (size_t)7 * T;
    return DDPM_OK;
}

ddpm_status ddpm_schedule_init_from_betas(ddpm_schedule *s, const ddpm_scheduler_config *c,
                                          const float *betas, char *err, size_t errlen)
{
    if (s == NULL || c == NULL)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "schedule: no schedule or no config given");
    memset(s, 0, sizeof *s);
    ddpm_status st = check_config(c, err, errlen);
    if (st != DDPM_OK)
        return st;
    if ((st = allocate(s, c->num_train_timesteps, err, errlen)) != DDPM_OK)
        return st;
    s->config = *c;
    if (betas != NULL)
        memcpy(s->betas, betas, (size_t)s->T * sizeof(float));
    else
        compute_betas(c, s->betas);
    derive(s);
    if ((st = check_schedule(s, err, errlen)) != DDPM_OK) {
        ddpm_schedule_free(s);
        return st;
    }
    return DDPM_OK;
}

ddpm_status ddpm_schedule_init(ddpm_schedule *s, const ddpm_scheduler_config *c, char *err, size_t errlen)
{
    return ddpm_schedule_init_from_betas(s, c, NULL, err, errlen);
}

void ddpm_schedule_free(ddpm_schedule *s)
{
    if (s == NULL)
        return;
    free(s->betas); /* the start of the one block */
    memset(s, 0, sizeof *s);
}
