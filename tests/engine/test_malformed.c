/* test_malformed.c: broken model folders give the right status and a message
 * naming the problem, and never crash (the suite also runs under ASan/UBSan).
 *
 *   test_engine_malformed GOOD_MODEL_DIR SCRATCH_DIR
 *
 * Every broken folder is made here from the good one (a copy of its configs
 * plus a rewritten or byte-edited safetensors file) inside a fresh directory
 * under SCRATCH_DIR; nothing broken is committed.  A rewritten but unmodified
 * copy must load, so a refusal below is the corruption's doing.  Two valid
 * variants must compute what the original does: attention weights stored as
 * [C, C, 1, 1], and center_input_sample (x -> 2x - 1 first).  The tensor
 * file I/O of ddpm.h (ddpm_tensor_write / ddpm_tensor_read, all dtypes) is
 * tested here too.
 */
#include "ddpm.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

static int failures = 0, cases = 0;

#define CHECK(cond, ...)                                 \
    do {                                                 \
        if (!(cond)) {                                   \
            failures++;                                  \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);  \
            printf(__VA_ARGS__);                         \
            printf("\n");                                \
        }                                                \
    } while (0)

/* ------------------------------------------------------------------------ */
/* A tiny safetensors model of our own, to rewrite files                     */
/* ------------------------------------------------------------------------ */

typedef struct {
    char name[160];
    char dtype[16];
    int ndim;
    long long shape[8];
    const unsigned char *bytes;      /* its data */
    size_t nbytes;
    long long begin, end;            /* as written; editable before writing the header */
} entry;

typedef struct {
    entry e[1024];
    int n;
} tensors;

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static void write_all(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        printf("FAIL cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

/* Parse a (good) safetensors file into entries in data order. */
static void parse(const unsigned char *file, size_t len, tensors *t)
{
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | file[i];
    cJSON *root = cJSON_ParseWithLength((const char *)file + 8, (size_t)hl);
    const unsigned char *data = file + 8 + hl;
    (void)len;
    t->n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (strcmp(it->string, "__metadata__") == 0)
            continue;
        entry *e = &t->e[t->n++];
        memset(e, 0, sizeof *e);
        snprintf(e->name, sizeof e->name, "%s", it->string);
        snprintf(e->dtype, sizeof e->dtype, "%s", cJSON_GetObjectItem(it, "dtype")->valuestring);
        const cJSON *d;
        cJSON_ArrayForEach(d, cJSON_GetObjectItem(it, "shape")) e->shape[e->ndim++] = (long long)d->valuedouble;
        const cJSON *off = cJSON_GetObjectItem(it, "data_offsets");
        long long b = (long long)cJSON_GetArrayItem(off, 0)->valuedouble;
        long long en = (long long)cJSON_GetArrayItem(off, 1)->valuedouble;
        e->bytes = data + b;
        e->nbytes = (size_t)(en - b);
    }
    cJSON_Delete(root);
    /* data order */
    for (int i = 1; i < t->n; i++)
        for (int j = i; j > 0 && t->e[j].bytes < t->e[j - 1].bytes; j--) {
            entry tmp = t->e[j];
            t->e[j] = t->e[j - 1];
            t->e[j - 1] = tmp;
        }
}

static int find(const tensors *t, const char *name)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->e[i].name, name) == 0)
            return i;
    printf("FAIL the good model has no tensor %s\n", name);
    exit(1);
}

/* Contiguous offsets in entry order. */
static void layout(tensors *t)
{
    long long pos = 0;
    for (int i = 0; i < t->n; i++) {
        t->e[i].begin = pos;
        pos += (long long)t->e[i].nbytes;
        t->e[i].end = pos;
    }
}

static char *header_of(const tensors *t)
{
    size_t cap = 1 << 20, o = 0;
    char *h = malloc(cap);
    o += (size_t)snprintf(h + o, cap - o, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < t->n; i++) {
        const entry *e = &t->e[i];
        o += (size_t)snprintf(h + o, cap - o, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", e->name, e->dtype);
        for (int d = 0; d < e->ndim; d++)
            o += (size_t)snprintf(h + o, cap - o, d ? ",%lld" : "%lld", e->shape[d]);
        o += (size_t)snprintf(h + o, cap - o, "],\"data_offsets\":[%lld,%lld]}", e->begin, e->end);
    }
    snprintf(h + o, cap - o, "}");
    return h;
}

/* header length (0 = the real one) | header | data of the entries in order
 * (`gap` extra zero bytes after entry `gap_after`, -1 for none) */
static void write_st(const char *path, const tensors *t, const char *header, uint64_t hl_override, int gap_after,
                     size_t gap)
{
    size_t hl = strlen(header), total = 8 + hl + gap;
    for (int i = 0; i < t->n; i++)
        total += t->e[i].nbytes;
    unsigned char *buf = calloc(1, total);
    uint64_t v = hl_override ? hl_override : hl;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(v >> (8 * i));
    memcpy(buf + 8, header, hl);
    size_t o = 8 + hl;
    for (int i = 0; i < t->n; i++) {
        memcpy(buf + o, t->e[i].bytes, t->e[i].nbytes);
        o += t->e[i].nbytes;
        if (i == gap_after)
            o += gap;
    }
    write_all(path, buf, total);
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* Cases                                                                      */
/* ------------------------------------------------------------------------ */

static char good_dir[2048], work_dir[2048];
static unsigned char *good_file, *good_config, *good_sched;
static size_t good_len, config_len, sched_len;

/* A fresh model folder named `name`: the good configs; returns the path of
 * its safetensors file (to be written by the caller). */
static const char *folder(const char *name, char *st_path, size_t len, char *dir, size_t dirlen)
{
    snprintf(dir, dirlen, "%s/%s", work_dir, name);
    mkdir(dir, 0755);
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_all(p, good_config, config_len);
    if (good_sched) {
        snprintf(p, sizeof p, "%s/scheduler_config.json", dir);
        write_all(p, good_sched, sched_len);
    }
    snprintf(st_path, len, "%s/diffusion_pytorch_model.safetensors", dir);
    return st_path;
}

static void expect(const char *dir, const char *what, ddpm_status want, const char *needle)
{
    char err[1024] = "";
    ddpm_model *m = NULL;
    ddpm_status s = ddpm_model_load(dir, &m, err, sizeof err);
    cases++;
    printf("%-28s %-28s %s\n", what, ddpm_status_name(s), err);
    CHECK(s == want, "%s: status %s, expected %s", what, ddpm_status_name(s), ddpm_status_name(want));
    CHECK(s == DDPM_OK || m == NULL, "%s: model returned on failure", what);
    if (needle)
        CHECK(strstr(err, needle) != NULL, "%s: message lacks \"%s\"", what, needle);
    if (want != DDPM_OK)
        CHECK(strlen(err) > 10 && !strchr(err, '\n'), "%s: message is not one clear line", what);
    ddpm_model_free(m);
}

/* Rewrite the good tensors with one change applied by `edit`. */
typedef void (*edit_fn)(tensors *t);

static void tensor_case(const char *name, edit_fn edit, ddpm_status want, const char *needle)
{
    char st[4096], dir[4096];
    static tensors t;
    parse(good_file, good_len, &t);
    layout(&t);
    if (edit)
        edit(&t);
    folder(name, st, sizeof st, dir, sizeof dir);
    char *h = header_of(&t);
    write_st(st, &t, h, 0, -1, 0);
    free(h);
    expect(dir, name, want, needle);
}

static const char *victim = "mid_block.resnets.0.conv1.bias";

static void e_missing(tensors *t)
{
    int i = find(t, victim);
    memmove(&t->e[i], &t->e[i + 1], (size_t)(t->n - i - 1) * sizeof t->e[0]);
    t->n--;
    layout(t);
}

static void e_unexpected(tensors *t)
{
    entry *e = &t->e[t->n++];
    *e = t->e[0];
    snprintf(e->name, sizeof e->name, "extra_block.conv.weight");
    layout(t);
}

static void e_shape(tensors *t)
{
    /* consistent with its bytes, but not what config.json says */
    entry *e = &t->e[find(t, "conv_in.weight")];
    e->shape[0] /= 2;
    e->nbytes /= 2;
    layout(t);
}

static void e_dtype_int(tensors *t)
{
    entry *e = &t->e[find(t, victim)];
    snprintf(e->dtype, sizeof e->dtype, strcmp(e->dtype, "F32") == 0 ? "I32" : "I16");
}

static void e_dtype_unknown(tensors *t) { snprintf(t->e[find(t, victim)].dtype, 16, "F33"); }

static void e_offsets_past_end(tensors *t)
{
    t->e[t->n - 1].end += 64;
}

static void e_overlap(tensors *t)
{
    /* the second tensor starts 4 bytes early (its size kept) */
    t->e[1].begin -= 4;
    t->e[1].end -= 4;
}

static void e_size(tensors *t)
{
    t->e[find(t, victim)].shape[0] += 1;        /* offsets not updated */
}

static void e_negative(tensors *t) { t->e[find(t, victim)].shape[0] = -1; }

static void e_duplicate(tensors *t)
{
    /* the same name twice, each with its own bytes */
    int i = find(t, victim);
    snprintf(t->e[i + 1].name, sizeof t->e[i + 1].name, "%s", victim);
}

static void e_both_spellings(tensors *t)
{
    /* a legacy file that also carries the current name of one tensor */
    for (int i = 0; i < t->n; i++) {
        char *q = strstr(t->e[i].name, ".query.weight");
        if (q) {
            entry *e = &t->e[t->n++];
            *e = t->e[i];
            char name[200];
            snprintf(name, sizeof name, "%.*s.to_q.weight", (int)(q - t->e[i].name), t->e[i].name);
            snprintf(e->name, sizeof e->name, "%.150s", name);
            layout(t);
            return;
        }
    }
}

static void raw_case(const char *name, const unsigned char *bytes, size_t len, ddpm_status want, const char *needle)
{
    char st[4096], dir[4096];
    folder(name, st, sizeof st, dir, sizeof dir);
    write_all(st, bytes, len);
    expect(dir, name, want, needle);
}

/* A header replaced by `json` (data unchanged). */
static void header_case(const char *name, const char *json, ddpm_status want, const char *needle)
{
    char st[4096], dir[4096];
    static tensors t;
    parse(good_file, good_len, &t);
    layout(&t);
    folder(name, st, sizeof st, dir, sizeof dir);
    write_st(st, &t, json, 0, -1, 0);
    expect(dir, name, want, needle);
}

static void config_case(const char *name, const char *file, const char *text, ddpm_status want, const char *needle)
{
    char st[4096], dir[4096], p[8192];
    folder(name, st, sizeof st, dir, sizeof dir);
    write_all(st, good_file, good_len);
    snprintf(p, sizeof p, "%s/%s", dir, file);
    if (text)
        write_all(p, text, strlen(text));
    else
        unlink(p);
    expect(dir, name, want, needle);
}

/* config.json with one key replaced (value is JSON text; NULL deletes it). */
static void config_key_case(const char *name, const char *key, const char *value, ddpm_status want,
                            const char *needle)
{
    cJSON *root = cJSON_ParseWithLength((const char *)good_config, config_len);
    cJSON_DeleteItemFromObjectCaseSensitive(root, key);
    if (value)
        cJSON_AddItemToObject(root, key, cJSON_Parse(value));
    char *text = cJSON_Print(root);
    config_case(name, "config.json", text, want, needle);
    free(text);
    cJSON_Delete(root);
}

/* ------------------------------------------------------------------------ */
/* Valid variants                                                            */
/* ------------------------------------------------------------------------ */

/* eps of the model in `dir` for one 3 x H x W image at timestep t. */
static float *forward_dir(const char *dir, const float *x, int H, int W, float t)
{
    char err[512];
    ddpm_model *m = NULL;
    ddpm_unet_plan *p = NULL;
    ddpm_status s = ddpm_model_load(dir, &m, err, sizeof err);
    CHECK(s == DDPM_OK, "load %s: %s", dir, err);
    if (s != DDPM_OK)
        return NULL;
    float *eps = malloc((size_t)3 * H * W * sizeof *eps);
    s = ddpm_unet_plan_create(m, 1, H, W, 0, &p, err, sizeof err);
    if (s == DDPM_OK)
        s = ddpm_unet_forward(p, x, &t, eps, err, sizeof err);
    CHECK(s == DDPM_OK, "forward %s: %s", dir, err);
    ddpm_unet_plan_free(p);
    ddpm_model_free(m);
    if (s != DDPM_OK) {
        free(eps);
        return NULL;
    }
    return eps;
}

static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        d = e > d || e != e ? e : d;
        mx = fabs(b[i]) > mx ? fabs(b[i]) : mx;
    }
    return d / (mx > 0 ? mx : 1);
}

static void e_attention_1x1(tensors *t)
{
    /* every attention linear weight [C, C] stored as [C, C, 1, 1] */
    static const char *const kinds[] = {".query.weight", ".key.weight", ".value.weight", ".proj_attn.weight",
                                        ".to_q.weight", ".to_k.weight", ".to_v.weight", ".to_out.0.weight"};
    for (int i = 0; i < t->n; i++)
        for (int k = 0; k < 8; k++)
            if (strstr(t->e[i].name, kinds[k]) && t->e[i].ndim == 2) {
                t->e[i].shape[2] = t->e[i].shape[3] = 1;
                t->e[i].ndim = 4;
            }
}

static void variants(void)
{
    char vec[4096], err[512];
    snprintf(vec, sizeof vec, "%s/vectors.safetensors", good_dir);
    float *x = NULL;
    int64_t shape[DDPM_MAX_DIMS];
    int nd = 0;
    if (ddpm_tensor_read(vec, "x", &x, shape, &nd, err, sizeof err) != DDPM_OK || nd != 4 || shape[1] != 3) {
        CHECK(0, "no usable x in %s: %s", vec, err);
        free(x);
        return;
    }
    const int H = (int)shape[2], W = (int)shape[3];
    const size_t n = (size_t)3 * H * W;
    float *ref = forward_dir(good_dir, x, H, W, 250.0f);

    tensor_case("attention-1x1-shapes", e_attention_1x1, DDPM_OK, NULL);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/attention-1x1-shapes", work_dir);
    float *eps = forward_dir(dir, x, H, W, 250.0f);
    if (ref && eps)
        CHECK(memcmp(ref, eps, n * sizeof *eps) == 0, "[C, C, 1, 1] attention weights change the output (%.3g)",
              rel_diff(eps, ref, n));
    free(eps);

    /* center_input_sample: the model sees 2 x' - 1, so x' = (x + 1) / 2
     * must give the original output (up to the rounding of x') */
    config_key_case("center-input-sample", "center_input_sample", "true", DDPM_OK, NULL);
    snprintf(dir, sizeof dir, "%s/center-input-sample", work_dir);
    float *xc = malloc(n * sizeof *xc);
    for (size_t i = 0; i < n; i++)
        xc[i] = (x[i] + 1.0f) * 0.5f;
    float *same = forward_dir(dir, xc, H, W, 250.0f);
    float *other = forward_dir(dir, x, H, W, 250.0f);
    if (ref && same && other) {
        double d = rel_diff(same, ref, n), o = rel_diff(other, ref, n);
        printf("center_input_sample: eps((x+1)/2) vs eps(x) of the original: %.3g; eps(x): %.3g\n", d, o);
        CHECK(d < 1e-5, "center_input_sample: %.3g", d);
        CHECK(o > 1e-2, "center_input_sample changes nothing (%.3g)", o);
    }
    free(same);
    free(other);
    free(xc);
    free(ref);
    free(x);
}

/* ------------------------------------------------------------------------ */
/* Tensor file I/O                                                           */
/* ------------------------------------------------------------------------ */

static void tensor_io(void)
{
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/io.safetensors", work_dir);
    float a[6] = {1.5f, -2.0f, 0.1f, 1e-30f, 65504.0f, -0.0f}, b = 42.0f;
    const char *names[3] = {"a", "scalar", "empty"};
    const float *data[3] = {a, &b, NULL};
    int64_t sa[2] = {2, 3}, se[2] = {0, 4};
    const int64_t *shapes[3] = {sa, NULL, se};
    int ndims[3] = {2, 0, 2};
    ddpm_status s = ddpm_tensor_write(path, 3, names, data, shapes, ndims, err, sizeof err);
    CHECK(s == DDPM_OK, "tensor_write: %s", err);

    float *r = NULL;
    int64_t shape[DDPM_MAX_DIMS];
    int nd = -1;
    s = ddpm_tensor_read(path, "a", &r, shape, &nd, err, sizeof err);
    CHECK(s == DDPM_OK && nd == 2 && shape[0] == 2 && shape[1] == 3 && memcmp(r, a, sizeof a) == 0,
          "round trip of 'a': %s", err);
    free(r);
    s = ddpm_tensor_read(path, "scalar", &r, shape, &nd, err, sizeof err);
    CHECK(s == DDPM_OK && nd == 0 && r[0] == 42.0f, "round trip of a scalar: %s", err);
    free(r);
    s = ddpm_tensor_read(path, "empty", &r, shape, &nd, err, sizeof err);
    CHECK(s == DDPM_OK && nd == 2 && shape[0] == 0 && shape[1] == 4, "round trip of an empty tensor: %s", err);
    free(r);
    r = NULL;
    s = ddpm_tensor_read(path, "nope", &r, shape, &nd, err, sizeof err);
    CHECK(s == DDPM_ERR_ARGUMENT && r == NULL && strstr(err, "nope"), "missing name: %s", err);
    printf("tensor_read of a missing name: %s\n", err);
    s = ddpm_tensor_write(path, 2, (const char *[]){"x", "x"}, data, shapes, ndims, err, sizeof err);
    CHECK(s == DDPM_ERR_ARGUMENT, "duplicate names accepted by tensor_write");
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.safetensors", work_dir);
    s = ddpm_tensor_write(bad, 1, names, data, shapes, ndims, err, sizeof err);
    CHECK(s == DDPM_ERR_IO, "write into a missing directory gave %s", ddpm_status_name(s));

    /* every readable dtype, with values whose float32 is known exactly */
    static const unsigned char f16[] = {0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0x00, 0x7c, 0xff, 0x7b, 0x00, 0x80};
    static const float f16_want[] = {1.0f, -2.0f, 5.9604644775390625e-8f, INFINITY, 65504.0f, -0.0f};
    static const unsigned char bf16[] = {0x80, 0x3f, 0x49, 0x40, 0x80, 0xff};
    static const float bf16_want[] = {1.0f, 3.140625f, -INFINITY};
    const char *hdr =
        "{\"h\":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[0,12]},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[12,18]},"
        "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[18,26]},"
        "\"l\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[26,34]},"
        "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[34,38]},"
        "\"u\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[38,40]}}";
    size_t hl = strlen(hdr);
    unsigned char file[1024] = {0};
    for (int i = 0; i < 8; i++)
        file[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(file + 8, hdr, hl);
    unsigned char *d = file + 8 + hl;
    memcpy(d, f16, 12);
    memcpy(d + 12, bf16, 6);
    double dv = 0.1;
    memcpy(d + 18, &dv, 8);
    int64_t lv = -5;
    memcpy(d + 26, &lv, 8);
    int32_t iv = 7;
    memcpy(d + 34, &iv, 4);
    snprintf(path, sizeof path, "%s/dtypes.safetensors", work_dir);
    write_all(path, file, 8 + hl + 40);
    s = ddpm_tensor_read(path, "h", &r, shape, &nd, err, sizeof err);
    CHECK(s == DDPM_OK && memcmp(r, f16_want, sizeof f16_want) == 0, "F16 conversion: %s", err);
    free(r);
    s = ddpm_tensor_read(path, "b", &r, shape, &nd, err, sizeof err);
    CHECK(s == DDPM_OK && memcmp(r, bf16_want, sizeof bf16_want) == 0, "BF16 conversion: %s", err);
    free(r);
    s = ddpm_tensor_read(path, "d", &r, shape, &nd, err, sizeof err);
    CHECK(s == DDPM_OK && r[0] == 0.1f, "F64 conversion: %s", err);
    free(r);
    s = ddpm_tensor_read(path, "l", &r, shape, &nd, err, sizeof err);
    CHECK(s == DDPM_OK && r[0] == -5.0f, "I64 conversion: %s", err);
    free(r);
    s = ddpm_tensor_read(path, "i", &r, shape, &nd, err, sizeof err);
    CHECK(s == DDPM_OK && r[0] == 7.0f, "I32 conversion: %s", err);
    free(r);
    r = NULL;
    s = ddpm_tensor_read(path, "u", &r, shape, &nd, err, sizeof err);
    CHECK(s == DDPM_ERR_UNSUPPORTED && r == NULL, "U8 read as float gave %s", ddpm_status_name(s));
    printf("tensor_read of U8: %s\n", err);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s GOOD_MODEL_DIR SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    snprintf(good_dir, sizeof good_dir, "%s", argv[1]);
    snprintf(work_dir, sizeof work_dir, "%s/malformed-XXXXXX", argv[2]);
    if (!mkdtemp(work_dir)) {
        printf("FAIL cannot create a directory under %s\n", argv[2]);
        return 1;
    }
    char p[4096];
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model.safetensors", good_dir);
    good_file = read_all(p, &good_len);
    snprintf(p, sizeof p, "%s/config.json", good_dir);
    good_config = read_all(p, &config_len);
    snprintf(p, sizeof p, "%s/scheduler_config.json", good_dir);
    good_sched = read_all(p, &sched_len);
    if (!good_file || !good_config) {
        printf("FAIL cannot read the good model in %s\n", good_dir);
        return 1;
    }

    /* controls: the original, and our own rewrite of it, both load */
    raw_case("control-copy", good_file, good_len, DDPM_OK, NULL);
    tensor_case("control-rewrite", NULL, DDPM_OK, NULL);

    /* byte-level damage */
    raw_case("truncated-data", good_file, good_len * 2 / 3, DDPM_ERR_FORMAT, "past the end");
    raw_case("truncated-to-5-bytes", good_file, 5, DDPM_ERR_FORMAT, "too short");
    raw_case("empty-file", good_file, 0, DDPM_ERR_FORMAT, "too short");
    {
        unsigned char *b = malloc(good_len);
        memcpy(b, good_file, good_len);
        uint64_t v = (uint64_t)good_len;                /* header "longer" than the file */
        for (int i = 0; i < 8; i++)
            b[i] = (unsigned char)(v >> (8 * i));
        raw_case("header-length-past-eof", b, good_len, DDPM_ERR_FORMAT, "header length");
        v = 200000000;                                  /* over the 100 MB limit */
        for (int i = 0; i < 8; i++)
            b[i] = (unsigned char)(v >> (8 * i));
        raw_case("header-length-200MB", b, good_len, DDPM_ERR_FORMAT, "limit");
        v = 0xffffffffffffffffull;                      /* overflows any addition */
        for (int i = 0; i < 8; i++)
            b[i] = (unsigned char)(v >> (8 * i));
        raw_case("header-length-2^64-1", b, good_len, DDPM_ERR_FORMAT, "header length");
        memcpy(b, good_file, 8);
        b[0] = (unsigned char)(b[0] - 7);               /* header cut short: JSON breaks */
        raw_case("header-length-short", b, good_len, DDPM_ERR_FORMAT, "JSON");
        free(b);
    }

    /* headers that are not what they should be */
    header_case("garbage-json", "{\"conv_in.weight\": {\"dtype\": \"F32\", \"shape\": [8, 3", DDPM_ERR_FORMAT,
                "not valid JSON");
    header_case("json-not-object", "[1, 2, 3]", DDPM_ERR_FORMAT, "not an object");
    header_case("json-trailing-bytes", "{} {}", DDPM_ERR_FORMAT, "trailing");
    header_case("header-not-utf8", "{\"\xff\xfe\": 1}", DDPM_ERR_FORMAT, "UTF-8");
    header_case("entry-not-object", "{\"conv_in.weight\": 5}", DDPM_ERR_FORMAT, "conv_in.weight");
    header_case("offsets-not-integers",
                "{\"conv_in.bias\": {\"dtype\": \"F32\", \"shape\": [8], \"data_offsets\": [0.5, 32.5]}}",
                DDPM_ERR_FORMAT, "data_offsets");
    header_case("huge-shape",
                "{\"conv_in.bias\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], "
                "\"data_offsets\": [0, 32]}}",
                DDPM_ERR_FORMAT, "conv_in.bias");

    /* tensor tables that break the safetensors rules */
    tensor_case("offsets-past-end", e_offsets_past_end, DDPM_ERR_FORMAT, "past the end");
    tensor_case("overlapping-tensors", e_overlap, DDPM_ERR_FORMAT, "overlap");
    tensor_case("size-vs-shape", e_size, DDPM_ERR_FORMAT, victim);
    tensor_case("negative-shape", e_negative, DDPM_ERR_FORMAT, victim);
    tensor_case("unknown-dtype", e_dtype_unknown, DDPM_ERR_FORMAT, "F33");
    tensor_case("duplicate-name", e_duplicate, DDPM_ERR_FORMAT, "twice");
    {
        char st[4096], dir[4096];
        static tensors t;
        parse(good_file, good_len, &t);
        layout(&t);
        for (int i = 1; i < t.n; i++) {            /* 8 bytes of nothing after tensor 0 */
            t.e[i].begin += 8;
            t.e[i].end += 8;
        }
        folder("gap-in-data", st, sizeof st, dir, sizeof dir);
        char *h = header_of(&t);
        write_st(st, &t, h, 0, 0, 8);
        free(h);
        expect(dir, "gap-in-data", DDPM_ERR_FORMAT, "gap");
        parse(good_file, good_len, &t);
        layout(&t);
        folder("bytes-after-last", st, sizeof st, dir, sizeof dir);
        h = header_of(&t);
        write_st(st, &t, h, 0, t.n - 1, 16);
        free(h);
        expect(dir, "bytes-after-last", DDPM_ERR_FORMAT, "after the last tensor");
    }

    /* valid safetensors, wrong for this config */
    tensor_case("wrong-dtype", e_dtype_int, DDPM_ERR_UNSUPPORTED, victim);
    tensor_case("missing-tensor", e_missing, DDPM_ERR_MISMATCH, victim);
    tensor_case("unexpected-tensor", e_unexpected, DDPM_ERR_MISMATCH, "extra_block.conv.weight");
    tensor_case("wrong-shape", e_shape, DDPM_ERR_MISMATCH, "conv_in.weight");
    if (strstr((const char *)good_file + 8, ".query.weight"))
        tensor_case("both-attention-spellings", e_both_spellings, DDPM_ERR_MISMATCH, "twice");

    /* the configs */
    config_case("config-garbage", "config.json", "{\"block_out_channels\": [8, 16", DDPM_ERR_FORMAT, "JSON");
    config_case("config-missing", "config.json", NULL, DDPM_ERR_IO, "config.json");
    config_case("weights-missing", "diffusion_pytorch_model.safetensors", NULL, DDPM_ERR_IO, "safetensors");
    config_case("scheduler-garbage", "scheduler_config.json", "{\"beta_start\": ", DDPM_ERR_FORMAT, NULL);
    config_key_case("config-more-layers", "layers_per_block", "2", DDPM_ERR_MISMATCH, "missing tensor");
    config_key_case("config-wider", "block_out_channels", "[16, 16, 16]", DDPM_ERR_MISMATCH, "shape");
    config_key_case("config-type", "layers_per_block", "\"1\"", DDPM_ERR_FORMAT, "layers_per_block");
    config_key_case("config-block-type", "down_block_types",
                    "[\"DownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"]", DDPM_ERR_UNSUPPORTED,
                    "CrossAttnDownBlock2D");
    config_key_case("config-block-count", "up_block_types", "[\"UpBlock2D\", \"UpBlock2D\"]", DDPM_ERR_FORMAT,
                    "up_block_types");
    config_key_case("config-padding-2", "downsample_padding", "2", DDPM_ERR_UNSUPPORTED, "downsample_padding");
    config_key_case("config-groups", "norm_num_groups", "3", DDPM_ERR_FORMAT, "norm_num_groups");
    config_key_case("config-fourier", "time_embedding_type", "\"fourier\"", DDPM_ERR_UNSUPPORTED, "fourier");
    config_key_case("config-class-embed", "class_embed_type", "\"timestep\"", DDPM_ERR_UNSUPPORTED,
                    "class_embed_type");
    config_key_case("config-act", "act_fn", "\"gelu\"", DDPM_ERR_UNSUPPORTED, "gelu");
    config_key_case("config-head-dim", "attention_head_dim", "3", DDPM_ERR_UNSUPPORTED, "attention_head_dim");
    config_key_case("config-eps", "norm_eps", "-1", DDPM_ERR_FORMAT, "norm_eps");
    config_key_case("config-class", "_class_name", "\"UNet2DConditionModel\"", DDPM_ERR_UNSUPPORTED,
                    "UNet2DConditionModel");
    config_key_case("config-no-mid-block", "mid_block_type", "null", DDPM_ERR_UNSUPPORTED, "mid_block_type");
    config_key_case("config-levels-9", "block_out_channels", "[8,8,8,8,8,8,8,8,8]", DDPM_ERR_UNSUPPORTED,
                    "block_out_channels");

    variants();
    tensor_io();

    printf("%d cases, %s\n", cases, failures ? "FAILED" : "ok");
    if (!failures)                       /* keep the folders of a failure for a look */
        nftw(work_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failures ? 1 : 0;
}
