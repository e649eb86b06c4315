/* test_solver_oracle.c: DDIM and DPM-Solver++ with an exact noise predictor.
 *
 * As in test_oracle.c: for data x_0 ~ N(mu, s^2) (pixels independent) the
 * optimal predictor is linear,
 *
 *   eps*(x_t, t) = sqrt(1 - abar_t) (x_t - sqrt(abar_t) mu) / (abar_t s^2 + 1 - abar_t),
 *
 * so every step of either sampler is an affine map of its inputs, and the
 * law of the output is known exactly:
 *   DDIM           x_prev = A x_t + B + sigma z:   m <- A m + B,  v <- A^2 v + sigma^2
 *   DPM-Solver++   deterministic, x_prev = f(x_t, x^_0(t), x^_0(t_last)), all affine
 *                  in the start x_T: track x = a x_T + b and the previous x^_0 = c x_T + d.
 * Each test checks (1) the sample mean/std of 64k pixels against the exact
 * chain (5 standard errors): the implementation is right; (2) how close the
 * exact chain comes to the data law N(mu, s^2): what the sampler achieves.
 *
 * Measured (mu = 0.2, s = 0.3, linear betas, T = 1000, leading spacing;
 * the exact chain's std relative to s, the samples agree; "convergence"
 * prints the table):
 *                      K = 10    20       50       100      250      1000
 *   DDIM eta = 0      -36.5 %  -19.7 %  -8.3 %   -4.3 %   -1.8 %   -0.5 %
 *   DPM-Solver++      +26.8 %  +28.8 %  +10.3 %  +3.0 %   +0.45 %  -0.02 %
 *   DDIM eta = 1      -42.7 %  -28.5 %  -15.7 %  -9.3 %   -4.3 %   -1.25 %
 *     (= DDPM beta~)
 * Means are within 0.5 % of mu.  So the deterministic samplers are NOT
 * near-exact at few steps on this chain, and why is worth knowing:
 *   - For Gaussian data the probability-flow ODE maps N(0, 1) onto
 *     N(mu, s^2) exactly.  One DDIM step with the exact eps* multiplies
 *     the standardised deviation xi = (x_t - sqrt(abar_t) mu) / S_t
 *     (S_t^2 = abar_t s^2 + 1 - abar_t) by
 *       (sqrt(abar_p abar_t) s^2 + sqrt((1 - abar_p)(1 - abar_t))) / (S_t S_p) <= 1,
 *     the cosine between (sqrt(abar_t) s, sqrt(1 - abar_t)) and the same at
 *     prev (Cauchy-Schwarz; = 1 only for s = 1): a loss of O(step^2) per
 *     step, O(1/K) in all -- DDIM is a first-order solver.
 *   - The loss is concentrated where the step is long in log-SNR lambda =
 *     log(sqrt(abar)/sqrt(1-abar)).  Uniform ("leading") timesteps are very
 *     uneven in lambda for linear betas: at K = 20 the step 50 -> 0 spans
 *     lambda 1.74 -> 4.6 (10x the typical step) and alone shrinks the spread
 *     by 12 %.
 *   - DPM-Solver++(2M) is second order (its error falls ~6x from K = 100 to
 *     250) but extrapolates x^_0 linearly in lambda with r0 = h_prev/h; on
 *     that long last step r0 = 0.23 and it overshoots: over-dispersed, and
 *     worse than DDIM at K <= 20.  On timesteps uniform in lambda (not what
 *     we run; cf. diffusers' use_lu_lambdas) the same solver is within
 *     +1.5 % at K = 20 and +0.2 % at K = 50, DDIM -12 % and -4.9 %
 *     ("convergence" computes both).  tools/sampler_curves.py measures the
 *     real model.
 *   - eta = 1 is DDPM's beta~ chain (the same affine map; "ddim-vs-ddpm"),
 *     under-dispersed on a respaced chain for the reason test_oracle.c gives.
 * Data with s < 1 is what detail looks like (small-variance components),
 * so these numbers predict the few-step samplers' typical flaws: DDIM
 * smooths, DPM-Solver++ on this chain exaggerates contrast.
 *
 * usage: test_solver_oracle generate ddim|dpm-solver++ K [eta]
 *        test_solver_oracle refine ddim|dpm-solver++ [eta]
 *        test_solver_oracle ddim-vs-ddpm K
 *        test_solver_oracle convergence */
#include "ddpm.h"
#include "sampler_internal.h"
#include "check.h"

#include <stdlib.h>

enum { H = 256, W = 256, C = 1 };
#define NPIX ((size_t)C * H * W)

static const double MU = 0.2, SD = 0.3;

typedef struct {
    const ddpm_schedule *s;
    double mu, sd;
} oracle;

static void moments(const float *x, size_t n, double *mean, double *sd)
{
    double s1 = 0, s2 = 0;
    for (size_t i = 0; i < n; i++)
        s1 += x[i], s2 += (double)x[i] * x[i];
    *mean = s1 / n;
    double var = s2 / n - *mean * *mean;
    *sd = sqrt(var > 0 ? var : 0);
}

/* eps*(x_t, t) = g_t x_t + h_t */
static void oracle_coefficients(const ddpm_schedule *s, int t, double mu, double sd, double *g, double *h)
{
    double abar = s->alphas_cumprod[t];
    double D = abar * sd * sd + 1 - abar;
    *g = sqrt(1 - abar) / D;
    *h = -sqrt(1 - abar) * sqrt(abar) * mu / D;
}

static ddpm_status oracle_predict(void *ctx, const float *x_t, int t, float *eps, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    oracle *o = ctx;
    double g, h;
    oracle_coefficients(o->s, t, o->mu, o->sd, &g, &h);
    for (size_t i = 0; i < NPIX; i++)
        eps[i] = (float)(g * x_t[i] + h);
    return DDPM_OK;
}

/* x^_0 = (x - sqrt(1 - abar_t) eps*) / sqrt(abar_t) = ax x + c  (no clipping) */
static void x0_coefficients(const ddpm_schedule *s, int t, double mu, double sd, double *ax, double *c)
{
    double g, h, abar = s->alphas_cumprod[t];
    oracle_coefficients(s, t, mu, sd, &g, &h);
    *ax = (1 - sqrt(1 - abar) * g) / sqrt(abar);
    *c = -sqrt(1 - abar) * h / sqrt(abar);
}

/* One DDIM step t -> prev as x_prev = A x + B + sigma z, in double. */
static void ddim_affine(const ddpm_schedule *s, int t, int prev, double eta, double mu, double sd, double *A,
                        double *B, double *sigma)
{
    double a_t = s->alphas_cumprod[t], a_p = prev >= 0 ? s->alphas_cumprod[prev] : 1.0;
    double g, h, ax, c;
    oracle_coefficients(s, t, mu, sd, &g, &h);
    x0_coefficients(s, t, mu, sd, &ax, &c);
    double variance = (1 - a_p) / (1 - a_t) * (1 - a_t / a_p);             /* eq. (16) / eta^2 */
    *sigma = eta * sqrt(variance);
    double k = sqrt(fmax(1 - a_p - *sigma * *sigma, 0.0));
    *A = sqrt(a_p) * ax + k * g;                                          /* eq. (12) */
    *B = sqrt(a_p) * c + k * h;
}

/* The exact output law N(m, v) of a DDIM chain started from N(m, v). */
static void ddim_theory(const ddpm_schedule *s, const int *ts, int K, double eta, double m, double v,
                        double *out_mean, double *out_sd)
{
    for (int i = 0; i < K; i++) {
        double A, B, sigma;
        ddim_affine(s, ts[i], i + 1 < K ? ts[i + 1] : -1, eta, MU, SD, &A, &B, &sigma);
        m = A * m + B;
        v = A * A * v + sigma * sigma;
    }
    *out_mean = m;
    *out_sd = sqrt(v);
}

/* The exact output law of a DPM-Solver++(2M) chain started from N(m, v):
 * the chain is deterministic, so track x = a X + b and the previous x^_0 =
 * c X + d in the start X, with the same first/second-order choices and
 * formulas as ddpm_dpm_solver_step (in double). */
static void dpm_theory(const ddpm_schedule *s, const int *ts, int K, double m, double v, double *out_mean,
                       double *out_sd)
{
    double a = 1, b = 0, c = 0, d = 0;
    for (int i = 0; i < K; i++) {
        int t = ts[i], prev = i + 1 < K ? ts[i + 1] : -1, t_last = i > 0 ? ts[i - 1] : -1;
        double ax, cx;
        x0_coefficients(s, t, MU, SD, &ax, &cx);
        double x0a = ax * a, x0b = ax * b + cx; /* x^_0 at t, in X */
        if (prev < 0) {
            a = x0a, b = x0b;
        } else {
            double at = s->alphas_cumprod[t], ap = s->alphas_cumprod[prev];
            double lam_t = 0.5 * log(at / (1 - at)), lam_p = 0.5 * log(ap / (1 - ap));
            double h = lam_p - lam_t, ratio = sqrt(1 - ap) / sqrt(1 - at);
            double phi = sqrt(ap) * expm1(-h);
            double na = ratio * a - phi * x0a, nb = ratio * b - phi * x0b;
            if (t_last >= 0) {
                double al = s->alphas_cumprod[t_last];
                double r0 = (lam_t - 0.5 * log(al / (1 - al))) / h;
                na -= 0.5 * phi / r0 * (x0a - c);
                nb -= 0.5 * phi / r0 * (x0b - d);
            }
            a = na, b = nb;
        }
        c = x0a, d = x0b;
    }
    *out_mean = a * m + b;
    *out_sd = fabs(a) * sqrt(v);
}

static void check_against_theory(const char *what, double mean, double sd, double th_mean, double th_sd, size_t n)
{
    double se_mean = th_sd / sqrt((double)n), se_sd = th_sd / sqrt(2.0 * n);
    printf("%s: mean %.6f (exact %.6f, %.1f s.e.)  std %.6f (exact %.6f, %.1f s.e.)\n", what, mean, th_mean,
           (mean - th_mean) / se_mean, sd, th_sd, (sd - th_sd) / se_sd);
    CHECK(fabs(mean - th_mean) < 5 * se_mean + 1e-6, "%s: mean %.6f vs exact %.6f", what, mean, th_mean);
    CHECK(fabs(sd - th_sd) < 5 * se_sd + 1e-6, "%s: std %.6f vs exact %.6f", what, sd, th_sd);
}

static ddpm_schedule oracle_schedule(void)
{
    ddpm_scheduler_config c;
    ddpm_scheduler_config_default(&c);
    c.clip_sample = 0; /* the oracle's x^_0 is unbounded; clipping would change the law */
    ddpm_schedule s;
    char err[256] = "";
    CHECK(ddpm_schedule_init(&s, &c, err, sizeof err) == DDPM_OK, "schedule: %s", err);
    return s;
}

static void exact_law(const ddpm_schedule *s, ddpm_sampler sampler, const int *ts, int K, double eta, double m,
                      double v, double *mean, double *sd)
{
    if (sampler == DDPM_SAMPLER_DPM_SOLVER_PP)
        dpm_theory(s, ts, K, m, v, mean, sd);
    else
        ddim_theory(s, ts, K, eta, m, v, mean, sd);
}

/* What each sampler achieves on the generate chain, as measured (see the
 * header), with margins: the exact chain's mean and std against mu and s. */
static void check_achieved(const char *what, ddpm_sampler sampler, double eta, int K, double th_mean, double th_sd)
{
    double rel = th_sd / SD - 1;
    printf("  %s: the exact chain's mean is mu %+.3f %%, its std s %+.3f %%\n", what, 100 * (th_mean / MU - 1),
           100 * rel);
    CHECK(fabs(th_mean / MU - 1) < 0.005, "%s: mean %.5f vs mu %.5f", what, th_mean, MU);
    if (sampler == DDPM_SAMPLER_DPM_SOLVER_PP) /* over-dispersed: +28.8 %, +10.3 % */
        CHECK(rel > 0 && rel < (K >= 50 ? 0.15 : 0.35), "%s: std %+.2f %% from s", what, 100 * rel);
    else if (eta == 0.0) /* under-dispersed: -19.7 %, -8.3 % */
        CHECK(rel < 0 && rel > (K >= 50 ? -0.12 : -0.25), "%s: std %+.2f %% from s", what, 100 * rel);
    else if (eta == 1.0) /* DDPM's beta~: -28.5 %, -15.7 % */
        CHECK(rel < (K >= 50 ? -0.1 : -0.2), "%s: std %+.2f %%, expected DDPM beta~'s under-dispersion", what,
              100 * rel);
}

/* The exact chains only (no sampling), for K from 10 to T: the table in
 * the header, and the orders of convergence -- DDIM's error falls like
 * 1/K, DPM-Solver++'s like 1/K^2 once K is large enough (K >= 100). */
static void run_convergence(void)
{
    ddpm_schedule s = oracle_schedule();
    int Ks[] = {10, 20, 50, 100, 250, 1000};
    enum { NK = sizeof Ks / sizeof Ks[0] };
    double ddim_err[NK], dpm_err[NK];
    int *ts = malloc(1000 * sizeof(int));
    if (s.betas == NULL || ts == NULL) {
        CHECK(0, "setup");
        free(ts);
        return;
    }
    printf("   K   DDIM eta=0   DPM-Solver++   DDIM eta=1 (= DDPM beta~)   (exact std / s - 1)\n");
    for (int k = 0; k < NK; k++) {
        int n = ddpm_timesteps(&s, Ks[k], s.T - 1, ts);
        double m, sd0, sd1, sdp;
        ddim_theory(&s, ts, n, 0.0, 0.0, 1.0, &m, &sd0);
        ddim_theory(&s, ts, n, 1.0, 0.0, 1.0, &m, &sd1);
        dpm_theory(&s, ts, n, 0.0, 1.0, &m, &sdp);
        ddim_err[k] = sd0 / SD - 1, dpm_err[k] = sdp / SD - 1;
        printf("%5d   %+8.3f %%   %+8.3f %%      %+8.3f %%\n", Ks[k], 100 * ddim_err[k], 100 * dpm_err[k],
               100 * (sd1 / SD - 1));
    }
    for (int k = 2; k + 1 < NK; k++) {
        double ratio_K = (double)Ks[k + 1] / Ks[k];
        double ddim_order = log(fabs(ddim_err[k] / ddim_err[k + 1])) / log(ratio_K);
        double dpm_order = log(fabs(dpm_err[k] / dpm_err[k + 1])) / log(ratio_K);
        printf("K %d -> %d: observed order DDIM %.2f, DPM-Solver++ %.2f\n", Ks[k], Ks[k + 1], ddim_order, dpm_order);
        CHECK(ddim_order > 0.8 && ddim_order < 1.3, "DDIM's order %.2f is not ~1", ddim_order);
        if (Ks[k] >= 100)
            CHECK(dpm_order > 1.7, "DPM-Solver++'s order %.2f is not ~2 at K = %d", dpm_order, Ks[k]);
    }
    CHECK(fabs(dpm_err[NK - 1]) < 0.001 && fabs(ddim_err[NK - 1]) < 0.01, "K = T: DDIM %+.3f %%, DPM %+.3f %%",
          100 * ddim_err[NK - 1], 100 * dpm_err[NK - 1]);

    /* The same solvers on timesteps spaced uniformly in lambda (from
     * timestep T-1 to 0, each target rounded to the nearest timestep,
     * repeats dropped): the uneven lambda steps of "leading" are what costs
     * DPM-Solver++ its accuracy at few steps. */
    for (int K = 20; K <= 50; K += 30) {
        double lam_hi = 0.5 * log(s.alphas_cumprod[0] / (1 - s.alphas_cumprod[0]));
        double lam_lo = 0.5 * log(s.alphas_cumprod[s.T - 1] / (1 - s.alphas_cumprod[s.T - 1]));
        int n = 0;
        for (int i = 0; i < K; i++) {
            double target = lam_lo + (lam_hi - lam_lo) * i / (K - 1);
            int best = 0;
            double best_d = INFINITY;
            for (int t = 0; t < s.T; t++) {
                double d = fabs(0.5 * log(s.alphas_cumprod[t] / (1 - s.alphas_cumprod[t])) - target);
                if (d < best_d)
                    best_d = d, best = t;
            }
            if (n == 0 || best < ts[n - 1])
                ts[n++] = best;
        }
        double m, sd0, sdp;
        ddim_theory(&s, ts, n, 0.0, 0.0, 1.0, &m, &sd0);
        dpm_theory(&s, ts, n, 0.0, 1.0, &m, &sdp);
        printf("lambda-uniform timesteps, K = %d (%d distinct, %d .. %d): DDIM eta=0 %+.3f %%, DPM-Solver++ %+.3f %%\n",
               K, n, ts[0], ts[n - 1], 100 * (sd0 / SD - 1), 100 * (sdp / SD - 1));
        CHECK(fabs(sdp / SD - 1) < (K >= 50 ? 0.005 : 0.03), "DPM-Solver++ on lambda-uniform steps: %+.3f %%",
              100 * (sdp / SD - 1));
    }
    free(ts);
    ddpm_schedule_free(&s);
}

static void run_generate(ddpm_sampler sampler, int K, float eta)
{
    ddpm_schedule s = oracle_schedule();
    float *x = malloc(NPIX * sizeof(float));
    int *ts = malloc((size_t)K * sizeof(int));
    if (s.betas == NULL || x == NULL || ts == NULL) {
        CHECK(0, "setup");
        goto out;
    }
    oracle o = {&s, MU, SD};
    ddpm_sample_params p = {.steps = K, .seed = 1234, .sampler = sampler, .eta = eta};
    char err[256] = "", what[128];
    ddpm_status st = ddpm_sample_generate(&s, oracle_predict, &o, C, H, W, &p, NULL, NULL, x, err, sizeof err);
    CHECK(st == DDPM_OK, "generate: %s", err);
    if (st != DDPM_OK)
        goto out;
    int n = ddpm_timesteps(&s, K, s.T - 1, ts);
    double th_mean, th_sd, mean, sd;
    exact_law(&s, sampler, ts, n, eta, 0.0, 1.0, &th_mean, &th_sd);
    moments(x, NPIX, &mean, &sd);
    snprintf(what, sizeof what, "generate %s K=%d eta=%g", ddpm_sampler_name(sampler), K, (double)eta);
    check_against_theory(what, mean, sd, th_mean, th_sd, NPIX);
    check_achieved(what, sampler, eta, K, th_mean, th_sd);
out:
    free(x), free(ts);
    ddpm_schedule_free(&s);
}

/* Refine from several t0, x_0 a sample of the data law: the output keeps
 * the law as well as generate does (better: the chain is shorter). */
static void run_refine(ddpm_sampler sampler, float eta)
{
    ddpm_schedule s = oracle_schedule();
    float *x = malloc(NPIX * sizeof(float)), *x0 = malloc(NPIX * sizeof(float));
    int *ts = malloc((size_t)1000 * sizeof(int));
    if (s.betas == NULL || x == NULL || x0 == NULL || ts == NULL) {
        CHECK(0, "setup");
        goto out;
    }
    ddpm_noise_fill(0xda7a, DDPM_STREAM_START, C, H, W, 0, 0, x0);
    for (size_t i = 0; i < NPIX; i++)
        x0[i] = (float)(MU + SD * x0[i]);
    struct {
        int t0, K;
    } cases[] = {{1000, 50}, {600, 20}, {300, 10}, {100, 20}, {20, 5}, {1, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int t0 = cases[k].t0, K = cases[k].K;
        oracle o = {&s, MU, SD};
        ddpm_sample_params p = {.steps = K, .seed = 555 + k, .t_start = t0, .sampler = sampler, .eta = eta};
        char err[256] = "", what[128];
        ddpm_status st =
            ddpm_sample_refine(&s, oracle_predict, &o, C, H, W, x0, NULL, &p, NULL, NULL, x, err, sizeof err);
        CHECK(st == DDPM_OK, "refine t0 %d: %s", t0, err);
        if (st != DDPM_OK)
            continue;
        int n = ddpm_refine_timesteps(t0 - 1, K, ts);
        double abar = s.alphas_cumprod[t0 - 1];
        double th_mean, th_sd, mean, sd;
        exact_law(&s, sampler, ts, n, eta, sqrt(abar) * MU, abar * SD * SD + 1 - abar, &th_mean, &th_sd);
        moments(x, NPIX, &mean, &sd);
        snprintf(what, sizeof what, "refine %s eta=%g t0=%d K=%d", ddpm_sampler_name(sampler), (double)eta, t0, K);
        check_against_theory(what, mean, sd, th_mean, th_sd, NPIX);
        CHECK(fabs(mean - MU) < 5 * SD / sqrt((double)NPIX), "%s: mean %.5f vs %.5f", what, mean, MU);
        /* The spread, as measured: from high t0 the chains carry
         * generate's errors (DDIM -13 %, DPM-Solver++ +19 % at t0 = 600,
         * K = 20); from t0 <= 100 their last steps are short in lambda and
         * both are within 2 %.  eta = 1 is DDPM's beta~: under-dispersed. */
        double rel = th_sd / SD - 1;
        printf("  exact std: s %+.2f %%\n", 100 * rel);
        if (sampler == DDPM_SAMPLER_DPM_SOLVER_PP || eta == 0.0f)
            CHECK(fabs(rel) < (t0 <= 100 ? 0.03 : 0.25), "%s: exact std %.5f vs data %.5f", what, th_sd, SD);
        else
            CHECK(rel < 0.001, "%s: exact std %.5f above data %.5f", what, th_sd, SD);
    }
out:
    free(x), free(x0), free(ts);
    ddpm_schedule_free(&s);
}

/* DDIM with eta = 1 and DDPM with sigma^2 = beta~ are the same reverse
 * process (Song et al. sec. 4.1): with no clipping both steps are
 *   x_prev = mu~(x_t, x^_0) + sqrt(beta~') z
 * written two ways (eq. 7 vs eq. 12), and both loops draw z from the same
 * stream REVERSE(t).  So: the same exact law, and -- same seed -- the same
 * pixels up to float rounding of the two forms (not bit for bit). */
static void run_ddim_vs_ddpm(int K)
{
    ddpm_schedule s = oracle_schedule();
    float *a = malloc(NPIX * sizeof(float)), *b = malloc(NPIX * sizeof(float));
    int *ts = malloc((size_t)K * sizeof(int));
    if (s.betas == NULL || a == NULL || b == NULL || ts == NULL) {
        CHECK(0, "setup");
        goto out;
    }
    oracle o = {&s, MU, SD};
    ddpm_sample_params pd = {.steps = K, .variance = DDPM_VARIANCE_POSTERIOR, .seed = 4321};
    ddpm_sample_params pi = {.steps = K, .seed = 4321, .sampler = DDPM_SAMPLER_DDIM, .eta = 1.0f};
    char err[256] = "";
    CHECK(ddpm_sample_generate(&s, oracle_predict, &o, C, H, W, &pd, NULL, NULL, a, err, sizeof err) == DDPM_OK,
          "DDPM: %s", err);
    CHECK(ddpm_sample_generate(&s, oracle_predict, &o, C, H, W, &pi, NULL, NULL, b, err, sizeof err) == DDPM_OK,
          "DDIM: %s", err);
    int n = ddpm_timesteps(&s, K, s.T - 1, ts);

    /* Step by step, the affine maps agree (eq. 7 with beta~ vs eq. 12). */
    double worst_map = 0;
    for (int i = 0; i < n; i++) {
        int t = ts[i], prev = i + 1 < n ? ts[i + 1] : -1;
        double A, B, sigma, ax, c;
        ddim_affine(&s, t, prev, 1.0, MU, SD, &A, &B, &sigma);
        x0_coefficients(&s, t, MU, SD, &ax, &c);
        double a_t = s.alphas_cumprod[t], a_p = prev >= 0 ? s.alphas_cumprod[prev] : 1.0;
        double beta = 1 - a_t / a_p;
        double coef1 = sqrt(a_p) * beta / (1 - a_t), coef2 = sqrt(1 - beta) * (1 - a_p) / (1 - a_t);
        double A7 = coef1 * ax + coef2, B7 = coef1 * c, sigma7 = prev >= 0 ? sqrt((1 - a_p) / (1 - a_t) * beta) : 0;
        worst_map = fmax(worst_map, fmax(fabs(A - A7), fmax(fabs(B - B7), fabs(sigma - sigma7))));
    }
    printf("DDIM eta=1 vs DDPM beta~, K=%d: per-step affine maps differ by at most %.3g\n", K, worst_map);
    CHECK(worst_map < 1e-9, "the two steps are not the same map: %.3g", worst_map);

    double ma, sa, mb, sb, th_mean, th_sd;
    moments(a, NPIX, &ma, &sa);
    moments(b, NPIX, &mb, &sb);
    ddim_theory(&s, ts, n, 1.0, 0.0, 1.0, &th_mean, &th_sd);
    char what[64];
    snprintf(what, sizeof what, "DDPM beta~ K=%d", K);
    check_against_theory(what, ma, sa, th_mean, th_sd, NPIX);
    snprintf(what, sizeof what, "DDIM eta=1 K=%d", K);
    check_against_theory(what, mb, sb, th_mean, th_sd, NPIX);

    double worst = 0;
    for (size_t i = 0; i < NPIX; i++)
        worst = fmax(worst, fabs((double)a[i] - b[i]));
    printf("same seed: max |DDPM - DDIM| = %.3g over %zu pixels\n", worst, NPIX);
    CHECK(worst < 1e-4, "same seed, max pixel difference %.3g", worst);
out:
    free(a), free(b), free(ts);
    ddpm_schedule_free(&s);
}

static int sampler_arg(const char *text, ddpm_sampler *out)
{
    if (ddpm_sampler_parse(text, out) != DDPM_OK || *out == DDPM_SAMPLER_DDPM) {
        fprintf(stderr, "sampler must be ddim or dpm-solver++ (DDPM: test_oracle)\n");
        return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2 || (argc < 3 && strcmp(argv[1], "convergence") != 0)) {
        fprintf(stderr, "usage: %s generate ddim|dpm-solver++ K [eta] | refine ddim|dpm-solver++ [eta] | "
                        "ddim-vs-ddpm K | convergence\n", argv[0]);
        return 2;
    }
    ddpm_set_threads(1); /* as test_oracle.c: faster on a loaded machine, same results */
    ddpm_sampler sampler;
    if (strcmp(argv[1], "generate") == 0 && argc >= 4) {
        if (!sampler_arg(argv[2], &sampler))
            return 2;
        run_generate(sampler, atoi(argv[3]), argc > 4 ? (float)atof(argv[4]) : 0.0f);
    } else if (strcmp(argv[1], "refine") == 0) {
        if (!sampler_arg(argv[2], &sampler))
            return 2;
        run_refine(sampler, argc > 3 ? (float)atof(argv[3]) : 0.0f);
    } else if (strcmp(argv[1], "ddim-vs-ddpm") == 0) {
        run_ddim_vs_ddpm(atoi(argv[2]));
    } else if (strcmp(argv[1], "convergence") == 0) {
        run_convergence();
    } else {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }
    return check_report("test_solver_oracle");
}
