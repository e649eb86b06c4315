/* test_sampler.c: the sampling loops' contract.
 *   - which noise goes where (x_T, z per step, q_sample at t0, the kept
 *     region's re-noising), checked against a hand-written loop over the
 *     public building blocks -- for DDPM, DDIM (eta 0, 0.6, 1) and
 *     DPM-Solver++ (whose steps test_solver_vectors checks against
 *     diffusers);
 *   - the refine mask: kept pixels end as x_0 exactly, and the model sees
 *     q_sample(x_0, t) there at every step;
 *   - cancellation, model errors, NaN/Inf, bad arguments: the output is
 *     never touched unless the run succeeds, whatever the sampler;
 *   - the sampler names and their parser;
 *   - results independent of the thread count. */
#include "ddpm.h"
#include "sampler_internal.h"
#include "check.h"

#include <stdlib.h>

enum { C = 3, H = 8, W = 12 };
#define N ((size_t)C * H * W)
#define PIX ((size_t)H * W)

/* A simple deterministic "model": eps = 0.5 x_t + 0.01 (t / 1000), recording
 * what it is called with, and able to fail or return NaN/Inf on request. */
typedef struct {
    int calls;
    int ts[1000];
    float first_x[N];
    float seen_x[1000][N];
    int record_all;
    int fail_at;           /* call number (1-based) that fails, 0 = never  */
    ddpm_status fail_with;
    float poison;          /* value written on the failing call if NUMERIC */
} model;

static ddpm_status model_predict(void *ctx, const float *x_t, int t, float *eps, char *err, size_t errlen)
{
    model *m = ctx;
    if (m->calls < 1000) {
        m->ts[m->calls] = t;
        if (m->record_all)
            memcpy(m->seen_x[m->calls], x_t, sizeof(float) * N);
    }
    if (m->calls == 0)
        memcpy(m->first_x, x_t, sizeof m->first_x);
    m->calls++;
    for (size_t i = 0; i < N; i++)
        eps[i] = 0.5f * x_t[i] + 0.01f * (float)t / 1000.0f;
    if (m->calls == m->fail_at) {
        if (m->fail_with == DDPM_ERR_NUMERIC) {
            eps[N / 2] = m->poison;
        } else {
            snprintf(err, errlen, "model failed on purpose at t=%d", t);
            return m->fail_with;
        }
    }
    return DDPM_OK;
}

typedef struct {
    int calls, stop_at, last_step, last_total, in_order;
} progress_log;

static int progress_cb(void *ctx, int step, int total)
{
    progress_log *p = ctx;
    p->calls++;
    p->in_order &= step == p->calls;
    p->last_step = step;
    p->last_total = total;
    return p->stop_at > 0 && step == p->stop_at;
}

static ddpm_schedule schedule_with(int clip)
{
    ddpm_scheduler_config c;
    ddpm_scheduler_config_default(&c);
    c.clip_sample = clip;
    ddpm_schedule s;
    CHECK(ddpm_schedule_init(&s, &c, NULL, 0) == DDPM_OK, "schedule");
    return s;
}

static int all_equal(const float *x, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        if (float_bits(x[i]) != float_bits(v))
            return 0;
    return 1;
}

static void fill(float *x, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        x[i] = v;
}

static void make_input(float *x0)
{
    for (size_t i = 0; i < N; i++)
        x0[i] = -0.8f + 1.6f * (float)(i % 17) / 16.0f;
}

/* generate = x_T from START, then for each t: eps, z from REVERSE(t), p_sample. */
static void test_generate_contract(void)
{
    ddpm_schedule s = schedule_with(1);
    if (s.betas == NULL)
        return;
    static model m;
    memset(&m, 0, sizeof m);
    float x[N], ref[N], eps[N], z[N];
    int ts[20];
    ddpm_sample_params p = {.steps = 20, .variance = DDPM_VARIANCE_POSTERIOR, .seed = 77, .t_start = 0};
    progress_log log = {0, 0, 0, 0, 1};
    char err[256] = "";

    CHECK(ddpm_sample_generate(&s, model_predict, &m, C, H, W, &p, progress_cb, &log, x, err, sizeof err) == DDPM_OK,
          "generate: %s", err);
    CHECK(log.calls == 20 && log.in_order && log.last_total == 20, "progress: %d calls", log.calls);

    int K = ddpm_timesteps(&s, 20, s.T - 1, ts);
    CHECK(K == 20 && m.calls == 20, "%d model calls", m.calls);
    for (int i = 0; i < K && i < m.calls; i++)
        CHECK(m.ts[i] == ts[i], "call %d at t %d, expected %d", i, m.ts[i], ts[i]);

    /* The same run, by hand. */
    ddpm_noise_fill(p.seed, DDPM_STREAM_START, C, H, W, 0, 0, ref);
    CHECK(memcmp(m.first_x, ref, sizeof ref) == 0, "x_T is not the START stream");
    for (int i = 0; i < K; i++) {
        int t = ts[i], prev = i + 1 < K ? ts[i + 1] : -1;
        for (size_t j = 0; j < N; j++)
            eps[j] = 0.5f * ref[j] + 0.01f * (float)t / 1000.0f;
        ddpm_noise_fill(p.seed, DDPM_STREAM_REVERSE(t), C, H, W, 0, 0, z);
        ddpm_p_sample(&s, t, prev, p.variance, ref, eps, z, ref, N);
    }
    CHECK(memcmp(x, ref, sizeof ref) == 0, "generate differs from the hand-written chain");

    /* Deterministic; the seed matters; the thread count does not. */
    float again[N];
    ddpm_set_threads(1);
    CHECK(ddpm_sample_generate(&s, model_predict, &m, C, H, W, &p, NULL, NULL, again, NULL, 0) == DDPM_OK, "again");
    CHECK(memcmp(x, again, sizeof again) == 0, "1 thread differs");
    ddpm_set_threads(2);
    CHECK(ddpm_sample_generate(&s, model_predict, &m, C, H, W, &p, NULL, NULL, again, NULL, 0) == DDPM_OK, "again");
    CHECK(memcmp(x, again, sizeof again) == 0, "2 threads differ");
    ddpm_set_threads(0);
    p.seed = 78;
    CHECK(ddpm_sample_generate(&s, model_predict, &m, C, H, W, &p, NULL, NULL, again, NULL, 0) == DDPM_OK, "seed");
    CHECK(memcmp(x, again, sizeof again) != 0, "seed 78 gives the same image as 77");

    /* K = 1: a single step at t = 0 returns x^_0 of x_T, clipped. */
    p.steps = 1;
    CHECK(ddpm_sample_generate(&s, model_predict, &m, C, H, W, &p, NULL, NULL, x, NULL, 0) == DDPM_OK, "K = 1");
    ddpm_noise_fill(p.seed, DDPM_STREAM_START, C, H, W, 0, 0, ref);
    for (size_t j = 0; j < N; j++)
        eps[j] = 0.5f * ref[j] + 0.01f * 0.0f / 1000.0f;
    ddpm_p_sample(&s, 0, -1, p.variance, ref, eps, NULL, ref, N);
    CHECK(memcmp(x, ref, sizeof ref) == 0, "K = 1 result");
    int clipped = 1;
    for (size_t j = 0; j < N; j++)
        clipped &= x[j] >= -1.0f && x[j] <= 1.0f;
    CHECK(clipped, "K = 1: x^_0 not clipped to [-1, 1]");
    ddpm_schedule_free(&s);
}

/* refine = q_sample(x_0, t0-1, START), then per step eps, z from REVERSE(t),
 * p_sample, and outside the mask q_sample(x_0, prev, KNOWN(prev)) blended by m. */
static void test_refine_contract(void)
{
    ddpm_schedule s = schedule_with(0);
    if (s.betas == NULL)
        return;
    static model m;
    memset(&m, 0, sizeof m);
    m.record_all = 1;
    float x0[N], x[N], ref[N], eps[N], z[N], known[N], mask[PIX];
    make_input(x0);
    /* left third refined (1), middle half-and-half (0.5), right third kept (0) */
    for (int y = 0; y < H; y++)
        for (int i = 0; i < W; i++)
            mask[y * W + i] = i < 4 ? 1.0f : (i < 8 ? 0.5f : 0.0f);

    int t0 = 400, steps = 25;
    ddpm_sample_params p = {.steps = steps, .variance = DDPM_VARIANCE_BETA, .seed = 4242, .t_start = t0};
    char err[256] = "";
    CHECK(ddpm_sample_refine(&s, model_predict, &m, C, H, W, x0, mask, &p, NULL, NULL, x, err, sizeof err) == DDPM_OK,
          "refine: %s", err);

    int ts[25];
    int K = ddpm_refine_timesteps(t0 - 1, steps, ts);
    CHECK(K == 25 && ts[0] == t0 - 1 && ts[K - 1] == 0, "refine chain");
    CHECK(m.calls == K, "%d model calls", m.calls);
    for (int i = 0; i < K && i < m.calls; i++)
        CHECK(m.ts[i] == ts[i], "call %d at t %d, expected %d", i, m.ts[i], ts[i]);

    /* By hand. */
    ddpm_noise_fill(p.seed, DDPM_STREAM_START, C, H, W, 0, 0, eps);
    ddpm_q_sample(&s, ts[0], x0, eps, ref, N);
    CHECK(memcmp(m.first_x, ref, sizeof ref) == 0, "x_t0 is not q_sample(x_0) with the START stream");
    for (int i = 0; i < K; i++) {
        int t = ts[i], prev = i + 1 < K ? ts[i + 1] : -1;
        for (size_t j = 0; j < N; j++)
            eps[j] = 0.5f * ref[j] + 0.01f * (float)t / 1000.0f;
        ddpm_noise_fill(p.seed, DDPM_STREAM_REVERSE(t), C, H, W, 0, 0, z);
        ddpm_p_sample(&s, t, prev, p.variance, ref, eps, z, ref, N);
        if (prev >= 0) {
            ddpm_noise_fill(p.seed, DDPM_STREAM_KNOWN(prev), C, H, W, 0, 0, z);
            ddpm_q_sample(&s, prev, x0, z, known, N);
        } else {
            memcpy(known, x0, sizeof known);
        }
        for (int c = 0; c < C; c++)
            for (size_t j = 0; j < PIX; j++) {
                float mm = mask[j];
                size_t k = (size_t)c * PIX + j;
                if (mm < 1.0f)
                    ref[k] = mm * ref[k] + (1.0f - mm) * known[k];
            }
        /* What the model saw at the next step, in the kept region: exactly
         * the input noised to that timestep with the KNOWN stream. */
        if (prev >= 0 && i + 1 < m.calls) {
            int same = 1;
            for (int c = 0; c < C; c++)
                for (size_t j = 0; j < PIX; j++)
                    if (mask[j] == 0.0f) {
                        size_t k = (size_t)c * PIX + j;
                        float want = s.sqrt_alphas_cumprod[prev] * x0[k] +
                                     s.sqrt_one_minus_alphas_cumprod[prev] *
                                         ddpm_noise(p.seed, DDPM_STREAM_KNOWN(prev), (uint32_t)c,
                                                    (uint32_t)(j / W), (uint32_t)(j % W));
                        same &= float_bits(m.seen_x[i + 1][k]) == float_bits(want);
                    }
            CHECK(same, "step %d: the kept region is not q_sample(x_0, %d)", i + 1, prev);
        }
    }
    CHECK(memcmp(x, ref, sizeof ref) == 0, "refine differs from the hand-written chain");

    /* The kept region ends as x_0 exactly; the refined region does not. */
    int kept_exact = 1, refined_changed = 0;
    for (int c = 0; c < C; c++)
        for (size_t j = 0; j < PIX; j++) {
            size_t k = (size_t)c * PIX + j;
            if (mask[j] == 0.0f)
                kept_exact &= float_bits(x[k]) == float_bits(x0[k]);
            if (mask[j] == 1.0f)
                refined_changed |= x[k] != x0[k];
        }
    CHECK(kept_exact, "pixels with mask 0 are not x_0");
    CHECK(refined_changed, "pixels with mask 1 were not refined");

    /* No mask = a mask of ones. */
    float ones[PIX], a[N], b[N];
    fill(ones, PIX, 1.0f);
    CHECK(ddpm_sample_refine(&s, model_predict, &m, C, H, W, x0, NULL, &p, NULL, NULL, a, NULL, 0) == DDPM_OK, "a");
    CHECK(ddpm_sample_refine(&s, model_predict, &m, C, H, W, x0, ones, &p, NULL, NULL, b, NULL, 0) == DDPM_OK, "b");
    CHECK(memcmp(a, b, sizeof a) == 0, "NULL mask differs from a mask of ones");

    /* The output may be the input. */
    float inplace[N];
    memcpy(inplace, x0, sizeof inplace);
    CHECK(ddpm_sample_refine(&s, model_predict, &m, C, H, W, inplace, NULL, &p, NULL, NULL, inplace, NULL, 0) ==
              DDPM_OK,
          "in place");
    CHECK(memcmp(a, inplace, sizeof a) == 0, "in-place refine differs");

    /* t0 = T starts at T-1 even where generate's "leading" would not (980
     * for K = 50); K > t0 is clamped to t0 steps. */
    memset(&m, 0, sizeof m);
    progress_log log = {0, 0, 0, 0, 1};
    ddpm_sample_params q = {.steps = 50, .variance = DDPM_VARIANCE_POSTERIOR, .seed = 1, .t_start = s.T};
    CHECK(ddpm_sample_refine(&s, model_predict, &m, C, H, W, x0, NULL, &q, progress_cb, &log, x, NULL, 0) == DDPM_OK,
          "t0 = T");
    CHECK(m.ts[0] == s.T - 1 && m.ts[49] == 0 && log.last_total == 50, "t0 = T chain: %d .. %d", m.ts[0], m.ts[49]);
    memset(&m, 0, sizeof m);
    log = (progress_log){0, 0, 0, 0, 1};
    q.steps = 100;
    q.t_start = 10;
    CHECK(ddpm_sample_refine(&s, model_predict, &m, C, H, W, x0, NULL, &q, progress_cb, &log, x, NULL, 0) == DDPM_OK,
          "K > t0");
    CHECK(m.calls == 10 && log.calls == 10 && log.last_total == 10 && m.ts[0] == 9 && m.ts[9] == 0,
          "K > t0 clamps to t0 steps: %d calls", m.calls);
    ddpm_schedule_free(&s);
}

/* The few-step samplers' loops, by hand: the same chain, model calls and
 * noise streams as DDPM's (test_generate_contract, test_refine_contract),
 * with DDIM's step (z from REVERSE(t) only when eta > 0) or DPM-Solver++'s
 * (x^_0, then the multistep update with the previous step's x^_0).  With
 * `mask`, the kept region is re-noised and blended as for DDPM. */
static void chain_by_hand(const ddpm_schedule *s, const ddpm_sample_params *p, const int *ts, int K, float *x,
                          const float *x0, const float *mask)
{
    static float eps[N], z[N], history[N], known[N];
    for (int i = 0; i < K; i++) {
        int t = ts[i], prev = i + 1 < K ? ts[i + 1] : -1, t_last = i > 0 ? ts[i - 1] : -1;
        for (size_t j = 0; j < N; j++)
            eps[j] = 0.5f * x[j] + 0.01f * (float)t / 1000.0f;
        if (p->sampler == DDPM_SAMPLER_DDIM) {
            float eta = p->eta_t_max > 0 && t > p->eta_t_max ? 0.0f : p->eta;   /* deterministic above */
            if (eta > 0 && prev >= 0)
                ddpm_noise_fill(p->seed, DDPM_STREAM_REVERSE(t), C, H, W, 0, 0, z);
            ddpm_ddim_step(s, t, prev, eta, x, eps, z, x, N);
        } else {
            ddpm_dpm_solver_x0(s, t, x, eps, eps, N);
            ddpm_dpm_solver_step(s, t_last, t, prev, x, eps, i > 0 ? history : NULL, x, N);
            memcpy(history, eps, sizeof history);
        }
        if (mask == NULL)
            continue;
        if (prev >= 0) {
            ddpm_noise_fill(p->seed, DDPM_STREAM_KNOWN(prev), C, H, W, 0, 0, z);
            ddpm_q_sample(s, prev, x0, z, known, N);
        } else {
            memcpy(known, x0, sizeof known);
        }
        for (int c = 0; c < C; c++)
            for (size_t j = 0; j < PIX; j++) {
                size_t k = (size_t)c * PIX + j;
                if (mask[j] < 1.0f)
                    x[k] = mask[j] * x[k] + (1.0f - mask[j]) * known[k];
            }
    }
}

static void test_few_step_contract(ddpm_sampler sampler, float eta, int eta_t_max)
{
    ddpm_schedule s = schedule_with(1);
    if (s.betas == NULL)
        return;
    static model m;
    memset(&m, 0, sizeof m);
    static float x[N], ref[N], ddpm_x[N], x0[N], mask[PIX];
    int ts[20];
    char what[64], err[256] = "";
    snprintf(what, sizeof what, "%s eta %g eta_t_max %d", ddpm_sampler_name(sampler), (double)eta, eta_t_max);
    ddpm_sample_params p = {.steps = 20, .variance = DDPM_VARIANCE_POSTERIOR, .seed = 77, .sampler = sampler,
                            .eta = eta, .eta_t_max = eta_t_max};
    progress_log log = {0, 0, 0, 0, 1};

    /* generate */
    CHECK(ddpm_sample_generate(&s, model_predict, &m, C, H, W, &p, progress_cb, &log, x, err, sizeof err) ==
              DDPM_OK,
          "%s generate: %s", what, err);
    int K = ddpm_timesteps(&s, 20, s.T - 1, ts);
    CHECK(K == 20 && m.calls == 20 && log.calls == 20 && log.in_order && log.last_total == 20,
          "%s: %d model calls, %d progress calls", what, m.calls, log.calls);
    for (int i = 0; i < K && i < m.calls; i++)
        CHECK(m.ts[i] == ts[i], "%s: call %d at t %d, expected %d", what, i, m.ts[i], ts[i]);
    ddpm_noise_fill(p.seed, DDPM_STREAM_START, C, H, W, 0, 0, ref);
    CHECK(memcmp(m.first_x, ref, sizeof ref) == 0, "%s: x_T is not the START stream", what);
    chain_by_hand(&s, &p, ts, K, ref, NULL, NULL);
    CHECK(memcmp(x, ref, sizeof ref) == 0, "%s: generate differs from the hand-written chain", what);

    /* The field is honoured (DDPM's image differs); eta only matters to
     * DDIM; the thread count does not matter. */
    ddpm_sample_params q = p;
    q.sampler = DDPM_SAMPLER_DDPM;
    CHECK(ddpm_sample_generate(&s, model_predict, &m, C, H, W, &q, NULL, NULL, ddpm_x, NULL, 0) == DDPM_OK, "DDPM");
    CHECK(memcmp(x, ddpm_x, sizeof x) != 0, "%s gives DDPM's image", what);
    q = p;
    q.eta = sampler == DDPM_SAMPLER_DDIM ? (eta > 0.5f ? 0.0f : 1.0f) : 0.7f;
    CHECK(ddpm_sample_generate(&s, model_predict, &m, C, H, W, &q, NULL, NULL, ref, NULL, 0) == DDPM_OK, "eta");
    CHECK((memcmp(x, ref, sizeof ref) != 0) == (sampler == DDPM_SAMPLER_DDIM), "%s: eta %g %s", what,
          (double)q.eta, sampler == DDPM_SAMPLER_DDIM ? "changes nothing" : "is not ignored");
    /* eta_t_max too: noise on every step or on none above t = 300 */
    q = p;
    q.eta_t_max = eta_t_max == 0 ? 300 : 0;
    CHECK(ddpm_sample_generate(&s, model_predict, &m, C, H, W, &q, NULL, NULL, ref, NULL, 0) == DDPM_OK,
          "eta_t_max");
    CHECK((memcmp(x, ref, sizeof ref) != 0) == (sampler == DDPM_SAMPLER_DDIM && eta > 0), "%s: eta_t_max %d %s",
          what, q.eta_t_max, sampler == DDPM_SAMPLER_DDIM && eta > 0 ? "changes nothing" : "is not ignored");
    /* A threshold at or past the first timestep noises every step, as 0 does. */
    if (eta_t_max == 0) {
        q.eta_t_max = s.T + 5;
        CHECK(ddpm_sample_generate(&s, model_predict, &m, C, H, W, &q, NULL, NULL, ref, NULL, 0) == DDPM_OK,
              "eta_t_max past T");
        CHECK(memcmp(x, ref, sizeof ref) == 0, "%s: eta_t_max %d is not every step", what, q.eta_t_max);
    }
    ddpm_set_threads(1);
    CHECK(ddpm_sample_generate(&s, model_predict, &m, C, H, W, &p, NULL, NULL, ref, NULL, 0) == DDPM_OK, "1 thread");
    CHECK(memcmp(x, ref, sizeof ref) == 0, "%s: 1 thread differs", what);
    ddpm_set_threads(0);

    /* refine under a mask */
    make_input(x0);
    for (int y = 0; y < H; y++)
        for (int i = 0; i < W; i++)
            mask[y * W + i] = i < 4 ? 1.0f : (i < 8 ? 0.5f : 0.0f);
    p.t_start = 400;
    p.steps = 12;
    memset(&m, 0, sizeof m);
    CHECK(ddpm_sample_refine(&s, model_predict, &m, C, H, W, x0, mask, &p, NULL, NULL, x, err, sizeof err) ==
              DDPM_OK,
          "%s refine: %s", what, err);
    K = ddpm_refine_timesteps(p.t_start - 1, p.steps, ts);
    CHECK(K == 12 && m.calls == K && m.ts[0] == 399 && m.ts[K - 1] == 0, "%s refine: %d calls", what, m.calls);
    float eps0[N];
    ddpm_noise_fill(p.seed, DDPM_STREAM_START, C, H, W, 0, 0, eps0);
    ddpm_q_sample(&s, ts[0], x0, eps0, ref, N);
    CHECK(memcmp(m.first_x, ref, sizeof ref) == 0, "%s: x_t0 is not q_sample(x_0) with the START stream", what);
    chain_by_hand(&s, &p, ts, K, ref, x0, mask);
    CHECK(memcmp(x, ref, sizeof ref) == 0, "%s: refine differs from the hand-written chain", what);
    int kept_exact = 1, refined_changed = 0;
    for (int c = 0; c < C; c++)
        for (size_t j = 0; j < PIX; j++) {
            size_t k = (size_t)c * PIX + j;
            if (mask[j] == 0.0f)
                kept_exact &= float_bits(x[k]) == float_bits(x0[k]);
            if (mask[j] == 1.0f)
                refined_changed |= x[k] != x0[k];
        }
    CHECK(kept_exact && refined_changed, "%s refine: kept region exact %d, refined region changed %d", what,
          kept_exact, refined_changed);
    ddpm_schedule_free(&s);
}

/* The names are the CLI's and the plug-in's choices. */
static void test_sampler_names(void)
{
    const char *want[] = {"ddpm", "ddim", "dpm-solver++"};
    for (int i = 0; i < 3; i++) {
        const char *name = ddpm_sampler_name((ddpm_sampler)i);
        ddpm_sampler back = (ddpm_sampler)99;
        CHECK(name != NULL && strcmp(name, want[i]) == 0, "sampler %d is named %s", i, name ? name : "NULL");
        CHECK(ddpm_sampler_parse(want[i], &back) == DDPM_OK && back == (ddpm_sampler)i, "parse %s", want[i]);
    }
    CHECK(DDPM_SAMPLER_DDPM == 0, "a zero-initialised struct must mean DDPM");
    CHECK(ddpm_sampler_name((ddpm_sampler)3) == NULL && ddpm_sampler_name((ddpm_sampler)-1) == NULL,
          "names past the list");
    const char *bad[] = {"DDIM", "dpm-solver", "dpm-solver++ ", "", "ddpm2", "dpmsolver++"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ddpm_sampler out = DDPM_SAMPLER_DDIM;
        CHECK(ddpm_sampler_parse(bad[i], &out) == DDPM_ERR_ARGUMENT && out == DDPM_SAMPLER_DDIM,
              "'%s' parsed", bad[i]);
    }
    ddpm_sampler out;
    CHECK(ddpm_sampler_parse(NULL, &out) == DDPM_ERR_ARGUMENT, "NULL name");
    CHECK(ddpm_sampler_parse("ddim", NULL) == DDPM_ERR_ARGUMENT, "NULL output");
}

/* One generate or refine run of the failure tests. */
static ddpm_status run(int refine, const ddpm_schedule *s, model *m, const float *x0, const ddpm_sample_params *p,
                       progress_log *log, float *x, char *err, size_t errlen)
{
    ddpm_progress_fn progress = log != NULL ? progress_cb : NULL;
    if (refine)
        return ddpm_sample_refine(s, model_predict, m, C, H, W, x0, NULL, p, progress, log, x, err, errlen);
    return ddpm_sample_generate(s, model_predict, m, C, H, W, p, progress, log, x, err, errlen);
}

/* Cancel, model errors, NaN/Inf: status, message, and x untouched. */
static void test_failures(void)
{
    ddpm_schedule s = schedule_with(1);
    if (s.betas == NULL)
        return;
    static model m;
    float x[N], x0[N];
    make_input(x0);
    char err[256];
    ddpm_sample_params p = {.steps = 10, .variance = DDPM_VARIANCE_BETA, .seed = 5, .t_start = 300};

    for (int run_no = 0; run_no < 6; run_no++) {
        int refine = run_no % 2;
        p.sampler = (ddpm_sampler)(run_no / 2);
        p.eta = p.sampler == DDPM_SAMPLER_DDIM ? 0.5f : 0.0f;
        char what[64];
        snprintf(what, sizeof what, "%s %s", ddpm_sampler_name(p.sampler), refine ? "refine" : "generate");

        /* Cancel at step 3. */
        memset(&m, 0, sizeof m);
        fill(x, N, 7.0f);
        progress_log log = {0, 3, 0, 0, 1};
        err[0] = 0;
        ddpm_status st = run(refine, &s, &m, x0, &p, &log, x, err, sizeof err);
        CHECK(st == DDPM_CANCELLED, "%s cancel: %s", what, ddpm_status_name(st));
        CHECK(log.calls == 3 && log.in_order && log.last_total == 10, "%s: %d progress calls", what, log.calls);
        CHECK(m.calls == 3, "%s: the model ran %d times after the cancel", what, m.calls);
        CHECK(all_equal(x, N, 7.0f), "%s: output touched by a cancelled run", what);
        CHECK(strstr(err, "cancel") != NULL, "%s: message \"%s\"", what, err);

        /* A model error passes through with its own message. */
        memset(&m, 0, sizeof m);
        m.fail_at = 2;
        m.fail_with = DDPM_ERR_IO;
        fill(x, N, 7.0f);
        err[0] = 0;
        st = run(refine, &s, &m, x0, &p, NULL, x, err, sizeof err);
        CHECK(st == DDPM_ERR_IO, "%s model error: %s", what, ddpm_status_name(st));
        CHECK(strstr(err, "failed on purpose") != NULL, "%s: message \"%s\"", what, err);
        CHECK(all_equal(x, N, 7.0f), "%s: output touched after a model error", what);

        /* NaN, then Inf, from the model at step 2. */
        float poisons[2] = {NAN, INFINITY};
        for (int k = 0; k < 2; k++) {
            memset(&m, 0, sizeof m);
            m.fail_at = 2;
            m.fail_with = DDPM_ERR_NUMERIC;
            m.poison = poisons[k];
            fill(x, N, 7.0f);
            err[0] = 0;
            st = run(refine, &s, &m, x0, &p, NULL, x, err, sizeof err);
            CHECK(st == DDPM_ERR_NUMERIC, "%s NaN/Inf: %s", what, ddpm_status_name(st));
            CHECK(strstr(err, "step 2 of 10") != NULL && strstr(err, k ? "infinite" : "NaN") != NULL,
                  "%s: message \"%s\"", what, err);
            CHECK(all_equal(x, N, 7.0f), "%s: output touched after NaN/Inf", what);
        }
    }
    ddpm_schedule_free(&s);
}

static void test_arguments(void)
{
    ddpm_schedule s = schedule_with(1);
    if (s.betas == NULL)
        return;
    static model m;
    memset(&m, 0, sizeof m);
    float x[N], x0[N], mask[PIX];
    make_input(x0);
    fill(mask, PIX, 0.5f);
    char err[256];
    ddpm_sample_params good = {.steps = 10, .variance = DDPM_VARIANCE_BETA, .seed = 5, .t_start = 300};

    struct {
        const char *what;
        int steps, variance, t_start, c, h, w;
        ddpm_status want;
    } cases[] = {
        {"steps 0", 0, DDPM_VARIANCE_BETA, 300, C, H, W, DDPM_ERR_ARGUMENT},
        {"steps > T", 1001, DDPM_VARIANCE_BETA, 300, C, H, W, DDPM_ERR_ARGUMENT},
        {"variance", 10, 7, 300, C, H, W, DDPM_ERR_ARGUMENT},
        {"C = 0", 10, DDPM_VARIANCE_BETA, 300, 0, H, W, DDPM_ERR_ARGUMENT},
        {"H < 0", 10, DDPM_VARIANCE_BETA, 300, C, -1, W, DDPM_ERR_ARGUMENT},
        {"huge", 10, DDPM_VARIANCE_BETA, 300, 1 << 30, 1 << 30, 1 << 30, DDPM_ERR_MEMORY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ddpm_sample_params p = {.steps = cases[i].steps, .variance = (ddpm_variance)cases[i].variance, .seed = 1,
                                .t_start = cases[i].t_start};
        fill(x, N, 7.0f);
        err[0] = 0;
        ddpm_status st = ddpm_sample_generate(&s, model_predict, &m, cases[i].c, cases[i].h, cases[i].w, &p, NULL,
                                              NULL, x, err, sizeof err);
        CHECK(st == cases[i].want, "generate %s: %s (%s)", cases[i].what, ddpm_status_name(st), err);
        st = ddpm_sample_refine(&s, model_predict, &m, cases[i].c, cases[i].h, cases[i].w, x0, NULL, &p, NULL, NULL,
                                x, err, sizeof err);
        CHECK(st == cases[i].want, "refine %s: %s (%s)", cases[i].what, ddpm_status_name(st), err);
        CHECK(all_equal(x, N, 7.0f) && err[0] != 0, "%s: output touched or no message", cases[i].what);
    }
    CHECK(m.calls == 0, "the model ran on bad arguments");

    CHECK(ddpm_sample_generate(NULL, model_predict, &m, C, H, W, &good, NULL, NULL, x, NULL, 0) == DDPM_ERR_ARGUMENT,
          "NULL schedule");
    CHECK(ddpm_sample_generate(&s, NULL, &m, C, H, W, &good, NULL, NULL, x, NULL, 0) == DDPM_ERR_ARGUMENT,
          "NULL predict");
    CHECK(ddpm_sample_generate(&s, model_predict, &m, C, H, W, NULL, NULL, NULL, x, NULL, 0) == DDPM_ERR_ARGUMENT,
          "NULL params");
    CHECK(ddpm_sample_generate(&s, model_predict, &m, C, H, W, &good, NULL, NULL, NULL, NULL, 0) == DDPM_ERR_ARGUMENT,
          "NULL output");

    /* Refine's own arguments. */
    ddpm_sample_params p = good;
    int t0s[] = {0, -3, 1001};
    for (size_t i = 0; i < 3; i++) {
        p.t_start = t0s[i];
        err[0] = 0;
        CHECK(ddpm_sample_refine(&s, model_predict, &m, C, H, W, x0, NULL, &p, NULL, NULL, x, err, sizeof err) ==
                      DDPM_ERR_ARGUMENT &&
                  strstr(err, "t0") != NULL,
              "t0 = %d: %s", t0s[i], err);
    }
    CHECK(ddpm_sample_refine(&s, model_predict, &m, C, H, W, NULL, NULL, &good, NULL, NULL, x, NULL, 0) ==
              DDPM_ERR_ARGUMENT,
          "NULL x0");
    mask[5] = 1.5f;
    CHECK(ddpm_sample_refine(&s, model_predict, &m, C, H, W, x0, mask, &good, NULL, NULL, x, err, sizeof err) ==
                  DDPM_ERR_ARGUMENT &&
              strstr(err, "mask") != NULL,
          "mask 1.5: %s", err);
    mask[5] = NAN;
    CHECK(ddpm_sample_refine(&s, model_predict, &m, C, H, W, x0, mask, &good, NULL, NULL, x, NULL, 0) ==
              DDPM_ERR_ARGUMENT,
          "mask NaN");
    mask[5] = 0.5f;
    x0[3] = INFINITY;
    CHECK(ddpm_sample_refine(&s, model_predict, &m, C, H, W, x0, mask, &good, NULL, NULL, x, NULL, 0) ==
              DDPM_ERR_ARGUMENT,
          "x0 Inf");
    CHECK(m.calls == 0, "the model ran on bad arguments");

    /* Samplers: an unknown one, DDIM's eta outside [0, 1]. */
    make_input(x0);
    struct {
        const char *what;
        int sampler;
        float eta;
        int eta_t_max;
    } bad_samplers[] = {
        {"sampler 3", 3, 0.0f, 0},           {"sampler -1", -1, 0.0f, 0},      {"DDIM eta -0.1", 1, -0.1f, 0},
        {"DDIM eta 1.5", 1, 1.5f, 0},        {"DDIM eta NaN", 1, NAN, 0},      {"DDIM eta Inf", 1, INFINITY, 0},
        {"DDIM eta_t_max -1", 1, 0.5f, -1},
    };
    for (size_t i = 0; i < sizeof bad_samplers / sizeof bad_samplers[0]; i++) {
        p = good;
        p.sampler = (ddpm_sampler)bad_samplers[i].sampler;
        p.eta = bad_samplers[i].eta;
        p.eta_t_max = bad_samplers[i].eta_t_max;
        fill(x, N, 7.0f);
        err[0] = 0;
        ddpm_status st = ddpm_sample_generate(&s, model_predict, &m, C, H, W, &p, NULL, NULL, x, err, sizeof err);
        CHECK(st == DDPM_ERR_ARGUMENT && strstr(err, bad_samplers[i].sampler == 1 ? "eta" : "sampler") != NULL,
              "generate %s: %s (%s)", bad_samplers[i].what, ddpm_status_name(st), err);
        err[0] = 0;
        st = ddpm_sample_refine(&s, model_predict, &m, C, H, W, x0, NULL, &p, NULL, NULL, x, err, sizeof err);
        CHECK(st == DDPM_ERR_ARGUMENT && err[0] != 0, "refine %s: %s (%s)", bad_samplers[i].what,
              ddpm_status_name(st), err);
        CHECK(all_equal(x, N, 7.0f), "%s: output touched", bad_samplers[i].what);
    }
    CHECK(m.calls == 0, "the model ran on bad arguments");

    /* steps_offset pushing "leading" past T-1. */
    s.config.steps_offset = 1;
    p = good;
    p.steps = 1000;
    err[0] = 0;
    CHECK(ddpm_sample_generate(&s, model_predict, &m, C, H, W, &p, NULL, NULL, x, err, sizeof err) ==
                  DDPM_ERR_ARGUMENT &&
              strstr(err, "steps_offset") != NULL,
          "steps_offset: %s", err);
    ddpm_schedule_free(&s);

    /* More timesteps than the noise streams can address. */
    ddpm_scheduler_config c;
    ddpm_scheduler_config_default(&c);
    c.num_train_timesteps = 70000;
    c.beta_start = 1e-5;
    c.beta_end = 1e-3;
    CHECK(ddpm_schedule_init(&s, &c, NULL, 0) == DDPM_OK, "T = 70000 schedule");
    err[0] = 0;
    CHECK(ddpm_sample_generate(&s, model_predict, &m, C, H, W, &good, NULL, NULL, x, err, sizeof err) ==
              DDPM_ERR_UNSUPPORTED,
          "T = 70000: %s", err);
    ddpm_schedule_free(&s);
}

int main(void)
{
    test_generate_contract();
    test_refine_contract();
    test_few_step_contract(DDPM_SAMPLER_DDIM, 0.0f, 0);
    test_few_step_contract(DDPM_SAMPLER_DDIM, 0.6f, 0);
    test_few_step_contract(DDPM_SAMPLER_DDIM, 1.0f, 0);
    test_few_step_contract(DDPM_SAMPLER_DDIM, 0.5f, 500);
    test_few_step_contract(DDPM_SAMPLER_DPM_SOLVER_PP, 0.0f, 0);
    test_sampler_names();
    test_failures();
    test_arguments();
    return check_report("test_sampler");
}
