/* model.c: a diffusers model folder -> ddpm_model.
 *
 *   config.json                          the UNet2DModel architecture (spec 1.4)
 *   diffusion_pytorch_model.safetensors  its weights (F32, F16 or BF16)
 *   scheduler_config.json                optional: the DDPMScheduler settings
 *
 * From the config we build the table of every tensor the architecture needs,
 * name -> shape, following diffusers' generation rule (spec 2.2).  The file
 * must hold exactly that set (attention under either spelling, spec 2.5); each
 * tensor is converted once to float32 into the model's arena and the file is
 * unmapped.  3x3 convolution weights are then prepared for the convolutions
 * (winograd.c, conv.c): Winograd's transformed U for the wide layers (kept
 * instead of the weights, or, on the packed kernels, beside them, for small
 * images), a repacked layout for the others.
 */
#include "model_internal.h"
#include "ops.h"
#include "safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#define CONFIG_MAX_BYTES (1 << 20)
#define MAX_CHANNELS 65536

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

int unet_heads(const unet_config *c, int C)
{
    return c->attention_head_dim > 0 ? C / c->attention_head_dim : 1;
}

/* ------------------------------------------------------------------------ */
/* config.json                                                               */
/* ------------------------------------------------------------------------ */

/* Each reader leaves *out at the default when the key is absent.  A value of
 * the wrong type is a format error; a valid value we cannot run is
 * "unsupported"; both name the key and the value. */

static ddpm_status key_int(const cJSON *root, const char *key, int lo, int hi, int null_ok, int *out,
                           char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || (null_ok && cJSON_IsNull(v)))
        return DDPM_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return fail(err, errlen, DDPM_ERR_FORMAT, "config.json: \"%s\" must be an integer", key);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return fail(err, errlen, DDPM_ERR_FORMAT, "config.json: \"%s\" = %g is out of range %d .. %d", key,
                    v->valuedouble, lo, hi);
    *out = (int)v->valuedouble;
    return DDPM_OK;
}

static ddpm_status key_number(const cJSON *root, const char *key, double *out, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v)
        return DDPM_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return fail(err, errlen, DDPM_ERR_FORMAT, "config.json: \"%s\" must be a number", key);
    *out = v->valuedouble;
    return DDPM_OK;
}

static ddpm_status key_bool(const cJSON *root, const char *key, int *out, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v)
        return DDPM_OK;
    if (!cJSON_IsBool(v))
        return fail(err, errlen, DDPM_ERR_FORMAT, "config.json: \"%s\" must be true or false", key);
    *out = cJSON_IsTrue(v);
    return DDPM_OK;
}

/* A string key that must be absent or one of `allowed` (a NULL-terminated
 * list); null is accepted only when null_ok. */
static ddpm_status key_choice(const cJSON *root, const char *key, const char *const *allowed, int null_ok,
                              char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v)
        return DDPM_OK;
    if (cJSON_IsNull(v)) {
        if (null_ok)
            return DDPM_OK;
        return fail(err, errlen, DDPM_ERR_UNSUPPORTED, "config.json: \"%s\" = null is not supported", key);
    }
    if (!cJSON_IsString(v))
        return fail(err, errlen, DDPM_ERR_FORMAT, "config.json: \"%s\" must be a string", key);
    for (int i = 0; allowed[i]; i++)
        if (strcmp(v->valuestring, allowed[i]) == 0)
            return DDPM_OK;
    return fail(err, errlen, DDPM_ERR_UNSUPPORTED, "config.json: \"%s\" = \"%.60s\" is not supported", key,
                v->valuestring);
}

/* A key that only has a no-op value here (null or a given number). */
static ddpm_status key_must_be_null(const cJSON *root, const char *key, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v))
        return DDPM_OK;
    char *text = cJSON_PrintUnformatted(v);
    ddpm_status s = fail(err, errlen, DDPM_ERR_UNSUPPORTED, "config.json: \"%s\" = %.60s is not supported", key,
                         text ? text : "?");
    free(text);
    return s;
}

/* block type lists: attn[i] = 1 for the Attn* variant */
static ddpm_status key_blocks(const cJSON *root, const char *key, const char *plain, const char *with_attn,
                              int *n, int attn[UNET_MAX_LEVELS], char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v)
        return DDPM_OK;
    if (!cJSON_IsArray(v))
        return fail(err, errlen, DDPM_ERR_FORMAT, "config.json: \"%s\" must be a list of block names", key);
    int count = cJSON_GetArraySize(v);
    if (count < 1 || count > UNET_MAX_LEVELS)
        return fail(err, errlen, DDPM_ERR_UNSUPPORTED, "config.json: \"%s\" has %d blocks (1 .. %d supported)", key,
                    count, UNET_MAX_LEVELS);
    int i = 0;
    const cJSON *b;
    cJSON_ArrayForEach(b, v) {
        if (!cJSON_IsString(b))
            return fail(err, errlen, DDPM_ERR_FORMAT, "config.json: \"%s\"[%d] must be a string", key, i);
        if (strcmp(b->valuestring, plain) == 0)
            attn[i] = 0;
        else if (strcmp(b->valuestring, with_attn) == 0)
            attn[i] = 1;
        else
            return fail(err, errlen, DDPM_ERR_UNSUPPORTED, "config.json: \"%s\"[%d] = \"%.60s\" is not supported", key,
                        i, b->valuestring);
        i++;
    }
    *n = count;
    return DDPM_OK;
}

#define TRY(expr)                       \
    do {                                \
        ddpm_status s_ = (expr);        \
        if (s_ != DDPM_OK) {            \
            cJSON_Delete(root);         \
            return s_;                  \
        }                               \
    } while (0)

ddpm_status unet_config_parse(const char *json, size_t len, unet_config *c, char *err, size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return fail(err, errlen, DDPM_ERR_FORMAT, "config.json is not valid JSON");
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fail(err, errlen, DDPM_ERR_FORMAT, "config.json is not a JSON object");
    }

    /* diffusers' UNet2DModel defaults (spec 1.4): they differ from the google
     * checkpoints in flip_sin_to_cos, freq_shift, attention_head_dim,
     * norm_eps and downsample_padding, so every key is read. */
    static const int default_channels[4] = {224, 448, 672, 896};
    memset(c, 0, sizeof *c);
    c->in_channels = 3;
    c->out_channels = 3;
    c->levels = 4;
    memcpy(c->block_out_channels, default_channels, sizeof default_channels);
    c->down_attention[1] = c->down_attention[2] = c->down_attention[3] = 1;  /* Down, AttnDown x3 */
    c->up_attention[0] = c->up_attention[1] = c->up_attention[2] = 1;        /* AttnUp x3, Up    */
    c->layers_per_block = 2;
    c->norm_num_groups = 32;
    c->norm_eps = 1e-5;
    c->flip_sin_to_cos = 1;
    c->freq_shift = 0;
    c->downsample_padding = 1;
    c->attention_head_dim = 8;
    c->add_attention = 1;

    static const char *const unet2d[] = {"UNet2DModel", NULL};
    static const char *const positional[] = {"positional", NULL};
    static const char *const midblock[] = {"UNetMidBlock2D", NULL};
    static const char *const conv[] = {"conv", NULL};
    static const char *const silu[] = {"silu", "swish", NULL};
    static const char *const shift_default[] = {"default", NULL};

    TRY(key_choice(root, "_class_name", unet2d, 0, err, errlen));
    TRY(key_choice(root, "time_embedding_type", positional, 0, err, errlen));
    TRY(key_choice(root, "mid_block_type", midblock, 0, err, errlen));
    TRY(key_choice(root, "downsample_type", conv, 0, err, errlen));
    TRY(key_choice(root, "upsample_type", conv, 0, err, errlen));
    TRY(key_choice(root, "act_fn", silu, 0, err, errlen));
    TRY(key_choice(root, "resnet_time_scale_shift", shift_default, 0, err, errlen));
    TRY(key_must_be_null(root, "class_embed_type", err, errlen));
    TRY(key_must_be_null(root, "num_class_embeds", err, errlen));
    TRY(key_must_be_null(root, "attn_norm_num_groups", err, errlen));

    /* sample_size: an int, null, or [height, width] (informational) */
    const cJSON *ss = cJSON_GetObjectItemCaseSensitive(root, "sample_size");
    if (cJSON_IsArray(ss) && cJSON_GetArraySize(ss) == 2) {
        const cJSON *h = cJSON_GetArrayItem(ss, 0);
        if (cJSON_IsNumber(h) && h->valuedouble >= 0 && h->valuedouble <= 1e6)
            c->sample_size = (int)h->valuedouble;
    } else {
        TRY(key_int(root, "sample_size", 0, 1000000, 1, &c->sample_size, err, errlen));
    }
    TRY(key_int(root, "in_channels", 1, 4096, 0, &c->in_channels, err, errlen));
    TRY(key_int(root, "out_channels", 1, 4096, 0, &c->out_channels, err, errlen));
    TRY(key_bool(root, "center_input_sample", &c->center_input_sample, err, errlen));
    TRY(key_bool(root, "flip_sin_to_cos", &c->flip_sin_to_cos, err, errlen));
    TRY(key_number(root, "freq_shift", &c->freq_shift, err, errlen));
    TRY(key_int(root, "layers_per_block", 1, 64, 0, &c->layers_per_block, err, errlen));
    TRY(key_int(root, "norm_num_groups", 1, MAX_CHANNELS, 0, &c->norm_num_groups, err, errlen));
    TRY(key_number(root, "norm_eps", &c->norm_eps, err, errlen));
    if (!(c->norm_eps > 0))
        TRY(fail(err, errlen, DDPM_ERR_FORMAT, "config.json: \"norm_eps\" = %g must be positive", c->norm_eps));
    TRY(key_bool(root, "add_attention", &c->add_attention, err, errlen));
    TRY(key_int(root, "time_embedding_dim", 1, MAX_CHANNELS, 1, &c->time_embed_dim, err, errlen));

    double v = 0;
    TRY(key_number(root, "dropout", &v, err, errlen));            /* identity at inference */
    v = 1;
    TRY(key_number(root, "mid_block_scale_factor", &v, err, errlen));
    if (v != 1)
        TRY(fail(err, errlen, DDPM_ERR_UNSUPPORTED, "config.json: \"mid_block_scale_factor\" = %g is not supported",
                 v));
    const cJSON *dp = cJSON_GetObjectItemCaseSensitive(root, "downsample_padding");
    if (dp) {
        if (!cJSON_IsNumber(dp) || dp->valuedouble != floor(dp->valuedouble))
            TRY(fail(err, errlen, DDPM_ERR_FORMAT, "config.json: \"downsample_padding\" must be an integer"));
        if (dp->valuedouble != 0 && dp->valuedouble != 1)
            TRY(fail(err, errlen, DDPM_ERR_UNSUPPORTED,
                     "config.json: \"downsample_padding\" = %g is not supported (0 or 1)", dp->valuedouble));
        c->downsample_padding = (int)dp->valuedouble;
    }
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(root, "attention_head_dim");
    if (hd) {
        if (cJSON_IsNull(hd))
            c->attention_head_dim = 0;
        else
            TRY(key_int(root, "attention_head_dim", 1, MAX_CHANNELS, 0, &c->attention_head_dim, err, errlen));
    }

    const cJSON *bo = cJSON_GetObjectItemCaseSensitive(root, "block_out_channels");
    if (bo) {
        if (!cJSON_IsArray(bo))
            TRY(fail(err, errlen, DDPM_ERR_FORMAT, "config.json: \"block_out_channels\" must be a list of integers"));
        int n = cJSON_GetArraySize(bo);
        if (n < 1 || n > UNET_MAX_LEVELS)
            TRY(fail(err, errlen, DDPM_ERR_UNSUPPORTED,
                     "config.json: \"block_out_channels\" has %d entries (1 .. %d supported)", n, UNET_MAX_LEVELS));
        int i = 0;
        const cJSON *ch;
        cJSON_ArrayForEach(ch, bo) {
            if (!cJSON_IsNumber(ch) || ch->valuedouble != floor(ch->valuedouble) || ch->valuedouble < 1 ||
                ch->valuedouble > MAX_CHANNELS)
                TRY(fail(err, errlen, DDPM_ERR_FORMAT,
                         "config.json: \"block_out_channels\"[%d] must be an integer in 1 .. %d", i, MAX_CHANNELS));
            c->block_out_channels[i++] = (int)ch->valuedouble;
        }
        c->levels = n;
    }
    int ndown = 4, nup = 4;
    TRY(key_blocks(root, "down_block_types", "DownBlock2D", "AttnDownBlock2D", &ndown, c->down_attention, err,
                   errlen));
    TRY(key_blocks(root, "up_block_types", "UpBlock2D", "AttnUpBlock2D", &nup, c->up_attention, err, errlen));
    if (ndown != c->levels || nup != c->levels)
        TRY(fail(err, errlen, DDPM_ERR_FORMAT,
                 "config.json: %d down_block_types and %d up_block_types for %d block_out_channels", ndown, nup,
                 c->levels));
    cJSON_Delete(root);

    if (c->time_embed_dim == 0)
        c->time_embed_dim = 4 * c->block_out_channels[0];
    /* The sinusoid divides by half - freq_shift (spec 3.2). */
    int half = c->block_out_channels[0] / 2;
    if ((float)half - (float)c->freq_shift == 0.0f)
        return fail(err, errlen, DDPM_ERR_UNSUPPORTED,
                    "config.json: \"freq_shift\" = %g equals half of block_out_channels[0] = %d", c->freq_shift,
                    c->block_out_channels[0]);
    return DDPM_OK;
}
#undef TRY

/* ------------------------------------------------------------------------ */
/* The expected tensor table (spec 2.2)                                      */
/* ------------------------------------------------------------------------ */

typedef struct {
    char name[128];
    char legacy[128];         /* the 2022 attention spelling, "" if none  */
    int ndim;
    int64_t shape[4];
    int allow_1x1;            /* attention linear weight stored [C,C,1,1] */
    int winograd;             /* a 3x3 weight kept as Winograd's U        */
    const float **slot;       /* where the model keeps its pointer        */
    size_t offset, numel;     /* in the arena (U: in the Winograd arena)  */
} expected_tensor;

typedef struct {
    expected_tensor *v;
    int n, cap;
    size_t floats;            /* main arena                               */
    size_t wino_floats;       /* Winograd arena: 16 cout cin per conv     */
    const unet_config *cfg;
    ddpm_status status;       /* first error while building               */
    char *err;
    size_t errlen;
} tensor_table;

static void table_add(tensor_table *t, const char *name, const char *legacy, int ndim, const int64_t *shape,
                      const float **slot)
{
    if (t->status != DDPM_OK)
        return;
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 256;
        expected_tensor *v = realloc(t->v, (size_t)cap * sizeof *v);
        if (!v) {
            t->status = fail(t->err, t->errlen, DDPM_ERR_MEMORY, "out of memory building the tensor table");
            return;
        }
        t->v = v;
        t->cap = cap;
    }
    expected_tensor *e = &t->v[t->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->legacy, sizeof e->legacy, "%s", legacy ? legacy : "");
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        e->numel *= (size_t)shape[i];     /* each dim <= 65536*9, at most 4 dims: no overflow */
    }
    e->slot = slot;
    e->offset = t->floats;
    t->floats += e->numel;
}

/* stride1: a 3x3 stride-1 convolution, which may run as Winograd. */
static void add_conv(tensor_table *t, const char *prefix, conv2d_w *c, int cin, int cout, int k, int stride1)
{
    char name[128];
    c->cin = cin;
    c->cout = cout;
    c->k = k;
    snprintf(name, sizeof name, "%s.weight", prefix);
    if (k == 3 && stride1 && conv3x3_uses_winograd(cin, cout)) {
        /* kept only as U: the main arena gets nothing */
        size_t floats = t->floats;
        table_add(t, name, NULL, 4, (int64_t[]){cout, cin, k, k}, &c->u);
        if (t->status == DDPM_OK) {
            expected_tensor *e = &t->v[t->n - 1];
            t->floats = floats;
            e->winograd = 1;
            e->offset = t->wino_floats;
            t->wino_floats += winograd_floats(cin, cout);
        }
    } else {
        table_add(t, name, NULL, 4, (int64_t[]){cout, cin, k, k}, &c->w);
    }
    snprintf(name, sizeof name, "%s.bias", prefix);
    table_add(t, name, NULL, 1, (int64_t[]){cout}, &c->b);
}

static void add_linear(tensor_table *t, const char *prefix, linear_w *l, int in, int out)
{
    char name[128];
    l->in = in;
    l->out = out;
    snprintf(name, sizeof name, "%s.weight", prefix);
    table_add(t, name, NULL, 2, (int64_t[]){out, in}, &l->w);
    snprintf(name, sizeof name, "%s.bias", prefix);
    table_add(t, name, NULL, 1, (int64_t[]){out}, &l->b);
}

static void add_norm(tensor_table *t, const char *prefix, groupnorm_w *g, int C)
{
    char name[128];
    if (t->status == DDPM_OK && C % t->cfg->norm_num_groups != 0) {
        t->status = fail(t->err, t->errlen, DDPM_ERR_FORMAT,
                         "config.json: norm_num_groups %d does not divide the %d channels of %s",
                         t->cfg->norm_num_groups, C, prefix);
        return;
    }
    g->C = C;
    snprintf(name, sizeof name, "%s.weight", prefix);
    table_add(t, name, NULL, 1, (int64_t[]){C}, &g->gamma);
    snprintf(name, sizeof name, "%s.bias", prefix);
    table_add(t, name, NULL, 1, (int64_t[]){C}, &g->beta);
}

static void add_resnet(tensor_table *t, const char *prefix, resnet_w *r, int cin, int cout)
{
    char name[96];
    r->cin = cin;
    r->cout = cout;
    snprintf(name, sizeof name, "%s.norm1", prefix);
    add_norm(t, name, &r->norm1, cin);
    snprintf(name, sizeof name, "%s.conv1", prefix);
    add_conv(t, name, &r->conv1, cin, cout, 3, 1);
    snprintf(name, sizeof name, "%s.time_emb_proj", prefix);
    add_linear(t, name, &r->time_emb_proj, t->cfg->time_embed_dim, cout);
    snprintf(name, sizeof name, "%s.norm2", prefix);
    add_norm(t, name, &r->norm2, cout);
    snprintf(name, sizeof name, "%s.conv2", prefix);
    add_conv(t, name, &r->conv2, cout, cout, 3, 1);
    r->has_shortcut = cin != cout;
    if (r->has_shortcut) {
        snprintf(name, sizeof name, "%s.conv_shortcut", prefix);
        add_conv(t, name, &r->conv_shortcut, cin, cout, 1, 1);
    }
}

/* q, k, v weights (then biases) are registered back to back so that the arena
 * holds them as one [3C, C] matrix (and one [3C] vector); only the first
 * pointer of each triple is kept. */
static void add_attention(tensor_table *t, const char *prefix, attention_w *a, int C)
{
    static const char *const cur[3] = {"to_q", "to_k", "to_v"};
    static const char *const old[3] = {"query", "key", "value"};
    char name[128], legacy[128];
    int hd = t->cfg->attention_head_dim;
    if (t->status == DDPM_OK && hd > 0 && C % hd != 0) {
        t->status = fail(t->err, t->errlen, DDPM_ERR_UNSUPPORTED,
                         "config.json: attention_head_dim %d does not divide the %d channels of %s", hd, C, prefix);
        return;
    }
    a->C = C;
    a->heads = unet_heads(t->cfg, C);
    a->qkv = (conv2d_w){.cin = C, .cout = 3 * C, .k = 1};
    a->out = (conv2d_w){.cin = C, .cout = C, .k = 1};
    snprintf(name, sizeof name, "%s.group_norm", prefix);
    add_norm(t, name, &a->norm, C);
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "%s.%s.weight", prefix, cur[i]);
        snprintf(legacy, sizeof legacy, "%s.%s.weight", prefix, old[i]);
        table_add(t, name, legacy, 2, (int64_t[]){C, C}, i == 0 ? &a->qkv.w : NULL);
        if (t->status == DDPM_OK)
            t->v[t->n - 1].allow_1x1 = 1;
    }
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "%s.%s.bias", prefix, cur[i]);
        snprintf(legacy, sizeof legacy, "%s.%s.bias", prefix, old[i]);
        table_add(t, name, legacy, 1, (int64_t[]){C}, i == 0 ? &a->qkv.b : NULL);
    }
    snprintf(name, sizeof name, "%s.to_out.0.weight", prefix);
    snprintf(legacy, sizeof legacy, "%s.proj_attn.weight", prefix);
    table_add(t, name, legacy, 2, (int64_t[]){C, C}, &a->out.w);
    if (t->status == DDPM_OK)
        t->v[t->n - 1].allow_1x1 = 1;
    snprintf(name, sizeof name, "%s.to_out.0.bias", prefix);
    snprintf(legacy, sizeof legacy, "%s.proj_attn.bias", prefix);
    table_add(t, name, legacy, 1, (int64_t[]){C}, &a->out.b);
}

/* Allocate the block structs and fill the table, walking the architecture
 * exactly as diffusers' UNet2DModel.__init__ registers it. */
static ddpm_status build_table(ddpm_model *m, tensor_table *t)
{
    const unet_config *c = &m->cfg;
    const int *C = c->block_out_channels;
    int n = c->levels, L = c->layers_per_block, T = c->time_embed_dim;
    char name[96];

    add_conv(t, "conv_in", &m->conv_in, c->in_channels, C[0], 3, 1);
    add_linear(t, "time_embedding.linear_1", &m->time_linear_1, C[0], T);
    add_linear(t, "time_embedding.linear_2", &m->time_linear_2, T, T);

    int out_ch = C[0];
    for (int i = 0; i < n; i++) {
        block_w *b = &m->down[i];
        int in_ch = out_ch;
        out_ch = C[i];
        b->nresnets = L;
        b->resnets = calloc((size_t)L, sizeof *b->resnets);
        b->attentions = c->down_attention[i] ? calloc((size_t)L, sizeof *b->attentions) : NULL;
        if (!b->resnets || (c->down_attention[i] && !b->attentions))
            return fail(t->err, t->errlen, DDPM_ERR_MEMORY, "out of memory");
        for (int j = 0; j < L; j++) {
            snprintf(name, sizeof name, "down_blocks.%d.resnets.%d", i, j);
            add_resnet(t, name, &b->resnets[j], j == 0 ? in_ch : out_ch, out_ch);
            if (b->attentions) {
                snprintf(name, sizeof name, "down_blocks.%d.attentions.%d", i, j);
                add_attention(t, name, &b->attentions[j], out_ch);
            }
        }
        b->has_resample = i != n - 1;
        if (b->has_resample) {
            snprintf(name, sizeof name, "down_blocks.%d.downsamplers.0.conv", i);
            add_conv(t, name, &b->resample, out_ch, out_ch, 3, 0);
        }
    }

    add_resnet(t, "mid_block.resnets.0", &m->mid_resnets[0], C[n - 1], C[n - 1]);
    m->mid_has_attention = c->add_attention;
    if (c->add_attention)
        add_attention(t, "mid_block.attentions.0", &m->mid_attention, C[n - 1]);
    add_resnet(t, "mid_block.resnets.1", &m->mid_resnets[1], C[n - 1], C[n - 1]);

    out_ch = C[n - 1];
    for (int i = 0; i < n; i++) {
        block_w *b = &m->up[i];
        int prev = out_ch;
        out_ch = C[n - 1 - i];
        int skip_in = C[n - 1 - (i + 1 < n ? i + 1 : n - 1)];
        b->nresnets = L + 1;
        b->resnets = calloc((size_t)(L + 1), sizeof *b->resnets);
        b->attentions = c->up_attention[i] ? calloc((size_t)(L + 1), sizeof *b->attentions) : NULL;
        if (!b->resnets || (c->up_attention[i] && !b->attentions))
            return fail(t->err, t->errlen, DDPM_ERR_MEMORY, "out of memory");
        for (int j = 0; j <= L; j++) {
            int res_skip = j == L ? skip_in : out_ch;
            int res_in = j == 0 ? prev : out_ch;
            snprintf(name, sizeof name, "up_blocks.%d.resnets.%d", i, j);
            add_resnet(t, name, &b->resnets[j], res_in + res_skip, out_ch);
            if (b->attentions) {
                snprintf(name, sizeof name, "up_blocks.%d.attentions.%d", i, j);
                add_attention(t, name, &b->attentions[j], out_ch);
            }
        }
        b->has_resample = i != n - 1;
        if (b->has_resample) {
            snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0.conv", i);
            add_conv(t, name, &b->resample, out_ch, out_ch, 3, 1);
        }
    }

    add_norm(t, "conv_norm_out", &m->conv_norm_out, C[0]);
    add_conv(t, "conv_out", &m->conv_out, C[0], c->out_channels, 3, 1);
    return t->status;
}

/* ------------------------------------------------------------------------ */
/* Matching the file against the table                                       */
/* ------------------------------------------------------------------------ */

static void shape_text(const int64_t *shape, int ndim, char *buf, size_t len)
{
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < len)
        snprintf(buf + o, len - o, "]");
}

static int shape_matches(const expected_tensor *e, const st_tensor *t)
{
    if (t->ndim == e->ndim) {
        for (int i = 0; i < e->ndim; i++)
            if (t->shape[i] != e->shape[i])
                return 0;
        return 1;
    }
    /* [C, C, 1, 1]: attention weights of old 1x1-conv checkpoints (spec 2.5) */
    return e->allow_1x1 && t->ndim == 4 && t->shape[0] == e->shape[0] && t->shape[1] == e->shape[1] &&
           t->shape[2] == 1 && t->shape[3] == 1;
}

/* Pass 1: every expected tensor present once, with its shape and a float
 * dtype; nothing else in the file.  found[i] receives the file's tensor.
 * All problems are collected; the most telling is reported: a missing
 * tensor (e.g. more layers in the config), then a wrong shape (other
 * widths), then a dtype, then tensors the config does not know. */
static ddpm_status match_tensors(ddpm_model *m, tensor_table *tab, const st_file *f, const st_tensor **found,
                                 char *err, size_t errlen)
{
    unsigned char *used = calloc((size_t)(f->count ? f->count : 1), 1);
    if (!used)
        return fail(err, errlen, DDPM_ERR_MEMORY, "out of memory");
    int missing = 0, misshaped = 0, mistyped = 0, unexpected = 0, legacy = 0;
    const expected_tensor *first_missing = NULL, *first_misshaped = NULL;
    const st_tensor *shape_of = NULL, *first_mistyped = NULL, *twice = NULL;
    unsigned dtypes = 0;

    for (int i = 0; i < tab->n; i++) {
        expected_tensor *e = &tab->v[i];
        const st_tensor *t = st_find(f, e->name);
        const st_tensor *o = e->legacy[0] ? st_find(f, e->legacy) : NULL;
        found[i] = NULL;
        if (t && o && !twice)
            twice = t;
        if (!t) {
            t = o;
            legacy += o != NULL;
        }
        if (!t) {
            if (!missing++)
                first_missing = e;
            continue;
        }
        used[t - f->tensors] = 1;
        if (o)
            used[o - f->tensors] = 1;
        if (!shape_matches(e, t)) {
            if (!misshaped++) {
                first_misshaped = e;
                shape_of = t;
            }
            continue;
        }
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16) {
            if (!mistyped++)
                first_mistyped = t;
            continue;
        }
        dtypes |= 1u << t->dtype;
        found[i] = t;
    }
    const st_tensor *first_unexpected = NULL;
    for (int i = 0; i < f->count; i++)
        if (!used[i] && !unexpected++)
            first_unexpected = &f->tensors[i];
    free(used);

    m->legacy_attention_names = legacy > 0;
    size_t o = 0;
    m->weights_dtype[0] = 0;
    static const st_dtype order[3] = {ST_F32, ST_F16, ST_BF16};
    for (int i = 0; i < 3; i++)
        if (dtypes & (1u << order[i]))
            o += (size_t)snprintf(m->weights_dtype + o, sizeof m->weights_dtype - o, "%s%s", o ? "+" : "",
                                  st_dtype_name(order[i]));

    if (twice)
        return fail(err, errlen, DDPM_ERR_MISMATCH, "tensor '%s' is stored twice, under its current and its legacy "
                    "attention name", twice->name);
    if (missing)
        return fail(err, errlen, DDPM_ERR_MISMATCH, "missing tensor '%s' (%d of the %d tensors config.json needs "
                    "are absent, %d in the file are not needed)", first_missing->name, missing, tab->n, unexpected);
    if (misshaped) {
        char want[96], got[96];
        shape_text(first_misshaped->shape, first_misshaped->ndim, want, sizeof want);
        shape_text(shape_of->shape, shape_of->ndim, got, sizeof got);
        return fail(err, errlen, DDPM_ERR_MISMATCH, "tensor '%s' has shape %s, config.json needs %s (%d tensors "
                    "differ)", shape_of->name, got, want, misshaped);
    }
    if (mistyped)
        return fail(err, errlen, DDPM_ERR_UNSUPPORTED, "tensor '%s' has dtype %s; weights must be F32, F16 or BF16",
                    first_mistyped->name, st_dtype_name(first_mistyped->dtype));
    if (unexpected)
        return fail(err, errlen, DDPM_ERR_MISMATCH, "unexpected tensor '%s' (%d in the file are not part of the "
                    "architecture in config.json)", first_unexpected->name, unexpected);
    return DDPM_OK;
}

/* A NaN or infinity in the weights would only show as a NaN image after
 * minutes of sampling; refuse the file at once and say where. */
static ddpm_status check_finite(const char *name, const float *v, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return fail(err, errlen, DDPM_ERR_NUMERIC, "tensor '%s' holds %s at element %zu: the weights are "
                        "damaged", name, isnan(v[i]) ? "a NaN" : "an infinity", i);
    return DDPM_OK;
}

/* Pass 2: convert every tensor once to float32 into the arena, Winograd
 * convolutions through a temporary straight into their U. */
static ddpm_status load_weights(ddpm_model *m, tensor_table *tab, const st_file *f, char *err, size_t errlen)
{
    const st_tensor **found = calloc((size_t)(tab->n ? tab->n : 1), sizeof *found);
    if (!found)
        return fail(err, errlen, DDPM_ERR_MEMORY, "out of memory");
    ddpm_status s = match_tensors(m, tab, f, found, err, errlen);
    size_t tmp_floats = 1;           /* a weight tensor, then 36 cin for the transform */
    for (int i = 0; i < tab->n; i++)
        if (tab->v[i].winograd && tab->v[i].numel + 36 * (size_t)tab->v[i].shape[1] > tmp_floats)
            tmp_floats = tab->v[i].numel + 36 * (size_t)tab->v[i].shape[1];
    float *tmp = NULL;
    if (s == DDPM_OK) {
        m->arena_floats = tab->floats;
        m->wino_floats = tab->wino_floats;
        m->arena = malloc((tab->floats ? tab->floats : 1) * sizeof(float));
        m->wino_arena = malloc((tab->wino_floats ? tab->wino_floats : 1) * sizeof(float));
        tmp = malloc(tmp_floats * sizeof *tmp);
        if (!m->arena || !m->wino_arena || !tmp)
            s = fail(err, errlen, DDPM_ERR_MEMORY, "out of memory for %zu weights", tab->floats + tab->wino_floats);
    }
    for (int i = 0; s == DDPM_OK && i < tab->n; i++) {
        expected_tensor *e = &tab->v[i];
        if (e->winograd) {
            s = st_read_f32(f, found[i], tmp, err, errlen);
            if (s == DDPM_OK)
                s = check_finite(e->name, tmp, e->numel, err, errlen);
            if (s != DDPM_OK)
                break;
            winograd_weights(tmp, (int)e->shape[0], (int)e->shape[1], m->wino_arena + e->offset, tmp + e->numel);
            if (winograd_packed((int)e->shape[0]))       /* tmp (9 cout cin floats) is free again */
                winograd_pack(m->wino_arena + e->offset, (int)e->shape[0], (int)e->shape[1], tmp);
            *e->slot = m->wino_arena + e->offset;
            continue;
        }
        s = st_read_f32(f, found[i], m->arena + e->offset, err, errlen);
        if (s == DDPM_OK)
            s = check_finite(e->name, m->arena + e->offset, e->numel, err, errlen);
        if (e->slot)
            *e->slot = m->arena + e->offset;
    }
    free(tmp);
    free(found);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */
/* ------------------------------------------------------------------------ */

/* Every 3x3 convolution of the model, for the one-time weight repacking. */
static int list_convs(ddpm_model *m, conv2d_w **out)
{
    int n = 0;
    out[n++] = &m->conv_in;
    for (int i = 0; i < m->cfg.levels; i++)
        for (int pass = 0; pass < 2; pass++) {
            block_w *b = pass ? &m->up[i] : &m->down[i];
            for (int j = 0; j < b->nresnets; j++) {
                out[n++] = &b->resnets[j].conv1;
                out[n++] = &b->resnets[j].conv2;
            }
            if (b->has_resample)
                out[n++] = &b->resample;
        }
    for (int i = 0; i < 2; i++) {
        out[n++] = &m->mid_resnets[i].conv1;
        out[n++] = &m->mid_resnets[i].conv2;
    }
    out[n++] = &m->conv_out;
    return n;
}

/* Every 1x1 convolution of the model: the resnets' conv_shortcut and the
 * attentions' projections. */
static int list_convs_1x1(ddpm_model *m, conv2d_w **out)
{
    int n = 0;
    for (int i = 0; i < m->cfg.levels; i++)
        for (int pass = 0; pass < 2; pass++) {
            block_w *b = pass ? &m->up[i] : &m->down[i];
            for (int j = 0; j < b->nresnets; j++) {
                if (b->resnets[j].has_shortcut)
                    out[n++] = &b->resnets[j].conv_shortcut;
                if (b->attentions) {
                    out[n++] = &b->attentions[j].qkv;
                    out[n++] = &b->attentions[j].out;
                }
            }
        }
    for (int i = 0; i < 2; i++)
        if (m->mid_resnets[i].has_shortcut)
            out[n++] = &m->mid_resnets[i].conv_shortcut;
    if (m->mid_has_attention) {
        out[n++] = &m->mid_attention.qkv;
        out[n++] = &m->mid_attention.out;
    }
    return n;
}

/* Whether c is a down block's Downsample2D convolution (stride 2). */
static int is_stride2(const ddpm_model *m, const conv2d_w *c)
{
    for (int i = 0; i < m->cfg.levels; i++)
        if (m->down[i].has_resample && c == &m->down[i].resample)
            return 1;
    return 0;
}

/* PyTorch's [cout][cin][3][3] -> [cout][3][3][cin] for the 3x3
 * convolutions not kept as Winograd U, then the stride-2 ones and the 1x1
 * convolutions into the packed kernel's panels where it runs (see ops.h). */
static ddpm_status repack_convs(ddpm_model *m, char *err, size_t errlen)
{
    /* conv_in, conv_out; per block up to 65 resnets (conv1, conv2,
     * conv_shortcut) and attentions (two projections), and a resampler;
     * two mid resnets and a mid attention */
    int most = 2 + UNET_MAX_LEVELS * 2 * (5 * 65 + 1) + 2 * 3 + 2;
    conv2d_w **convs = malloc((size_t)most * sizeof *convs);
    if (!convs)
        return fail(err, errlen, DDPM_ERR_MEMORY, "out of memory");
    int n = list_convs(m, convs), n1 = list_convs_1x1(m, convs + n);
    size_t tmp_floats = 1;
    for (int i = 0; i < n + n1; i++) {
        const size_t cin = (size_t)convs[i]->cin, cout = (size_t)convs[i]->cout;
        size_t need = cin * cout;                         /* a 1x1 */
        if (i < n)                                        /* a 3x3: stride 2 packs all of it, stride 1 a row */
            need = is_stride2(m, convs[i]) ? 9 * cin * cout : 9 * cin;
        tmp_floats = need > tmp_floats ? need : tmp_floats;
    }
    float *tmp = malloc(tmp_floats * sizeof *tmp);
    if (!tmp) {
        free(convs);
        return fail(err, errlen, DDPM_ERR_MEMORY, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        if (!convs[i]->u)
            conv3x3_repack((float *)convs[i]->w, convs[i]->cout, convs[i]->cin, tmp);
        if (is_stride2(m, convs[i]) && conv_down_packed(convs[i]->cout))
            conv_down_pack((float *)convs[i]->w, convs[i]->cout, convs[i]->cin, tmp);
    }
    for (int i = n; i < n + n1; i++)
        if (conv1x1_packed(convs[i]->cout))
            conv1x1_pack((float *)convs[i]->w, convs[i]->cout, convs[i]->cin, tmp);
    free(tmp);
    free(convs);
    return DDPM_OK;
}

static ddpm_status read_text(const char *path, char **text, size_t *len, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return fail(err, errlen, DDPM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    char *buf = malloc(CONFIG_MAX_BYTES + 1);
    if (!buf) {
        fclose(fp);
        return fail(err, errlen, DDPM_ERR_MEMORY, "out of memory");
    }
    size_t n = fread(buf, 1, CONFIG_MAX_BYTES + 1, fp);
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        free(buf);
        return fail(err, errlen, DDPM_ERR_IO, "cannot read %s", path);
    }
    if (n > CONFIG_MAX_BYTES) {
        free(buf);
        return fail(err, errlen, DDPM_ERR_FORMAT, "%s is larger than %d bytes", path, CONFIG_MAX_BYTES);
    }
    buf[n] = 0;
    *text = buf;
    *len = n;
    return DDPM_OK;
}

static ddpm_status join(char *out, size_t outlen, const char *dir, const char *file, char *err, size_t errlen)
{
    if ((size_t)snprintf(out, outlen, "%s/%s", dir, file) >= outlen)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "model path too long: %s", dir);
    return DDPM_OK;
}

static void count_parameters(ddpm_model *m, const tensor_table *t)
{
    m->parameters = 0;
    for (int i = 0; i < t->n; i++)
        m->parameters += (long long)t->v[i].numel;
    m->tensor_count = t->n;
}

ddpm_status ddpm_model_load(const char *dir, ddpm_model **out, char *err, size_t errlen)
{
    if (!dir || !out)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "ddpm_model_load: NULL argument");
    *out = NULL;
    char path[4096];
    ddpm_status s = join(path, sizeof path, dir, "config.json", err, errlen);
    if (s != DDPM_OK)
        return s;

    ddpm_model *m = calloc(1, sizeof *m);
    if (!m)
        return fail(err, errlen, DDPM_ERR_MEMORY, "out of memory");

    char *text = NULL;
    size_t len = 0;
    s = read_text(path, &text, &len, err, errlen);
    if (s == DDPM_OK) {
        s = unet_config_parse(text, len, &m->cfg, err, errlen);
        free(text);
    }

    /* scheduler_config.json is optional: the DDPM defaults without it. */
    if (s == DDPM_OK)
        s = join(path, sizeof path, dir, "scheduler_config.json", err, errlen);
    if (s == DDPM_OK) {
        if (access(path, F_OK) == 0)
            s = ddpm_scheduler_config_load(path, &m->scheduler, err, errlen);
        else
            ddpm_scheduler_config_default(&m->scheduler);
    }

    tensor_table tab = {0};
    tab.cfg = &m->cfg;
    tab.err = err;
    tab.errlen = errlen;
    if (s == DDPM_OK)
        s = build_table(m, &tab);
    if (s == DDPM_OK)
        count_parameters(m, &tab);

    st_file f = {0};
    if (s == DDPM_OK)
        s = join(path, sizeof path, dir, "diffusion_pytorch_model.safetensors", err, errlen);
    if (s == DDPM_OK)
        s = st_open(path, &f, err, errlen);
    if (s == DDPM_OK) {
        char msg[512];
        s = load_weights(m, &tab, &f, msg, sizeof msg);
        if (s != DDPM_OK)
            fail(err, errlen, s, "%s: %s", path, msg);
    }
    st_close(&f);
    free(tab.v);
    if (s == DDPM_OK)
        s = repack_convs(m, err, errlen);
    if (s != DDPM_OK) {
        ddpm_model_free(m);
        return s;
    }
    *out = m;
    return DDPM_OK;
}

void ddpm_model_free(ddpm_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < UNET_MAX_LEVELS; i++) {
        free(m->down[i].resnets);
        free(m->down[i].attentions);
        free(m->up[i].resnets);
        free(m->up[i].attentions);
    }
    free(m->arena);
    free(m->wino_arena);
    free(m);
}

/* ------------------------------------------------------------------------ */
/* Information                                                               */
/* ------------------------------------------------------------------------ */

static int has_attention(const ddpm_model *m)
{
    int any = m->mid_has_attention;
    for (int i = 0; i < m->cfg.levels; i++)
        any |= m->cfg.down_attention[i] | m->cfg.up_attention[i];
    return any;
}

void ddpm_model_get_info(const ddpm_model *m, ddpm_model_info *info)
{
    memset(info, 0, sizeof *info);
    if (!m)
        return;
    info->in_channels = m->cfg.in_channels;
    info->out_channels = m->cfg.out_channels;
    info->sample_size = m->cfg.sample_size;
    info->levels = m->cfg.levels;
    info->stride = 1 << (m->cfg.levels - 1);
    info->has_attention = has_attention(m);
    info->parameters = m->parameters;
    info->scheduler = &m->scheduler;
}

/* snprintf that appends and never overruns. */
static void append(char *buf, size_t len, size_t *o, const char *fmt, ...)
{
    if (*o >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *o, len - *o, fmt, ap);
    va_end(ap);
    if (n > 0)
        *o += (size_t)n;
}

void ddpm_model_describe(const ddpm_model *m, char *buf, size_t len)
{
    if (!buf || !len)
        return;
    buf[0] = 0;
    if (!m)
        return;
    const unet_config *c = &m->cfg;
    size_t o = 0;
    append(buf, len, &o, "UNet2DModel: %d -> %d channels, %d levels, stride %d", c->in_channels, c->out_channels,
           c->levels, 1 << (c->levels - 1));
    if (c->sample_size)
        append(buf, len, &o, ", trained at %dx%d", c->sample_size, c->sample_size);
    append(buf, len, &o, "\n  block_out_channels [");
    for (int i = 0; i < c->levels; i++)
        append(buf, len, &o, i ? ", %d" : "%d", c->block_out_channels[i]);
    append(buf, len, &o, "], layers_per_block %d\n  down_block_types [", c->layers_per_block);
    for (int i = 0; i < c->levels; i++)
        append(buf, len, &o, "%s%s", i ? ", " : "", c->down_attention[i] ? "AttnDownBlock2D" : "DownBlock2D");
    append(buf, len, &o, "]\n  up_block_types [");
    for (int i = 0; i < c->levels; i++)
        append(buf, len, &o, "%s%s", i ? ", " : "", c->up_attention[i] ? "AttnUpBlock2D" : "UpBlock2D");
    append(buf, len, &o, "]\n  mid block attention %s", c->add_attention ? "yes" : "no");
    if (has_attention(m)) {
        if (c->attention_head_dim)
            append(buf, len, &o, ", attention_head_dim %d", c->attention_head_dim);
        else
            append(buf, len, &o, ", one attention head per block");
        if (m->legacy_attention_names)
            append(buf, len, &o, " (legacy query/key/value/proj_attn names)");
    }
    append(buf, len, &o, "\n  GroupNorm %d groups, eps %g; downsample_padding %d\n", c->norm_num_groups, c->norm_eps,
           c->downsample_padding);
    append(buf, len, &o, "  time embedding %d -> %d, flip_sin_to_cos %s, freq_shift %g%s\n", c->block_out_channels[0],
           c->time_embed_dim, c->flip_sin_to_cos ? "true" : "false", c->freq_shift,
           c->center_input_sample ? ", center_input_sample" : "");
    append(buf, len, &o, "  %lld parameters in %d tensors (%s in the file, float32 in memory: %.1f MB)\n",
           m->parameters, m->tensor_count, m->weights_dtype[0] ? m->weights_dtype : "none",
           (double)(m->arena_floats + m->wino_floats) * 4.0 / 1e6);
    static const char *const schedules[] = {"linear", "scaled_linear", "squaredcos_cap_v2"};
    static const char *const variances[] = {"fixed_large", "fixed_small"};
    static const char *const predictions[] = {"epsilon", "sample", "v_prediction"};
    static const char *const spacings[] = {"leading", "linspace", "trailing"};
    const ddpm_scheduler_config *sc = &m->scheduler;
    append(buf, len, &o, "  scheduler: T = %d, %s betas %g .. %g, %s, %s, %s spacing, clip %s\n",
           sc->num_train_timesteps, (unsigned)sc->beta_schedule < 3 ? schedules[sc->beta_schedule] : "?",
           sc->beta_start, sc->beta_end, (unsigned)sc->variance_type < 2 ? variances[sc->variance_type] : "?",
           (unsigned)sc->prediction_type < 3 ? predictions[sc->prediction_type] : "?",
           (unsigned)sc->timestep_spacing < 3 ? spacings[sc->timestep_spacing] : "?", sc->clip_sample ? "yes" : "no");
}

/* ------------------------------------------------------------------------ */
/* FLOPs: 2 x multiply-adds of convolutions, linears and attention           */
/* ------------------------------------------------------------------------ */

static double conv_flops(const conv2d_w *c, double pixels_out)
{
    return 2.0 * c->cout * c->cin * c->k * c->k * pixels_out;
}

static double resnet_flops(const resnet_w *r, double pixels)
{
    double f = conv_flops(&r->conv1, pixels) + conv_flops(&r->conv2, pixels) +
               2.0 * r->time_emb_proj.in * r->time_emb_proj.out;
    if (r->has_shortcut)
        f += conv_flops(&r->conv_shortcut, pixels);
    return f;
}

/* q, k, v and out projections plus Q K^T and P V over all heads. */
static double attention_flops(const attention_w *a, double tokens)
{
    return 2.0 * 4.0 * a->C * a->C * tokens + 2.0 * 2.0 * tokens * tokens * a->C;
}

double ddpm_model_flops(const ddpm_model *m, int N, int H, int W)
{
    if (!m || N < 1 || H < 1 || W < 1)
        return 0;
    const unet_config *c = &m->cfg;
    int n = c->levels;
    double f = 2.0 * (c->block_out_channels[0] * (double)c->time_embed_dim +
                      (double)c->time_embed_dim * c->time_embed_dim);
    f += conv_flops(&m->conv_in, (double)H * W);
    for (int i = 0; i < n; i++) {
        double px = (double)(H >> i) * (W >> i);
        for (int j = 0; j < m->down[i].nresnets; j++) {
            f += resnet_flops(&m->down[i].resnets[j], px);
            if (m->down[i].attentions)
                f += attention_flops(&m->down[i].attentions[j], px);
        }
        if (m->down[i].has_resample)
            f += conv_flops(&m->down[i].resample, (double)(H >> (i + 1)) * (W >> (i + 1)));
    }
    double px = (double)(H >> (n - 1)) * (W >> (n - 1));
    f += resnet_flops(&m->mid_resnets[0], px) + resnet_flops(&m->mid_resnets[1], px);
    if (m->mid_has_attention)
        f += attention_flops(&m->mid_attention, px);
    for (int i = 0; i < n; i++) {
        int lv = n - 1 - i;
        px = (double)(H >> lv) * (W >> lv);
        for (int j = 0; j < m->up[i].nresnets; j++) {
            f += resnet_flops(&m->up[i].resnets[j], px);
            if (m->up[i].attentions)
                f += attention_flops(&m->up[i].attentions[j], px);
        }
        if (m->up[i].has_resample)
            f += conv_flops(&m->up[i].resample, 4.0 * px);
    }
    f += conv_flops(&m->conv_out, (double)H * W);
    return f * N;
}
