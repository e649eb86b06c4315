/* job_internal.h: the tiled U-Net of job.c, exposed for the robustness
 * tests (tests/robust); not part of the public API and not installed.
 *
 * A large image is cut, per axis, into `count` tiles of `interior` pixels
 * (the last one may be shorter).  The network sees each tile through a
 * window of `window` pixels: the interior plus `halo` pixels of context on
 * each side, clamped into the image (or wrapped around it when circular).
 * Only the interior of each window's eps is kept.  An axis that fits into
 * one tile is not cut: its window is the whole axis. */
#ifndef DDPM_JOB_INTERNAL_H
#define DDPM_JOB_INTERNAL_H

#include "ddpm.h"

#define JOB_TILE 1024  /* largest tile interior, pixels a side       */
#define JOB_HALO 64    /* context on each side of a tile's interior   */

typedef struct {
    int count;     /* tiles along the axis                               */
    int interior;  /* pixels each tile contributes (last: what is left)  */
    int halo;      /* context pixels on each side; 0 when not cut       */
    int window;    /* pixels the network sees: interior + 2 halo, or all */
} job_axis;

typedef struct {
    int C, H, W;         /* the whole image                              */
    int circular;        /* windows wrap around the image                 */
    job_axis ay, ax;     /* rows, columns                                 */
    ddpm_predict_fn inner;  /* the network on one window (ay.window x ax.window) */
    void *inner_ctx;
    float *x_win, *eps_win; /* C x window x window scratch                */
} job_tiler;

/* Cut an H x W image (multiples of `stride`) into tiles of at most `tile`
 * pixels a side with `halo` pixels of context; tile and halo are rounded up
 * to multiples of the stride so that every window starts on the U-Net's
 * downsampling grid.  Allocates the window buffers when the image is cut. */
ddpm_status job_tiler_init(job_tiler *tl, int C, int H, int W, int tile, int halo, int stride, int circular,
                           ddpm_predict_fn inner, void *inner_ctx, char *err, size_t errlen);
void job_tiler_free(job_tiler *tl);
/* 1 when the image is cut into more than one tile. */
int job_tiler_is_tiled(const job_tiler *tl);
/* A ddpm_predict_fn over the whole image (ctx is the job_tiler *). */
ddpm_status job_tiled_predict(void *tiler, const float *x_t, int t, float *eps, char *err, size_t errlen);

/* ddpm_job_generate / ddpm_job_refine with a chosen tile size and halo (the
 * public functions use JOB_TILE and JOB_HALO). */
ddpm_status job_generate_tiled(const ddpm_model *m, const ddpm_job_params *p, int tile, int halo, int width,
                               int height, ddpm_progress_fn progress, void *progress_ctx, float *out, char *err,
                               size_t errlen);
ddpm_status job_refine_tiled(const ddpm_model *m, const ddpm_job_params *p, int tile, int halo, int width,
                             int height, const float *in, const float *mask, ddpm_progress_fn progress,
                             void *progress_ctx, float *out, char *err, size_t errlen);

/* C x H x W -> C x height x width, both read as one period of the same
 * tiling (Keys' cubic, widened when shrinking; indices wrap around): how a
 * tileable job whose sides are not multiples of the stride runs on the
 * stride's grid without a seam.  DDPM_ERR_MEMORY if its scratch cannot be
 * had. */
ddpm_status job_resample_periodic(const float *src, int C, int H, int W, float *dst, int height, int width,
                                  char *err, size_t errlen);

#endif /* DDPM_JOB_INTERNAL_H */
