/* model_internal.h: the loaded UNet2DModel, as model.c builds it and unet.c
 * runs it (private to core/).
 *
 * Every weight lives in one float32 arena owned by the model.  The structs
 * below only point into it; shapes are PyTorch's (spec 2.1):
 *   conv    weight [cout, cin, k, k], bias [cout]
 *   linear  weight [out, in],         bias [out]
 *   norm    gamma [C], beta [C]
 */
#ifndef DDPM_MODEL_INTERNAL_H
#define DDPM_MODEL_INTERNAL_H

#include "ddpm.h"

#define UNET_MAX_LEVELS 8          /* stride up to 2^7 = 128                  */

/* A convolution.  3x3 weights are prepared at load (ops.h): either
 * Winograd-transformed into u, or repacked in place in w; 1x1 weights are
 * packed in place in w where the packed kernel runs (conv1x1_packed). */
typedef struct {
    const float *w, *b;
    const float *u;
    int cin, cout, k;
} conv2d_w;

typedef struct {
    const float *w, *b;
    int in, out;
} linear_w;

typedef struct {
    const float *gamma, *beta;
    int C;
} groupnorm_w;

/* ResnetBlock2D (spec 3.4). */
typedef struct {
    int cin, cout;
    groupnorm_w norm1, norm2;
    conv2d_w conv1, conv2;
    linear_w time_emb_proj;
    int has_shortcut;              /* 1x1 conv_shortcut when cin != cout      */
    conv2d_w conv_shortcut;
} resnet_w;

/* Attention (spec 3.7).  q, k and v weights are consecutive in the arena, so
 * they make one 1x1 convolution qkv of C -> 3C channels (weights [3C, C],
 * bias [3C]); the output projection is a 1x1 convolution of C -> C. */
typedef struct {
    int C, heads;
    groupnorm_w norm;
    conv2d_w qkv, out;
} attention_w;

/* One DownBlock2D / AttnDownBlock2D / UpBlock2D / AttnUpBlock2D (spec 3.8). */
typedef struct {
    int nresnets;                  /* L (down) or L + 1 (up)                  */
    resnet_w *resnets;
    attention_w *attentions;       /* NULL for the plain blocks               */
    int has_resample;              /* downsampler / upsampler present         */
    conv2d_w resample;             /* its 3x3 conv                            */
} block_w;

/* config.json, with diffusers' defaults filled in (spec 1.4). */
typedef struct {
    int in_channels, out_channels;
    int sample_size;
    int center_input_sample;
    int levels;
    int block_out_channels[UNET_MAX_LEVELS];
    int down_attention[UNET_MAX_LEVELS];   /* AttnDownBlock2D at level i        */
    int up_attention[UNET_MAX_LEVELS];     /* AttnUpBlock2D at up block i       */
    int layers_per_block;
    int norm_num_groups;
    double norm_eps;
    int flip_sin_to_cos;
    double freq_shift;
    int downsample_padding;                /* 0: pad right/bottom by 1; 1: all sides */
    int attention_head_dim;                /* 0 = null: one head per block      */
    int add_attention;                     /* mid-block attention               */
    int time_embed_dim;                    /* T = 4 * C[0] unless configured    */
} unet_config;

struct ddpm_model {
    unet_config cfg;
    ddpm_scheduler_config scheduler;

    float *arena;                  /* all weights, float32 ...                */
    size_t arena_floats;
    float *wino_arena;             /* ... but Winograd convolutions' U        */
    size_t wino_floats;
    long long parameters;
    int tensor_count;
    char weights_dtype[16];        /* dtype(s) the file stored, for describe  */
    int legacy_attention_names;

    conv2d_w conv_in;
    linear_w time_linear_1, time_linear_2;
    block_w down[UNET_MAX_LEVELS];
    resnet_w mid_resnets[2];
    int mid_has_attention;
    attention_w mid_attention;
    block_w up[UNET_MAX_LEVELS];
    groupnorm_w conv_norm_out;
    conv2d_w conv_out;
};

/* Attention heads of a block with C channels: C / attention_head_dim, or 1. */
int unet_heads(const unet_config *c, int C);

/* config.json text -> unet_config (exposed for tests). */
ddpm_status unet_config_parse(const char *json, size_t len, unet_config *c, char *err, size_t errlen);

#endif
