/* test_solver_vectors.c: the few-step samplers' steps (core/solvers.c)
 * against PyTorch float32 numbers of diffusers' DDIMScheduler.step and
 * DPMSolverMultistepScheduler.step, written by tools/make_solver_vectors.py
 * into tests/core/data/solver_vectors.safetensors:
 *   - single DDIM steps (eta 0, 0.25, 0.5, 1; the three prediction types;
 *     clipped or not) and their x^_0: bit for bit, like p_sample (we allow
 *     1 ulp and report the worst);
 *   - chains of K steps whose "model" is eps = 0.8 x + 0.3 g_i, so each step
 *     feeds the next: DDIM (with injected noise z_i) to the same 1-ulp-per-
 *     step standard, DPM-Solver++(2M) -- first-order start, second-order
 *     multistep middle, x^_0 at the end -- to float tolerance (its per-step
 *     scalars are computed in double here, in float32 logs by diffusers).
 * The schedule is built from torch's own betas (their last bit depends on
 * the PyTorch build, spec 5.2), as in test_step_vectors.c.
 *
 * usage: test_solver_vectors solver_vectors.safetensors */
#include "ddpm.h"
#include "sampler_internal.h"
#include "check.h"
#include "vector_file.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

static ddpm_prediction prediction_from(const char *name)
{
    return strcmp(name, "sample") == 0         ? DDPM_PREDICT_SAMPLE
           : strcmp(name, "v_prediction") == 0 ? DDPM_PREDICT_V
                                               : DDPM_PREDICT_EPSILON;
}

/* A schedule from torch's betas with the case's prediction and clipping. */
static int case_schedule(ddpm_schedule *s, const float *betas, const cJSON *c)
{
    ddpm_scheduler_config cfg;
    ddpm_scheduler_config_default(&cfg);
    cfg.prediction_type = prediction_from(json_string(c, "prediction_type"));
    cfg.clip_sample = (int)json_number(c, "clip_sample");
    cfg.clip_sample_range = json_number(c, "clip_sample_range");
    return ddpm_schedule_init_from_betas(s, &cfg, betas, NULL, 0) == DDPM_OK;
}

/* max |got - want| / (1 + |want|) */
static double worst_relative(const float *got, const float *want, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]) / (1.0 + fabs(want[i]));
        if (!(d <= worst)) /* a NaN counts as the worst */
            worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

/* DDIM single steps: prev_sample and pred_original_sample. */
static void test_ddim_steps(const vector_file *v, const float *betas)
{
    size_t n = 0, n2 = 0, n3 = 0;
    float *sample = vectors_get(v, "input.sample", &n);
    float *model_output = vectors_get(v, "input.model_output", &n2);
    float *noise = vectors_get(v, "input.noise", &n3);
    cJSON *cases = vectors_metadata_json(v, "ddim_cases");
    float *out = malloc((n + 1) * sizeof(float));
    if (sample == NULL || model_output == NULL || noise == NULL || cases == NULL || out == NULL || n != n2 ||
        n != n3) {
        CHECK(0, "DDIM step vectors setup");
        goto cleanup;
    }
    int64_t worst_prev = 0, worst_x0 = 0;
    int count = 0, noisy = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        float eta = (float)json_number(c, "eta");
        int t = (int)json_number(c, "t"), prev_t = (int)json_number(c, "prev_t");
        char name[64];
        size_t m1 = 0, m2 = 0, differ = 0;
        snprintf(name, sizeof name, "ddim.%d.prev_sample", count);
        float *want_prev = vectors_get(v, name, &m1);
        snprintf(name, sizeof name, "ddim.%d.pred_original_sample", count);
        float *want_x0 = vectors_get(v, name, &m2);
        ddpm_schedule s;
        if (want_prev == NULL || want_x0 == NULL || m1 != n || m2 != n || !case_schedule(&s, betas, c)) {
            CHECK(0, "DDIM case %d setup", count);
            free(want_prev), free(want_x0);
            count++;
            continue;
        }
        ddpm_ddim_step(&s, t, prev_t, eta, sample, model_output, noise, out, n);
        int64_t w = compare_ulp(out, want_prev, n, &differ);
        CHECK(w <= 1, "DDIM case %d (eta %g %s clip %d, K %d, t %d -> %d): %zu differ, max %lld ulp", count,
              (double)eta, json_string(c, "prediction_type"), (int)json_number(c, "clip_sample"),
              (int)json_number(c, "steps"), t, prev_t, differ, (long long)w);
        worst_prev = w > worst_prev ? w : worst_prev;

        /* The noise must matter exactly when eta > 0 and the step is not
         * the last: run again without it. */
        float *quiet = malloc(n * sizeof(float));
        if (quiet != NULL) {
            ddpm_ddim_step(&s, t, prev_t, eta, sample, model_output, NULL, quiet, n);
            int same = memcmp(quiet, out, n * sizeof(float)) == 0;
            CHECK(same == !(eta > 0 && prev_t >= 0), "DDIM case %d: noise %s", count,
                  same ? "ignored" : "added at eta 0 or the last step");
            noisy += !same;
            free(quiet);
        }

        /* To the end of the chain with eta = 0 the step returns x^_0 itself
         * (coefficients 1 and 0 exactly). */
        ddpm_ddim_step(&s, t, -1, 0.0f, sample, model_output, NULL, out, n);
        w = compare_ulp(out, want_x0, n, &differ);
        CHECK(w <= 1, "DDIM case %d t %d: pred_original_sample %zu differ, max %lld ulp", count, t, differ,
              (long long)w);
        worst_x0 = w > worst_x0 ? w : worst_x0;
        ddpm_schedule_free(&s);
        free(want_prev), free(want_x0);
        count++;
    }
    printf("%d DDIM step cases (%d with noise): prev_sample max %lld ulp, pred_original_sample max %lld ulp\n",
           count, noisy, (long long)worst_prev, (long long)worst_x0);
    CHECK(count >= 40 && noisy >= 20, "only %d DDIM cases, %d with noise", count, noisy);
cleanup:
    free(sample), free(model_output), free(noise), free(out);
    cJSON_Delete(cases);
}

/* Chains: every state after every step. */
static void test_chains(const vector_file *v, const float *betas)
{
    size_t nx = 0, ng = 0, nz = 0;
    float *x_init = vectors_get(v, "chain.x", &nx);
    float *g = vectors_get(v, "chain.g", &ng);
    float *z = vectors_get(v, "chain.z", &nz);
    cJSON *chains = vectors_metadata_json(v, "chains");
    size_t n = nx;
    float *x = malloc((n + 1) * sizeof(float)), *eps = malloc((n + 1) * sizeof(float));
    float *x0 = malloc((n + 1) * sizeof(float)), *x0_last = malloc((n + 1) * sizeof(float));
    if (x_init == NULL || g == NULL || z == NULL || chains == NULL || x == NULL || eps == NULL || x0 == NULL ||
        x0_last == NULL || n == 0 || ng % n != 0 || ng != nz) {
        CHECK(0, "chain vectors setup");
        goto cleanup;
    }
    size_t kmax = ng / n;
    int j = 0, ddim_chains = 0, dpm_chains = 0;
    int64_t ddim_worst = 0;
    double dpm_worst = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, chains)
    {
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(c, "timesteps");
        int K = cJSON_GetArraySize(ts);
        int dpm = strcmp(json_string(c, "sampler"), "dpm-solver++") == 0;
        float eta = (float)json_number(c, "eta");
        char name[64];
        size_t m = 0;
        snprintf(name, sizeof name, "chain.%d.states", j);
        float *want = vectors_get(v, name, &m);
        ddpm_schedule s;
        if (want == NULL || K < 1 || (size_t)K > kmax || m != (size_t)(K + 1) * n || !case_schedule(&s, betas, c)) {
            CHECK(0, "chain %d setup", j);
            free(want);
            j++;
            continue;
        }
        memcpy(x, x_init, n * sizeof(float));
        int64_t chain_ulp = 0;
        double chain_rel = 0;
        for (int i = 0; i < K; i++) {
            int t = cJSON_GetArrayItem(ts, i)->valueint;
            int prev_t = i + 1 < K ? cJSON_GetArrayItem(ts, i + 1)->valueint : -1;
            int t_last = i > 0 ? cJSON_GetArrayItem(ts, i - 1)->valueint : -1;
            const float *gi = g + (size_t)i * n, *zi = z + (size_t)i * n;
            for (size_t k = 0; k < n; k++) /* the stand-in model, as torch computes it */
                eps[k] = 0.8f * x[k] + 0.3f * gi[k];
            if (dpm) {
                ddpm_dpm_solver_x0(&s, t, x, eps, x0, n);
                ddpm_dpm_solver_step(&s, t_last, t, prev_t, x, x0, i > 0 ? x0_last : NULL, x, n);
                memcpy(x0_last, x0, n * sizeof(float));
            } else {
                ddpm_ddim_step(&s, t, prev_t, eta, x, eps, zi, x, n);
            }
            const float *w = want + (size_t)(i + 1) * n;
            size_t differ = 0;
            int64_t u = compare_ulp(x, w, n, &differ);
            double r = worst_relative(x, w, n);
            chain_ulp = u > chain_ulp ? u : chain_ulp;
            chain_rel = r > chain_rel ? r : chain_rel;
            if (!dpm)
                CHECK(u <= 1, "DDIM chain %d (%s) step %d: %lld ulp", j, json_string(c, "label"), i + 1,
                      (long long)u);
        }
        /* DPM-Solver++: the per-step scalars differ from diffusers' float32
         * ones by ~1e-7 relative; along a chain, through x^_0 = (x - sigma
         * eps)/alpha (a factor up to 1/alpha ~ 150 near t = T), that grows
         * to the few 1e-6 measured.  1e-5 is float tolerance with room. */
        if (dpm) {
            CHECK(chain_rel < 1e-5, "DPM-Solver++ chain %d (%s, %s, clip %d): relative error %.3g", j,
                  json_string(c, "label"), json_string(c, "prediction_type"), (int)json_number(c, "clip_sample"),
                  chain_rel);
            dpm_worst = fmax(dpm_worst, chain_rel);
            dpm_chains++;
        } else {
            ddim_worst = chain_ulp > ddim_worst ? chain_ulp : ddim_worst;
            ddim_chains++;
        }
        printf("chain %2d %-12s %-18s %-12s clip %d eta %.2f: max %lld ulp, max relative %.3g\n", j,
               json_string(c, "sampler"), json_string(c, "label"), json_string(c, "prediction_type"),
               (int)json_number(c, "clip_sample"), (double)eta, (long long)chain_ulp, chain_rel);
        ddpm_schedule_free(&s);
        free(want);
        j++;
    }
    printf("%d DDIM chains: max %lld ulp; %d DPM-Solver++ chains: max relative error %.3g\n", ddim_chains,
           (long long)ddim_worst, dpm_chains, dpm_worst);
    CHECK(ddim_chains >= 4 && dpm_chains >= 8, "only %d DDIM and %d DPM-Solver++ chains", ddim_chains, dpm_chains);
cleanup:
    free(x_init), free(g), free(z), free(x), free(eps), free(x0), free(x0_last);
    cJSON_Delete(chains);
}

/* The first-order DPM-Solver++ update is DDIM with eta = 0 (DPM-Solver++
 * sec. 4.1): the same map written with logs and exponentials. */
static void test_first_order_is_ddim(const float *betas)
{
    ddpm_scheduler_config cfg;
    ddpm_scheduler_config_default(&cfg);
    cfg.clip_sample = 0;
    ddpm_schedule s;
    if (ddpm_schedule_init_from_betas(&s, &cfg, betas, NULL, 0) != DDPM_OK) {
        CHECK(0, "schedule");
        return;
    }
    enum { M = 256 };
    float x[M], eps[M], x0[M], a[M], b[M];
    ddpm_noise_fill(3, 0, 1, 1, M, 0, 0, x);
    ddpm_noise_fill(4, 0, 1, 1, M, 0, 0, eps);
    int pairs[][2] = {{999, 979}, {500, 480}, {100, 50}, {20, 0}, {1, 0}, {0, -1}, {999, -1}};
    double worst = 0;
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        int t = pairs[k][0], prev = pairs[k][1];
        ddpm_ddim_step(&s, t, prev, 0.0f, x, eps, NULL, a, M);
        ddpm_dpm_solver_x0(&s, t, x, eps, x0, M);
        ddpm_dpm_solver_step(&s, -1, t, prev, x, x0, NULL, b, M);
        double r = worst_relative(b, a, M);
        CHECK(r < 1e-5, "t %d -> %d: DPM-Solver++ first order vs DDIM eta 0: %.3g", t, prev, r);
        worst = fmax(worst, r);
    }
    printf("first-order DPM-Solver++ vs DDIM eta = 0: max relative difference %.3g\n", worst);
    ddpm_schedule_free(&s);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s solver_vectors.safetensors\n", argv[0]);
        return 2;
    }
    vector_file v;
    if (!vectors_open(&v, argv[1])) {
        vectors_close(&v);
        return 1;
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(v.header, "__metadata__");
    printf("vectors from %s, torch %s\n", json_string(meta, "generator"), json_string(meta, "torch"));
    size_t nb = 0;
    float *betas = vectors_get(&v, "linear.betas", &nb);
    if (betas != NULL && nb == 1000) {
        test_ddim_steps(&v, betas);
        test_chains(&v, betas);
        test_first_order_is_ddim(betas);
    } else {
        CHECK(0, "linear.betas missing");
    }
    free(betas);
    vectors_close(&v);
    return check_report("test_solver_vectors");
}
