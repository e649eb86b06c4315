/* test_conv.c: every scheme of the 3x3 and 1x1 convolutions against a
 * direct sum.
 *
 *   test_engine_conv
 *
 * For a grid of shapes (channel counts that take the Winograd path with the
 * wide and the narrow packed kernel, the OpenBLAS fallback, the direct and
 * row schemes, the shifted GEMMs and im2col; odd, tiny and large images;
 * zero and circular padding; bias plus a per-channel extra, and
 * accumulation) conv3x3 must match
 *
 *     y[o, i, j] = b[o] + e[o] + sum_{c, ky, kx} w[o, c, ky, kx] x[c, i + ky - 1, j + kx - 1]
 *
 * computed here in double, within 1e-5 of the largest |y|; and one and three
 * threads must give the same bits, with normal and tiny block sizes (which
 * cut the image into many bands, so that bands run in parallel, and take
 * Winograd F(4x4) from 16 pixels up instead of 128 x 128).
 *
 * Likewise the 1x1 convolution (conv1x1, ResnetBlock2D's conv_shortcut)
 * must give
 *
 *     y[o, p] = b[o] + e[o] + sum_c w[o, c] x[c, p]
 *
 * for channel counts on and off the packed kernel (cout % 16), pixel counts
 * below, at and past a panel of 32 and with a partial last panel, the input
 * in one piece or as a concat of two (split at an odd channel), whatever y
 * held before (it starts as NaN), within 1e-5 of the largest |y|; one and
 * three threads the same bits, and on the packed kernel normal and tiny
 * blocks too (which cut the pixels into strips of 32).  Its scratch must be
 * enough: the floats just past it must be left alone.
 *
 * Run once as is and once with DDPM_NO_PACKED=1 (meson.build), so that the
 * packed AVX-512 kernels and the OpenBLAS path are both checked on a
 * machine that has the former.
 */
#include "ops.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static float uniform(void)   /* xorshift64*, in [-1, 1) */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (float)((rng_state * 2685821657736338717u >> 40) / (double)(1u << 24) * 2.0 - 1.0);
}

static int wrap(int v, int n)
{
    return ((v % n) + n) % n;
}

/* The direct sum, in double. */
static void reference(const float *w, const float *b, const float *extra, const float *x, int cin, int cout, int H,
                      int W, int circular, double *y)
{
    for (int o = 0; o < cout; o++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                double s = (double)b[o] + (double)extra[o];
                for (int c = 0; c < cin; c++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            int si = i + ky - 1, sj = j + kx - 1;
                            if (circular) {
                                si = wrap(si, H);
                                sj = wrap(sj, W);
                            } else if (si < 0 || si >= H || sj < 0 || sj >= W) {
                                continue;
                            }
                            s += (double)w[((size_t)(o * cin + c) * 3 + ky) * 3 + kx] *
                                 (double)x[((size_t)c * H + si) * W + sj];
                        }
                y[((size_t)o * H + i) * W + j] = s;
            }
}

/* The weights as the loader leaves them (model.c): Winograd's U, packed
 * when the kernel reads it so, or repacked taps for the GEMM schemes. */
static conv2d_w prepare(const float *w, const float *b, int cin, int cout, float **storage)
{
    conv2d_w c = {.b = b, .cin = cin, .cout = cout, .k = 3};
    size_t numel = (size_t)9 * cin * cout;
    float *tmp = malloc((numel + 36 * (size_t)cin) * sizeof *tmp);
    if (conv3x3_uses_winograd(cin, cout)) {
        float *u = malloc(winograd_floats(cin, cout) * sizeof *u);
        winograd_weights(w, cout, cin, u, tmp);
        if (winograd_packed(cout))
            winograd_pack(u, cout, cin, tmp);
        c.u = u;
        *storage = u;
    } else {
        float *r = malloc(numel * sizeof *r);
        memcpy(r, w, numel * sizeof *r);
        conv3x3_repack(r, cout, cin, tmp);
        c.w = r;
        *storage = r;
    }
    free(tmp);
    return c;
}

/* y = conv(x) + b + extra (accumulate = 0), or y = y0 + conv(x) (1). */
static float *run(const conv2d_w *c, const float *x, int H, int W, int circular, const float *extra,
                  int accumulate, const float *y0, int threads)
{
    const int cin = c->cin, cout = c->cout;
    float *xp = calloc((size_t)cin * padded_plane(H, W), sizeof *xp);
    for (int ch = 0; ch < cin; ch++)
        for (int i = 0; i < H; i++)
            memcpy(padded_interior(xp + (size_t)ch * padded_plane(H, W), W) + (size_t)i * padded_stride(W),
                   x + ((size_t)ch * H + i) * W, (size_t)W * sizeof *x);
    pad_borders(xp, cin, H, W, circular, threads);
    float *y = malloc((size_t)cout * H * W * sizeof *y);
    if (accumulate)
        memcpy(y, y0, (size_t)cout * H * W * sizeof *y);
    float *scratch = malloc((conv3x3_scratch_floats(cin, cout, H, W, threads) + 1) * sizeof *scratch);
    conv3x3(c, xp, H, W, y, extra, accumulate, scratch, threads);
    free(scratch);
    free(xp);
    return y;
}

static void check_shape(int cin, int cout, int H, int W, int circular)
{
    const size_t nw = (size_t)9 * cin * cout, nx = (size_t)cin * H * W, ny = (size_t)cout * H * W;
    float *w = malloc(nw * sizeof *w), *b = malloc((size_t)cout * sizeof *b), *e = malloc((size_t)cout * sizeof *e);
    float *x = malloc(nx * sizeof *x), *zero = calloc((size_t)cout, sizeof *zero), *y0 = malloc(ny * sizeof *y0);
    double *ref = malloc(ny * sizeof *ref);
    for (size_t i = 0; i < nw; i++)
        w[i] = uniform() / sqrtf(9.0f * cin);
    for (int o = 0; o < cout; o++) {
        b[o] = uniform();
        e[o] = uniform();
    }
    for (size_t i = 0; i < nx; i++)
        x[i] = uniform();
    for (size_t i = 0; i < ny; i++)
        y0[i] = uniform();
    reference(w, b, e, x, cin, cout, H, W, circular, ref);

    float *storage = NULL;
    conv2d_w c = prepare(w, b, cin, cout, &storage);
    double scale = 0.0;
    for (size_t i = 0; i < ny; i++)
        scale = fmax(scale, fabs(ref[i]));

    for (int tiny = 0; tiny < 2; tiny++) {
        ops_use_tiny_blocks(tiny);
        float *y1 = run(&c, x, H, W, circular, e, 0, NULL, 1);
        float *y3 = run(&c, x, H, W, circular, e, 0, NULL, 3);
        /* accumulate: y0 + conv(x) - (b + e) bias-free; compare y - y0 with ref - b - e */
        float *ya = run(&c, x, H, W, circular, zero, 1, y0, 3);
        double err = 0.0, err_acc = 0.0;
        for (int o = 0; o < cout; o++)
            for (size_t p = 0; p < (size_t)H * W; p++) {
                size_t i = (size_t)o * H * W + p;
                err = fmax(err, fabs(y1[i] - ref[i]));
                err_acc = fmax(err_acc, fabs((double)ya[i] - y0[i] - (ref[i] - b[o] - e[o])));
            }
        int same = memcmp(y1, y3, ny * sizeof *y1) == 0;
        if (err > 1e-5 * scale || err_acc > 1e-5 * scale || !same) {
            failures++;
            printf("FAIL cin %d cout %d %dx%d %s%s: error %.3g, accumulate %.3g (scale %.3g), 1 vs 3 threads %s\n",
                   cin, cout, H, W, circular ? "circular" : "zero", tiny ? " tiny blocks" : "", err, err_acc,
                   scale, same ? "same" : "DIFFER");
        }
        free(y1);
        free(y3);
        free(ya);
    }
    ops_use_tiny_blocks(0);
    free(storage);
    free(w), free(b), free(e), free(x), free(zero), free(y0), free(ref);
}

/* ------------------------------------------------------------------------ */
/* 1x1 convolution                                                           */
/* ------------------------------------------------------------------------ */

#define GUARD 65536                     /* floats past the scratch, watched */

/* y = b + e + W x, x given as the concat of its first Ca planes and the
 * other cin - Ca (Ca = cin: no concat), as unet.c's resnet calls it, onto
 * a y of NaNs.  Counts a failure if the convolution wrote past its
 * scratch. */
static float *run_1x1(const conv2d_w *c, const float *x, size_t HW, int Ca, const float *e, int threads)
{
    const int cin = c->cin, cout = c->cout;
    const size_t n = conv1x1_scratch_floats(cin, cout, HW, threads);
    float *scratch = malloc((n + GUARD) * sizeof *scratch), *y = malloc((size_t)cout * HW * sizeof *y);
    for (size_t i = n; i < n + GUARD; i++)
        scratch[i] = -7.0f;
    for (size_t i = 0; i < (size_t)cout * HW; i++)
        y[i] = NAN;
    conv1x1(c, x, Ca, x + (size_t)Ca * HW, cin - Ca, HW, y, e, scratch, threads);
    for (size_t i = n; i < n + GUARD; i++)
        if (scratch[i] != -7.0f) {
            failures++;
            printf("FAIL 1x1 cin %d cout %d HW %zu threads %d: wrote past its scratch of %zu floats\n", cin, cout,
                   HW, threads, n);
            break;
        }
    free(scratch);
    return y;
}

static void check_1x1(int cin, int cout, size_t HW, int Ca)
{
    const size_t nw = (size_t)cin * cout, nx = (size_t)cin * HW, ny = (size_t)cout * HW;
    float *w = malloc(nw * sizeof *w), *x = malloc(nx * sizeof *x);
    float *b = malloc((size_t)cout * sizeof *b), *e = malloc((size_t)cout * sizeof *e);
    double *ref = malloc(ny * sizeof *ref);
    for (size_t i = 0; i < nw; i++)
        w[i] = uniform() / sqrtf((float)cin);
    for (size_t i = 0; i < nx; i++)
        x[i] = uniform();
    for (int o = 0; o < cout; o++) {
        b[o] = uniform();
        e[o] = uniform();
    }
    double scale = 0.0;
    for (int o = 0; o < cout; o++)
        for (size_t p = 0; p < HW; p++) {
            double s = (double)b[o] + (double)e[o];
            for (int c = 0; c < cin; c++)
                s += (double)w[(size_t)o * cin + c] * (double)x[(size_t)c * HW + p];
            ref[(size_t)o * HW + p] = s;
            scale = fmax(scale, fabs(s));
        }

    /* the weights as the loader leaves them (model.c) */
    float *wl = malloc(nw * sizeof *wl), *tmp = malloc(nw * sizeof *tmp);
    memcpy(wl, w, nw * sizeof *wl);
    if (conv1x1_packed(cout))
        conv1x1_pack(wl, cout, cin, tmp);
    conv2d_w c = {.w = wl, .b = b, .cin = cin, .cout = cout, .k = 1};

    float *first = NULL;                 /* one thread, normal blocks */
    for (int tiny = 0; tiny < 2; tiny++) {
        ops_use_tiny_blocks(tiny);
        float *y1 = run_1x1(&c, x, HW, Ca, e, 1);
        float *y3 = run_1x1(&c, x, HW, Ca, e, 3);
        double err = 0.0;
        for (size_t i = 0; i < ny; i++)
            err = fmax(err, isnan(y1[i]) ? INFINITY : fabs(y1[i] - ref[i]));
        int same = memcmp(y1, y3, ny * sizeof *y1) == 0;
        int same_blocks = !first || !conv1x1_packed(cout) || memcmp(first, y1, ny * sizeof *y1) == 0;
        if (err > 1e-5 * scale || !same || !same_blocks) {
            failures++;
            printf("FAIL 1x1 cin %d cout %d HW %zu concat %d + %d%s: error %.3g (scale %.3g), 1 vs 3 threads %s, "
                   "normal vs tiny blocks %s\n", cin, cout, HW, Ca, cin - Ca, tiny ? " tiny blocks" : "", err,
                   scale, same ? "same" : "DIFFER", same_blocks ? "same" : "DIFFER");
        }
        free(y3);
        if (first)
            free(y1);
        else
            first = y1;
    }
    ops_use_tiny_blocks(0);
    free(first);
    free(wl), free(tmp), free(w), free(x), free(b), free(e), free(ref);
}

/* Channels on the packed kernel (cout % 16; two panels a task, where the
 * narrow kernel runs, from cout 128), and off it (cout 24, 8); pixels below
 * a panel (narrow kernel), a panel, partial last panels, many strips. */
static int check_1x1_shapes(void)
{
    static const int channels[][2] = {{16, 16}, {32, 64}, {64, 32}, {96, 48}, {48, 128}, {256, 128},
                                      {128, 256}, {40, 24}, {16, 8}};
    static const size_t pixels[] = {1, 7, 16, 31, 32, 33, 100, 1024, 4096};
    int shapes = 0;
    for (size_t ci = 0; ci < sizeof channels / sizeof *channels; ci++)
        for (size_t pi = 0; pi < sizeof pixels / sizeof *pixels; pi++) {
            const int cin = channels[ci][0], cout = channels[ci][1];
            if ((double)cin * cout * pixels[pi] > 2e7)
                continue;              /* the direct sum in double would take long (valgrind) */
            check_1x1(cin, cout, pixels[pi], cin);
            check_1x1(cin, cout, pixels[pi], cin / 2 + 3);  /* concat, split at an odd channel */
            shapes += 2;
        }
    return shapes;
}

int main(void)
{
    /* channels: Winograd F(4x4) with the packed kernel (cout % 16; narrow
     * when cout % 32 and few tiles), F(4x4) on OpenBLAS (cout 24), F(2x2)
     * for the widest layers (cin cout > 256 x 128; packed, with and without
     * the narrow kernel), shifted GEMMs and im2col (cin or cout < 16,
     * conv_in/conv_out-like), and the direct GEMM of the widest layers on
     * small images (cin cout >= 256 x 256; F(2x2) from 65 pixels); with
     * the packed kernel, the narrower ones run small images as rows */
    static const int channels[][2] = {{16, 16}, {32, 32}, {48, 64}, {64, 32}, {16, 24}, {192, 192},
                                      {176, 208}, {8, 16}, {3, 16}, {32, 3}, {264, 256}};
    static const int sizes[][2] = {{1, 1}, {2, 2}, {3, 5}, {4, 4}, {8, 8}, {7, 12}, {16, 16}, {33, 20}, {64, 64},
                                   {128, 128}};
    int shapes = 0;
    for (size_t ci = 0; ci < sizeof channels / sizeof *channels; ci++)
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
            for (int circular = 0; circular < 2; circular++) {
                if ((long)channels[ci][0] * channels[ci][1] * sizes[si][0] * sizes[si][1] > 5000000)
                    continue;          /* the direct sum in double would take long (valgrind) */
                check_shape(channels[ci][0], channels[ci][1], sizes[si][0], sizes[si][1], circular);
                shapes++;
            }
    int shapes_1x1 = check_1x1_shapes();
    printf("%d shapes 3x3, %d shapes 1x1, packed kernel %s: %s\n", shapes, shapes_1x1,
           winograd_packed(32) ? "on" : "off", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
