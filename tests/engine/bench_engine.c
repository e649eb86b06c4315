/* bench_engine.c: milliseconds per U-Net evaluation (not a test).
 *
 *   bench_engine MODEL_DIR HxW [batch [threads [seconds [circular]]]]
 *
 * Loads the model, makes one plan, runs one warm-up evaluation and then as
 * many as fit in `seconds` (default 3, at least 3 runs), and prints the median
 * and best ms per evaluation, GFLOP/s and the plan's memory.
 */
#include "ddpm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR HxW [batch [threads [seconds [circular]]]]\n", argv[0]);
        return 2;
    }
    int H = 0, W = 0;
    if (sscanf(argv[2], "%dx%d", &H, &W) != 2) {
        fprintf(stderr, "bad size %s\n", argv[2]);
        return 2;
    }
    int N = argc > 3 ? atoi(argv[3]) : 1;
    int threads = argc > 4 ? atoi(argv[4]) : 0;
    double seconds = argc > 5 ? atof(argv[5]) : 3.0;
    int circular = argc > 6 ? atoi(argv[6]) : 0;
    ddpm_set_threads(threads);

    char err[512];
    ddpm_model *m = NULL;
    double t0 = now();
    ddpm_status s = ddpm_model_load(argv[1], &m, err, sizeof err);
    if (s != DDPM_OK) {
        fprintf(stderr, "load: %s\n", err);
        return 1;
    }
    double load_ms = (now() - t0) * 1e3;
    ddpm_model_info info;
    ddpm_model_get_info(m, &info);
    ddpm_unet_plan *p = NULL;
    s = ddpm_unet_plan_create(m, N, H, W, circular, &p, err, sizeof err);
    if (s != DDPM_OK) {
        fprintf(stderr, "plan: %s\n", err);
        return 1;
    }
    size_t in = (size_t)N * info.in_channels * H * W, out = (size_t)N * info.out_channels * H * W;
    float *x = malloc(in * sizeof *x), *eps = malloc(out * sizeof *eps), *t = malloc((size_t)N * sizeof *t);
    srand(1);
    for (size_t i = 0; i < in; i++)
        x[i] = (float)((double)rand() / RAND_MAX * 2.0 - 1.0);
    for (int i = 0; i < N; i++)
        t[i] = (float)(500 + 37 * i);

    if (ddpm_unet_forward(p, x, t, eps, err, sizeof err) != DDPM_OK) {
        fprintf(stderr, "forward: %s\n", err);
        return 1;
    }
    /* wall time per run, and CPU time of the process per run (with one
     * thread, the time the evaluation really took on a busy machine) */
    double times[1000], cpu[1000];
    int runs = 0;
    double start = now();
    while (runs < 1000 && (runs < 3 || now() - start < seconds)) {
        double a = now(), c = cpu_now();
        ddpm_unet_forward(p, x, t, eps, err, sizeof err);
        cpu[runs] = (cpu_now() - c) * 1e3;
        times[runs++] = (now() - a) * 1e3;
    }
    qsort(times, (size_t)runs, sizeof *times, cmp_double);
    qsort(cpu, (size_t)runs, sizeof *cpu, cmp_double);
    double flops = ddpm_model_flops(m, N, H, W);
    printf("%s %dx%d batch %d threads %d%s: median %.2f ms, best %.2f ms (%d runs), cpu median %.2f ms, "
           "%.1f GFLOP/s, plan %.1f MB, %.2f GFLOP, load %.0f ms\n",
           argv[1], H, W, N, ddpm_get_threads(), circular ? " circular" : "", times[runs / 2], times[0], runs,
           cpu[runs / 2],
           flops / (times[runs / 2] * 1e-3) / 1e9, ddpm_unet_plan_bytes_estimate(m, N, H, W) / 1e6, flops / 1e9,
           load_ms);
    free(x);
    free(eps);
    free(t);
    ddpm_unet_plan_free(p);
    ddpm_model_free(m);
    return 0;
}
