/* test_vectors.c: the C U-Net against the float64 PyTorch reference.
 *
 *   test_engine_vectors MODEL_DIR
 *
 * MODEL_DIR holds a model folder and vectors.safetensors written by
 * tools/make_engine_vectors.py (x, t, eps, optionally eps_circular, flops).
 * Checks, each of which can fail:
 *   - eps for the whole batch, zero and circular padding: max |C - ref| within
 *     1e-4 of max |ref|, with the normal block sizes and with tiny ones (so
 *     that these small models also take every multi-strip, multi-block path);
 *     and at the smallest size when the vectors have it (x_small, ...);
 *   - every image of the batch alone (plans with N = 1 and ddpm_unet_predict)
 *     gives the same numbers as the batch;
 *   - one thread and three threads give bit-identical results;
 *   - ddpm_model_flops equals the reference's hook count;
 *   - ddpm_unet_plan_bytes_estimate equals what a plan really allocates
 *     (measured with mallinfo2, skipped under AddressSanitizer).
 */
#include "ddpm.h"
#include "ops.h"      /* ops_use_tiny_blocks */

#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static int failures = 0;

#define CHECK(cond, ...)                                 \
    do {                                                 \
        if (!(cond)) {                                   \
            failures++;                                  \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);  \
            printf(__VA_ARGS__);                         \
            printf("\n");                                \
        }                                                \
    } while (0)

static float *read_tensor(const char *path, const char *name, int64_t shape[DDPM_MAX_DIMS], int *ndim, int required)
{
    char err[512];
    float *data = NULL;
    ddpm_status s = ddpm_tensor_read(path, name, &data, shape, ndim, err, sizeof err);
    if (s != DDPM_OK && required) {
        printf("FAIL reading %s: %s\n", name, err);
        exit(1);
    }
    return s == DDPM_OK ? data : NULL;
}

static double max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m))
            m = d;                       /* NaN propagates as a failure */
    }
    return m;
}

/* eps for N images of H x W with the given padding; NULL on failure. */
static float *run(const ddpm_model *m, int N, int H, int W, int circular, const float *x, const float *t)
{
    char err[512];
    ddpm_model_info info;
    ddpm_model_get_info(m, &info);
    ddpm_unet_plan *p = NULL;
    ddpm_status s = ddpm_unet_plan_create(m, N, H, W, circular, &p, err, sizeof err);
    CHECK(s == DDPM_OK, "plan_create: %s", err);
    if (s != DDPM_OK)
        return NULL;
    float *eps = malloc((size_t)N * info.out_channels * H * W * sizeof *eps);
    s = ddpm_unet_forward(p, x, t, eps, err, sizeof err);
    CHECK(s == DDPM_OK, "forward: %s", err);
    ddpm_unet_plan_free(p);
    if (s != DDPM_OK) {
        free(eps);
        return NULL;
    }
    return eps;
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* mallinfo2 sees glibc's heap only; under valgrind (which brings its own
 * malloc) it reports no growth at all. */
static int heap_is_measurable(void)
{
    size_t before = heap_in_use();
    volatile char *probe = malloc((size_t)1 << 20);
    size_t after = heap_in_use();
    free((void *)probe);
    return probe != NULL && after - before >= ((size_t)1 << 20);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    char err[512], vec[4096], text[4096];
    snprintf(vec, sizeof vec, "%s/vectors.safetensors", dir);

    ddpm_model *m = NULL;
    ddpm_status s = ddpm_model_load(dir, &m, err, sizeof err);
    if (s != DDPM_OK) {
        printf("FAIL load %s: %s (%s)\n", dir, err, ddpm_status_name(s));
        return 1;
    }
    ddpm_model_describe(m, text, sizeof text);
    printf("%s", text);
    ddpm_model_info info;
    ddpm_model_get_info(m, &info);

    int64_t xs[DDPM_MAX_DIMS], ts[DDPM_MAX_DIMS], es[DDPM_MAX_DIMS], fs[DDPM_MAX_DIMS];
    int xd, td, ed, fd;
    float *x = read_tensor(vec, "x", xs, &xd, 1);
    float *t = read_tensor(vec, "t", ts, &td, 1);
    float *ref = read_tensor(vec, "eps", es, &ed, 1);
    float *ref_circ = read_tensor(vec, "eps_circular", es, &ed, 0);
    float *flops = read_tensor(vec, "flops", fs, &fd, 1);
    if (xd != 4 || td != 1 || ts[0] != xs[0] || xs[1] != info.in_channels) {
        printf("FAIL vectors.safetensors has unexpected shapes\n");
        return 1;
    }
    const int N = (int)xs[0], H = (int)xs[2], W = (int)xs[3];
    const size_t in_plane = (size_t)info.in_channels * H * W, out_plane = (size_t)info.out_channels * H * W;
    const size_t n_out = (size_t)N * out_plane;
    const double scale = max_abs(ref, n_out);
    printf("batch %d of %dx%d, t = [", N, H, W);
    for (int i = 0; i < N; i++)
        printf(i ? ", %g" : "%g", t[i]);
    printf("], max |eps| %.4f\n", scale);

    /* 1. the batch against the reference, both paddings, both block sizes */
    for (int tiny = 0; tiny < 2; tiny++) {
        ops_use_tiny_blocks(tiny);
        for (int circular = 0; circular < 2; circular++) {
            const float *want = circular ? ref_circ : ref;
            const char *what = circular ? "circular" : "zero";
            if (!want)
                continue;
            float *eps = run(m, N, H, W, circular, x, t);
            if (!eps)
                continue;
            double e = max_diff(eps, want, n_out) / scale;
            printf("%s padding%s: max |C - reference| / max |reference| = %.3g\n", what,
                   tiny ? " (tiny blocks)" : "", e);
            CHECK(e <= 1e-4, "%s padding%s: relative error %.3g > 1e-4", what, tiny ? " (tiny blocks)" : "", e);
            free(eps);
        }
    }
    ops_use_tiny_blocks(0);
    if (ref_circ) {
        /* circular padding must change the result (else the test is void) */
        double d = max_diff(ref, ref_circ, n_out) / scale;
        CHECK(d > 1e-3, "reference outputs for zero and circular padding agree (%.3g)", d);
    }

    /* 1b. the smallest size, where the lowest level is one pixel high */
    int64_t ss[DDPM_MAX_DIMS];
    int sd;
    float *xsm = read_tensor(vec, "x_small", ss, &sd, 0);
    float *tsm = read_tensor(vec, "t_small", es, &ed, 0);
    for (int circular = 0; xsm && tsm && circular < 2; circular++) {
        float *want = read_tensor(vec, circular ? "eps_small_circular" : "eps_small", es, &ed, 0);
        if (!want)
            continue;
        int h = (int)ss[2], w = (int)ss[3];
        size_t n = (size_t)info.out_channels * h * w;
        float *eps = run(m, 1, h, w, circular, xsm, tsm);
        if (eps) {
            double e = max_diff(eps, want, n) / max_abs(want, n);
            printf("%dx%d, %s padding: max |C - reference| / max |reference| = %.3g\n", h, w,
                   circular ? "circular" : "zero", e);
            CHECK(e <= 1e-4, "%dx%d %s padding: relative error %.3g > 1e-4", h, w, circular ? "circular" : "zero",
                  e);
        }
        free(eps);
        free(want);
    }
    free(xsm);
    free(tsm);

    /* 2. each image alone, through a batch-1 plan and through the sampler's
     *    predict function: identical to its row of the batch */
    float *batch = run(m, N, H, W, 0, x, t);
    ddpm_unet_plan *p1 = NULL;
    s = ddpm_unet_plan_create(m, 1, H, W, 0, &p1, err, sizeof err);
    CHECK(s == DDPM_OK, "plan N=1: %s", err);
    float *one = malloc(out_plane * sizeof *one);
    for (int i = 0; batch && p1 && i < N; i++) {
        s = ddpm_unet_forward(p1, x + i * in_plane, t + i, one, err, sizeof err);
        CHECK(s == DDPM_OK, "forward N=1: %s", err);
        CHECK(memcmp(one, batch + i * out_plane, out_plane * sizeof *one) == 0,
              "image %d alone differs from the batch", i);
        if (t[i] == floorf(t[i])) {
            s = ddpm_unet_predict(p1, x + i * in_plane, (int)t[i], one, err, sizeof err);
            CHECK(s == DDPM_OK, "predict: %s", err);
            CHECK(memcmp(one, batch + i * out_plane, out_plane * sizeof *one) == 0,
                  "ddpm_unet_predict of image %d differs from the batch", i);
        }
    }
    /* predict refuses a plan with N > 1 */
    if (N > 1) {
        ddpm_unet_plan *pn = NULL;
        if (ddpm_unet_plan_create(m, N, H, W, 0, &pn, err, sizeof err) == DDPM_OK) {
            s = ddpm_unet_predict(pn, x, 0, one, err, sizeof err);
            CHECK(s == DDPM_ERR_ARGUMENT, "predict on a batch-%d plan gave %s", N, ddpm_status_name(s));
            ddpm_unet_plan_free(pn);
        }
    }
    ddpm_unet_plan_free(p1);
    free(one);

    /* 3. thread count: 1 versus 3 threads give the same bits (ddpm.h),
     *    with both block sizes (tiny: so that the small models share work) */
    int threads = ddpm_get_threads();
    for (int tiny = 0; tiny < 2; tiny++) {
        ops_use_tiny_blocks(tiny);
        ddpm_set_threads(1);
        float *t1 = run(m, N, H, W, 1, x, t);
        ddpm_set_threads(3);
        float *t3 = run(m, N, H, W, 1, x, t);
        if (t1 && t3) {
            int same = memcmp(t1, t3, n_out * sizeof *t1) == 0;
            printf("1 vs 3 threads%s: %s\n", tiny ? " (tiny blocks)" : "",
                   same ? "bitwise identical" : "DIFFERENT");
            CHECK(same, "1 and 3 threads differ by %.3g%s", max_diff(t1, t3, n_out) / scale,
                  tiny ? " (tiny blocks)" : "");
        }
        free(t1);
        free(t3);
    }
    ddpm_set_threads(threads);
    ops_use_tiny_blocks(0);
    free(batch);

    /* 4. FLOPs against the reference's hook count */
    double f = ddpm_model_flops(m, N, H, W);
    printf("FLOPs: %.6g (reference %.6g)\n", f, (double)flops[0]);
    CHECK(fabs(f - flops[0]) <= 1e-6 * flops[0], "FLOPs %.9g, reference counts %.9g", f, (double)flops[0]);

    /* 5. memory: the estimate is what a plan allocates, for a few shapes */
    if (!UNDER_ASAN && heap_is_measurable()) {
        int shapes[3][3] = {{1, H, W}, {N, 2 * H, W}, {1, 4 * H, 3 * W}};
        for (int i = 0; i < 3; i++) {
            size_t est = ddpm_unet_plan_bytes_estimate(m, shapes[i][0], shapes[i][1], shapes[i][2]);
            size_t before = heap_in_use();
            ddpm_unet_plan *p = NULL;
            s = ddpm_unet_plan_create(m, shapes[i][0], shapes[i][1], shapes[i][2], 1, &p, err, sizeof err);
            size_t after = heap_in_use();
            ddpm_unet_plan_free(p);
            double rel = fabs((double)after - (double)before - (double)est) / (double)est;
            printf("plan %dx%dx%d: estimate %zu bytes, heap grew by %zu\n", shapes[i][0], shapes[i][1],
                   shapes[i][2], est, after - before);
            CHECK(s == DDPM_OK && est > 0 && rel < 0.02, "estimate %zu vs allocated %zu", est, after - before);
        }
    }

    /* 6. shapes the model cannot take */
    ddpm_unet_plan *bad = NULL;
    int stride = info.stride;
    if (stride > 1) {
        s = ddpm_unet_plan_create(m, 1, H + stride / 2, W, 0, &bad, err, sizeof err);
        CHECK(s == DDPM_ERR_ARGUMENT && bad == NULL, "height %d accepted with stride %d", H + stride / 2, stride);
        printf("odd size refused: %s\n", err);
    }
    s = ddpm_unet_plan_create(m, 0, H, W, 0, &bad, err, sizeof err);
    CHECK(s == DDPM_ERR_ARGUMENT, "batch 0 accepted");
    CHECK(ddpm_unet_plan_bytes_estimate(m, 1, H + 1, W) == 0 || stride == 1, "estimate for a bad size");

    free(x);
    free(t);
    free(ref);
    free(ref_circ);
    free(flops);
    ddpm_model_free(m);
    printf("%s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
