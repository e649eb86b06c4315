/* sampler.c: the forward process q_sample (eq. 4), the reverse step p_sample
 * (Algorithm 2, as diffusers' DDPMScheduler.step computes it), the respaced
 * timestep chains, and the two sampling loops: generate (from pure noise)
 * and refine (from a noised input, optionally under a mask).  The loops run
 * DDPM's p_sample or one of the few-step samplers of solvers.c (DDIM,
 * DPM-Solver++) on the same chain, with the same noise streams.
 *
 * The arithmetic of p_sample and q_sample is diffusers' in float32, one
 * operation at a time and in the same order (spec 5.5, 5.6); the project is
 * compiled with -ffp-contract=off so no multiply-add is fused.  Given the
 * same alphas_cumprod and inputs, the results are then bit-identical to
 * PyTorch's (tests/core/test_step_vectors.c). */
#include "ddpm.h"
#include "sampler_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* DDPM_STREAM_REVERSE(t) = t must stay below DDPM_STREAM_START = 0x10000 so
 * that no step's z reuses the x_T noise: the sampler needs T <= 65536. */
#define MAX_SAMPLER_TIMESTEPS 0x10000

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

/* ------------------------------------------------------------------------ */
/* Timesteps                                                                 */
/* ------------------------------------------------------------------------ */

/* diffusers' set_timesteps(K) for the three spacings (scheduling_ddpm.py):
 *   leading:  ratio = T // K;  ts = (K-1)·ratio, ..., ratio, 0, each + steps_offset
 *   linspace: ts = round_half_even(linspace(0, T-1, K)), descending
 *   trailing: ts = round_half_even(arange(T, 0, -T/K)) - 1
 * NumPy's arange fills start + i·d with d = (start + step) - start, and its
 * linspace is i·((T-1)/(K-1)) with the last entry set to T-1 exactly; the
 * doubles below are rounded the same way, so the integers agree.  (For some
 * K, e.g. T = 1000, K = 61, NumPy's arange returns K + 1 values, the last
 * one -1; diffusers then runs an extra step at timestep -1.  We keep the
 * first K.) */
static void spaced_timesteps(const ddpm_schedule *s, int K, int *out)
{
    const ddpm_scheduler_config *c = &s->config;
    int T = s->T;
    switch (c->timestep_spacing) {
    case DDPM_SPACING_LEADING: {
        int ratio = T / K;
        for (int i = 0; i < K; i++)
            out[i] = (K - 1 - i) * ratio + c->steps_offset;
        break;
    }
    case DDPM_SPACING_LINSPACE: {
        double step = K > 1 ? (double)(T - 1) / (double)(K - 1) : 0.0;
        for (int i = 0; i < K; i++) {
            int j = K - 1 - i; /* ascending index */
            double v = (j == K - 1 && K > 1) ? (double)(T - 1) : (double)j * step;
            out[i] = (int)rint(v); /* round half to even, like NumPy */
        }
        break;
    }
    case DDPM_SPACING_TRAILING: {
        double d = ((double)T + (-(double)T / (double)K)) - (double)T;
        for (int i = 0; i < K; i++)
            out[i] = (int)rint((double)T + (double)i * d) - 1;
        break;
    }
    }
}

/* The refine chain from t_start (= t0 - 1, diffusers' index of the paper's
 * t0) down to 0.  It must start exactly at t_start, where q_sample put the
 * input, and end at 0; in between the K steps are evenly spaced:
 *   ts[i] = round(t_start · (K-1-i) / (K-1))   (half up, exact integers)
 *   K = 1:  ts = [t_start]
 * with K clamped to t_start + 1 (= t0): a longer chain would repeat
 * timesteps.  Consecutive entries then differ by at least 1. */
int ddpm_refine_timesteps(int t_start, int K, int *out)
{
    if (out == NULL || K < 1 || t_start < 0)
        return -1;
    if (K > t_start + 1)
        K = t_start + 1;
    if (K == 1) {
        out[0] = t_start;
        return 1;
    }
    long long d = K - 1;
    for (int i = 0; i < K; i++) {
        long long n = (long long)t_start * (K - 1 - i);
        out[i] = (int)((2 * n + d) / (2 * d)); /* floor(n/d + 1/2) */
    }
    return K;
}

int ddpm_timesteps(const ddpm_schedule *s, int K, int t_start, int *out)
{
    if (s == NULL || out == NULL || s->T < 1 || K < 1 || K > s->T || t_start < 0)
        return -1;
    if (t_start < s->T - 1)
        return ddpm_refine_timesteps(t_start, K, out);
    spaced_timesteps(s, K, out);
    /* steps_offset can push "leading" past the last trained timestep
     * (diffusers would index out of range there). */
    for (int i = 0; i < K; i++)
        if (out[i] < 0 || out[i] >= s->T || (i > 0 && out[i] >= out[i - 1]))
            return -1;
    return K;
}

/* ------------------------------------------------------------------------ */
/* The forward process and one reverse step                                  */
/* ------------------------------------------------------------------------ */

/* eq. (4): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (diffusers' add_noise). */
void ddpm_q_sample(const ddpm_schedule *s, int t, const float *x0, const float *eps, float *xt, size_t n)
{
    if (s == NULL || t < 0 || t >= s->T || x0 == NULL || eps == NULL || xt == NULL)
        return;
    float a = s->sqrt_alphas_cumprod[t];
    float b = s->sqrt_one_minus_alphas_cumprod[t];
    for (size_t i = 0; i < n; i++)
        xt[i] = a * x0[i] + b * eps[i];
}

/* One reverse step t -> prev_t, diffusers' DDPMScheduler.step (spec 5.5).
 * With abar_p = abar[prev_t] (1 for prev_t = -1), every per-step quantity is
 * taken from the two abar, so the same formulas serve a respaced chain:
 *   alpha'_t = abar_t / abar_p,  beta'_t = 1 - alpha'_t       (= alpha_t, beta_t when prev_t = t-1)
 *   x^_0     = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)    eq. (15), clipped if configured
 *   mu       = sqrt(abar_p) beta'_t / (1 - abar_t) · x^_0
 *            + sqrt(alpha'_t) (1 - abar_p) / (1 - abar_t) · x_t     eq. (7)
 *   x_prev   = mu + sigma z,   sigma^2 = beta'_t                          ("fixed_large")
 *                            or max((1 - abar_p)/(1 - abar_t) beta'_t, 1e-20)  ("fixed_small")
 * Each line is float32 arithmetic in diffusers' order.  No noise is added
 * when prev_t < 0 (diffusers tests t > 0, which is the same thing for every
 * chain that ends at timestep 0, as all of ours do). */
void ddpm_p_sample(const ddpm_schedule *s, int t, int prev_t, ddpm_variance variance,
                   const float *x_t, const float *model_output, const float *z, float *x_prev, size_t n)
{
    if (s == NULL || t < 0 || t >= s->T || prev_t < -1 || prev_t >= t || x_t == NULL || model_output == NULL ||
        x_prev == NULL)
        return;
    const ddpm_scheduler_config *c = &s->config;

    float alpha_prod_t = s->alphas_cumprod[t];
    float alpha_prod_t_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t] : 1.0f;
    float beta_prod_t = 1.0f - alpha_prod_t;
    float beta_prod_t_prev = 1.0f - alpha_prod_t_prev;
    float current_alpha_t = alpha_prod_t / alpha_prod_t_prev;
    float current_beta_t = 1.0f - current_alpha_t;
    float sqrt_alpha_prod_t = sqrtf(alpha_prod_t);
    float sqrt_beta_prod_t = sqrtf(beta_prod_t);

    float coef_x0 = (sqrtf(alpha_prod_t_prev) * current_beta_t) / beta_prod_t;
    float coef_xt = (sqrtf(current_alpha_t) * beta_prod_t_prev) / beta_prod_t;

    int add_noise = prev_t >= 0 && z != NULL;
    float sigma = 0.0f;
    if (variance == DDPM_VARIANCE_POSTERIOR) {
        float v = ((1.0f - alpha_prod_t_prev) / (1.0f - alpha_prod_t)) * current_beta_t;
        if (v < 1e-20f)
            v = 1e-20f;
        sigma = sqrtf(v);
    } else {
        sigma = sqrtf(current_beta_t);
    }

    for (size_t i = 0; i < n; i++) {
        float xt = x_t[i];
        float x0 = ddpm_predicted_x0(c, xt, model_output[i], sqrt_alpha_prod_t, sqrt_beta_prod_t);
        float mu = coef_x0 * x0 + coef_xt * xt;
        x_prev[i] = add_noise ? mu + sigma * z[i] : mu;
    }
}

/* ------------------------------------------------------------------------ */
/* The sampling loops                                                         */
/* ------------------------------------------------------------------------ */

/* Index of the first NaN or Inf in v, or n if there is none. */
static size_t first_non_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return i;
    return n;
}

/* What both loops check before they allocate anything. */
static ddpm_status check_run(const ddpm_schedule *s, ddpm_predict_fn predict, int C, int H, int W,
                             const ddpm_sample_params *p, const float *x, size_t *n, char *err, size_t errlen)
{
    if (s == NULL || s->alphas_cumprod == NULL || predict == NULL || p == NULL || x == NULL)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "sampler: missing schedule, predictor, parameters or output");
    if (s->T > MAX_SAMPLER_TIMESTEPS)
        return fail(err, errlen, DDPM_ERR_UNSUPPORTED,
                    "sampler: T = %d timesteps; the noise streams allow at most %d", s->T, MAX_SAMPLER_TIMESTEPS);
    if (C <= 0 || H <= 0 || W <= 0)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "sampler: image size %d x %d x %d is empty", C, H, W);
    /* Four buffers of n floats must be addressable. */
    size_t limit = (size_t)-1 / (4 * sizeof(float));
    if ((size_t)H > limit / (size_t)W || (size_t)C > limit / ((size_t)H * (size_t)W))
        return fail(err, errlen, DDPM_ERR_MEMORY, "sampler: image size %d x %d x %d is too large", C, H, W);
    *n = (size_t)C * (size_t)H * (size_t)W;
    if (p->steps < 1 || p->steps > s->T)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "sampler: steps = %d is not in 1..%d", p->steps, s->T);
    if (p->variance != DDPM_VARIANCE_BETA && p->variance != DDPM_VARIANCE_POSTERIOR)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "sampler: unknown variance %d", (int)p->variance);
    if (ddpm_sampler_name(p->sampler) == NULL)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "sampler: unknown sampler %d", (int)p->sampler);
    if (p->sampler == DDPM_SAMPLER_DDIM && !(p->eta >= 0.0f && p->eta <= 1.0f))
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "sampler: DDIM eta = %g is not in [0, 1]", (double)p->eta);
    if (p->sampler == DDPM_SAMPLER_DDIM && p->eta_t_max < 0)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "sampler: DDIM eta_t_max = %d is negative", p->eta_t_max);
    return DDPM_OK;
}

/* n floats per buffer, `count` buffers; all or nothing. */
static ddpm_status alloc_buffers(float **bufs, int count, size_t n, char *err, size_t errlen)
{
    for (int i = 0; i < count; i++) {
        bufs[i] = malloc(n * sizeof(float));
        if (bufs[i] == NULL) {
            for (int j = 0; j < i; j++) {
                free(bufs[j]);
                bufs[j] = NULL;
            }
            return fail(err, errlen, DDPM_ERR_MEMORY, "sampler: cannot allocate %d buffers of %zu bytes", count,
                        n * sizeof(float));
        }
    }
    return DDPM_OK;
}

/* eps = predict(x_t, t), with the model's errors passed through and its
 * NaN/Inf turned into one. */
static ddpm_status predict_eps(ddpm_predict_fn predict, void *ctx, const float *x_t, int t, float *eps, size_t n,
                               int step, int total, char *err, size_t errlen)
{
    ddpm_status st = predict(ctx, x_t, t, eps, err, errlen);
    if (st != DDPM_OK)
        return st;
    size_t bad = first_non_finite(eps, n);
    if (bad < n)
        return fail(err, errlen, DDPM_ERR_NUMERIC,
                    "sampler: step %d of %d (timestep %d): the model output is %s at value %zu", step, total, t,
                    isnan(eps[bad]) ? "NaN" : "infinite", bad);
    return DDPM_OK;
}

/* DDIM's eta for the step from t: the high-noise steps above eta_t_max run
 * deterministic.  Their fresh noise would be removed again by the model,
 * and with it some real detail (the smoothing that the model card measures
 * for eta on every step); the speckle that noise prevents comes from the
 * low-noise steps, which keep eta. */
static float ddim_eta_at(const ddpm_sample_params *p, int t)
{
    return p->eta_t_max > 0 && t > p->eta_t_max ? 0.0f : p->eta;
}

/* One reverse step t -> prev_t of the chosen sampler, in place on x_t; eps
 * holds the model's output at (x_t, t).  `work` is the sampler's one extra
 * image: for DDPM and DDIM (eta > 0) the step's noise z, drawn from the
 * step's own stream; for DPM-Solver++ the x^_0 of the previous step (at
 * t_last, -1 on the first step), which this step replaces with its own.
 * No step allocates. */
static void reverse_step(const ddpm_schedule *s, const ddpm_sample_params *p, int C, int H, int W, int t_last,
                         int t, int prev_t, float *x_t, float *eps, float *work, size_t n)
{
    switch (p->sampler) {
    case DDPM_SAMPLER_DDIM: {
        float eta = ddim_eta_at(p, t);
        if (prev_t >= 0 && eta > 0.0f)
            ddpm_noise_fill(p->seed, DDPM_STREAM_REVERSE(t), C, H, W, 0, 0, work);
        ddpm_ddim_step(s, t, prev_t, eta, x_t, eps, work, x_t, n);
        break;
    }
    case DDPM_SAMPLER_DPM_SOLVER_PP:
        ddpm_dpm_solver_x0(s, t, x_t, eps, eps, n); /* eps now holds x^_0 at t */
        ddpm_dpm_solver_step(s, t_last, t, prev_t, x_t, eps, t_last >= 0 ? work : NULL, x_t, n);
        memcpy(work, eps, n * sizeof(float));
        break;
    default: /* DDPM_SAMPLER_DDPM: Algorithm 2 */
        if (prev_t >= 0)
            ddpm_noise_fill(p->seed, DDPM_STREAM_REVERSE(t), C, H, W, 0, 0, work);
        ddpm_p_sample(s, t, prev_t, p->variance, x_t, eps, work, x_t, n);
        break;
    }
}

ddpm_status ddpm_sample_generate(const ddpm_schedule *s, ddpm_predict_fn predict, void *predict_ctx,
                                 int C, int H, int W, const ddpm_sample_params *p,
                                 ddpm_progress_fn progress, void *progress_ctx,
                                 float *x, char *err, size_t errlen)
{
    size_t n = 0;
    ddpm_status st = check_run(s, predict, C, H, W, p, x, &n, err, errlen);
    if (st != DDPM_OK)
        return st;

    int *ts = malloc((size_t)p->steps * sizeof(int));
    if (ts == NULL)
        return fail(err, errlen, DDPM_ERR_MEMORY, "sampler: cannot allocate %d timesteps", p->steps);
    int K = ddpm_timesteps(s, p->steps, s->T - 1, ts);
    if (K < 1) {
        free(ts);
        return fail(err, errlen, DDPM_ERR_ARGUMENT,
                    "sampler: %d steps with steps_offset %d reach past the last timestep %d", p->steps,
                    s->config.steps_offset, s->T - 1);
    }

    /* x_t is the chain's state, private until the end so that a cancelled or
     * failed run leaves the caller's x untouched. */
    float *bufs[3] = {NULL, NULL, NULL};
    if ((st = alloc_buffers(bufs, 3, n, err, errlen)) != DDPM_OK) {
        free(ts);
        return st;
    }
    float *x_t = bufs[0], *eps = bufs[1], *work = bufs[2];

    /* x_T ~ N(0, I) */
    ddpm_noise_fill(p->seed, DDPM_STREAM_START, C, H, W, 0, 0, x_t);

    /* Algorithm 2 and its few-step variants: for each step, eps =
     * model(x_t, t), then x_prev from x_t and eps (reverse_step). */
    for (int i = 0; i < K; i++) {
        int t = ts[i];
        int prev_t = i + 1 < K ? ts[i + 1] : -1;
        int t_last = i > 0 ? ts[i - 1] : -1;
        if ((st = predict_eps(predict, predict_ctx, x_t, t, eps, n, i + 1, K, err, errlen)) != DDPM_OK)
            goto done;
        reverse_step(s, p, C, H, W, t_last, t, prev_t, x_t, eps, work, n);
        if (progress != NULL && progress(progress_ctx, i + 1, K) != 0) {
            st = fail(err, errlen, DDPM_CANCELLED, "sampler: cancelled after step %d of %d", i + 1, K);
            goto done;
        }
    }
    if (first_non_finite(x_t, n) < n) {
        st = fail(err, errlen, DDPM_ERR_NUMERIC, "sampler: the result has NaN or Inf values");
        goto done;
    }
    memcpy(x, x_t, n * sizeof(float));
    st = DDPM_OK;

done:
    for (int i = 0; i < 3; i++)
        free(bufs[i]);
    free(ts);
    return st;
}

/* Refine's inputs: x_0 finite, mask values in [0, 1]. */
static ddpm_status check_refine_inputs(const float *x0, const float *mask, int H, int W, size_t n, char *err,
                                       size_t errlen)
{
    if (x0 == NULL)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "sampler: refine needs an input image");
    size_t bad = first_non_finite(x0, n);
    if (bad < n)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "sampler: the input image has NaN or Inf at value %zu", bad);
    if (mask != NULL) {
        size_t pixels = (size_t)H * (size_t)W;
        for (size_t i = 0; i < pixels; i++)
            if (!(mask[i] >= 0.0f && mask[i] <= 1.0f))
                return fail(err, errlen, DDPM_ERR_ARGUMENT, "sampler: mask value %g at (%zu, %zu) is not in [0, 1]",
                            (double)mask[i], i / (size_t)W, i % (size_t)W);
    }
    return DDPM_OK;
}

/* Keep what the mask does not select:  x = m x + (1 - m) x_known  per pixel,
 * for every channel; pixels with m = 1 are left as they are. */
static void composite(float *x, const float *known, const float *mask, int C, size_t pixels)
{
    for (int c = 0; c < C; c++) {
        float *xc = x + (size_t)c * pixels;
        const float *kc = known + (size_t)c * pixels;
        for (size_t i = 0; i < pixels; i++) {
            float m = mask[i];
            if (m < 1.0f)
                xc[i] = m * xc[i] + (1.0f - m) * kc[i];
        }
    }
}

ddpm_status ddpm_sample_refine(const ddpm_schedule *s, ddpm_predict_fn predict, void *predict_ctx,
                               int C, int H, int W, const float *x0, const float *mask,
                               const ddpm_sample_params *p,
                               ddpm_progress_fn progress, void *progress_ctx,
                               float *x, char *err, size_t errlen)
{
    size_t n = 0;
    ddpm_status st = check_run(s, predict, C, H, W, p, x, &n, err, errlen);
    if (st != DDPM_OK)
        return st;
    if (p->t_start < 1 || p->t_start > s->T)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "sampler: refine timestep t0 = %d is not in 1..%d", p->t_start,
                    s->T);
    if ((st = check_refine_inputs(x0, mask, H, W, n, err, errlen)) != DDPM_OK)
        return st;

    /* The chain starts at the paper's t0, i.e. index t0 - 1, even for
     * t0 = T (where generate's spacing might start lower). */
    int *ts = malloc((size_t)p->steps * sizeof(int));
    if (ts == NULL)
        return fail(err, errlen, DDPM_ERR_MEMORY, "sampler: cannot allocate %d timesteps", p->steps);
    int K = ddpm_refine_timesteps(p->t_start - 1, p->steps, ts);

    float *bufs[4] = {NULL, NULL, NULL, NULL};
    if ((st = alloc_buffers(bufs, 4, n, err, errlen)) != DDPM_OK) {
        free(ts);
        return st;
    }
    float *x_t = bufs[0], *eps = bufs[1], *work = bufs[2], *x_known = bufs[3];
    size_t pixels = (size_t)H * (size_t)W;

    /* x_{t0} = q_sample(x_0, t0), eq. (4), with eps from the start stream. */
    ddpm_noise_fill(p->seed, DDPM_STREAM_START, C, H, W, 0, 0, eps);
    ddpm_q_sample(s, ts[0], x0, eps, x_t, n);

    for (int i = 0; i < K; i++) {
        int t = ts[i];
        int prev_t = i + 1 < K ? ts[i + 1] : -1;
        int t_last = i > 0 ? ts[i - 1] : -1;
        if ((st = predict_eps(predict, predict_ctx, x_t, t, eps, n, i + 1, K, err, errlen)) != DDPM_OK)
            goto done;
        reverse_step(s, p, C, H, W, t_last, t, prev_t, x_t, eps, work, n);

        /* Outside the mask, the state is the input noised to the new
         * timestep with fresh noise (q_sample, eq. 4), and x_0 itself after
         * the last step; the refined region then sees consistent
         * surroundings at every noise level.  (The noise is drawn into
         * x_known and q_sample works in place: `work` may hold DPM-Solver++'s
         * history.) */
        if (mask != NULL) {
            if (prev_t >= 0) {
                ddpm_noise_fill(p->seed, DDPM_STREAM_KNOWN(prev_t), C, H, W, 0, 0, x_known);
                ddpm_q_sample(s, prev_t, x0, x_known, x_known, n);
            } else {
                memcpy(x_known, x0, n * sizeof(float));
            }
            composite(x_t, x_known, mask, C, pixels);
        }

        if (progress != NULL && progress(progress_ctx, i + 1, K) != 0) {
            st = fail(err, errlen, DDPM_CANCELLED, "sampler: cancelled after step %d of %d", i + 1, K);
            goto done;
        }
    }
    if (first_non_finite(x_t, n) < n) {
        st = fail(err, errlen, DDPM_ERR_NUMERIC, "sampler: the result has NaN or Inf values");
        goto done;
    }
    memcpy(x, x_t, n * sizeof(float)); /* x may be x0: it is not read any more */
    st = DDPM_OK;

done:
    for (int i = 0; i < 4; i++)
        free(bufs[i]);
    free(ts);
    return st;
}
