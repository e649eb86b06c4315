/* test_schedule.c: the schedule arrays against numbers computed here
 * independently (long double products, the paper's identities, PyTorch's
 * published values), the timestep chains, and q_sample / p_sample against
 * the paper's own formulas. */
#include "ddpm.h"
#include "sampler_internal.h"
#include "check.h"

#include <stdlib.h>

static ddpm_schedule make_schedule(ddpm_scheduler_config c)
{
    ddpm_schedule s;
    char err[256] = "";
    ddpm_status st = ddpm_schedule_init(&s, &c, err, sizeof err);
    CHECK(st == DDPM_OK, "schedule_init: %s", err);
    return s;
}

static ddpm_schedule default_schedule(void)
{
    ddpm_scheduler_config c;
    ddpm_scheduler_config_default(&c);
    return make_schedule(c);
}

static double rel_err(double got, double want)
{
    return fabs(got - want) / fmax(fabs(want), 1e-300);
}

/* Linear betas 1e-4 .. 0.02, T = 1000: the DDPM paper's schedule. */
static void test_linear_values(void)
{
    ddpm_schedule s = default_schedule();
    if (s.betas == NULL)
        return;

    /* Endpoints are exact (spec 5.2). */
    CHECK(float_bits(s.betas[0]) == 0x38d1b717u, "beta_0 bits %08x", float_bits(s.betas[0]));
    CHECK(float_bits(s.betas[999]) == 0x3ca3d70au, "beta_999 bits %08x", float_bits(s.betas[999]));

    /* abar in long double from the real-number schedule
     * beta_i = 1e-4 + i (0.02 - 1e-4) / 999: the float betas and the
     * double product may move it by ~1e-6 relative, no more. */
    long double prod = 1.0L;
    double max_rel = 0;
    for (int t = 0; t < 1000; t++) {
        long double beta = 1e-4L + (long double)t * (0.02L - 1e-4L) / 999.0L;
        prod *= 1.0L - beta;
        max_rel = fmax(max_rel, rel_err(s.alphas_cumprod[t], (double)prod));
        CHECK(rel_err(s.betas[t], (double)beta) < 1e-6, "beta_%d = %.9g vs %.9Lg", t, (double)s.betas[t], beta);
        CHECK(s.alphas[t] == 1.0f - s.betas[t], "alpha_%d", t);
    }
    CHECK(max_rel < 1e-5, "abar vs long double: max relative error %.3g", max_rel);
    CHECK(rel_err(s.alphas_cumprod[999], 4.0358e-5) < 1e-4, "abar_999 = %.6g, expected ~4.0358e-5",
          (double)s.alphas_cumprod[999]);

    /* PyTorch 1.13's alphas_cumprod (spec 5.2, measured).  Our serial
     * linspace differs from that build's vectorised one in the last bit of
     * some betas, which moves abar by a few ulp at most; the exact
     * comparison with a given PyTorch is in test_step_vectors.c. */
    struct {
        int t;
        uint32_t bits;
    } ref[] = {{0, 0x3f7ff972u}, {1, 0x3f7ff196u}, {499, 0x3da0f259u}, {500, 0x3d9f53dbu}, {999, 0x38294667u}};
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
        float want;
        memcpy(&want, &ref[i].bits, sizeof want);
        int64_t d = ulp_distance(s.alphas_cumprod[ref[i].t], want);
        printf("abar[%d] = %.8g (%08x), torch 1.13: %08x, %lld ulp\n", ref[i].t,
               (double)s.alphas_cumprod[ref[i].t], float_bits(s.alphas_cumprod[ref[i].t]), ref[i].bits,
               (long long)d);
        CHECK(d <= 4, "abar[%d] is %lld ulp from torch's", ref[i].t, (long long)d);
    }

    /* beta~_0 = 0 (abar_{-1} = 1), and diffusers' own test values
     * (tests/schedulers/test_scheduler_ddpm.py, test_variance, tolerance 1e-5). */
    CHECK(s.posterior_variance[0] == 0.0f, "beta~_0 = %g", (double)s.posterior_variance[0]);
    CHECK(fabs(s.posterior_variance[487] - 0.00979) < 1e-5, "beta~_487 = %.7g", (double)s.posterior_variance[487]);
    CHECK(fabs(s.posterior_variance[999] - 0.02) < 1e-5, "beta~_999 = %.7g", (double)s.posterior_variance[999]);

    /* The posterior's identities (eqs. 6, 7), which hold for any schedule:
     *   E[x_{t-1} | x_0]:   coef1 + coef2 sqrt(abar_t) = sqrt(abar_{t-1})
     *   Var[x_{t-1} | x_0]: beta~_t + coef2^2 (1 - abar_t) = 1 - abar_{t-1}
     *   and beta~_t <= beta_t.
     * They rely on abar_t = alpha_t abar_{t-1}, which the stored floats
     * satisfy only to a few 2^-24 relative; divided by 1 - abar_t (small
     * at small t) that is the second term of each tolerance. */
    for (int t = 0; t < 1000; t++) {
        double abar = s.alphas_cumprod[t], abar_prev = t > 0 ? s.alphas_cumprod[t - 1] : 1.0;
        double c1 = s.posterior_mean_coef1[t], c2 = s.posterior_mean_coef2[t];
        double slack = ldexp(1.0, -22) * abar / (1 - abar);
        CHECK(rel_err(c1 + c2 * sqrt(abar), sqrt(abar_prev)) < 1e-6 + slack, "mean identity at %d", t);
        CHECK(fabs(s.posterior_variance[t] + c2 * c2 * (1 - abar) - (1 - abar_prev)) <
                  (1e-6 + slack) * (1 - abar_prev) + 1e-30,
              "variance identity at %d", t);
        CHECK(s.posterior_variance[t] <= s.betas[t], "beta~ > beta at %d", t);
        CHECK(s.sqrt_alphas_cumprod[t] == sqrtf(s.alphas_cumprod[t]), "sqrt abar at %d", t);
        CHECK(s.sqrt_one_minus_alphas_cumprod[t] == sqrtf(1.0f - s.alphas_cumprod[t]), "sqrt 1-abar at %d", t);
    }
    ddpm_schedule_free(&s);
    ddpm_schedule_free(&s); /* twice is harmless */
}

static void test_other_schedules(void)
{
    ddpm_scheduler_config c;
    ddpm_scheduler_config_default(&c);

    /* scaled_linear (latent diffusion): betas = linspace(sqrt(b0), sqrt(b1))^2 */
    c.beta_schedule = DDPM_BETA_SCALED_LINEAR;
    c.beta_start = 0.00085;
    c.beta_end = 0.012;
    ddpm_schedule s = make_schedule(c);
    if (s.betas != NULL) {
        float r0 = (float)sqrt(0.00085), r1 = (float)sqrt(0.012);
        CHECK(s.betas[0] == r0 * r0 && s.betas[999] == r1 * r1, "scaled_linear endpoints");
        for (int t = 0; t < 1000; t++) {
            long double r = sqrtl(0.00085L) + (long double)t * (sqrtl(0.012L) - sqrtl(0.00085L)) / 999.0L;
            CHECK(rel_err(s.betas[t], (double)(r * r)) < 1e-6, "scaled_linear beta_%d", t);
        }
    }
    ddpm_schedule_free(&s);

    /* squaredcos_cap_v2 (Nichol & Dhariwal 2021): abar(s) = cos^2((s + 0.008)/1.008 pi/2),
     * beta = min(1 - abar(t2)/abar(t1), 0.999); the last beta is capped. */
    c.beta_schedule = DDPM_BETA_SQUAREDCOS_CAP_V2;
    s = make_schedule(c);
    if (s.betas != NULL) {
        for (int t = 0; t < 1000; t++) {
            long double pi = 3.14159265358979323846264338327950288L;
            long double a1 = cosl(((long double)t / 1000 + 0.008L) / 1.008L * pi / 2);
            long double a2 = cosl(((long double)(t + 1) / 1000 + 0.008L) / 1.008L * pi / 2);
            long double beta = 1.0L - (a2 * a2) / (a1 * a1);
            if (beta > 0.999L)
                beta = 0.999L;
            CHECK(rel_err(s.betas[t], (double)beta) < 1e-6, "cosine beta_%d = %.9g vs %.9Lg", t, (double)s.betas[t],
                  beta);
        }
        CHECK(s.betas[999] == 0.999f, "cosine cap: beta_999 = %.9g", (double)s.betas[999]);
        /* The cosine schedule's abar follows its definition closely. */
        double pi = 3.141592653589793, f0 = cos(0.008 / 1.008 * pi / 2);
        double want = pow(cos((0.5 + 0.008) / 1.008 * pi / 2) / f0, 2);
        CHECK(rel_err(s.alphas_cumprod[499], want) < 1e-5, "cosine abar_499 = %.7g vs %.7g",
              (double)s.alphas_cumprod[499], want);
    }
    ddpm_schedule_free(&s);

    /* T = 1: a single timestep, beta = beta_start (torch.linspace with 1 step). */
    ddpm_scheduler_config_default(&c);
    c.num_train_timesteps = 1;
    s = make_schedule(c);
    if (s.betas != NULL)
        CHECK(s.T == 1 && s.betas[0] == (float)0.0001 && s.posterior_variance[0] == 0.0f, "T = 1 schedule");
    ddpm_schedule_free(&s);
}

static void test_init_errors(void)
{
    ddpm_scheduler_config c;
    ddpm_schedule s;
    char err[256];

    struct {
        int T;
        double b0, b1;
        const char *needle;
    } cases[] = {
        {0, 1e-4, 0.02, "num_train_timesteps"},
        {100001, 1e-4, 0.02, "num_train_timesteps"},
        {1000, 0.0, 0.02, "beta"},
        {1000, 1e-4, 1.0, "beta"},
        /* alpha_0 = 1 - 1e-9 rounds to 1 in float32: 1 - abar_0 = 0 */
        {1000, 1e-9, 0.02, "1 - alphas_cumprod"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ddpm_scheduler_config_default(&c);
        c.num_train_timesteps = cases[i].T;
        c.beta_start = cases[i].b0;
        c.beta_end = cases[i].b1;
        err[0] = 0;
        ddpm_status st = ddpm_schedule_init(&s, &c, err, sizeof err);
        CHECK(st == DDPM_ERR_ARGUMENT, "case %zu: %s", i, ddpm_status_name(st));
        CHECK(strstr(err, cases[i].needle) != NULL, "case %zu: message \"%s\"", i, err);
        CHECK(s.betas == NULL, "case %zu: arrays left allocated", i);
        ddpm_schedule_free(&s);
    }
    ddpm_scheduler_config_default(&c);
    c.variance_type = (ddpm_variance)9;
    CHECK(ddpm_schedule_init(&s, &c, NULL, 0) == DDPM_ERR_ARGUMENT, "bad variance enum");
    CHECK(ddpm_schedule_init(NULL, &c, NULL, 0) == DDPM_ERR_ARGUMENT, "NULL schedule");
    CHECK(ddpm_schedule_init(&s, NULL, NULL, 0) == DDPM_ERR_ARGUMENT, "NULL config");
}

/* Spacings (diffusers' set_timesteps; the full comparison with NumPy's
 * output is in test_step_vectors.c) and the refine rule. */
static void test_timesteps(void)
{
    ddpm_schedule s = default_schedule();
    if (s.betas == NULL)
        return;
    int *ts = malloc(1001 * sizeof(int));
    if (ts == NULL)
        return;

    /* leading, spec 5.3's examples */
    CHECK(ddpm_timesteps(&s, 1000, 999, ts) == 1000, "K = 1000");
    int ok = 1;
    for (int i = 0; i < 1000; i++)
        ok &= ts[i] == 999 - i;
    CHECK(ok, "K = 1000 is 999 .. 0");
    CHECK(ddpm_timesteps(&s, 50, 999, ts) == 50 && ts[0] == 980 && ts[1] == 960 && ts[48] == 20 && ts[49] == 0,
          "K = 50: %d %d .. %d %d", ts[0], ts[1], ts[48], ts[49]);
    int seven[7] = {852, 710, 568, 426, 284, 142, 0};
    CHECK(ddpm_timesteps(&s, 7, 999, ts) == 7 && memcmp(ts, seven, sizeof seven) == 0, "K = 7");
    CHECK(ddpm_timesteps(&s, 7, 5000, ts) == 7 && memcmp(ts, seven, sizeof seven) == 0, "t_start > T-1");
    CHECK(ddpm_timesteps(&s, 1, 999, ts) == 1 && ts[0] == 0, "K = 1");

    CHECK(ddpm_timesteps(&s, 0, 999, ts) == -1, "K = 0");
    CHECK(ddpm_timesteps(&s, 1001, 999, ts) == -1, "K > T");
    CHECK(ddpm_timesteps(&s, 10, -1, ts) == -1, "t_start < 0");
    CHECK(ddpm_timesteps(NULL, 10, 999, ts) == -1 && ddpm_timesteps(&s, 10, 999, NULL) == -1, "NULL");

    /* steps_offset = 1 moves "leading" up by one; K = T then runs off the end. */
    s.config.steps_offset = 1;
    CHECK(ddpm_timesteps(&s, 50, 999, ts) == 50 && ts[0] == 981 && ts[49] == 1, "offset 1");
    CHECK(ddpm_timesteps(&s, 1000, 999, ts) == -1, "offset 1, K = T");
    s.config.steps_offset = 0;

    /* Refine: start at t_start exactly, end at 0, strictly descending, K
     * clamped to t_start + 1; against the rule evaluated in floating point. */
    int starts[] = {0, 1, 2, 19, 99, 299, 599, 997};
    int Ks[] = {1, 2, 3, 10, 30, 50, 100, 600, 1000};
    for (size_t a = 0; a < sizeof starts / sizeof starts[0]; a++) {
        for (size_t b = 0; b < sizeof Ks / sizeof Ks[0]; b++) {
            int t0 = starts[a], K = Ks[b];
            int n = ddpm_timesteps(&s, K, t0, ts);
            int want_n = K < t0 + 1 ? K : t0 + 1;
            CHECK(n == want_n, "refine t_start %d K %d: %d steps", t0, K, n);
            if (n != want_n)
                continue;
            int good = ts[0] == t0 && (n == 1 || ts[n - 1] == 0); /* K = 1: [t_start] */
            for (int i = 1; i < n; i++)
                good &= ts[i] < ts[i - 1];
            for (int i = 0; i < n && n > 1; i++)
                good &= ts[i] == (int)floor((double)t0 * (n - 1 - i) / (n - 1) + 0.5);
            CHECK(good, "refine chain t_start %d K %d", t0, K);
        }
    }
    free(ts);
    ddpm_schedule_free(&s);
}

/* q_sample is eq. (4); p_sample's mean and variance are Algorithm 2's. */
static void test_q_and_p_sample(void)
{
    enum { N = 64 };
    ddpm_scheduler_config c;
    ddpm_scheduler_config_default(&c);
    c.clip_sample = 0;
    ddpm_schedule s = make_schedule(c);
    if (s.betas == NULL)
        return;

    float x0[N], eps[N], z[N], xt[N], out[N], out2[N];
    for (int i = 0; i < N; i++) {
        x0[i] = -0.9f + 1.8f * (float)i / (N - 1);
        eps[i] = ddpm_noise(1, 0, 0, 0, (uint32_t)i);
        z[i] = ddpm_noise(2, 0, 0, 0, (uint32_t)i);
    }

    int times[] = {0, 1, 250, 500, 998, 999};
    for (size_t k = 0; k < sizeof times / sizeof times[0]; k++) {
        int t = times[k];
        double abar = s.alphas_cumprod[t];
        ddpm_q_sample(&s, t, x0, eps, xt, N);
        for (int i = 0; i < N; i++)
            CHECK(fabs(xt[i] - (sqrt(abar) * x0[i] + sqrt(1 - abar) * eps[i])) < 1e-6, "q_sample t %d", t);

        /* Algorithm 2's mean (no clipping, epsilon), in double:
         *   mu = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - abar_t) eps)
         * with the step's own alpha_t = abar_t / abar_{t-1}, which
         * p_sample takes from the stored abar like diffusers.  Besides the
         * ~1e-7 relative rounding of each float op, p_sample's
         * beta_t = 1 - alpha_t carries the rounding of alpha_t in float32
         * (up to 2^-25 absolute), which the 1/(1 - abar_t) of eq. (7)
         * magnifies at small t: that is the second term of the tolerance. */
        double abar_prev = t > 0 ? s.alphas_cumprod[t - 1] : 1.0;
        double alpha = abar / abar_prev, beta = 1.0 - alpha;
        int prev = t - 1;
        ddpm_p_sample(&s, t, prev, DDPM_VARIANCE_BETA, xt, eps, NULL, out, N); /* z = NULL: the mean */
        for (int i = 0; i < N; i++) {
            double mu = (xt[i] - beta / sqrt(1 - abar) * eps[i]) / sqrt(alpha);
            double tol = 2e-6 * (1 + fabs(mu)) + ldexp(1.0, -25) / (1 - abar) * (fabs(x0[i]) + fabs(xt[i]));
            CHECK(fabs(out[i] - mu) < tol, "mean at t %d: %.8g vs %.8g", t, (double)out[i], mu);
        }
        if (prev < 0)
            continue;
        /* The noise enters as sigma z, sigma^2 = beta_t or beta~_t. */
        for (int v = 0; v < 2; v++) {
            ddpm_variance var = v ? DDPM_VARIANCE_POSTERIOR : DDPM_VARIANCE_BETA;
            double sigma = sqrt(v ? s.posterior_variance[t] : s.betas[t]);
            ddpm_p_sample(&s, t, prev, var, xt, eps, z, out2, N);
            for (int i = 0; i < N; i++)
                CHECK(fabs((out2[i] - out[i]) - sigma * z[i]) < 1e-5, "sigma at t %d var %d", t, v);
        }
    }

    /* The last step (prev_t = -1) adds no noise and returns x^_0 itself:
     * z may be anything, even NaN. */
    float nan_z[N];
    for (int i = 0; i < N; i++)
        nan_z[i] = NAN;
    ddpm_q_sample(&s, 0, x0, eps, xt, N);
    ddpm_p_sample(&s, 0, -1, DDPM_VARIANCE_BETA, xt, eps, nan_z, out, N);
    for (int i = 0; i < N; i++) {
        float x0_hat = (xt[i] - s.sqrt_one_minus_alphas_cumprod[0] * eps[i]) / s.sqrt_alphas_cumprod[0];
        CHECK(out[i] == x0_hat, "last step returns x^_0");
        CHECK(fabs(out[i] - x0[i]) < 1e-6, "x^_0 recovers x_0");
    }
    /* ... also from a respaced chain's last step, e.g. 20 -> -1. */
    ddpm_q_sample(&s, 20, x0, eps, xt, N);
    ddpm_p_sample(&s, 20, -1, DDPM_VARIANCE_POSTERIOR, xt, eps, nan_z, out, N);
    for (int i = 0; i < N; i++)
        CHECK(fabs(out[i] - x0[i]) < 1e-5, "x^_0 from t = 20");

    /* Clipping limits x^_0 to the configured range. */
    s.config.clip_sample = 1;
    s.config.clip_sample_range = 0.5;
    ddpm_p_sample(&s, 20, -1, DDPM_VARIANCE_POSTERIOR, xt, eps, NULL, out, N);
    for (int i = 0; i < N; i++)
        CHECK(out[i] == fminf(fmaxf(out[i], -0.5f), 0.5f) && fabs(out[i] - fminf(fmaxf(x0[i], -0.5f), 0.5f)) < 1e-5,
              "clip to 0.5: %g (x0 %g)", (double)out[i], (double)x0[i]);
    s.config.clip_sample = 0;

    /* sample and v prediction recover the same x_0. */
    float v[N];
    for (int i = 0; i < N; i++)
        v[i] = s.sqrt_alphas_cumprod[500] * eps[i] - s.sqrt_one_minus_alphas_cumprod[500] * x0[i];
    ddpm_q_sample(&s, 500, x0, eps, xt, N);
    s.config.prediction_type = DDPM_PREDICT_V;
    ddpm_p_sample(&s, 500, -1, DDPM_VARIANCE_BETA, xt, v, NULL, out, N);
    for (int i = 0; i < N; i++)
        CHECK(fabs(out[i] - x0[i]) < 1e-5, "v prediction x^_0 %g vs %g", (double)out[i], (double)x0[i]);
    s.config.prediction_type = DDPM_PREDICT_SAMPLE;
    ddpm_p_sample(&s, 500, -1, DDPM_VARIANCE_BETA, xt, x0, NULL, out, N);
    CHECK(memcmp(out, x0, sizeof out) == 0, "sample prediction x^_0");
    s.config.prediction_type = DDPM_PREDICT_EPSILON;

    /* x_prev may be x_t. */
    ddpm_q_sample(&s, 300, x0, eps, xt, N);
    ddpm_p_sample(&s, 300, 280, DDPM_VARIANCE_POSTERIOR, xt, eps, z, out, N);
    ddpm_p_sample(&s, 300, 280, DDPM_VARIANCE_POSTERIOR, xt, eps, z, xt, N);
    CHECK(memcmp(out, xt, sizeof out) == 0, "in-place p_sample");

    /* Out-of-range timesteps write nothing. */
    for (int i = 0; i < N; i++)
        out[i] = 123.0f;
    ddpm_p_sample(&s, 1000, 999, DDPM_VARIANCE_BETA, xt, eps, z, out, N);
    ddpm_p_sample(&s, 10, 10, DDPM_VARIANCE_BETA, xt, eps, z, out, N);
    ddpm_p_sample(&s, 10, -2, DDPM_VARIANCE_BETA, xt, eps, z, out, N);
    ddpm_q_sample(&s, -1, x0, eps, out, N);
    int untouched = 1;
    for (int i = 0; i < N; i++)
        untouched &= out[i] == 123.0f;
    CHECK(untouched, "invalid timesteps wrote output");
    ddpm_schedule_free(&s);
}

int main(void)
{
    test_linear_values();
    test_other_schedules();
    test_init_errors();
    test_timesteps();
    test_q_and_p_sample();
    return check_report("test_schedule");
}
