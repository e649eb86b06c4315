/* test_tiles.c: the tiled predictor of job.c cuts, gathers and stitches
 * exactly right.
 *
 * The network is replaced by a sparse filter of radius r: each eps value is
 * the sum of x at the 5 x 5 offsets {-r, -1, 0, 1, r}^2 around it (corners
 * included), with zeros outside the image (or wrapped around it when
 * circular).  A window then gives the right eps for every interior pixel
 * whose taps lie inside the window, which is all of them when r <= halo.
 * So the stitched eps must equal the filter of the whole image bit for bit;
 * any gather, wrap-around or scatter slip shows up as a wrong value (x is
 * noise).  With r > halo it must differ.
 */
#include "ddpm.h"
#include "job_internal.h"

#include "../core/check.h"

#include <stdlib.h>

typedef struct {
    int C, H, W;     /* the image the filter is called on */
    int r, circular;
    int calls;
    int fail_on;     /* call number that returns an error, 0 = never */
    int last_t;
} box_net;

static float pixel(const float *x, int H, int W, int c, int y, int xx, int circular)
{
    if (circular) {
        y = ((y % H) + H) % H;
        xx = ((xx % W) + W) % W;
    } else if (y < 0 || y >= H || xx < 0 || xx >= W) {
        return 0.0f;
    }
    return x[((size_t)c * H + y) * W + xx];
}

static void box_filter(const float *x, int C, int H, int W, int r, int circular, float *out)
{
    int offsets[5] = {-r, -1, 0, 1, r}, taps = 0;
    int use[5];
    for (int i = 0; i < 5; i++)
        if (offsets[i] >= -r && offsets[i] <= r)
            use[taps++] = offsets[i];
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++) {
                float s = 0.0f;
                for (int i = 0; i < taps; i++)
                    for (int j = 0; j < taps; j++)
                        s += pixel(x, H, W, c, y + use[i], xx + use[j], circular);
                out[((size_t)c * H + y) * W + xx] = s + (float)c;  /* channels must not mix up */
            }
}

static ddpm_status box_predict(void *ctx, const float *x_t, int t, float *eps, char *err, size_t errlen)
{
    box_net *b = ctx;
    b->calls++;
    b->last_t = t;
    if (b->fail_on && b->calls == b->fail_on) {
        snprintf(err, errlen, "box net: failing on purpose");
        return DDPM_ERR_NUMERIC;
    }
    box_filter(x_t, b->C, b->H, b->W, b->r, b->circular, eps);
    return DDPM_OK;
}

static uint32_t rng_state = 12345;
static float uniform(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / 16777216.0f * 2.0f - 1.0f;
}

/* One geometry: tiled eps vs the box filter of the whole image. */
static void check_case(int H, int W, int tile, int halo, int stride, int r, int circular, int expect_tiled,
                       int expect_exact)
{
    const int C = 3;
    size_t n = (size_t)C * H * W;
    float *x = malloc(n * sizeof *x), *ref = malloc(n * sizeof *ref), *eps = malloc(n * sizeof *eps);
    for (size_t i = 0; i < n; i++) {
        x[i] = uniform();
        eps[i] = NAN;  /* every value must be written */
    }
    box_filter(x, C, H, W, r, circular, ref);

    box_net net = {C, 0, 0, r, circular, 0, 0, -1};
    job_tiler tl;
    char err[256] = "";
    ddpm_status s = job_tiler_init(&tl, C, H, W, tile, halo, stride, circular, box_predict, &net, err, sizeof err);
    CHECK(s == DDPM_OK, "%dx%d tile %d: init: %s", H, W, tile, err);
    if (s != DDPM_OK)
        goto out;
    net.H = tl.ay.window;
    net.W = tl.ax.window;
    CHECK(job_tiler_is_tiled(&tl) == expect_tiled, "%dx%d tile %d halo %d: tiled = %d", H, W, tile, halo,
          job_tiler_is_tiled(&tl));
    CHECK(tl.ay.interior % stride == 0 && tl.ax.interior % stride == 0 && tl.ay.halo % stride == 0 &&
              tl.ax.halo % stride == 0 && tl.ay.window % stride == 0 && tl.ax.window % stride == 0,
          "%dx%d: tile geometry off the stride %d grid", H, W, stride);
    CHECK(tl.ay.count * tl.ay.interior >= H && (tl.ay.count - 1) * tl.ay.interior < H &&
              tl.ax.count * tl.ax.interior >= W && (tl.ax.count - 1) * tl.ax.interior < W,
          "%dx%d: tiles do not cover the image exactly once", H, W);
    CHECK(tl.ay.window <= H && tl.ax.window <= W, "%dx%d: window larger than the image", H, W);

    s = job_tiled_predict(&tl, x, 321, eps, err, sizeof err);
    CHECK(s == DDPM_OK, "%dx%d: predict: %s", H, W, err);
    CHECK(net.calls == tl.ay.count * tl.ax.count, "%dx%d: %d network calls for %d tiles", H, W, net.calls,
          tl.ay.count * tl.ax.count);
    CHECK(net.last_t == 321, "timestep not passed through (%d)", net.last_t);
    size_t differ = 0, first = n;
    for (size_t i = 0; i < n; i++)
        if (!(eps[i] == ref[i])) {
            differ++;
            if (first == n)
                first = i;
        }
    if (expect_exact)
        CHECK(differ == 0, "%dx%d tile %d halo %d r %d %s: %zu of %zu values differ (first at c%zu y%zu x%zu)", H,
              W, tile, halo, r, circular ? "circular" : "zero-padded", differ, n, first / ((size_t)H * W),
              first / W % H, first % W);
    else
        CHECK(differ > 0, "%dx%d tile %d halo %d r %d: a filter wider than the halo cannot be exact", H, W, tile,
              halo, r);

    /* An error of the network in the middle stops the run and names the tile. */
    if (expect_tiled) {
        net.calls = 0;
        net.fail_on = 2;
        s = job_tiled_predict(&tl, x, 5, eps, err, sizeof err);
        CHECK(s == DDPM_ERR_NUMERIC && strstr(err, "tile") && strstr(err, "failing on purpose"),
              "network error not passed through: %s / %s", ddpm_status_name(s), err);
        CHECK(net.calls == 2, "went on after the failing tile (%d calls)", net.calls);
    }
    job_tiler_free(&tl);
out:
    free(x);
    free(ref);
    free(eps);
}

int main(void)
{
    for (int circular = 0; circular <= 1; circular++) {
        /* square, evenly cut: 4 x 4 tiles of 16 in windows of 32 */
        check_case(64, 64, 16, 8, 8, 8, circular, 1, 1);
        check_case(64, 64, 16, 8, 8, 3, circular, 1, 1);
        /* uneven: 3 tiles of 24 rows; 40 columns fit one window */
        check_case(72, 40, 32, 8, 8, 5, circular, 1, 1);
        /* 4 tiles of 56 (the last 32) in windows of 88 */
        check_case(200, 200, 64, 16, 8, 16, circular, 1, 1);
        /* wide strip: rows uncut, columns cut */
        check_case(48, 256, 64, 16, 8, 9, circular, 1, 1);
        /* tile and halo rounded up to the stride (30 -> 32, 5 -> 8) */
        check_case(96, 96, 30, 5, 8, 8, circular, 1, 1);
        /* no halo, pointwise network */
        check_case(64, 48, 16, 0, 8, 0, circular, 1, 1);
        /* a filter wider than the halo must show the cut */
        check_case(64, 64, 16, 8, 8, 12, circular, 1, 0);
        /* fits in one tile: not cut, the network sees the whole image */
        check_case(64, 64, 64, 8, 8, 20, circular, 0, 1);
        /* the context would cover the whole image: not cut either */
        check_case(64, 64, 32, 16, 8, 20, circular, 0, 1);
    }

    /* Bad geometry is refused, not crashed on. */
    job_tiler tl;
    char err[256] = "";
    CHECK(job_tiler_init(&tl, 3, 60, 64, 16, 8, 8, 0, box_predict, NULL, err, sizeof err) == DDPM_ERR_ARGUMENT,
          "a size off the stride was accepted");
    CHECK(job_tiler_init(&tl, 3, 64, 64, 0, 8, 8, 0, box_predict, NULL, err, sizeof err) == DDPM_ERR_ARGUMENT,
          "tile 0 was accepted");
    return check_report("tiles");
}
