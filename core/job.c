/* job.c: generate and refine jobs shared by the CLI and the plug-in.
 *
 * A job is everything between "the user pressed OK" and "here are the pixels":
 * check the arguments against the model, round the image up to the U-Net's
 * stride, check the memory budget, build the schedule and the forward plan,
 * run the sampler, crop.  Both front ends call these two functions and map
 * pixels with ddpm_to_u8 / ddpm_from_u8, which is why `ddpm generate` and the
 * plug-in give identical pixels for identical settings.
 */
#include "ddpm.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Everything a job needs, made once before the chain starts. */
typedef struct {
    ddpm_schedule schedule;
    ddpm_unet_plan *plan;
    int H, W;        /* padded to the stride */
    float *x;        /* 3 x H x W working image */
} job_state;

static void job_free(job_state *j)
{
    ddpm_schedule_free(&j->schedule);
    ddpm_unet_plan_free(j->plan);
    free(j->x);
    memset(j, 0, sizeof *j);
}

static ddpm_status job_prepare(const ddpm_model *m, const ddpm_job_params *p, int width, int height,
                               job_state *j, char *err, size_t errlen)
{
    memset(j, 0, sizeof *j);
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

    j->H = round_up(height, info.stride);
    j->W = round_up(width, info.stride);

    /* The plan's activations dominate; the sampler keeps a few image-sized buffers. */
    size_t image_bytes = (size_t)JOB_CHANNELS * j->H * j->W * sizeof(float);
    size_t need = ddpm_unet_plan_bytes_estimate(m, 1, j->H, j->W) + 8 * image_bytes;
    if (p->memory_budget && need > p->memory_budget)
        return fail(err, errlen, DDPM_ERR_MEMORY,
                    "a %dx%d image needs about %zu MiB, over the memory budget of %zu MiB",
                    width, height, need >> 20, p->memory_budget >> 20);

    ddpm_status s = ddpm_schedule_init(&j->schedule, info.scheduler, err, errlen);
    if (s != DDPM_OK)
        return s;
    s = ddpm_unet_plan_create(m, 1, j->H, j->W, p->tileable, &j->plan, err, errlen);
    if (s != DDPM_OK) {
        job_free(j);
        return s;
    }
    j->x = malloc(image_bytes);
    if (!j->x) {
        job_free(j);
        return fail(err, errlen, DDPM_ERR_MEMORY, "cannot allocate a %dx%d image", j->W, j->H);
    }
    return DDPM_OK;
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
static void pad(const float *src, int height, int width, float *dst, int H, int W, int wrap)
{
    for (int c = 0; c < JOB_CHANNELS; c++)
        for (int y = 0; y < H; y++) {
            int sy = y < height ? y : (wrap ? y % height : height - 1);
            for (int x = 0; x < W; x++) {
                int sx = x < width ? x : (wrap ? x % width : width - 1);
                dst[((size_t)c * H + y) * W + x] = src[((size_t)c * height + sy) * width + sx];
            }
        }
}

ddpm_status ddpm_job_generate(const ddpm_model *m, const ddpm_job_params *p, int width, int height,
                              ddpm_progress_fn progress, void *progress_ctx,
                              float *out, char *err, size_t errlen)
{
    job_state j;
    ddpm_status s = job_prepare(m, p, width, height, &j, err, errlen);
    if (s != DDPM_OK)
        return s;
    ddpm_sample_params sp = { .steps = p->steps, .variance = p->variance, .seed = p->seed,
                              .t_start = j.schedule.T };
    s = ddpm_sample_generate(&j.schedule, ddpm_unet_predict, j.plan, JOB_CHANNELS, j.H, j.W, &sp,
                             progress, progress_ctx, j.x, err, errlen);
    if (s == DDPM_OK)
        crop(j.x, j.H, j.W, out, height, width);
    job_free(&j);
    return s;
}

ddpm_status ddpm_job_refine(const ddpm_model *m, const ddpm_job_params *p, int width, int height,
                            const float *in, const float *mask,
                            ddpm_progress_fn progress, void *progress_ctx,
                            float *out, char *err, size_t errlen)
{
    job_state j;
    ddpm_status s = job_prepare(m, p, width, height, &j, err, errlen);
    if (s != DDPM_OK)
        return s;
    if (p->timestep < 1 || p->timestep > j.schedule.T) {
        int T = j.schedule.T;
        job_free(&j);
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "timestep must be between 1 and %d (got %d)", T, p->timestep);
    }

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
                              .t_start = p->timestep };
    s = ddpm_sample_refine(&j.schedule, ddpm_unet_predict, j.plan, JOB_CHANNELS, j.H, j.W, x0, m_pad, &sp,
                           progress, progress_ctx, j.x, err, errlen);
    if (s == DDPM_OK)
        crop(j.x, j.H, j.W, out, height, width);
    free(x0);
    free(m_pad);
    job_free(&j);
    return s;
}
