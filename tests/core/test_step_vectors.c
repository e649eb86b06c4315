/* test_step_vectors.c: the schedule, the timestep chains, q_sample and
 * p_sample against PyTorch float32 numbers of diffusers' DDPMScheduler
 * arithmetic, written by tools/make_scheduler_vectors.py into
 * tests/core/data/scheduler_vectors.safetensors.
 *
 * torch.linspace's last bit depends on the PyTorch build (spec 5.2), so the
 * bit-level checks of cumprod, q_sample and p_sample load PyTorch's own
 * betas into the schedule (ddpm_schedule_init_from_betas); our serial
 * linspace betas are compared separately and the differences reported.
 *
 * usage: test_step_vectors scheduler_vectors.safetensors */
#include "ddpm.h"
#include "sampler_internal.h"
#include "check.h"
#include "vector_file.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------ */

static ddpm_scheduler_config linear_config(void)
{
    ddpm_scheduler_config c;
    ddpm_scheduler_config_default(&c);
    return c;
}

/* Our betas vs torch's for the three schedules (reported; <= 1 ulp), and
 * cumprod given torch's betas (bit-exact). */
static void test_arrays(const vector_file *v)
{
    struct {
        const char *name;
        ddpm_beta_schedule schedule;
        double b0, b1;
    } schedules[] = {
        {"linear.betas", DDPM_BETA_LINEAR, 0.0001, 0.02},
        {"scaled_linear.betas", DDPM_BETA_SCALED_LINEAR, 0.00085, 0.012},
        {"squaredcos_cap_v2.betas", DDPM_BETA_SQUAREDCOS_CAP_V2, 0.0001, 0.02},
    };
    for (size_t k = 0; k < sizeof schedules / sizeof schedules[0]; k++) {
        size_t n = 0, differ = 0;
        float *want = vectors_get(v, schedules[k].name, &n);
        ddpm_scheduler_config c = linear_config();
        c.beta_schedule = schedules[k].schedule;
        c.beta_start = schedules[k].b0;
        c.beta_end = schedules[k].b1;
        ddpm_schedule s;
        if (want == NULL || n != 1000 || ddpm_schedule_init(&s, &c, NULL, 0) != DDPM_OK) {
            CHECK(0, "%s: setup", schedules[k].name);
            free(want);
            continue;
        }
        /* linspace's last bit is build dependent (1 ulp); scaled_linear
         * squares it, which doubles a 1-ulp error of the root and adds the
         * square's own rounding: 3 ulp. */
        int64_t allowed = schedules[k].schedule == DDPM_BETA_SCALED_LINEAR ? 3 : 1;
        int64_t worst = compare_ulp(s.betas, want, n, &differ);
        printf("%s: %zu of %zu differ from torch's, max %lld ulp\n", schedules[k].name, differ, n, (long long)worst);
        CHECK(worst <= allowed, "%s: %lld ulp from torch", schedules[k].name, (long long)worst);
        ddpm_schedule_free(&s);
        free(want);
    }

    size_t n1 = 0, n2 = 0, n3 = 0, differ = 0;
    float *betas = vectors_get(v, "linear.betas", &n1);
    float *cumprod = vectors_get(v, "linear.alphas_cumprod", &n2);
    float *variance = vectors_get(v, "linear.variance_fixed_small", &n3);
    ddpm_scheduler_config c = linear_config();
    ddpm_schedule s;
    char err[256] = "";
    if (betas != NULL && cumprod != NULL && variance != NULL && n1 == 1000 && n2 == 1000 && n3 == 1000 &&
        ddpm_schedule_init_from_betas(&s, &c, betas, err, sizeof err) == DDPM_OK) {
        int64_t worst = compare_ulp(s.alphas_cumprod, cumprod, 1000, &differ);
        CHECK(worst == 0, "alphas_cumprod vs torch.cumprod: %zu differ, max %lld ulp", differ, (long long)worst);
        /* posterior_variance is eq. (7) in double from the stored beta_t.
         * diffusers' _get_variance uses beta'_t = 1 - abar_t/abar_{t-1} in
         * float32 instead, whose absolute error (rounding of the quotient and
         * of the two stored abar) is up to ~3 * 2^-24: a relative error of
         * ~1e-4 where beta_t ~ 1e-4.  So the two agree to
         *   (1 - abar_{t-1}) / (1 - abar_t) * 2^-22  + a few ulp,
         * and diffusers' own value is the less accurate one.  (At t = 0
         * diffusers clamps 0 to 1e-20.)  p_sample uses diffusers' form,
         * checked bit for bit below. */
        int bad = 0;
        double worst_rel = 0;
        for (int t = 1; t < 1000; t++) {
            double ratio = (1.0 - s.alphas_cumprod[t - 1]) / (1.0 - s.alphas_cumprod[t]);
            double tol = ratio * ldexp(1.0, -22) + ldexp(1.0, -21) * variance[t];
            double d = fabs((double)s.posterior_variance[t] - variance[t]);
            bad += d > tol;
            worst_rel = fmax(worst_rel, d / variance[t]);
        }
        printf("posterior_variance vs _get_variance: max relative difference %.3g\n", worst_rel);
        CHECK(bad == 0, "posterior_variance: %d entries beyond the float32 error of diffusers' form", bad);
        CHECK(s.posterior_variance[0] == 0.0f && variance[0] == 1e-20f, "t = 0 variance");
        ddpm_schedule_free(&s);
    } else {
        CHECK(0, "linear arrays setup: %s", err);
    }
    free(betas), free(cumprod), free(variance);
}

/* ddpm_timesteps vs NumPy's set_timesteps output. */
static void test_timesteps(const vector_file *v)
{
    cJSON *chains = vectors_metadata_json(v, "timesteps");
    int checked = 0;
    const cJSON *chain;
    cJSON_ArrayForEach(chain, chains)
    {
        int T = (int)json_number(chain, "T"), K = (int)json_number(chain, "steps");
        int offset = (int)json_number(chain, "steps_offset");
        const char *spacing = json_string(chain, "spacing");
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(chain, "timesteps");
        int count = cJSON_GetArraySize(want);

        ddpm_scheduler_config c = linear_config();
        c.num_train_timesteps = T;
        c.steps_offset = offset;
        c.timestep_spacing = strcmp(spacing, "linspace") == 0   ? DDPM_SPACING_LINSPACE
                             : strcmp(spacing, "trailing") == 0 ? DDPM_SPACING_TRAILING
                                                                : DDPM_SPACING_LEADING;
        ddpm_schedule s;
        int *ts = malloc((size_t)K * sizeof(int));
        if (ts == NULL || ddpm_schedule_init(&s, &c, NULL, 0) != DDPM_OK) {
            CHECK(0, "setup T %d", T);
            free(ts);
            continue;
        }
        int n = ddpm_timesteps(&s, K, T - 1, ts);

        /* diffusers' chain is unusable when an entry falls outside 0..T-1
         * (steps_offset pushing past T-1): we refuse it.  NumPy's arange
         * sometimes yields one extra entry, -1, after the K proper ones
         * (trailing, e.g. K = 61): we keep the K. */
        int out_of_range = 0;
        for (int i = 0; i < count && i < K; i++) {
            int t = cJSON_GetArrayItem(want, i)->valueint;
            out_of_range |= t < 0 || t >= T;
        }
        if (out_of_range) {
            CHECK(n == -1, "%s T %d K %d offset %d: expected a refusal, got %d", spacing, T, K, offset, n);
        } else {
            CHECK(n == K, "%s T %d K %d: %d timesteps", spacing, T, K, n);
            int same = n == K;
            for (int i = 0; i < K && same; i++)
                same = ts[i] == cJSON_GetArrayItem(want, i)->valueint;
            CHECK(same, "%s T %d K %d offset %d differs from diffusers", spacing, T, K, offset);
            for (int i = K; i < count; i++)
                CHECK(cJSON_GetArrayItem(want, i)->valueint == -1, "%s K %d: extra NumPy entry", spacing, K);
            if (count > K)
                printf("note: %s T %d K %d: NumPy gives %d entries, the last -1; we use the first %d\n", spacing, T,
                       K, count, K);
        }
        checked++;
        ddpm_schedule_free(&s);
        free(ts);
    }
    printf("%d timestep chains compared\n", checked);
    CHECK(checked >= 50, "only %d chains in the file", checked);
    cJSON_Delete(chains);
}

/* q_sample vs add_noise, and p_sample vs step: bit-identical given torch's
 * betas (we allow 1 ulp, and report the worst). */
static void test_steps(const vector_file *v)
{
    size_t nb = 0, n = 0, n2 = 0, n3 = 0;
    float *betas = vectors_get(v, "linear.betas", &nb);
    float *sample = vectors_get(v, "input.sample", &n);
    float *model_output = vectors_get(v, "input.model_output", &n2);
    float *noise = vectors_get(v, "input.noise", &n3);
    cJSON *cases = vectors_metadata_json(v, "cases");
    float *out = malloc((n + 1) * sizeof(float));
    if (betas == NULL || sample == NULL || model_output == NULL || noise == NULL || cases == NULL || out == NULL ||
        nb != 1000 || n != n2 || n != n3) {
        CHECK(0, "step vectors setup");
        goto cleanup;
    }

    /* add_noise at a few t */
    int ts[] = {0, 1, 499, 998, 999};
    ddpm_scheduler_config lc = linear_config();
    ddpm_schedule ls;
    if (ddpm_schedule_init_from_betas(&ls, &lc, betas, NULL, 0) == DDPM_OK) {
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
            char name[64];
            size_t m = 0, differ = 0;
            snprintf(name, sizeof name, "add_noise.%d", ts[k]);
            float *want = vectors_get(v, name, &m);
            if (want == NULL || m != n) {
                free(want);
                continue;
            }
            ddpm_q_sample(&ls, ts[k], sample, noise, out, n);
            int64_t worst = compare_ulp(out, want, n, &differ);
            CHECK(worst == 0, "q_sample t %d: %zu differ, max %lld ulp", ts[k], differ, (long long)worst);
            free(want);
        }
        ddpm_schedule_free(&ls);
    }

    int64_t worst_prev = 0, worst_x0 = 0;
    double worst_own = 0;
    int count = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        ddpm_scheduler_config cfg = linear_config();
        const char *variance = json_string(c, "variance_type"), *prediction = json_string(c, "prediction_type");
        ddpm_variance var = strcmp(variance, "fixed_large") == 0 ? DDPM_VARIANCE_BETA : DDPM_VARIANCE_POSTERIOR;
        cfg.variance_type = var;
        cfg.prediction_type = strcmp(prediction, "sample") == 0         ? DDPM_PREDICT_SAMPLE
                              : strcmp(prediction, "v_prediction") == 0 ? DDPM_PREDICT_V
                                                                        : DDPM_PREDICT_EPSILON;
        cfg.clip_sample = (int)json_number(c, "clip_sample");
        cfg.clip_sample_range = json_number(c, "clip_sample_range");
        int t = (int)json_number(c, "t"), prev_t = (int)json_number(c, "prev_t");

        char name[64];
        size_t m1 = 0, m2 = 0, differ = 0;
        snprintf(name, sizeof name, "step.%d.prev_sample", count);
        float *want_prev = vectors_get(v, name, &m1);
        snprintf(name, sizeof name, "step.%d.pred_original_sample", count);
        float *want_x0 = vectors_get(v, name, &m2);
        ddpm_schedule s, own;
        if (want_prev == NULL || want_x0 == NULL || m1 != n || m2 != n ||
            ddpm_schedule_init_from_betas(&s, &cfg, betas, NULL, 0) != DDPM_OK ||
            ddpm_schedule_init(&own, &cfg, NULL, 0) != DDPM_OK) {
            CHECK(0, "case %d setup", count);
            free(want_prev), free(want_x0);
            count++;
            continue;
        }

        ddpm_p_sample(&s, t, prev_t, var, sample, model_output, noise, out, n);
        int64_t w = compare_ulp(out, want_prev, n, &differ);
        CHECK(w <= 1, "case %d (%s %s clip %d, K %d, t %d -> %d): prev_sample %zu differ, max %lld ulp", count,
              variance, prediction, cfg.clip_sample, (int)json_number(c, "steps"), t, prev_t, differ, (long long)w);
        worst_prev = w > worst_prev ? w : worst_prev;

        /* With prev_t = -1 the step returns x^_0 itself (coefficients 1 and
         * 0 exactly), so x^_0 can be compared too. */
        ddpm_p_sample(&s, t, -1, var, sample, model_output, noise, out, n);
        w = compare_ulp(out, want_x0, n, &differ);
        CHECK(w <= 1, "case %d t %d: pred_original_sample %zu differ, max %lld ulp", count, t, differ, (long long)w);
        worst_x0 = w > worst_x0 ? w : worst_x0;

        /* With our own linspace betas: close, not necessarily identical. */
        ddpm_p_sample(&own, t, prev_t, var, sample, model_output, noise, out, n);
        for (size_t i = 0; i < n; i++) {
            CHECK(fabs(out[i] - want_prev[i]) < 1e-5 * (1 + fabs(want_prev[i])), "case %d own betas: %g vs %g",
                  count, (double)out[i], (double)want_prev[i]);
            worst_own = fmax(worst_own, fabs(out[i] - want_prev[i]));
        }
        ddpm_schedule_free(&s);
        ddpm_schedule_free(&own);
        free(want_prev), free(want_x0);
        count++;
    }
    printf("%d step cases: prev_sample max %lld ulp, pred_original_sample max %lld ulp (torch's betas); "
           "with our serial-linspace betas max |difference| %.3g\n",
           count, (long long)worst_prev, (long long)worst_x0, worst_own);
    CHECK(count >= 40, "only %d step cases", count);

cleanup:
    free(betas), free(sample), free(model_output), free(noise), free(out);
    cJSON_Delete(cases);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s scheduler_vectors.safetensors\n", argv[0]);
        return 2;
    }
    vector_file v;
    if (!vectors_open(&v, argv[1])) {
        vectors_close(&v);
        return 1;
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(v.header, "__metadata__");
    printf("vectors from %s, torch %s\n", json_string(meta, "generator"), json_string(meta, "torch"));
    test_arrays(&v);
    test_timesteps(&v);
    test_steps(&v);
    vectors_close(&v);
    return check_report("test_step_vectors");
}
