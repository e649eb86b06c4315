/* test_seams.c: tileable images wrap around at any size.
 *
 *   test_robust_seams MODEL_DIR   (the shipped model; exit 77 = skipped)
 *
 * The U-Net needs sides that are multiples of its stride (8 for the shipped
 * model).  A tileable job of another size runs on the next multiple and is
 * resampled back as one period of the same tiling (core/job.c).  Checked:
 *
 *   - the resampler: the same size is the identity; a smooth periodic
 *     picture resampled to another period is that picture at the new pixel
 *     centres, at the edges too (a clamped or shifted edge fails this); a
 *     large shrink keeps a constant;
 *   - generate: across the wrap-around (last column -> first, last row ->
 *     first) pixels differ as much as interior neighbours do.  The control
 *     is the old behaviour, the grid image cropped, which the same measure
 *     must find seamed, or the measure proves nothing;
 *   - refine: the result wraps too, and what the mask keeps is kept bit for
 *     bit;
 *   - memory: the estimate covers the extra images exactly (at the budget the
 *     job runs, one byte under it is refused and `out` is untouched).
 */
#include "ddpm.h"
#include "job_internal.h"

#include "../core/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PI 3.14159265358979323846

/* ------------------------------------------------------------------------ */
/* The resampler                                                             */
/* ------------------------------------------------------------------------ */

/* A smooth picture of period W x H, seen at pixel centres: pixel (x, y)
 * is the point ((x + 1/2) / W, (y + 1/2) / H) of the unit torus. */
static float torus(int x, int y, int W, int H, int c)
{
    double u = (x + 0.5) / W, v = (y + 0.5) / H;
    return (float)(0.5 * sin(2 * PI * (u + 0.1 * c)) + 0.3 * cos(2 * PI * (2 * v + u)));
}

static void paint_torus(float *img, int C, int W, int H)
{
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                img[((size_t)c * H + y) * W + x] = torus(x, y, W, H, c);
}

static void test_resampler(void)
{
    char err[256];
    const int C = 3, W = 64, H = 48;
    float *src = malloc(sizeof(float) * C * W * H), *dst = malloc(sizeof(float) * C * W * H);
    paint_torus(src, C, W, H);

    CHECK(job_resample_periodic(src, C, H, W, dst, H, W, err, sizeof err) == DDPM_OK &&
              memcmp(src, dst, sizeof(float) * C * W * H) == 0,
          "the same size must be the identity");

    /* Shrink (64x48 -> 60x44) and grow (60x44 -> 64x48): the picture at the new centres. */
    const int sizes[2][4] = { { 64, 48, 60, 44 }, { 60, 44, 64, 48 } };
    for (int k = 0; k < 2; k++) {
        int w0 = sizes[k][0], h0 = sizes[k][1], w1 = sizes[k][2], h1 = sizes[k][3];
        paint_torus(src, C, w0, h0);
        CHECK(job_resample_periodic(src, C, h0, w0, dst, h1, w1, err, sizeof err) == DDPM_OK, "%s", err);
        double worst = 0, worst_edge = 0;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < h1; y++)
                for (int x = 0; x < w1; x++) {
                    double e = fabs(dst[((size_t)c * h1 + y) * w1 + x] - torus(x, y, w1, h1, c));
                    worst = e > worst ? e : worst;
                    if (x == 0 || y == 0 || x == w1 - 1 || y == h1 - 1)
                        worst_edge = e > worst_edge ? e : worst_edge;
                }
        printf("resample %dx%d -> %dx%d: largest error %.5f (edges %.5f)\n", w0, h0, w1, h1, worst, worst_edge);
        CHECK(worst < 0.01, "%dx%d -> %dx%d: error %.4f", w0, h0, w1, h1, worst);
    }

    /* 8 x 8 -> 1 x 1 (a tileable 1-pixel image): a constant stays itself. */
    for (int i = 0; i < 64; i++)
        src[i] = 0.375f;
    CHECK(job_resample_periodic(src, 1, 8, 8, dst, 1, 1, err, sizeof err) == DDPM_OK && fabsf(dst[0] - 0.375f) < 1e-6f,
          "8x8 -> 1x1 of a constant: %g", (double)dst[0]);
    free(src);
    free(dst);
}

/* ------------------------------------------------------------------------ */
/* Jobs with the shipped model                                               */
/* ------------------------------------------------------------------------ */

/* Mean |difference| across the wrap-around over mean |difference| between
 * interior neighbours, both axes together: about 1 for a seamless tile. */
static double seam_ratio(const float *x, int W, int H)
{
    double inner = 0, wrap = 0;
    size_t n_inner = 0, n_wrap = 0;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < H; y++)
            for (int i = 0; i < W; i++) {
                const float *p = x + ((size_t)c * H + y) * W;
                double dx = fabs(p[(i + 1) % W] - p[i]);
                double dy = fabs(x[((size_t)c * H + (y + 1) % H) * W + i] - p[i]);
                if (i + 1 < W) { inner += dx; n_inner++; } else { wrap += dx; n_wrap++; }
                if (y + 1 < H) { inner += dy; n_inner++; } else { wrap += dy; n_wrap++; }
            }
    return (wrap / n_wrap) / (inner / n_inner);
}

static ddpm_job_params defaults(uint64_t seed, int tileable)
{
    ddpm_job_params p = {0};
    p.steps = DDPM_DEFAULT_STEPS;
    p.sampler = DDPM_DEFAULT_SAMPLER;
    p.eta = DDPM_DEFAULT_ETA;
    p.eta_t_max = DDPM_DEFAULT_ETA_T_MAX;
    p.variance = DDPM_VARIANCE_POSTERIOR;
    p.seed = seed;
    p.tileable = tileable;
    p.period = DDPM_DEFAULT_PERIOD;
    p.period_t = DDPM_DEFAULT_PERIOD_T;
    p.period_eta = DDPM_DEFAULT_PERIOD_ETA;
    p.period_steps = DDPM_DEFAULT_PERIOD_STEPS;
    return p;
}

enum { W = 60, H = 44, GW = 64, GH = 48, SEEDS = 4 };

static void crop(const float *src, int sw, int sh, float *dst, int w, int h)
{
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < h; y++)
            memcpy(dst + ((size_t)c * h + y) * w, src + ((size_t)c * sh + y) * sw, sizeof(float) * w);
}

/* Generates SEEDS tileable 60x44 images into `images` (SEEDS x 3 x H x W). */
static void test_generate(const ddpm_model *m, float *images)
{
    char err[256];
    float *grid = malloc(sizeof(float) * 3 * GW * GH), *cropped = malloc(sizeof(float) * 3 * W * H);
    double off = 0, old = 0;
    for (int s = 0; s < SEEDS; s++) {
        ddpm_job_params p = defaults(1 + s, 1);
        float *img = images + (size_t)s * 3 * W * H;
        CHECK(ddpm_job_generate(m, &p, W, H, NULL, NULL, img, err, sizeof err) == DDPM_OK, "%s", err);
        CHECK(ddpm_job_generate(m, &p, GW, GH, NULL, NULL, grid, err, sizeof err) == DDPM_OK, "%s", err);
        crop(grid, GW, GH, cropped, W, H);
        off += seam_ratio(img, W, H) / SEEDS;
        old += seam_ratio(cropped, W, H) / SEEDS;
    }
    printf("generate %dx%d tileable, %d seeds: wrap-around / interior difference %.2f; the grid image "
           "cropped (the old behaviour) %.2f\n", W, H, SEEDS, off, old);
    CHECK(old > 1.6, "the control: a cropped grid image should show its seam (%.2f), or the measure is blind", old);
    CHECK(off < 1.3, "a tileable %dx%d image has a seam: %.2f", W, H, off);
    free(grid);
    free(cropped);
}

static void test_refine(const ddpm_model *m, const float *images)
{
    char err[256];
    size_t n = (size_t)3 * W * H;
    float *out = malloc(sizeof(float) * n), *mask = malloc(sizeof(float) * W * H);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            mask[(size_t)y * W + x] = x < W / 2 ? 0.0f : 1.0f;  /* keep the left half */
    double plain = 0;
    int kept = 1, changed = 0;
    for (int s = 0; s < SEEDS; s++) {
        const float *in = images + (size_t)s * n;
        ddpm_job_params p = defaults(100 + s, 1);
        p.eta = DDPM_DEFAULT_REFINE_ETA;
        p.timestep = 300;
        CHECK(ddpm_job_refine(m, &p, W, H, in, NULL, NULL, NULL, out, err, sizeof err) == DDPM_OK, "%s", err);
        plain += seam_ratio(out, W, H) / SEEDS;
        CHECK(ddpm_job_refine(m, &p, W, H, in, mask, NULL, NULL, out, err, sizeof err) == DDPM_OK, "%s", err);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    size_t k = ((size_t)c * H + y) * W + x;
                    if (x < W / 2)
                        kept &= memcmp(&out[k], &in[k], sizeof(float)) == 0;
                    else
                        changed += out[k] != in[k];
                }
    }
    printf("refine %dx%d tileable from t = 300, %d seeds: wrap-around / interior difference %.2f\n", W, H, SEEDS,
           plain);
    CHECK(plain < 1.3, "a tileable refine of %dx%d has a seam: %.2f", W, H, plain);
    CHECK(kept, "the masked refine changed pixels its mask keeps");
    CHECK(changed > SEEDS * 3 * H * (W / 2) / 2, "the masked refine left its white half alone (%d changed)", changed);
    free(out);
    free(mask);
}

static void test_budget(const ddpm_model *m)
{
    char err[256];
    size_t n = (size_t)3 * W * H;
    float *in = malloc(sizeof(float) * n), *out = malloc(sizeof(float) * n);
    paint_torus(in, 3, W, H);
    for (int refine = 0; refine <= 1; refine++) {
        ddpm_job_params p = defaults(5, 1);
        p.steps = 2;
        p.period_steps = 2;
        p.timestep = 100;
        size_t need = ddpm_job_memory_estimate(m, &p, W, H, refine);
        p.memory_budget = need - 1;
        for (size_t i = 0; i < n; i++)
            out[i] = 7.0f;
        ddpm_status s = refine ? ddpm_job_refine(m, &p, W, H, in, NULL, NULL, NULL, out, err, sizeof err)
                               : ddpm_job_generate(m, &p, W, H, NULL, NULL, out, err, sizeof err);
        int untouched = 1;
        for (size_t i = 0; i < n; i++)
            untouched &= out[i] == 7.0f;
        CHECK(s == DDPM_ERR_MEMORY && untouched, "%s one byte under the estimate: %s, out %s",
              refine ? "refine" : "generate", ddpm_status_name(s), untouched ? "untouched" : "written");
        p.memory_budget = need;
        s = refine ? ddpm_job_refine(m, &p, W, H, in, NULL, NULL, NULL, out, err, sizeof err)
                   : ddpm_job_generate(m, &p, W, H, NULL, NULL, out, err, sizeof err);
        CHECK(s == DDPM_OK, "%s at exactly the estimate (%zu bytes): %s '%s'", refine ? "refine" : "generate", need,
              ddpm_status_name(s), err);
    }
    free(in);
    free(out);
}

int main(int argc, char **argv)
{
    test_resampler();

    struct stat st;
    if (argc < 2 || stat(argv[1], &st) != 0) {
        printf("no model at %s: the job checks are skipped\n", argc < 2 ? "(none given)" : argv[1]);
        check_report("test_robust_seams");
        return check_failures ? 1 : 77;
    }
    char err[512];
    ddpm_model *m = NULL;
    if (ddpm_model_load(argv[1], &m, err, sizeof err) != DDPM_OK) {
        fprintf(stderr, "cannot load %s: %s\n", argv[1], err);
        return 1;
    }
    float *images = malloc(sizeof(float) * SEEDS * 3 * W * H);
    test_generate(m, images);
    test_refine(m, images);
    test_budget(m);
    free(images);
    ddpm_model_free(m);
    return check_report("test_robust_seams");
}
