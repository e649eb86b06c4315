/* unet.c: the UNet2DModel graph (spec 3.1 - 3.8), its buffer plan and the
 * forward pass.
 *
 *   t -> sinusoid -> linear_1 -> SiLU -> linear_2 = emb
 *   h = conv_in(x);                         skips = [h]
 *   down block i:  (resnet [-> attention]) x L, each pushed; downsample, pushed
 *   mid:           resnet, attention (optional), resnet
 *   up block i:    (resnet(concat[h, skips.pop()]) [-> attention]) x (L+1); upsample
 *   eps = conv_out(SiLU(GroupNorm(h)))
 *
 * Images of a batch run one after the other through the whole network, so a
 * plan's buffers are those of one image whatever N is.  A plan is a single
 * allocation carved into regions; ddpm_unet_forward never allocates.
 */
#include "model_internal.h"
#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SIDE 65536
#define ALIGN_FLOATS 16            /* 64-byte alignment of every region */

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

/* ------------------------------------------------------------------------ */
/* The plan                                                                  */
/* ------------------------------------------------------------------------ */

/* Floats of each region for one image of H x W. */
typedef struct {
    int nskips;
    uint64_t skip[1 + UNET_MAX_LEVELS * 65];   /* each skip tensor           */
    uint64_t skips;                            /* their sum (aligned)        */
    uint64_t ping;                             /* each of the two h buffers  */
    uint64_t work;                             /* resnet / attention scratch */
    uint64_t vectors;                          /* time embedding vectors     */
} plan_sizes;

struct ddpm_unet_plan {
    const ddpm_model *m;
    int N, H, W, circular;
    int threads;                                   /* team the scratch is for */
    int team;                                      /* team of this forward   */
    size_t bytes;
    void *block;
    int nskips;
    float **skip;
    float *ping[2];
    float *work;
    float *sinusoid, *hidden, *emb_silu, *tproj;   /* C0, T, T, max cout */
};

static uint64_t align_up(uint64_t n)
{
    return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* Scratch of one resnet: its padded conv input (norm1, then norm2), conv1's
 * output, the convolution scratch (of conv1, conv_shortcut and conv2, one
 * after the other). */
static uint64_t resnet_work(const resnet_w *r, int H, int W, int threads)
{
    uint64_t HW = (uint64_t)H * W;
    uint64_t cmax = (uint64_t)(r->cin > r->cout ? r->cin : r->cout);
    uint64_t conv = max_u64(conv3x3_scratch_floats(r->cin, r->cout, H, W, threads),
                            conv3x3_scratch_floats(r->cout, r->cout, H, W, threads));
    if (r->has_shortcut)
        conv = max_u64(conv, conv1x1_scratch_floats(r->cin, r->cout, (size_t)HW, threads));
    return align_up(cmax * padded_plane(H, W)) + align_up((uint64_t)r->cout * HW) + conv;
}

/* Scratch of a lone 3x3 convolution: padded input, convolution scratch. */
static uint64_t conv_work(int cin, int cout, int H, int W, int threads)
{
    return align_up((uint64_t)cin * padded_plane(H, W)) + conv3x3_scratch_floats(cin, cout, H, W, threads);
}

static void plan_layout(const ddpm_model *m, int H, int W, int threads, plan_sizes *s)
{
    const unet_config *c = &m->cfg;
    const int n = c->levels;
    memset(s, 0, sizeof *s);
    uint64_t ping = 0, work = 0;

    work = max_u64(work, conv_work(c->in_channels, c->block_out_channels[0], H, W, threads));
    s->skip[s->nskips++] = (uint64_t)c->block_out_channels[0] * H * W;   /* conv_in */
    for (int i = 0; i < n; i++) {
        int h = H >> i, w = W >> i;
        const block_w *b = &m->down[i];
        for (int j = 0; j < b->nresnets; j++) {
            uint64_t act = (uint64_t)b->resnets[j].cout * h * w;
            work = max_u64(work, resnet_work(&b->resnets[j], h, w, threads));
            if (b->attentions) {
                work = max_u64(work, attention_scratch_floats(&b->attentions[j], (size_t)h * w, threads));
                ping = max_u64(ping, act);                   /* resnet output before attention */
            }
            s->skip[s->nskips++] = act;
        }
        if (b->has_resample) {
            work = max_u64(work, conv_down_scratch_floats(b->resample.cin, h, w));
            s->skip[s->nskips++] = (uint64_t)b->resample.cout * (h / 2) * (w / 2);
        }
    }
    int h = H >> (n - 1), w = W >> (n - 1);
    ping = max_u64(ping, (uint64_t)c->block_out_channels[n - 1] * h * w);
    work = max_u64(work, resnet_work(&m->mid_resnets[0], h, w, threads));
    work = max_u64(work, resnet_work(&m->mid_resnets[1], h, w, threads));
    if (m->mid_has_attention)
        work = max_u64(work, attention_scratch_floats(&m->mid_attention, (size_t)h * w, threads));
    for (int i = 0; i < n; i++) {
        int lv = n - 1 - i;
        h = H >> lv;
        w = W >> lv;
        const block_w *b = &m->up[i];
        for (int j = 0; j < b->nresnets; j++) {
            ping = max_u64(ping, (uint64_t)b->resnets[j].cout * h * w);
            work = max_u64(work, resnet_work(&b->resnets[j], h, w, threads));
            if (b->attentions)
                work = max_u64(work, attention_scratch_floats(&b->attentions[j], (size_t)h * w, threads));
        }
        if (b->has_resample) {
            ping = max_u64(ping, (uint64_t)b->resample.cout * 4 * h * w);
            work = max_u64(work, conv_work(b->resample.cin, b->resample.cout, 2 * h, 2 * w, threads));
        }
    }
    /* conv_out(SiLU(conv_norm_out(h))) */
    work = max_u64(work, conv_work(c->block_out_channels[0], c->out_channels, H, W, threads));

    for (int i = 0; i < s->nskips; i++)
        s->skips += align_up(s->skip[i]);
    s->ping = align_up(ping);
    s->work = align_up(work);
    int maxc = 0;
    for (int i = 0; i < n; i++)
        maxc = c->block_out_channels[i] > maxc ? c->block_out_channels[i] : maxc;
    s->vectors = align_up((uint64_t)c->block_out_channels[0]) + 2 * align_up((uint64_t)c->time_embed_dim) +
                 align_up((uint64_t)maxc);
}

/* Total bytes of a plan: the struct, the skip pointer table and the float
 * regions, with the alignment slack of the allocation itself. */
static uint64_t plan_bytes(const plan_sizes *s)
{
    uint64_t floats = s->skips + 2 * s->ping + s->work + s->vectors;
    return sizeof(struct ddpm_unet_plan) + (uint64_t)s->nskips * sizeof(float *) + floats * sizeof(float) + 64;
}

static ddpm_status check_shape(const ddpm_model *m, int N, int H, int W, char *err, size_t errlen)
{
    if (!m)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "no model");
    int stride = 1 << (m->cfg.levels - 1);
    if (N < 1 || H < 1 || W < 1 || H > MAX_SIDE || W > MAX_SIDE)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "batch %d of %dx%d is out of range (1 .. %d pixels a side)", N, H,
                    W, MAX_SIDE);
    if (H % stride || W % stride)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "size %dx%d is not a multiple of the model's stride %d", H, W,
                    stride);
    return DDPM_OK;
}

/* The team size a plan is made for: the core's thread setting. */
static int plan_threads(void)
{
    int t = ddpm_get_threads();
    return t < 1 ? 1 : t > 256 ? 256 : t;
}

size_t ddpm_unet_plan_bytes_estimate(const ddpm_model *m, int N, int H, int W)
{
    if (check_shape(m, N, H, W, NULL, 0) != DDPM_OK)
        return 0;
    plan_sizes s;
    plan_layout(m, H, W, plan_threads(), &s);
    uint64_t b = plan_bytes(&s);
    return b > SIZE_MAX ? SIZE_MAX : (size_t)b;
}

ddpm_status ddpm_unet_plan_create(const ddpm_model *m, int N, int H, int W, int circular,
                                  ddpm_unet_plan **out, char *err, size_t errlen)
{
    if (!out)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "ddpm_unet_plan_create: NULL output");
    *out = NULL;
    ddpm_status st = check_shape(m, N, H, W, err, errlen);
    if (st != DDPM_OK)
        return st;
    plan_sizes s;
    int threads = plan_threads();
    plan_layout(m, H, W, threads, &s);
    uint64_t bytes = plan_bytes(&s);
    if (bytes > SIZE_MAX / 2)
        return fail(err, errlen, DDPM_ERR_MEMORY, "a plan for %dx%d needs %.1f GB", H, W, (double)bytes / 1e9);

    /* struct | skip pointers | float regions (64-byte aligned) */
    char *block = malloc((size_t)bytes);
    if (!block)
        return fail(err, errlen, DDPM_ERR_MEMORY, "out of memory: a plan for %dx%d needs %.1f MB", H, W,
                    (double)bytes / 1e6);
    ddpm_unet_plan *p = (ddpm_unet_plan *)block;
    memset(p, 0, sizeof *p);
    p->m = m;
    p->N = N;
    p->H = H;
    p->W = W;
    p->circular = circular != 0;
    p->threads = threads;
    p->bytes = (size_t)bytes;
    p->block = block;
    p->nskips = s.nskips;
    p->skip = (float **)(block + sizeof *p);
    uintptr_t base = (uintptr_t)(p->skip + s.nskips);
    float *f = (float *)((base + 63) & ~(uintptr_t)63);
    for (int i = 0; i < s.nskips; i++) {
        p->skip[i] = f;
        f += align_up(s.skip[i]);
    }
    p->ping[0] = f;
    f += s.ping;
    p->ping[1] = f;
    f += s.ping;
    p->work = f;
    f += s.work;
    p->sinusoid = f;
    f += align_up((uint64_t)m->cfg.block_out_channels[0]);
    p->hidden = f;
    f += align_up((uint64_t)m->cfg.time_embed_dim);
    p->emb_silu = f;
    f += align_up((uint64_t)m->cfg.time_embed_dim);
    p->tproj = f;
    ops_start_threads(threads);
    *out = p;
    return DDPM_OK;
}

void ddpm_unet_plan_free(ddpm_unet_plan *p)
{
    if (p)
        free(p->block);
}

/* ------------------------------------------------------------------------ */
/* Time embedding (spec 3.2, 3.3)                                            */
/* ------------------------------------------------------------------------ */

/* emb[k] = sin(t f_k), emb[half + k] = cos(t f_k) (swapped halves when
 * flip_sin_to_cos), f_k = exp(-ln(10000) k / (half - freq_shift)).  The
 * exponent is rounded to float32 step by step as PyTorch computes it (the
 * build has -ffp-contract=off); exp, sin and cos are evaluated in double and
 * rounded once. */
static void timestep_sinusoid(const unet_config *c, float t, float *emb)
{
    const int dim = c->block_out_channels[0], half = dim / 2;
    const float neg_log_period = (float)(-log(10000.0));
    const float denom = (float)((double)half - c->freq_shift);
    for (int k = 0; k < half; k++) {
        float exponent = (neg_log_period * (float)k) / denom;
        float freq = (float)exp((double)exponent);
        float arg = t * freq;
        float s = (float)sin((double)arg), co = (float)cos((double)arg);
        emb[k] = c->flip_sin_to_cos ? co : s;
        emb[half + k] = c->flip_sin_to_cos ? s : co;
    }
    if (dim % 2)
        emb[dim - 1] = 0.0f;                  /* odd width: a zero column appended */
}

/* SiLU(emb), which every resnet feeds to its time_emb_proj. */
static void time_embedding(ddpm_unet_plan *p, float t)
{
    const ddpm_model *m = p->m;
    timestep_sinusoid(&m->cfg, t, p->sinusoid);
    linear(&m->time_linear_1, p->sinusoid, p->hidden);
    silu_inplace(p->hidden, (size_t)m->cfg.time_embed_dim);
    linear(&m->time_linear_2, p->hidden, p->emb_silu);
    silu_inplace(p->emb_silu, (size_t)m->cfg.time_embed_dim);
}

/* ------------------------------------------------------------------------ */
/* Blocks                                                                    */
/* ------------------------------------------------------------------------ */

/* ResnetBlock2D (spec 3.4) on the concatenation [xa ; xb] (Cb = 0: just xa):
 *   h   = conv1(SiLU(norm1(x))) + time_emb_proj(SiLU(emb))
 *   out = shortcut(x) + conv2(SiLU(norm2(h)))
 * conv1 writes h with its bias and the time term; conv2 accumulates onto
 * the residual (or shortcut) plus its bias, written first. */
static void resnet(ddpm_unet_plan *p, const resnet_w *r, const float *xa, int Ca, const float *xb, int Cb, int H,
                   int W, float *out)
{
    const unet_config *c = &p->m->cfg;
    const size_t HW = (size_t)H * W;
    const int cmax = r->cin > r->cout ? r->cin : r->cout, T = p->team;
    float *xp = p->work;
    float *h = xp + align_up((uint64_t)cmax * padded_plane(H, W));
    float *scratch = h + align_up((uint64_t)r->cout * HW);

    group_norm(&r->norm1, c->norm_num_groups, c->norm_eps, 1, xa, Ca, xb, Cb, H, W, xp, 1, T);
    pad_borders(xp, r->cin, H, W, p->circular, T);
    linear(&r->time_emb_proj, p->emb_silu, p->tproj);
    conv3x3(&r->conv1, xp, H, W, h, p->tproj, 0, scratch, T);

    group_norm(&r->norm2, c->norm_num_groups, c->norm_eps, 1, h, r->cout, NULL, 0, H, W, xp, 1, T);
    pad_borders(xp, r->cout, H, W, p->circular, T);
    if (r->has_shortcut)
        conv1x1(&r->conv_shortcut, xa, Ca, xb, Cb, HW, out, r->conv2.b, scratch, T);
    else
        fill_residual(out, xa, r->conv2.b, r->cout, HW, T);
    conv3x3(&r->conv2, xp, H, W, out, NULL, 1, scratch, T);
}

/* y = bias + conv3x3(xp) for a padded input already in p->work. */
static void conv_from_work(ddpm_unet_plan *p, const conv2d_w *cw, int H, int W, float *y)
{
    float *xp = p->work;
    float *scratch = xp + align_up((uint64_t)cw->cin * padded_plane(H, W));
    pad_borders(xp, cw->cin, H, W, p->circular, p->team);
    conv3x3(cw, xp, H, W, y, NULL, 0, scratch, p->team);
}

/* One image: x (in_channels x H x W) -> eps. */
static void forward_one(ddpm_unet_plan *p, const float *x, float t, float *eps)
{
    const ddpm_model *m = p->m;
    const unet_config *c = &m->cfg;
    const int n = c->levels, G = c->norm_num_groups, T = p->team;
    const double ge = c->norm_eps;
    const int H = p->H, W = p->W;
    int sp = 0;                                  /* skip stack pointer */

    time_embedding(p, t);

    pad_copy(x, c->in_channels, H, W, c->center_input_sample, p->work, T);
    conv_from_work(p, &m->conv_in, H, W, p->skip[sp]);
    const float *h = p->skip[sp++];
    int ch = c->block_out_channels[0];

    for (int i = 0; i < n; i++) {
        const block_w *b = &m->down[i];
        int hh = H >> i, ww = W >> i;
        for (int j = 0; j < b->nresnets; j++) {
            const resnet_w *r = &b->resnets[j];
            float *dst = p->skip[sp++];
            if (b->attentions) {
                resnet(p, r, h, ch, NULL, 0, hh, ww, p->ping[0]);
                attention(&b->attentions[j], G, ge, p->ping[0], hh, ww, dst, p->work, T);
            } else {
                resnet(p, r, h, ch, NULL, 0, hh, ww, dst);
            }
            h = dst;
            ch = r->cout;
        }
        if (b->has_resample) {
            /* Downsample2D: pad 1 all round, or right/bottom only (spec 3.5) */
            float *dst = p->skip[sp++];
            conv_down(&b->resample, h, hh, ww, c->downsample_padding, p->circular, dst, p->work, T);
            h = dst;
        }
    }

    /* mid block at the lowest resolution; h alternates between ping[0/1] */
    int hh = H >> (n - 1), ww = W >> (n - 1), cur = 0;
    resnet(p, &m->mid_resnets[0], h, ch, NULL, 0, hh, ww, p->ping[cur]);
    h = p->ping[cur];
    if (m->mid_has_attention) {
        cur ^= 1;
        attention(&m->mid_attention, G, ge, h, hh, ww, p->ping[cur], p->work, T);
        h = p->ping[cur];
    }
    cur ^= 1;
    resnet(p, &m->mid_resnets[1], h, ch, NULL, 0, hh, ww, p->ping[cur]);
    h = p->ping[cur];

    for (int i = 0; i < n; i++) {
        const block_w *b = &m->up[i];
        int lv = n - 1 - i;
        hh = H >> lv;
        ww = W >> lv;
        for (int j = 0; j < b->nresnets; j++) {
            const resnet_w *r = &b->resnets[j];
            const float *skip = p->skip[--sp];
            int cskip = r->cin - ch;               /* concat: current first, skip second */
            cur ^= 1;
            resnet(p, r, h, ch, skip, cskip, hh, ww, p->ping[cur]);
            h = p->ping[cur];
            ch = r->cout;
            if (b->attentions) {
                cur ^= 1;
                attention(&b->attentions[j], G, ge, h, hh, ww, p->ping[cur], p->work, T);
                h = p->ping[cur];
            }
        }
        if (b->has_resample) {
            /* Upsample2D: nearest x2 straight into the padded conv input */
            pad_upsample2(h, ch, hh, ww, p->work, T);
            cur ^= 1;
            conv_from_work(p, &b->resample, 2 * hh, 2 * ww, p->ping[cur]);
            h = p->ping[cur];
        }
    }

    /* eps = conv_out(SiLU(conv_norm_out(h))) */
    group_norm(&m->conv_norm_out, G, ge, 1, h, ch, NULL, 0, H, W, p->work, 1, T);
    conv_from_work(p, &m->conv_out, H, W, eps);
}

ddpm_status ddpm_unet_forward(ddpm_unet_plan *p, const float *x, const float *t, float *eps,
                              char *err, size_t errlen)
{
    if (!p || !x || !t || !eps)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "ddpm_unet_forward: NULL argument");
    const unet_config *c = &p->m->cfg;
    const size_t in_plane = (size_t)c->in_channels * p->H * p->W;
    const size_t out_plane = (size_t)c->out_channels * p->H * p->W;
    for (int n = 0; n < p->N; n++)
        if (!isfinite(t[n]))
            return fail(err, errlen, DDPM_ERR_ARGUMENT, "timestep %d is not finite", n);
    /* The team: the core's thread setting now, at most what the scratch was
     * sized for.  Its threads call single-threaded GEMMs: OpenBLAS's own pool
     * would compete with it for the same cores.  (The OpenBLAS setting is
     * process-wide: two forwards must not run at the same time.) */
    p->team = plan_threads() < p->threads ? plan_threads() : p->threads;
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    ddpm_status s = DDPM_OK;
    for (int n = 0; n < p->N && s == DDPM_OK; n++) {
        forward_one(p, x + n * in_plane, t[n], eps + n * out_plane);
        for (size_t i = 0; i < out_plane; i++)
            if (!isfinite(eps[n * out_plane + i])) {
                s = fail(err, errlen, DDPM_ERR_NUMERIC, "the U-Net output of image %d has NaN or Inf (t = %g)", n,
                         (double)t[n]);
                break;
            }
    }
    openblas_set_num_threads(blas_threads);
    return s;
}

ddpm_status ddpm_unet_predict(void *plan, const float *x_t, int t, float *eps, char *err, size_t errlen)
{
    ddpm_unet_plan *p = plan;
    if (!p || p->N != 1)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "ddpm_unet_predict needs a plan with batch 1");
    float tf = (float)t;
    return ddpm_unet_forward(p, x_t, &tf, eps, err, errlen);
}
