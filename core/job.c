/* job.c: generate and refine jobs shared by the CLI and the plug-in.
 *
 * A job is everything between "the user pressed OK" and "here are the pixels":
 * check the arguments against the model, round the image up to the U-Net's
 * stride, check the memory budget, build the schedule and the forward plan,
 * run the sampler, crop.  Both front ends call these two functions and map
 * pixels with ddpm_to_u8 / ddpm_from_u8, which is why `ddpm generate` and the
 * plug-in give identical pixels for identical settings.
 *
 * Large images.  The U-Net's scratch grows with the pixel count (about
 * 1.4 GiB at 1024 x 1024 for the shipped model, 22.5 GiB at 4096 x 4096), so
 * an image wider or taller than JOB_TILE is not run in one piece: each step
 * computes eps tile by tile, every tile seen through a window with JOB_HALO
 * pixels of context around it, and keeps each window's interior.  The
 * sampler is unchanged: it only sees a predict function over the whole
 * image, and its noise is addressed by absolute pixel coordinates.
 *
 * The cut depends on the image size and the model only, never on the memory
 * budget or the machine, so the same settings give the same pixels
 * everywhere; the budget only decides whether the job runs.  GroupNorm then
 * normalises each window with its own statistics, so a tiled result differs
 * slightly from what one huge forward pass would give.
 */
#include "ddpm.h"
#include "job_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define JOB_CHANNELS 3  /* jobs work on RGB images */

static ddpm_status fail(char *err, size_t errlen, ddpm_status s, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return s;
}

uint8_t ddpm_to_u8(float v)
{
    /* [-1, 1] -> [0, 255]: diffusers' (x / 2 + 0.5) * 255, rounded half up. */
    if (!(v > -1.0f))  /* also maps NaN to 0 */
        return 0;
    if (v >= 1.0f)
        return 255;
    return (uint8_t)floorf((v + 1.0f) * 127.5f + 0.5f);
}

float ddpm_from_u8(uint8_t p)
{
    return (float)p / 127.5f - 1.0f;
}

static int round_up(int n, int m)
{
    return (n + m - 1) / m * m;
}

/* ------------------------------------------------------------------------ */
/* Tiles                                                                     */
/* ------------------------------------------------------------------------ */

/* Cut one axis of S pixels: n = ceil(S / tile) tiles of equal size (rounded
 * up to the stride), each with `halo` pixels of context on both sides. */
static void axis_cut(int S, int tile, int halo, int stride, job_axis *a)
{
    if (S <= tile) {
        a->count = 1;
        a->interior = S;
        a->halo = 0;
        a->window = S;
        return;
    }
    int n = (S + tile - 1) / tile;
    a->interior = round_up((S + n - 1) / n, stride);
    a->count = (S + a->interior - 1) / a->interior;
    a->halo = halo;
    a->window = a->interior + 2 * halo;
    if (a->window >= S) {  /* the context would cover everything: one tile */
        a->count = 1;
        a->interior = S;
        a->halo = 0;
        a->window = S;
    }
}

/* First pixel of tile i's window.  Circular: the interior minus the halo,
 * possibly negative (indices wrap).  Otherwise the window is pushed back
 * inside the image, so that at the image border it sees the same zero
 * padding as an uncut run; it still contains the interior because the
 * window is at least interior + 2 halo wide. */
static int window_start(const job_axis *a, int S, int i, int circular)
{
    if (a->window == S)
        return 0;
    int start = i * a->interior - a->halo;
    if (circular)
        return start;
    if (start > S - a->window)
        start = S - a->window;
    if (start < 0)
        start = 0;
    return start;
}

static int wrap(int v, int S)
{
    v %= S;
    return v < 0 ? v + S : v;
}

int job_tiler_is_tiled(const job_tiler *tl)
{
    return tl->ay.count > 1 || tl->ax.count > 1;
}

ddpm_status job_tiler_init(job_tiler *tl, int C, int H, int W, int tile, int halo, int stride, int circular,
                           ddpm_predict_fn inner, void *inner_ctx, char *err, size_t errlen)
{
    memset(tl, 0, sizeof *tl);
    if (C < 1 || H < 1 || W < 1 || stride < 1 || tile < 1 || halo < 0 || H % stride || W % stride)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "tiles: bad geometry (%d x %d x %d, tile %d, halo %d, stride %d)",
                    C, H, W, tile, halo, stride);
    /* Multiples of the stride: every window then starts on the grid of the
     * U-Net's downsamplers, as the same pixels do in the whole image. */
    tile = round_up(tile, stride);
    halo = round_up(halo, stride);
    tl->C = C;
    tl->H = H;
    tl->W = W;
    tl->circular = circular != 0;
    tl->inner = inner;
    tl->inner_ctx = inner_ctx;
    axis_cut(H, tile, halo, stride, &tl->ay);
    axis_cut(W, tile, halo, stride, &tl->ax);
    if (!job_tiler_is_tiled(tl))
        return DDPM_OK;
    size_t n = (size_t)C * tl->ay.window * tl->ax.window;
    tl->x_win = malloc(n * sizeof(float));
    tl->eps_win = malloc(n * sizeof(float));
    if (!tl->x_win || !tl->eps_win) {
        job_tiler_free(tl);
        return fail(err, errlen, DDPM_ERR_MEMORY, "tiles: cannot allocate two %dx%d windows", tl->ax.window,
                    tl->ay.window);
    }
    return DDPM_OK;
}

void job_tiler_free(job_tiler *tl)
{
    free(tl->x_win);
    free(tl->eps_win);
    tl->x_win = tl->eps_win = NULL;
}

/* eps of the whole image, one window at a time:
 *   x_win   = x_t[window]                (wrapped or clamped into the image)
 *   eps_win = network(x_win, t)
 *   eps[interior] = eps_win[interior]
 * The tiles are visited in a fixed order and each is computed alone, so the
 * result depends neither on the thread count nor on anything but x_t. */
ddpm_status job_tiled_predict(void *tiler, const float *x_t, int t, float *eps, char *err, size_t errlen)
{
    job_tiler *tl = tiler;
    if (!job_tiler_is_tiled(tl))
        return tl->inner(tl->inner_ctx, x_t, t, eps, err, errlen);
    const int C = tl->C, H = tl->H, W = tl->W;
    const int wh = tl->ay.window, ww = tl->ax.window;
    for (int ty = 0; ty < tl->ay.count; ty++) {
        int y0 = ty * tl->ay.interior, y1 = y0 + tl->ay.interior < H ? y0 + tl->ay.interior : H;
        int sy = window_start(&tl->ay, H, ty, tl->circular);
        for (int tx = 0; tx < tl->ax.count; tx++) {
            int x0 = tx * tl->ax.interior, x1 = x0 + tl->ax.interior < W ? x0 + tl->ax.interior : W;
            int sx = window_start(&tl->ax, W, tx, tl->circular);

            for (int c = 0; c < C; c++)
                for (int wy = 0; wy < wh; wy++) {
                    const float *src = x_t + ((size_t)c * H + wrap(sy + wy, H)) * W;
                    float *dst = tl->x_win + ((size_t)c * wh + wy) * ww;
                    for (int wx = 0; wx < ww; wx++)
                        dst[wx] = src[wrap(sx + wx, W)];
                }

            char msg[256] = "";
            ddpm_status s = tl->inner(tl->inner_ctx, tl->x_win, t, tl->eps_win, msg, sizeof msg);
            if (s != DDPM_OK)
                return fail(err, errlen, s, "tile %d,%d (pixels %d..%d x %d..%d): %s", ty, tx, x0, x1 - 1, y0,
                            y1 - 1, msg);

            /* The interior sits at (y - sy, x - sx) in its window: sy is at
             * most y0 and the window reaches past y1 (both axes alike). */
            for (int c = 0; c < C; c++)
                for (int y = y0; y < y1; y++)
                    memcpy(eps + ((size_t)c * H + y) * W + x0,
                           tl->eps_win + ((size_t)c * wh + (y - sy)) * ww + (x0 - sx),
                           (size_t)(x1 - x0) * sizeof(float));
        }
    }
    return DDPM_OK;
}

/* Whether a job runs off the grid: tileable, and a side not a multiple of
 * the stride (then *H, *W are the sides it is computed at).  0 for a size out
 * of range, which the grid job then refuses. */
static int off_grid(const ddpm_model *m, const ddpm_job_params *p, int width, int height, int *H, int *W)
{
    if (width < 1 || height < 1 || width > 65536 || height > 65536)
        return 0;
    ddpm_model_info info;
    ddpm_model_get_info(m, &info);
    *H = round_up(height, info.stride);
    *W = round_up(width, info.stride);
    return p->tileable && (*H != height || *W != width);
}

/* What an off-grid job holds beside the grid job's own need: generate the
 * grid's image; refine the layer and the result on the grid, the mask on the
 * grid and the result at the layer's size. */
static uint64_t off_grid_bytes(int width, int height, int W, int H, int refine)
{
    uint64_t grid = (uint64_t)H * W * sizeof(float), layer = (uint64_t)height * width * sizeof(float);
    return refine ? 2 * JOB_CHANNELS * grid + grid + JOB_CHANNELS * layer : JOB_CHANNELS * grid;
}

/* ------------------------------------------------------------------------ */
/* Memory                                                                    */
/* ------------------------------------------------------------------------ */

size_t ddpm_job_default_memory_budget(void)
{
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) {
        uint64_t half = (uint64_t)pages / 2 * (uint64_t)page;
        return half > SIZE_MAX ? SIZE_MAX : (size_t)half;
    }
#endif
    return SIZE_MAX;  /* unknown: no limit */
}

/* What a job allocates, in bytes (uint64 so that no size can overflow):
 *   the plan for one window (ddpm_unet_plan_bytes_estimate),
 *   two windows of C floats a pixel when the image is cut,
 *   the images of the chain: the job's result x and the sampler's x_t,
 *   eps, z (generate: 4 images); refine adds x_0, the sampler's x_known and
 *   one plane for the mask (6 images and a plane); DDIM and DPM-Solver++
 *   are allowed two more (the multistep solver keeps the previous x^_0). */
static uint64_t job_bytes(const ddpm_model *m, int H, int W, int tile, int halo, int refine, ddpm_sampler sampler,
                          uint64_t *plan_out)
{
    ddpm_model_info info;
    ddpm_model_get_info(m, &info);
    job_axis ay, ax;
    axis_cut(H, round_up(tile, info.stride), round_up(halo, info.stride), info.stride, &ay);
    axis_cut(W, round_up(tile, info.stride), round_up(halo, info.stride), info.stride, &ax);
    uint64_t plan = ddpm_unet_plan_bytes_estimate(m, 1, ay.window, ax.window);
    uint64_t plane = (uint64_t)H * (uint64_t)W * sizeof(float);
    uint64_t image = JOB_CHANNELS * plane;
    uint64_t windows = (ay.count > 1 || ax.count > 1) ? 2 * (uint64_t)JOB_CHANNELS * ay.window * ax.window * sizeof(float) : 0;
    uint64_t images = refine ? 6 * image + plane : 4 * image;
    if (sampler != DDPM_SAMPLER_DDPM)
        images += 2 * image;
    if (plan_out)
        *plan_out = plan;
    return plan + windows + images;
}

size_t ddpm_job_memory_estimate(const ddpm_model *m, const ddpm_job_params *p, int width, int height, int refine)
{
    if (!m || !p || width < 1 || height < 1 || width > 65536 || height > 65536)
        return 0;
    int H, W, py, px;
    /* An off-grid job runs on the grid, beside its own images. */
    int shifted = off_grid(m, p, width, height, &H, &W);
    int w = shifted ? W : width, h = shifted ? H : height;
    /* A period-first job ends in a refine of the whole image. */
    int periodic = !refine && ddpm_job_period_shape(m, p, w, h, &py, &px);
    uint64_t b = job_bytes(m, H, W, JOB_TILE, JOB_HALO, refine || periodic, p->sampler, NULL);
    if (periodic)
        b += (uint64_t)JOB_CHANNELS * h * w * sizeof(float);
    if (shifted)
        b += off_grid_bytes(width, height, W, H, refine);
    return b > SIZE_MAX ? SIZE_MAX : (size_t)b;
}

/* ------------------------------------------------------------------------ */
/* Jobs                                                                      */
/* ------------------------------------------------------------------------ */

/* Everything a job needs, made once before the chain starts. */
typedef struct {
    ddpm_schedule schedule;
    ddpm_unet_plan *plan;   /* for one window (the whole image when not cut) */
    job_tiler tiler;
    int H, W;               /* padded to the stride */
    float *x;               /* 3 x H x W working image */
} job_state;

static void job_free(job_state *j)
{
    ddpm_schedule_free(&j->schedule);
    ddpm_unet_plan_free(j->plan);
    job_tiler_free(&j->tiler);
    free(j->x);
    memset(j, 0, sizeof *j);
}

/* DDPM_ERR_MEMORY, with the figures, when a job of this size (plus `extra`
 * bytes of the caller's) would need more than the budget. */
static ddpm_status check_budget(const ddpm_model *m, const ddpm_job_params *p, int tile, int halo, int width,
                                int height, int refine, uint64_t extra, char *err, size_t errlen)
{
    ddpm_model_info info;
    ddpm_model_get_info(m, &info);
    size_t budget = p->memory_budget ? p->memory_budget : ddpm_job_default_memory_budget();
    uint64_t plan = 0;
    uint64_t need = job_bytes(m, round_up(height, info.stride), round_up(width, info.stride), tile, halo, refine,
                              p->sampler, &plan) + extra;
    if (need > budget)
        return fail(err, errlen, DDPM_ERR_MEMORY,
                    "a %dx%d image needs about %llu MiB (%llu MiB of U-Net scratch), over the memory budget of "
                    "%zu MiB", width, height, (unsigned long long)(need >> 20), (unsigned long long)(plan >> 20),
                    budget >> 20);
    return DDPM_OK;
}

/* The network over the whole image, as the sampler calls it. */
static ddpm_predict_fn job_predict(job_state *j, void **ctx)
{
    if (job_tiler_is_tiled(&j->tiler)) {
        *ctx = &j->tiler;
        return job_tiled_predict;
    }
    *ctx = j->plan;
    return ddpm_unet_predict;
}

static ddpm_status job_prepare(const ddpm_model *m, const ddpm_job_params *p, int tile, int halo, int width,
                               int height, int refine, job_state *j, char *err, size_t errlen)
{
    memset(j, 0, sizeof *j);
    if (!m || !p)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "job: missing model or parameters");
    ddpm_model_info info;
    ddpm_model_get_info(m, &info);
    if (info.in_channels != JOB_CHANNELS || info.out_channels != JOB_CHANNELS)
        return fail(err, errlen, DDPM_ERR_UNSUPPORTED,
                    "the model has %d input and %d output channels; images need %d",
                    info.in_channels, info.out_channels, JOB_CHANNELS);
    if (width < 1 || height < 1 || width > 65536 || height > 65536)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "image size %dx%d is out of range (1..65536)", width, height);
    int T = info.scheduler->num_train_timesteps;
    if (p->steps < 1 || p->steps > T)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "steps must be between 1 and %d (got %d)", T, p->steps);
    if (refine && (p->timestep < 1 || p->timestep > T))
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "timestep must be between 1 and %d (got %d)", T, p->timestep);

    j->H = round_up(height, info.stride);
    j->W = round_up(width, info.stride);

    /* Refuse before allocating anything: the plan alone can be gigabytes. */
    ddpm_status s = check_budget(m, p, tile, halo, width, height, refine, 0, err, errlen);
    if (s != DDPM_OK)
        return s;

    s = ddpm_schedule_init(&j->schedule, info.scheduler, err, errlen);
    if (s == DDPM_OK)
        s = job_tiler_init(&j->tiler, JOB_CHANNELS, j->H, j->W, tile, halo, info.stride, p->tileable,
                           ddpm_unet_predict, NULL, err, errlen);
    if (s == DDPM_OK)
        s = ddpm_unet_plan_create(m, 1, j->tiler.ay.window, j->tiler.ax.window, p->tileable, &j->plan, err, errlen);
    if (s == DDPM_OK) {
        j->tiler.inner_ctx = j->plan;
        j->x = malloc((size_t)JOB_CHANNELS * j->H * j->W * sizeof(float));
        if (!j->x)
            s = fail(err, errlen, DDPM_ERR_MEMORY, "cannot allocate a %dx%d image", j->W, j->H);
    }
    if (s != DDPM_OK)
        job_free(j);
    return s;
}

static void crop(const float *src, int H, int W, float *dst, int height, int width)
{
    for (int c = 0; c < JOB_CHANNELS; c++)
        for (int y = 0; y < height; y++)
            memcpy(dst + ((size_t)c * height + y) * width, src + ((size_t)c * H + y) * W,
                   (size_t)width * sizeof(float));
}

/* Pad width x height to W x H: wrap around for tileable images (the padded
 * image is then a piece of the same infinite tiling), else repeat the edge. */
static void pad(const float *src, int height, int width, float *dst, int H, int W, int wrap_around)
{
    for (int c = 0; c < JOB_CHANNELS; c++)
        for (int y = 0; y < H; y++) {
            int sy = y < height ? y : (wrap_around ? y % height : height - 1);
            for (int x = 0; x < W; x++) {
                int sx = x < width ? x : (wrap_around ? x % width : width - 1);
                dst[((size_t)c * H + y) * W + x] = src[((size_t)c * height + sy) * width + sx];
            }
        }
}

/* ------------------------------------------------------------------------ */
/* Tileable images off the stride's grid                                    */
/* ------------------------------------------------------------------------ */

/* Cropping a wrapped-around canvas cuts its period short, and the crop's two
 * edges no longer meet: a seam.  So a tileable image whose sides are not
 * multiples of the stride is computed at the next multiple, W' x H', and
 * resampled to W x H as one period of the same infinite tiling: sample k of
 * n is read at source position u = (k + 1/2) N/n - 1/2, indices wrap modulo
 * N, so the last sample's right neighbour is the first.  At most 7 pixels
 * are added (a scale of 0.9 or more for sides of 64 and up). */

/* Keys' cubic convolution kernel with a = -1/2 (Keys 1981): interpolating
 * (1 at 0, 0 at the other integers) and exact for quadratics. */
static double keys_cubic(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x <= 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0)
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    return 0.0;
}

/* One periodic line of N samples (stride `ss` apart) to n (stride `ds`).
 * Shrinking widens the kernel by N/n, so it averages instead of aliasing. */
static void resample_line(const float *src, int N, size_t ss, float *dst, int n, size_t ds)
{
    double scale = (double)N / n, support = scale > 1.0 ? scale : 1.0;
    for (int i = 0; i < n; i++) {
        double u = (i + 0.5) * scale - 0.5, sum = 0.0, wsum = 0.0;
        for (int k = (int)floor(u - 2.0 * support) + 1; k <= (int)floor(u + 2.0 * support); k++) {
            double w = keys_cubic((k - u) / support);
            int kk = ((k % N) + N) % N;
            sum += w * src[(size_t)kk * ss];
            wsum += w;
        }
        dst[(size_t)i * ds] = (float)(sum / wsum);
    }
}

/* Rows first, then columns (job_internal.h). */
ddpm_status job_resample_periodic(const float *src, int C, int H, int W, float *dst, int height, int width,
                                  char *err, size_t errlen)
{
    float *rows = malloc((size_t)C * H * width * sizeof(float));
    if (!rows)
        return fail(err, errlen, DDPM_ERR_MEMORY, "cannot allocate a %dx%d image", width, H);
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            resample_line(src + ((size_t)c * H + y) * W, W, 1, rows + ((size_t)c * H + y) * width, width, 1);
    for (int c = 0; c < C; c++)
        for (int x = 0; x < width; x++)
            resample_line(rows + (size_t)c * H * width + x, H, (size_t)width,
                          dst + (size_t)c * height * width + x, height, (size_t)width);
    free(rows);
    return DDPM_OK;
}

static void clamp_unit(float *x, size_t n, float lo)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] < lo ? lo : (x[i] > 1.0f ? 1.0f : x[i]);
}

static ddpm_status generate_off_grid(const ddpm_model *m, const ddpm_job_params *p, int tile, int halo, int width,
                                     int height, int W, int H, ddpm_progress_fn progress, void *progress_ctx,
                                     float *out, char *err, size_t errlen)
{
    int py, px;
    int periodic = ddpm_job_period_shape(m, p, W, H, &py, &px);
    ddpm_status s = check_budget(m, p, tile, halo, width, height, periodic,
                                 off_grid_bytes(width, height, W, H, 0) +
                                     (periodic ? (uint64_t)JOB_CHANNELS * H * W * sizeof(float) : 0),
                                 err, errlen);
    if (s != DDPM_OK)
        return s;
    float *grid = malloc((size_t)JOB_CHANNELS * H * W * sizeof(float));
    if (!grid)
        return fail(err, errlen, DDPM_ERR_MEMORY, "cannot allocate a %dx%d image", W, H);
    s = job_generate_tiled(m, p, tile, halo, W, H, progress, progress_ctx, grid, err, errlen);
    /* The resampler allocates before it writes, so a failure leaves `out` as it was. */
    if (s == DDPM_OK)
        s = job_resample_periodic(grid, JOB_CHANNELS, H, W, out, height, width, err, errlen);
    if (s == DDPM_OK)  /* the cubic's overshoot; the sample itself is in [-1, 1] */
        clamp_unit(out, (size_t)JOB_CHANNELS * height * width, -1.0f);
    free(grid);
    return s;
}

/* The layer is resampled to the grid and back; the result then replaces the
 * input by the mask at the layer's own size, so that what the mask keeps is
 * kept exactly, as on the grid. */
static ddpm_status refine_off_grid(const ddpm_model *m, const ddpm_job_params *p, int tile, int halo, int width,
                                   int height, int W, int H, const float *in, const float *mask,
                                   ddpm_progress_fn progress, void *progress_ctx, float *out, char *err,
                                   size_t errlen)
{
    ddpm_status s = check_budget(m, p, tile, halo, width, height, 1, off_grid_bytes(width, height, W, H, 1), err,
                                 errlen);
    if (s != DDPM_OK)
        return s;
    size_t n = (size_t)height * width, N = (size_t)H * W;
    float *in_grid = malloc(JOB_CHANNELS * N * sizeof(float));
    float *out_grid = malloc(JOB_CHANNELS * N * sizeof(float));
    float *mask_grid = mask ? malloc(N * sizeof(float)) : NULL;
    float *refined = malloc(JOB_CHANNELS * n * sizeof(float));
    if (!in_grid || !out_grid || !refined || (mask && !mask_grid))
        s = fail(err, errlen, DDPM_ERR_MEMORY, "cannot allocate a %dx%d image", W, H);
    if (s == DDPM_OK)
        s = job_resample_periodic(in, JOB_CHANNELS, height, width, in_grid, H, W, err, errlen);
    if (s == DDPM_OK && mask) {
        s = job_resample_periodic(mask, 1, height, width, mask_grid, H, W, err, errlen);
        clamp_unit(mask_grid, N, 0.0f);
    }
    if (s == DDPM_OK)
        s = job_refine_tiled(m, p, tile, halo, W, H, in_grid, mask_grid, progress, progress_ctx, out_grid, err,
                             errlen);
    if (s == DDPM_OK)
        s = job_resample_periodic(out_grid, JOB_CHANNELS, H, W, refined, height, width, err, errlen);
    if (s == DDPM_OK) {
        clamp_unit(refined, JOB_CHANNELS * n, -1.0f);
        /* out = mask refined + (1 - mask) in: exactly `in` where the mask is 0
         * and exactly `refined` where it is 1.  `out` may be `in`. */
        for (int c = 0; c < JOB_CHANNELS; c++)
            for (size_t i = 0; i < n; i++) {
                size_t k = (size_t)c * n + i;
                float a = mask ? mask[i] : 1.0f;
                out[k] = a * refined[k] + (1.0f - a) * in[k];
            }
    }
    free(in_grid);
    free(out_grid);
    free(mask_grid);
    free(refined);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Period-first generation (see ddpm.h)                                      */
/* ------------------------------------------------------------------------ */

/* The period along an axis of S pixels (S a multiple of the stride).  A
 * tileable image must hold a whole number of periods, or its wrap-around
 * would cut one short: take the multiple of the stride nearest to `period`
 * that divides S.  A plain image takes the period as asked. */
static int axis_period(int S, int period, int stride, int tileable)
{
    if (period >= S)
        return S;
    if (!tileable)
        return period;
    int best = S;
    for (int q = stride; q < S; q += stride)
        if (S % q == 0 && abs(q - period) < abs(best - period))
            best = q;
    return best;
}

/* The period side asked for: p->period, or the model's training size. */
static int period_side(const ddpm_model *m, const ddpm_job_params *p)
{
    if (p->period != DDPM_PERIOD_MODEL)
        return p->period > 0 ? p->period : 0;
    ddpm_model_info info;
    ddpm_model_get_info(m, &info);
    return info.sample_size > 0 ? round_up(info.sample_size, info.stride) : 0;
}

/* 0 when the job has no period or the period covers the whole image (then it
 * is an ordinary generate). */
int ddpm_job_period_shape(const ddpm_model *m, const ddpm_job_params *p, int width, int height, int *py, int *px)
{
    if (!m || !p || !py || !px || width < 1 || height < 1 || width > 65536 || height > 65536)
        return 0;
    ddpm_model_info info;
    ddpm_model_get_info(m, &info);
    int period = period_side(m, p);
    if (period <= 0)
        return 0;
    int H = round_up(height, info.stride), W = round_up(width, info.stride);
    *py = axis_period(H, period, info.stride, p->tileable);
    *px = axis_period(W, period, info.stride, p->tileable);
    return *py < H || *px < W;
}

/* The refine's noise must not repeat the period's: both address noise by
 * pixel, so with one seed the first copy of the period would be re-noised
 * with the very noise it was drawn from.  A different key gives independent
 * streams (any fixed odd constant would do). */
static uint64_t period_refine_seed(uint64_t seed)
{
    return seed ^ 0x9e3779b97f4a7c15ull;
}

/* Progress over two chains: the period's steps, then the refine's. */
typedef struct {
    ddpm_progress_fn progress;
    void *ctx;
    int done, total;
} two_chains;

static int two_chains_progress(void *ctx, int step, int total)
{
    (void)total;
    two_chains *c = ctx;
    return c->progress ? c->progress(c->ctx, c->done + step, c->total) : 0;
}

static ddpm_status job_generate_periodic(const ddpm_model *m, const ddpm_job_params *p, int tile, int halo,
                                         int width, int height, int py, int px, ddpm_progress_fn progress,
                                         void *progress_ctx, float *out, char *err, size_t errlen)
{
    ddpm_model_info info;
    ddpm_model_get_info(m, &info);
    int T = info.scheduler->num_train_timesteps;
    int side = period_side(m, p);
    if (side % info.stride)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "period %d must be a multiple of %d, the model's stride",
                    side, info.stride);
    if (p->period_t < 1 || p->period_t > T)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "period timestep must be between 1 and %d (got %d)", T,
                    p->period_t);
    if (!(p->period_eta >= 0.0f && p->period_eta <= 1.0f))
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "period eta must be between 0 and 1 (got %g)",
                    (double)p->period_eta);
    /* Both chains' steps are checked here, so that neither fails after the other ran. */
    if (p->steps < 1 || p->steps > T)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "steps must be between 1 and %d (got %d)", T, p->steps);
    if (p->period_steps < 0 || p->period_steps > T)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "period steps must be between 1 and %d, or 0 for steps (got %d)",
                    T, p->period_steps);

    /* The refine over the whole image is the larger part: refuse before the period if it cannot run. */
    size_t image = (size_t)JOB_CHANNELS * height * width;
    ddpm_status s = check_budget(m, p, tile, halo, width, height, 1, (uint64_t)image * sizeof(float), err,
                                 errlen);
    if (s != DDPM_OK)
        return s;

    ddpm_job_params period = *p, refine = *p;
    period.period = 0;
    period.tileable = 1;                 /* it is repeated, so it must wrap around */
    period.eta = refine.eta = p->period_eta;
    period.steps = p->period_steps ? p->period_steps : p->steps;
    refine.period = 0;
    refine.timestep = p->period_t;
    refine.steps = p->steps < p->period_t ? p->steps : p->period_t;
    refine.seed = period_refine_seed(p->seed);
    two_chains chains = { progress, progress_ctx, 0, period.steps + refine.steps };

    float *cell = malloc((size_t)JOB_CHANNELS * py * px * sizeof(float));
    float *x0 = malloc(image * sizeof(float));
    if (!cell || !x0) {
        free(cell);
        free(x0);
        return fail(err, errlen, DDPM_ERR_MEMORY, "cannot allocate a %dx%d image", width, height);
    }
    /* 1. The period: a px x py tileable texture from x_T. */
    s = job_generate_tiled(m, &period, tile, halo, px, py, two_chains_progress, &chains, cell, err, errlen);
    /* 2. Repeat it over the image. */
    if (s == DDPM_OK)
        for (int c = 0; c < JOB_CHANNELS; c++)
            for (int y = 0; y < height; y++)
                for (int x = 0; x < width; x++)
                    x0[((size_t)c * height + y) * width + x] = cell[((size_t)c * py + y % py) * px + x % px];
    /* 3. Refine the whole: x_t0 = q_sample(repeated period, t0), then t0 .. 0. */
    chains.done = period.steps;
    if (s == DDPM_OK)
        s = job_refine_tiled(m, &refine, tile, halo, width, height, x0, NULL, two_chains_progress, &chains, out,
                             err, errlen);
    free(cell);
    free(x0);
    return s;
}

ddpm_status job_generate_tiled(const ddpm_model *m, const ddpm_job_params *p, int tile, int halo, int width,
                               int height, ddpm_progress_fn progress, void *progress_ctx, float *out, char *err,
                               size_t errlen)
{
    if (!out)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "job: missing output");
    if (!m || !p)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "job: missing model or parameters");
    if (p->period < 0 && p->period != DDPM_PERIOD_MODEL)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "period %d: give 0 (none), %d (the model's size) or a size",
                    p->period, DDPM_PERIOD_MODEL);
    int H, W;
    if (off_grid(m, p, width, height, &H, &W))
        return generate_off_grid(m, p, tile, halo, width, height, W, H, progress, progress_ctx, out, err, errlen);
    int py, px;
    if (ddpm_job_period_shape(m, p, width, height, &py, &px))
        return job_generate_periodic(m, p, tile, halo, width, height, py, px, progress, progress_ctx, out, err,
                                     errlen);
    job_state j;
    ddpm_status s = job_prepare(m, p, tile, halo, width, height, 0, &j, err, errlen);
    if (s != DDPM_OK)
        return s;
    ddpm_sample_params sp = { .steps = p->steps, .variance = p->variance, .seed = p->seed,
                              .t_start = j.schedule.T, .sampler = p->sampler, .eta = p->eta,
                              .eta_t_max = p->eta_t_max };
    void *ctx;
    ddpm_predict_fn predict = job_predict(&j, &ctx);
    s = ddpm_sample_generate(&j.schedule, predict, ctx, JOB_CHANNELS, j.H, j.W, &sp,
                             progress, progress_ctx, j.x, err, errlen);
    if (s == DDPM_OK)
        crop(j.x, j.H, j.W, out, height, width);
    job_free(&j);
    return s;
}

ddpm_status job_refine_tiled(const ddpm_model *m, const ddpm_job_params *p, int tile, int halo, int width,
                             int height, const float *in, const float *mask, ddpm_progress_fn progress,
                             void *progress_ctx, float *out, char *err, size_t errlen)
{
    if (!in || !out)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "job: missing input or output image");
    int H, W;
    if (m && p && off_grid(m, p, width, height, &H, &W))
        return refine_off_grid(m, p, tile, halo, width, height, W, H, in, mask, progress, progress_ctx, out, err,
                               errlen);
    job_state j;
    ddpm_status s = job_prepare(m, p, tile, halo, width, height, 1, &j, err, errlen);
    if (s != DDPM_OK)
        return s;

    size_t plane = (size_t)j.H * j.W;
    float *x0 = malloc(JOB_CHANNELS * plane * sizeof(float));
    float *m_pad = malloc(plane * sizeof(float));
    if (!x0 || !m_pad) {
        free(x0);
        free(m_pad);
        job_free(&j);
        return fail(err, errlen, DDPM_ERR_MEMORY, "cannot allocate a %dx%d image", j.W, j.H);
    }
    pad(in, height, width, x0, j.H, j.W, p->tileable);
    /* The padding is context, never refined. */
    for (int y = 0; y < j.H; y++)
        for (int x = 0; x < j.W; x++)
            m_pad[(size_t)y * j.W + x] = (y < height && x < width) ? (mask ? mask[(size_t)y * width + x] : 1.0f) : 0.0f;

    ddpm_sample_params sp = { .steps = p->steps, .variance = p->variance, .seed = p->seed,
                              .t_start = p->timestep, .sampler = p->sampler, .eta = p->eta,
                              .eta_t_max = p->eta_t_max };
    void *ctx;
    ddpm_predict_fn predict = job_predict(&j, &ctx);
    s = ddpm_sample_refine(&j.schedule, predict, ctx, JOB_CHANNELS, j.H, j.W, x0, m_pad, &sp,
                           progress, progress_ctx, j.x, err, errlen);
    if (s == DDPM_OK)
        crop(j.x, j.H, j.W, out, height, width);
    free(x0);
    free(m_pad);
    job_free(&j);
    return s;
}

ddpm_status ddpm_job_generate(const ddpm_model *m, const ddpm_job_params *p, int width, int height,
                              ddpm_progress_fn progress, void *progress_ctx,
                              float *out, char *err, size_t errlen)
{
    return job_generate_tiled(m, p, JOB_TILE, JOB_HALO, width, height, progress, progress_ctx, out, err, errlen);
}

ddpm_status ddpm_job_refine(const ddpm_model *m, const ddpm_job_params *p, int width, int height,
                            const float *in, const float *mask,
                            ddpm_progress_fn progress, void *progress_ctx,
                            float *out, char *err, size_t errlen)
{
    return job_refine_tiled(m, p, JOB_TILE, JOB_HALO, width, height, in, mask, progress, progress_ctx, out, err,
                            errlen);
}
