/* ddpm.h: the one public header of gimp-ddpm's portable diffusion core.
 *
 * Denoising Diffusion Probabilistic Models (Ho, Jain & Abbeel 2020) on the CPU:
 *
 *   forward process   q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)          eq. (4)
 *   posterior         q(x_{t-1} | x_t, x_0) = N(mu~_t(x_t, x_0), beta~_t I)         eqs. (6), (7)
 *   reverse step      x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t/sqrt(1-abar_t) eps) + sigma_t z
 *                                                                                   Algorithm 2
 *
 * and the network that predicts eps: diffusers' UNet2DModel, loaded from a model
 * folder (config.json, diffusion_pytorch_model.safetensors, scheduler_config.json).
 *
 * Conventions
 *   - Images are float32 planes, channel-major (C x H x W, i.e. NCHW with N = 1
 *     unless said otherwise), in model space [-1, 1].
 *   - Functions that can fail return a ddpm_status and write a one-line message
 *     into a caller-provided buffer `err` of `errlen` bytes (may be NULL / 0).
 *     The core never prints and never exits.
 *   - Ownership: the caller owns what it passes in; objects returned through a
 *     `**out` pointer are freed with the matching _free function.
 *   - Results never depend on the thread count.
 */
#ifndef DDPM_H
#define DDPM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DDPM_OK = 0,
    DDPM_ERR_IO,          /* a file could not be opened or read           */
    DDPM_ERR_FORMAT,      /* a file is malformed (JSON, safetensors, ...)  */
    DDPM_ERR_UNSUPPORTED, /* valid, but a feature this core does not have  */
    DDPM_ERR_MISMATCH,    /* config and weights disagree                   */
    DDPM_ERR_ARGUMENT,    /* a caller-supplied value is out of range       */
    DDPM_ERR_MEMORY,      /* allocation failed or over the memory budget   */
    DDPM_ERR_NUMERIC,     /* NaN or Inf appeared                           */
    DDPM_CANCELLED        /* the progress callback asked to stop           */
} ddpm_status;

const char *ddpm_status_name(ddpm_status s);

/* Number of threads for element-wise work and for OpenBLAS (0 = all cores). */
void ddpm_set_threads(int n);
int ddpm_get_threads(void);

/* ------------------------------------------------------------------------ */
/* Schedule: beta_t, alpha_t, abar_t and the posterior (eqs. 2, 4, 6, 7)      */
/* ------------------------------------------------------------------------ */

typedef enum { DDPM_BETA_LINEAR, DDPM_BETA_SCALED_LINEAR, DDPM_BETA_SQUAREDCOS_CAP_V2 } ddpm_beta_schedule;

/* The reverse-process variance sigma_t^2 (paper sec. 3.2).  Both are optimal
 * in an extreme: beta_t for x_0 ~ N(0, I), beta~_t for x_0 a point mass. */
typedef enum {
    DDPM_VARIANCE_BETA,      /* sigma_t^2 = beta_t               diffusers "fixed_large" */
    DDPM_VARIANCE_POSTERIOR  /* sigma_t^2 = beta~_t (eq. 7)      diffusers "fixed_small" */
} ddpm_variance;

typedef enum { DDPM_PREDICT_EPSILON, DDPM_PREDICT_SAMPLE, DDPM_PREDICT_V } ddpm_prediction;
typedef enum { DDPM_SPACING_LEADING, DDPM_SPACING_LINSPACE, DDPM_SPACING_TRAILING } ddpm_spacing;

/* The keys of diffusers' scheduler_config.json that matter for sampling. */
typedef struct {
    int num_train_timesteps;          /* T                                   */
    double beta_start, beta_end;
    ddpm_beta_schedule beta_schedule;
    ddpm_variance variance_type;      /* the model's own default             */
    int clip_sample;                  /* clip x^_0 to [-range, range]        */
    double clip_sample_range;
    ddpm_prediction prediction_type;
    ddpm_spacing timestep_spacing;
    int steps_offset;
} ddpm_scheduler_config;

/* The DDPM defaults: T = 1000, linear betas 1e-4 .. 0.02, fixed_small, clip,
 * epsilon, leading spacing (diffusers' DDPMScheduler defaults). */
void ddpm_scheduler_config_default(ddpm_scheduler_config *c);
/* Parse scheduler_config.json text; missing keys keep their defaults. */
ddpm_status ddpm_scheduler_config_parse(const char *json, size_t len, ddpm_scheduler_config *c,
                                        char *err, size_t errlen);
ddpm_status ddpm_scheduler_config_load(const char *path, ddpm_scheduler_config *c,
                                       char *err, size_t errlen);

/* Precomputed per-timestep quantities, index t = 0 .. T-1 (diffusers' index;
 * the paper's t = index + 1).  float arrays as diffusers keeps them. */
typedef struct {
    ddpm_scheduler_config config;
    int T;
    float *betas;                          /* beta_t                                  */
    float *alphas;                         /* alpha_t = 1 - beta_t                    */
    float *alphas_cumprod;                 /* abar_t = prod_{s<=t} alpha_s (in double) */
    float *sqrt_alphas_cumprod;            /* sqrt(abar_t)                            */
    float *sqrt_one_minus_alphas_cumprod;  /* sqrt(1 - abar_t)                        */
    float *posterior_variance;             /* beta~_t = (1-abar_{t-1})/(1-abar_t) beta_t */
    float *posterior_mean_coef1;           /* sqrt(abar_{t-1}) beta_t / (1-abar_t)    eq. 7 */
    float *posterior_mean_coef2;           /* sqrt(alpha_t)(1-abar_{t-1}) / (1-abar_t) eq. 7 */
} ddpm_schedule;

ddpm_status ddpm_schedule_init(ddpm_schedule *s, const ddpm_scheduler_config *c, char *err, size_t errlen);
void ddpm_schedule_free(ddpm_schedule *s);

/* The respaced chain: timesteps in descending order, written to `out` (room
 * for K ints), K in 1..T.
 *   t_start >= T-1 (generate): diffusers' set_timesteps(K) for the configured
 *     spacing; K values.
 *   0 <= t_start < T-1 (refine from the paper's t0 = t_start + 1): K is
 *     clamped to t_start + 1 and ts[i] = round(t_start (K-1-i) / (K-1)) (halves
 *     up), i.e. the chain starts at t_start exactly and ends at 0; [t_start]
 *     for K = 1.  ddpm_sample_refine uses this rule for every t0, even t0 = T.
 * Returns the number written, or -1 (K out of range, t_start < 0, or a
 * steps_offset that pushes the chain past T-1). */
int ddpm_timesteps(const ddpm_schedule *s, int K, int t_start, int *out);

/* ------------------------------------------------------------------------ */
/* Noise: counter-based N(0, 1), addressed by (seed, stream, channel, y, x)  */
/* ------------------------------------------------------------------------ */

/* Streams: which draw of the run a deviate belongs to.  Addressing by
 * absolute image coordinates makes results independent of tiling/threads. */
#define DDPM_STREAM_REVERSE(t)  ((uint32_t)(t))             /* z of the step leaving timestep t */
#define DDPM_STREAM_START       ((uint32_t)0x10000)         /* x_T, or the eps of q_sample at t0 */
#define DDPM_STREAM_KNOWN(t)    ((uint32_t)0x20000 + (uint32_t)(t)) /* refine: re-noise the unmasked region to t */

/* One standard normal deviate: Philox-4x32-10 with key = seed and counter =
 * (x, y, channel, stream), then Box-Muller on the first two outputs. */
float ddpm_noise(uint64_t seed, uint32_t stream, uint32_t channel, uint32_t y, uint32_t x);
/* Fill a C x h x w block whose top-left pixel is (y0, x0) of the image. */
void ddpm_noise_fill(uint64_t seed, uint32_t stream, int C, int h, int w, int y0, int x0, float *out);

/* ------------------------------------------------------------------------ */
/* The forward and reverse processes                                          */
/* ------------------------------------------------------------------------ */

/* eq. (4): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, n values; xt may
 * alias x0 or eps. */
void ddpm_q_sample(const ddpm_schedule *s, int t, const float *x0, const float *eps, float *xt, size_t n);

/* One reverse step from timestep t to prev_t (-1 = the end of the chain),
 * as diffusers' DDPMScheduler.step computes it: every per-step quantity comes
 * from abar at t and prev_t, so the same code serves the full and the
 * respaced chain.  `model_output` is eps (or x_0 / v per prediction_type);
 * z is the noise (ignored when prev_t < 0).  n values; x_prev may alias x_t. */
void ddpm_p_sample(const ddpm_schedule *s, int t, int prev_t, ddpm_variance variance,
                   const float *x_t, const float *model_output, const float *z, float *x_prev, size_t n);

/* The network, as the sampler sees it: eps = model(x_t, t), one C x H x W image. */
typedef ddpm_status (*ddpm_predict_fn)(void *ctx, const float *x_t, int t, float *eps,
                                       char *err, size_t errlen);

/* Called after each reverse step (step = 1 .. total).  Return nonzero to stop:
 * the run then returns DDPM_CANCELLED and leaves its output untouched. */
typedef int (*ddpm_progress_fn)(void *ctx, int step, int total);

/* Which reverse process the loops run.  All three walk the same respaced
 * timesteps (ddpm_timesteps for generate, the refine chain for refine), end
 * at abar = 1 after timestep 0, and draw their noise from the same streams.
 *   DDPM           Ho et al. 2020, Algorithm 2 (ddpm_p_sample), sigma_t^2 from
 *                  `variance`; diffusers' DDPMScheduler.
 *   DDIM           Song et al. 2021, eq. (12):
 *                    x_prev = sqrt(abar_p) x^_0 + sqrt(1 - abar_p - sigma^2) eps + sigma z,
 *                    sigma  = eta sqrt((1 - abar_p)/(1 - abar_t) (1 - abar_t/abar_p))  eq. (16);
 *                  eta = 0 is deterministic, eta = 1 has DDPM's sigma^2 = beta~.
 *                  diffusers' DDIMScheduler (set_alpha_to_one = True).
 *   DPM_SOLVER_PP  Lu et al. 2022, DPM-Solver++(2M): a deterministic second-order
 *                  multistep solver of the diffusion ODE in data-prediction form
 *                  (first order on the first and the last step); diffusers'
 *                  DPMSolverMultistepScheduler (midpoint, final sigma 0).
 * x^_0 is clipped as the model's scheduler_config says, for all three. */
typedef enum {
    DDPM_SAMPLER_DDPM = 0,
    DDPM_SAMPLER_DDIM,
    DDPM_SAMPLER_DPM_SOLVER_PP
} ddpm_sampler;

/* "ddpm", "ddim", "dpm-solver++"; NULL for a value that is none of them
 * (so a front end can list them: for (i = 0; ddpm_sampler_name(i); i++)). */
const char *ddpm_sampler_name(ddpm_sampler s);
/* The inverse of ddpm_sampler_name (exact, lower case); DDPM_ERR_ARGUMENT
 * for any other text, *out unchanged. */
ddpm_status ddpm_sampler_parse(const char *name, ddpm_sampler *out);

/* What the front ends (CLI and plug-in) use when the user does not choose:
 * measured on the shipped model (weights/ddpm-texture/MODEL_CARD.md, "Sampler
 * settings").  DDIM at 20 steps, deterministic down to t = 500 and with
 * eta 0.5 below, scores best there: a deterministic chain lets coloured
 * speckle into some samples, noise on every step smooths away the grain of
 * real textures, and noise on the low half of the chain only removes the
 * speckle with less smoothing.  The DDPM chain does worse even at 1000
 * steps, and 20 steps keep a 512x512 texture near 15 s on two cores.  These
 * are for images generated whole; period-first ones take
 * DDPM_DEFAULT_PERIOD_ETA (below), refines DDPM_DEFAULT_REFINE_ETA. */
#define DDPM_DEFAULT_STEPS     20
#define DDPM_DEFAULT_SAMPLER   DDPM_SAMPLER_DDIM
#define DDPM_DEFAULT_ETA       0.5
#define DDPM_DEFAULT_ETA_T_MAX 500
/* A refine starts from a real image noised to t0, not from x_T, and the
 * speckle that DDPM_DEFAULT_ETA keeps out of whole images does not appear:
 * there the noise only smooths away the image's own grain.  Deterministic,
 * a refine of real textures stays closer to them (TRAINING_LOG.md,
 * "Twenty-fourth session"). */
#define DDPM_DEFAULT_REFINE_ETA 0.0

/* A zero-initialised struct (plus steps, seed, ...) means the DDPM sampler. */
typedef struct {
    int steps;               /* K <= T: length of the respaced chain          */
    ddpm_variance variance;  /* DDPM only: sigma_t^2 = beta_t or beta~_t      */
    uint64_t seed;
    int t_start;             /* refine only: t0 in 1 .. T (paper's numbering) */
    ddpm_sampler sampler;    /* DDPM (0), DDIM or DPM-Solver++                */
    float eta;               /* DDIM only, 0 .. 1; ignored by the others      */
    int eta_t_max;           /* DDIM only: eta applies to the steps from
                                t <= eta_t_max, the steps above are
                                deterministic (Karras et al. 2022's S_tmax,
                                in timesteps); 0, or T - 1 and more, = every
                                step: Song et al.'s DDIM.  >= 0.              */
} ddpm_sample_params;

/* Generate: x_T ~ N(0, I) from DDPM_STREAM_START, then the respaced chain.
 * `x` receives x_0 (C x H x W) only when the status is DDPM_OK. */
ddpm_status ddpm_sample_generate(const ddpm_schedule *s, ddpm_predict_fn predict, void *predict_ctx,
                                 int C, int H, int W, const ddpm_sample_params *p,
                                 ddpm_progress_fn progress, void *progress_ctx,
                                 float *x, char *err, size_t errlen);

/* Refine: x_{t0} = q_sample(x_0), then the chain from t0 down to 0.  `mask`
 * (H x W in [0, 1], NULL = everywhere) says where to refine: after every step
 * the rest is replaced by q_sample(x_0) at the new timestep (fresh noise from
 * DDPM_STREAM_KNOWN) and blended by the mask, so the refined region agrees
 * with its surroundings; at the end it is x_0 exactly.  `x` receives the result. */
ddpm_status ddpm_sample_refine(const ddpm_schedule *s, ddpm_predict_fn predict, void *predict_ctx,
                               int C, int H, int W, const float *x0, const float *mask,
                               const ddpm_sample_params *p,
                               ddpm_progress_fn progress, void *progress_ctx,
                               float *x, char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* Model folders and the U-Net                                               */
/* ------------------------------------------------------------------------ */

typedef struct ddpm_model ddpm_model;

/* Load DIR/config.json, DIR/diffusion_pytorch_model.safetensors and (optional)
 * DIR/scheduler_config.json.  Every tensor is checked against the config. */
ddpm_status ddpm_model_load(const char *dir, ddpm_model **out, char *err, size_t errlen);
void ddpm_model_free(ddpm_model *m);

typedef struct {
    int in_channels, out_channels;
    int sample_size;          /* training size from the config, 0 if none            */
    int levels;               /* len(block_out_channels)                              */
    int stride;               /* H and W must be multiples of 2^(levels-1)            */
    int has_attention;
    long long parameters;
    const ddpm_scheduler_config *scheduler;
} ddpm_model_info;

void ddpm_model_get_info(const ddpm_model *m, ddpm_model_info *info);
/* A human-readable summary (architecture, tensors) written into buf. */
void ddpm_model_describe(const ddpm_model *m, char *buf, size_t len);
/* FLOPs (2 x multiply-adds of convolutions, linears and attention) for one
 * evaluation at batch N and size H x W. */
double ddpm_model_flops(const ddpm_model *m, int N, int H, int W);

/* A forward plan owns the scratch buffers for one (N, H, W, padding mode),
 * so the sampling loop never allocates. */
typedef struct ddpm_unet_plan ddpm_unet_plan;

/* Bytes of scratch a plan for this shape will allocate (for memory budgets). */
size_t ddpm_unet_plan_bytes_estimate(const ddpm_model *m, int N, int H, int W);
ddpm_status ddpm_unet_plan_create(const ddpm_model *m, int N, int H, int W, int circular,
                                  ddpm_unet_plan **out, char *err, size_t errlen);
void ddpm_unet_plan_free(ddpm_unet_plan *p);

/* eps = UNet2DModel(x, t): x and eps are N x C x H x W, t holds N timesteps. */
ddpm_status ddpm_unet_forward(ddpm_unet_plan *p, const float *x, const float *t, float *eps,
                              char *err, size_t errlen);

/* A ddpm_predict_fn over a plan with N = 1 (ctx is the ddpm_unet_plan *). */
ddpm_status ddpm_unet_predict(void *plan, const float *x_t, int t, float *eps, char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* Tensor files: raw float tensors in safetensors files (CLI I/O, tests)     */
/* ------------------------------------------------------------------------ */

#define DDPM_MAX_DIMS 8

/* Read tensor `name` from a safetensors file, converted to float32 from F32,
 * F16, BF16, F64, I64 or I32.  *data is malloc'ed; the caller frees it. */
ddpm_status ddpm_tensor_read(const char *path, const char *name, float **data,
                             int64_t shape[DDPM_MAX_DIMS], int *ndim, char *err, size_t errlen);
/* Write tensors as an F32 safetensors file (all or nothing: a temporary file
 * is renamed into place). */
ddpm_status ddpm_tensor_write(const char *path, int count, const char *const *names,
                              const float *const *data, const int64_t *const *shapes, const int *ndims,
                              char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* Jobs: what the CLI and the plug-in run, so both give identical pixels     */
/* ------------------------------------------------------------------------ */

typedef struct {
    int steps;               /* K                                        */
    ddpm_variance variance;
    uint64_t seed;
    int tileable;            /* circular padding in every convolution   */
    int timestep;            /* refine: t0 in 1 .. T                     */
    size_t memory_budget;    /* bytes; 0 = ddpm_job_default_memory_budget(),
                                SIZE_MAX = no limit                      */
    ddpm_sampler sampler;    /* DDPM (0), DDIM or DPM-Solver++ (see above) */
    float eta;               /* DDIM only: 0 .. 1                          */
    int eta_t_max;           /* DDIM only: eta from t <= eta_t_max on; 0 = every step */
    int period;              /* generate: 0 = off, DDPM_PERIOD_MODEL or a
                                size: period-first (below)               */
    int period_t;            /* generate with a period: t0 of its refine */
    float period_eta;        /* generate with a period, DDIM only: the eta of
                                both its chains (eta_t_max still applies),
                                0 .. 1; eta is for images generated whole */
    int period_steps;        /* generate with a period: K of the period's own
                                chain, 1 .. T; 0 = steps                  */
} ddpm_job_params;

#define DDPM_PERIOD_MODEL     (-1)   /* the period is the model's training size */
#define DDPM_DEFAULT_PERIOD   DDPM_PERIOD_MODEL
#define DDPM_DEFAULT_PERIOD_T 400
/* Deterministic: the noise that keeps a whole 64 x 64 image free of speckle
 * (DDPM_DEFAULT_ETA) only flattens a period-first one, whose refine from
 * period_t already removes the speckle (weights/ddpm-texture/TRAINING_LOG.md,
 * "Seventeenth session"). */
#define DDPM_DEFAULT_PERIOD_ETA 0.0
/* The period is a small image, so its chain is cheap: on the shipped model
 * 50 steps instead of 20 cost about half a second on a 512 x 512 image and bring
 * it closer to real textures (TRAINING_LOG.md, "Eighteenth session").  The
 * front ends take at most T. */
#define DDPM_DEFAULT_PERIOD_STEPS 50

/* Period-first generation (period > 0 or DDPM_PERIOD_MODEL).  The model
 * learnt from 48 x 48 and 64 x 64 crops: a 64 x 64 image is one coherent
 * texture, but a large one is made of regions that each settle on a texture
 * of their own, and they blend into one kind of crumpled pattern whatever
 * the seed.  With a period the job first generates a small tileable texture
 * (the period), repeats it over the image, and refines the whole from
 * timestep period_t with its own noise, so the image keeps the period's
 * identity and loses its exact repetition
 * (larger period_t: less repetition, less of the period kept).  The period is
 * `period` pixels a side, a multiple of the model's stride; on a tileable
 * image each axis takes the size nearest to it that divides the axis (in
 * stride steps), so the repetition meets the wrap-around seamlessly.  An axis
 * no longer than the period is generated whole; when both are, period is
 * ignored.  The period takes period_steps (steps when 0), the refine
 * min(steps, period_t); progress counts the period's steps, then the
 * refine's.  Both chains take period_eta for eta.
 * period = DDPM_PERIOD_MODEL takes the size the model was trained at (its
 * config's sample_size, rounded up to the stride; no period when the config
 * has none): the one size at which the model makes a whole texture.  The CLI
 * and the plug-in default to it. */

/* Whether a width x height generate job with `p` runs period-first on this
 * model, and then the period's size (py rows, px columns): what the job will
 * do, for a front end to report. */
int ddpm_job_period_shape(const ddpm_model *m, const ddpm_job_params *p, int width, int height, int *py, int *px);

/* Memory.  Before it allocates anything a job estimates its peak (the U-Net
 * plan, the sampler's images, the tile windows) and returns DDPM_ERR_MEMORY
 * with the figures in `err` when that exceeds the budget.  The model's own
 * weights are not counted.
 *
 * Large images are computed in tiles: an image wider or taller than 1024
 * pixels (after rounding up to the stride) is cut into tiles of at most 1024
 * pixels a side, and each step's eps is computed window by window, each
 * window being a tile plus 64 pixels of context on every side (wrapped
 * around for tileable images); each window's interior is kept.  Memory then
 * grows with the pixel count only through the images: for the shipped model
 * a 1.8 GiB plan plus 12 bytes a pixel per image, so a 4096 x 4096 refine
 * needs about 3.0 GiB where one uncut plan would need 22.5 GiB.  The cut
 * depends only on the image size and the model, never on the budget, the
 * machine or the thread count, so the same settings give the same pixels
 * everywhere.  GroupNorm statistics are then per window, so a tiled result
 * differs slightly from an uncut one. */

/* The default budget: half the physical memory (SIZE_MAX if unknown). */
size_t ddpm_job_default_memory_budget(void);
/* The bytes a job of this size would need (refine: nonzero for refine), as
 * compared with the budget; 0 for an impossible size. */
size_t ddpm_job_memory_estimate(const ddpm_model *m, const ddpm_job_params *p, int width, int height, int refine);

/* Generate a width x height RGB image (3 x height x width floats in [-1, 1]).
 * Sizes that are not multiples of the model's stride are computed at the next
 * multiple and cropped; a tileable image is resampled instead, as one period
 * of its tiling, so that it still wraps around without a seam (at most 7
 * pixels a side are added: a scale of 0.9 or more from 64 pixels up). */
ddpm_status ddpm_job_generate(const ddpm_model *m, const ddpm_job_params *p, int width, int height,
                              ddpm_progress_fn progress, void *progress_ctx,
                              float *out, char *err, size_t errlen);

/* Refine `in` (3 x height x width in [-1, 1]) where `mask` (height x width in
 * [0, 1], NULL = everywhere) is set; `out` may equal `in`.  A tileable refine
 * whose sides are not multiples of the stride runs on the layer resampled to
 * the next multiples and back (as generate does), then replaces the layer by
 * the mask: what the mask keeps is kept exactly. */
ddpm_status ddpm_job_refine(const ddpm_model *m, const ddpm_job_params *p, int width, int height,
                            const float *in, const float *mask,
                            ddpm_progress_fn progress, void *progress_ctx,
                            float *out, char *err, size_t errlen);

/* The one mapping between model space and 8-bit pixels, shared by the CLI and
 * the plug-in: v in [-1, 1] -> round((v + 1) * 127.5) clamped to 0 .. 255. */
uint8_t ddpm_to_u8(float v);
float ddpm_from_u8(uint8_t p);

#ifdef __cplusplus
}
#endif
#endif /* DDPM_H */
