/* tile_compare.c: how far a tiled run is from the uncut one (a measurement
 * for the report and for choosing JOB_TILE / JOB_HALO; not a test).
 *
 *   tile_compare MODEL_DIR IMAGE.png TILE HALO [STEPS [TIMESTEP [tileable]]]
 *
 * Prints, for the PNG's size:
 *   eps of one U-Net evaluation at x_t = q_sample(image, t = TIMESTEP - 1):
 *       uncut vs tiled, mean and max |diff| and the relative RMS difference;
 *   a refine job (STEPS steps from TIMESTEP, default 20 from 300): mean and
 *       max |diff| in 8-bit levels, and the share of pixels that differ by
 *       more than 2 levels;
 *   the wall time of both.
 * Build: ninja -C BUILD tests/robust/tile_compare */
#include "ddpm.h"
#include "image_io.h"
#include "job_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "tile_compare: %s: %s\n", what, err);
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s MODEL_DIR IMAGE.png TILE HALO [STEPS [TIMESTEP [tileable]]]\n", argv[0]);
        return 2;
    }
    int tile = atoi(argv[3]), halo = atoi(argv[4]);
    int steps = argc > 5 ? atoi(argv[5]) : 20, timestep = argc > 6 ? atoi(argv[6]) : 300;
    int tileable = argc > 7 && !strcmp(argv[7], "tileable");
    char err[512];
    ddpm_model *m = NULL;
    if (ddpm_model_load(argv[1], &m, err, sizeof err) != DDPM_OK)
        die("model", err);
    image_u8 img;
    if (image_read_png(argv[2], IMAGE_READ_COLOR, &img, err, sizeof err) != 0)
        die("image", err);
    int W = img.width, H = img.height;
    size_t plane = (size_t)W * H, n = 3 * plane;
    float *x0 = malloc(n * sizeof *x0);
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++)
            x0[(size_t)c * plane + i] = ddpm_from_u8(img.pixels[i * (size_t)img.channels + (size_t)c]);
    ddpm_model_info info;
    ddpm_model_get_info(m, &info);
    if (H % info.stride || W % info.stride)
        die("image", "the size must be a multiple of the model's stride");

    /* One evaluation. */
    ddpm_schedule s;
    if (ddpm_schedule_init(&s, info.scheduler, err, sizeof err) != DDPM_OK)
        die("schedule", err);
    int t = timestep - 1;
    float *noise = malloc(n * sizeof *noise), *xt = malloc(n * sizeof *xt);
    float *eps_full = malloc(n * sizeof *eps_full), *eps_tiled = malloc(n * sizeof *eps_tiled);
    ddpm_noise_fill(1, DDPM_STREAM_START, 3, H, W, 0, 0, noise);
    ddpm_q_sample(&s, t, x0, noise, xt, n);

    ddpm_unet_plan *full = NULL, *win = NULL;
    job_tiler tl;
    if (ddpm_unet_plan_create(m, 1, H, W, tileable, &full, err, sizeof err) != DDPM_OK)
        die("uncut plan", err);
    double t0 = now();
    if (ddpm_unet_predict(full, xt, t, eps_full, err, sizeof err) != DDPM_OK)
        die("uncut eps", err);
    double t_full = now() - t0;
    ddpm_unet_plan_free(full);
    if (job_tiler_init(&tl, 3, H, W, tile, halo, info.stride, tileable, ddpm_unet_predict, NULL, err, sizeof err) !=
        DDPM_OK)
        die("tiles", err);
    if (ddpm_unet_plan_create(m, 1, tl.ay.window, tl.ax.window, tileable, &win, err, sizeof err) != DDPM_OK)
        die("window plan", err);
    tl.inner_ctx = win;
    t0 = now();
    if (job_tiled_predict(&tl, xt, t, eps_tiled, err, sizeof err) != DDPM_OK)
        die("tiled eps", err);
    double t_tiled = now() - t0;
    printf("%dx%d%s, tiles %d x %d of %d x %d interior in %d x %d windows (halo %d), t = %d\n", W, H,
           tileable ? " tileable" : "", tl.ax.count, tl.ay.count, tl.ax.interior, tl.ay.interior, tl.ax.window,
           tl.ay.window, tl.ax.halo, t);
    double sum = 0, mx = 0, d2 = 0, r2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)eps_full[i] - eps_tiled[i]);
        sum += d;
        mx = d > mx ? d : mx;
        d2 += d * d;
        r2 += (double)eps_full[i] * eps_full[i];
    }
    printf("eps: mean |diff| %.5f, max %.4f, relative RMS %.5f; %.2f s uncut, %.2f s tiled\n", sum / n, mx,
           sqrt(d2 / r2), t_full, t_tiled);
    ddpm_unet_plan_free(win);
    job_tiler_free(&tl);

    /* A refine job. */
    ddpm_job_params p;
    memset(&p, 0, sizeof p);
    p.steps = steps;
    p.variance = info.scheduler->variance_type;
    p.seed = 7;
    p.tileable = tileable;
    p.timestep = timestep;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    t0 = now();
    if (job_refine_tiled(m, &p, 65536, halo, W, H, x0, NULL, NULL, NULL, a, err, sizeof err) != DDPM_OK)
        die("uncut refine", err);
    t_full = now() - t0;
    t0 = now();
    if (job_refine_tiled(m, &p, tile, halo, W, H, x0, NULL, NULL, NULL, b, err, sizeof err) != DDPM_OK)
        die("tiled refine", err);
    t_tiled = now() - t0;
    long long over2 = 0;
    sum = 0;
    int maxd = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)ddpm_to_u8(a[i]) - (int)ddpm_to_u8(b[i]));
        sum += d;
        maxd = d > maxd ? d : maxd;
        over2 += d > 2;
    }
    printf("refine %d steps from t0 = %d: mean |diff| %.3f levels, max %d, %.3f%% of values > 2 levels; "
           "%.1f s uncut, %.1f s tiled\n", steps, timestep, sum / n, maxd, 100.0 * over2 / n, t_full, t_tiled);
    free(a);
    free(b);
    free(x0);
    free(noise);
    free(xt);
    free(eps_full);
    free(eps_tiled);
    ddpm_schedule_free(&s);
    image_free(&img);
    ddpm_model_free(m);
    return 0;
}
