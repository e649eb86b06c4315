/* fuzz_seeds.c: the seed corpora of the fuzz harnesses, made from model
 * folders at run time (nothing large is committed).
 *
 *   fuzz_seeds MODEL_CORPUS SCHEDULER_CORPUS MODEL_DIR...
 *
 * For every MODEL_DIR:
 *   SCHEDULER_CORPUS/NAME.json   its scheduler_config.json, if any;
 *   MODEL_CORPUS/NAME-full       the folder packed as fuzz_model.c reads it,
 *                                when its weights are small (< 1 MiB);
 *   MODEL_CORPUS/NAME-small      its config.json with 4 channels a level and
 *                                one layer a block, and random F32 weights of
 *                                that shape: the same architecture (levels,
 *                                attention, padding, ...) in a few KB, so
 *                                that mutations stay fast.  Checked to load.
 * plus a few scheduler configs covering every schedule, variance,
 * prediction and spacing name.
 */
#include "ddpm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* The packed folder of fuzz_model.c. */
static int write_packed(const char *path, const char *config, size_t lc, const char *sched, size_t ls,
                        const unsigned char *weights, size_t lw)
{
    if (lc > 0xFFFF || ls > 0xFFFF)
        return -1;
    size_t n = 5 + lc + ls + lw;
    unsigned char *buf = malloc(n);
    if (!buf)
        return -1;
    buf[0] = sched ? 1 : 0;
    buf[1] = (unsigned char)(lc & 0xFF);
    buf[2] = (unsigned char)(lc >> 8);
    buf[3] = (unsigned char)(ls & 0xFF);
    buf[4] = (unsigned char)(ls >> 8);
    memcpy(buf + 5, config, lc);
    if (ls)
        memcpy(buf + 5 + lc, sched, ls);
    if (lw)
        memcpy(buf + 5 + lc + ls, weights, lw);
    int r = write_file(path, buf, n);
    free(buf);
    return r;
}

/* ------------------------------------------------------------------------ */
/* A small model with the architecture of a config                           */
/* ------------------------------------------------------------------------ */

#define MAX_TENSORS 4096

typedef struct {
    int n;
    char *names[MAX_TENSORS];
    float *data[MAX_TENSORS];
    int64_t shapes[MAX_TENSORS][4];
    int ndims[MAX_TENSORS];
    int temb;  /* time embedding width */
    uint32_t rng;
} weights;

/* One tensor of small random values (norm weights near 1 would be nicer,
 * but any finite values make a valid seed). */
static void add(weights *w, const char *name, int ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
    if (w->n == MAX_TENSORS)
        return;
    int64_t dims[4] = {a, b, c, d};
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        w->shapes[w->n][i] = dims[i];
        count *= (size_t)dims[i];
    }
    w->names[w->n] = strdup(name);
    w->data[w->n] = malloc(count * sizeof(float));
    for (size_t i = 0; i < count; i++) {
        w->rng = w->rng * 1664525u + 1013904223u;
        w->data[w->n][i] = ((float)(w->rng >> 8) / 16777216.0f - 0.5f) * 0.2f;
    }
    w->ndims[w->n] = ndim;
    w->n++;
}

static void add_conv(weights *w, const char *prefix, int cin, int cout, int k)
{
    char name[256];
    snprintf(name, sizeof name, "%s.weight", prefix);
    add(w, name, 4, cout, cin, k, k);
    snprintf(name, sizeof name, "%s.bias", prefix);
    add(w, name, 1, cout, 0, 0, 0);
}

static void add_linear(weights *w, const char *prefix, int in, int out)
{
    char name[256];
    snprintf(name, sizeof name, "%s.weight", prefix);
    add(w, name, 2, out, in, 0, 0);
    snprintf(name, sizeof name, "%s.bias", prefix);
    add(w, name, 1, out, 0, 0, 0);
}

static void add_norm(weights *w, const char *prefix, int C)
{
    char name[256];
    snprintf(name, sizeof name, "%s.weight", prefix);
    add(w, name, 1, C, 0, 0, 0);
    snprintf(name, sizeof name, "%s.bias", prefix);
    add(w, name, 1, C, 0, 0, 0);
}

/* diffusers' ResnetBlock2D and Attention, as UNet2DModel registers them. */
static void add_resnet(weights *w, const char *prefix, int cin, int cout)
{
    char name[256];
    snprintf(name, sizeof name, "%s.norm1", prefix);
    add_norm(w, name, cin);
    snprintf(name, sizeof name, "%s.conv1", prefix);
    add_conv(w, name, cin, cout, 3);
    snprintf(name, sizeof name, "%s.time_emb_proj", prefix);
    add_linear(w, name, w->temb, cout);
    snprintf(name, sizeof name, "%s.norm2", prefix);
    add_norm(w, name, cout);
    snprintf(name, sizeof name, "%s.conv2", prefix);
    add_conv(w, name, cout, cout, 3);
    if (cin != cout) {
        snprintf(name, sizeof name, "%s.conv_shortcut", prefix);
        add_conv(w, name, cin, cout, 1);
    }
}

static void add_attention(weights *w, const char *prefix, int C)
{
    static const char *const parts[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    char name[256];
    snprintf(name, sizeof name, "%s.group_norm", prefix);
    add_norm(w, name, C);
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, parts[i]);
        add_linear(w, name, C, C);
    }
}

static int is_attention_block(const cJSON *types, int i)
{
    const cJSON *t = cJSON_GetArrayItem(types, i);
    return cJSON_IsString(t) && strncmp(t->valuestring, "Attn", 4) == 0;
}

static void set_number(cJSON *root, const char *key, double v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(root, key);
    cJSON_AddNumberToObject(root, key, v);
}

/* Rewrite `config` with small widths and write weights of that shape into
 * DIR; returns the new config text (malloc'ed) or NULL. */
static char *make_small_model(const char *config, const char *dir)
{
    cJSON *root = cJSON_Parse(config);
    if (!root)
        return NULL;
    const cJSON *boc = cJSON_GetObjectItemCaseSensitive(root, "block_out_channels");
    int levels = cJSON_GetArraySize(boc);
    if (levels < 1 || levels > 8) {
        cJSON_Delete(root);
        return NULL;
    }
    /* Explicit keys, so that no default of diffusers has to be guessed:
     * 4 channels a level, 2 groups, 1 layer a block, heads of 2 channels
     * (or one head when the config has null), the default embedding. */
    const int C = 4;
    cJSON *chans = cJSON_CreateArray();
    for (int i = 0; i < levels; i++)
        cJSON_AddItemToArray(chans, cJSON_CreateNumber(C));
    cJSON_ReplaceItemInObjectCaseSensitive(root, "block_out_channels", chans);
    set_number(root, "norm_num_groups", 2);
    set_number(root, "layers_per_block", 1);
    cJSON *hd = cJSON_GetObjectItemCaseSensitive(root, "attention_head_dim");
    if (!cJSON_IsNull(hd))
        set_number(root, "attention_head_dim", 2);
    cJSON_DeleteItemFromObjectCaseSensitive(root, "time_embedding_dim");
    if (!cJSON_GetObjectItemCaseSensitive(root, "down_block_types")) {
        /* diffusers' defaults (4 levels) */
        const char *down[4] = {"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"};
        const char *up[4] = {"AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
        if (levels != 4) {
            cJSON_Delete(root);
            return NULL;
        }
        cJSON_AddItemToObject(root, "down_block_types", cJSON_CreateStringArray(down, 4));
        cJSON_AddItemToObject(root, "up_block_types", cJSON_CreateStringArray(up, 4));
    }
    const cJSON *downs = cJSON_GetObjectItemCaseSensitive(root, "down_block_types");
    const cJSON *ups = cJSON_GetObjectItemCaseSensitive(root, "up_block_types");
    const cJSON *in_c = cJSON_GetObjectItemCaseSensitive(root, "in_channels");
    const cJSON *out_c = cJSON_GetObjectItemCaseSensitive(root, "out_channels");
    const cJSON *add_attn = cJSON_GetObjectItemCaseSensitive(root, "add_attention");
    int cin = cJSON_IsNumber(in_c) ? in_c->valueint : 3;
    int cout = cJSON_IsNumber(out_c) ? out_c->valueint : 3;
    int mid_attention = add_attn ? cJSON_IsTrue(add_attn) : 1;

    static weights w;
    memset(&w, 0, sizeof w);
    w.rng = 2024;
    w.temb = 4 * C;
    char name[256];
    add_conv(&w, "conv_in", cin, C, 3);
    add_linear(&w, "time_embedding.linear_1", C, w.temb);
    add_linear(&w, "time_embedding.linear_2", w.temb, w.temb);
    for (int i = 0; i < levels; i++) {
        snprintf(name, sizeof name, "down_blocks.%d.resnets.0", i);
        add_resnet(&w, name, C, C);
        if (is_attention_block(downs, i)) {
            snprintf(name, sizeof name, "down_blocks.%d.attentions.0", i);
            add_attention(&w, name, C);
        }
        if (i != levels - 1) {
            snprintf(name, sizeof name, "down_blocks.%d.downsamplers.0.conv", i);
            add_conv(&w, name, C, C, 3);
        }
    }
    add_resnet(&w, "mid_block.resnets.0", C, C);
    if (mid_attention)
        add_attention(&w, "mid_block.attentions.0", C);
    add_resnet(&w, "mid_block.resnets.1", C, C);
    for (int i = 0; i < levels; i++)
        for (int j = 0; j < 2; j++) {  /* layers_per_block + 1 resnets, each on [h ; skip] */
            snprintf(name, sizeof name, "up_blocks.%d.resnets.%d", i, j);
            add_resnet(&w, name, 2 * C, C);
            if (is_attention_block(ups, i)) {
                snprintf(name, sizeof name, "up_blocks.%d.attentions.%d", i, j);
                add_attention(&w, name, C);
            }
            if (j == 1 && i != levels - 1) {
                snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0.conv", i);
                add_conv(&w, name, C, C, 3);
            }
        }
    add_norm(&w, "conv_norm_out", C);
    add_conv(&w, "conv_out", C, cout, 3);

    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    int ok = text && write_file(path, text, strlen(text)) == 0;
    const int64_t *shapes[MAX_TENSORS];
    for (int i = 0; i < w.n; i++)
        shapes[i] = w.shapes[i];
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    if (ok && ddpm_tensor_write(path, w.n, (const char *const *)w.names, (const float *const *)w.data, shapes,
                                w.ndims, err, sizeof err) != DDPM_OK) {
        fprintf(stderr, "fuzz_seeds: %s\n", err);
        ok = 0;
    }
    for (int i = 0; i < w.n; i++) {
        free(w.names[i]);
        free(w.data[i]);
    }
    if (!ok) {
        free(text);
        return NULL;
    }
    return text;
}

/* ------------------------------------------------------------------------ */
/* Seeds                                                                     */
/* ------------------------------------------------------------------------ */

static const char *base_name(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    static char buf[256];
    size_t start = n;
    while (start > 0 && path[start - 1] != '/')
        start--;
    snprintf(buf, sizeof buf, "%.*s", (int)(n - start), path + start);
    return buf;
}

static int seed_model(const char *model_corpus, const char *sched_corpus, const char *dir, const char *tmp)
{
    char path[1024], name[256];
    snprintf(name, sizeof name, "%s", base_name(dir));
    size_t lc = 0, ls = 0, lw = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *config = (char *)read_file(path, &lc);
    if (!config) {
        fprintf(stderr, "fuzz_seeds: cannot read %s\n", path);
        return -1;
    }
    snprintf(path, sizeof path, "%s/scheduler_config.json", dir);
    char *sched = (char *)read_file(path, &ls);
    if (sched) {
        snprintf(path, sizeof path, "%s/%s.json", sched_corpus, name);
        write_file(path, sched, ls);
    }
    int rc = 0;

    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    struct stat st;
    if (stat(path, &st) == 0 && st.st_size < (1 << 20)) {
        unsigned char *weights = read_file(path, &lw);
        snprintf(path, sizeof path, "%s/%s-full", model_corpus, name);
        if (!weights || write_packed(path, config, lc, sched, ls, weights, lw) != 0)
            rc = -1;
        free(weights);
    }

    char *small = make_small_model(config, tmp);
    if (small) {
        /* it must load, or it is no seed */
        if (sched) {
            snprintf(path, sizeof path, "%s/scheduler_config.json", tmp);
            write_file(path, sched, ls);
        } else {
            snprintf(path, sizeof path, "%s/scheduler_config.json", tmp);
            unlink(path);
        }
        ddpm_model *m = NULL;
        char err[512];
        if (ddpm_model_load(tmp, &m, err, sizeof err) != DDPM_OK) {
            fprintf(stderr, "fuzz_seeds: the small model made from %s does not load: %s\n", dir, err);
            rc = -1;
        } else {
            ddpm_model_free(m);
            snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", tmp);
            unsigned char *weights = read_file(path, &lw);
            snprintf(path, sizeof path, "%s/%s-small", model_corpus, name);
            if (!weights || write_packed(path, small, strlen(small), sched, ls, weights, lw) != 0)
                rc = -1;
            free(weights);
        }
        free(small);
    }
    free(config);
    free(sched);
    return rc;
}

/* Every name the scheduler parser knows, once each. */
static void seed_scheduler_variants(const char *sched_corpus)
{
    static const char *const variants[] = {
        "{\"beta_schedule\": \"scaled_linear\", \"variance_type\": \"fixed_large\", \"prediction_type\": "
        "\"v_prediction\", \"timestep_spacing\": \"trailing\"}",
        "{\"beta_schedule\": \"squaredcos_cap_v2\", \"prediction_type\": \"sample\", \"timestep_spacing\": "
        "\"linspace\", \"clip_sample\": false, \"num_train_timesteps\": 50}",
        "{\"num_train_timesteps\": 10, \"beta_start\": 0.001, \"beta_end\": 0.2, \"steps_offset\": 1, "
        "\"clip_sample_range\": 2.5, \"trained_betas\": null}",
        "{}",
    };
    char path[1024];
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        snprintf(path, sizeof path, "%s/variant-%zu.json", sched_corpus, i);
        write_file(path, variants[i], strlen(variants[i]));
    }
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL_CORPUS SCHEDULER_CORPUS MODEL_DIR...\n", argv[0]);
        return 2;
    }
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.small-model", argv[1]);  /* beside the corpus, not in it */
    mkdir(tmp, 0755);
    int rc = 0;
    for (int i = 3; i < argc; i++)
        if (seed_model(argv[1], argv[2], argv[i], tmp) != 0)
            rc = 1;
    seed_scheduler_variants(argv[2]);
    char path[1200];
    static const char *const files[3] = {"config.json", "scheduler_config.json",
                                         "diffusion_pytorch_model.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, files[i]);
        unlink(path);
    }
    rmdir(tmp);
    return rc;
}
