/* fuzz_scheduler_config.c: libFuzzer harness for scheduler_config.json.
 *
 * The input is the file's text.  Whatever ddpm_scheduler_config_parse
 * accepts must then build a schedule, give valid timestep chains, and run a
 * short sampling loop (a 1 x 2 x 2 image, a do-nothing network) with each
 * sampler, without any sanitizer report.  Whatever it refuses must come with
 * a message.
 *
 * Seeds: tools/fuzz.sh (scheduler_config.json of the test models, plus the
 * variants tests/fuzz/fuzz_seeds.c writes). */
#include "ddpm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The "network": eps = x_t / 2 keeps every sampler's arithmetic busy. */
static ddpm_status half_predict(void *ctx, const float *x_t, int t, float *eps, char *err, size_t errlen)
{
    (void)ctx;
    (void)t;
    (void)err;
    (void)errlen;
    for (int i = 0; i < 4; i++)
        eps[i] = 0.5f * x_t[i];
    return DDPM_OK;
}

/* A chain from ddpm_timesteps must be strictly decreasing inside 0 .. T-1. */
static void check_chain(const ddpm_schedule *s, int K, int t_start, int *ts)
{
    int n = ddpm_timesteps(s, K, t_start, ts);
    if (n < 0)
        return;
    if (n < 1 || n > K)
        abort();
    for (int i = 0; i < n; i++)
        if (ts[i] < 0 || ts[i] >= s->T || (i > 0 && ts[i] >= ts[i - 1]))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ddpm_scheduler_config c;
    ddpm_scheduler_config_default(&c);
    char err[256] = "";
    if (ddpm_scheduler_config_parse((const char *)data, size, &c, err, sizeof err) != DDPM_OK) {
        if (err[0] == 0)
            abort();  /* a refusal must say why */
        return 0;
    }

    ddpm_schedule s;
    memset(&s, 0, sizeof s);
    if (ddpm_schedule_init(&s, &c, err, sizeof err) != DDPM_OK) {
        if (err[0] == 0)
            abort();
        return 0;
    }
    int T = s.T;
    int *ts = malloc((size_t)T * sizeof *ts);
    if (!ts) {
        ddpm_schedule_free(&s);
        return 0;
    }
    int Ks[5] = {1, 2, 7, T / 3 > 0 ? T / 3 : 1, T};
    for (int i = 0; i < 5; i++) {
        check_chain(&s, Ks[i], T - 1, ts);     /* generate */
        check_chain(&s, Ks[i], T / 2, ts);     /* refine */
        check_chain(&s, Ks[i], 0, ts);
    }

    /* A short run of every sampler, generate and refine. */
    float x[4], x0[4] = {0.5f, -0.25f, 1.0f, -1.0f};
    for (int sampler = 0; ddpm_sampler_name((ddpm_sampler)sampler); sampler++)
        for (int refine = 0; refine <= 1; refine++) {
            ddpm_sample_params p;
            memset(&p, 0, sizeof p);
            p.steps = T < 3 ? T : 3;
            p.variance = size % 2 ? DDPM_VARIANCE_BETA : DDPM_VARIANCE_POSTERIOR;
            p.seed = size;
            p.t_start = refine ? 1 + (int)(size % (size_t)T) : T;
            p.sampler = (ddpm_sampler)sampler;
            p.eta = (float)(size % 3) * 0.5f;
            ddpm_status st = refine ? ddpm_sample_refine(&s, half_predict, NULL, 1, 2, 2, x0, NULL, &p, NULL, NULL,
                                                         x, err, sizeof err)
                                    : ddpm_sample_generate(&s, half_predict, NULL, 1, 2, 2, &p, NULL, NULL, x, err,
                                                           sizeof err);
            if (st != DDPM_OK && err[0] == 0)
                abort();
        }
    free(ts);
    ddpm_schedule_free(&s);
    return 0;
}
