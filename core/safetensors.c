/* safetensors.c: reading (mmap + validation) and writing safetensors files.
 *
 * The format (spec 4.1, huggingface/safetensors README):
 *
 *     u64 N (little-endian) | N bytes of JSON header | data buffer
 *
 * and the header maps each tensor name to its dtype, shape and the byte range
 * [begin, end) it occupies in the data buffer.  A valid file's tensors, sorted
 * by begin, tile the data buffer exactly: no gaps, no overlaps, nothing after
 * the last one.  Everything is checked here, with overflow-safe arithmetic,
 * before any tensor is read.
 */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#define ST_MAX_HEADER 100000000ull            /* MAX_HEADER_SIZE of the reference reader */
#define ST_MAX_INTEGER 9007199254740992.0     /* 2^53: JSON numbers above are not exact */

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
/* dtypes                                                                    */
/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    int bits;
} dtype_info[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 8},        [ST_U8] = {"U8", 8},          [ST_I8] = {"I8", 8},
    [ST_I16] = {"I16", 16},         [ST_U16] = {"U16", 16},       [ST_F16] = {"F16", 16},
    [ST_BF16] = {"BF16", 16},       [ST_I32] = {"I32", 32},       [ST_U32] = {"U32", 32},
    [ST_F32] = {"F32", 32},         [ST_F64] = {"F64", 64},       [ST_I64] = {"I64", 64},
    [ST_U64] = {"U64", 64},         [ST_C64] = {"C64", 64},
    [ST_F8_E5M2] = {"F8_E5M2", 8},  [ST_F8_E4M3] = {"F8_E4M3", 8}, [ST_F8_E8M0] = {"F8_E8M0", 8},
    [ST_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8}, [ST_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [ST_F4] = {"F4", 4},            [ST_F6_E2M3] = {"F6_E2M3", 6}, [ST_F6_E3M2] = {"F6_E3M2", 6},
};

const char *st_dtype_name(st_dtype d)
{
    return (d >= 0 && d < ST_DTYPE_COUNT) ? dtype_info[d].name : "?";
}

static int dtype_from_name(const char *s)
{
    for (int d = 0; d < ST_DTYPE_COUNT; d++)
        if (strcmp(s, dtype_info[d].name) == 0)
            return d;
    return -1;
}

/* Little-endian loads that do not care about alignment or host byte order. */
static uint16_t load_le16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t load_le64(const unsigned char *p) { return load_le32(p) | ((uint64_t)load_le32(p + 4) << 32); }

static float bits_to_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE 754 binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
float st_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in float */
        float v = (float)mant * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (exp == 31)                                    /* Inf or NaN */
        return bits_to_float(sign | 0x7f800000u | (mant << 13));
    return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

/* bfloat16 is the top half of a float32. */
float st_bf16_to_f32(uint16_t h)
{
    return bits_to_float((uint32_t)h << 16);
}

/* ------------------------------------------------------------------------ */
/* Header validation                                                         */
/* ------------------------------------------------------------------------ */

/* RFC 3629 UTF-8 (no overlongs, no surrogates, at most U+10FFFF).  Returns the
 * offset of the first bad byte or -1. */
static long utf8_check(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xe0) == 0xc0) { len = 2; min = 0x80; c &= 0x1f; }
        else if ((c & 0xf0) == 0xe0) { len = 3; min = 0x800; c &= 0x0f; }
        else if ((c & 0xf8) == 0xf0) { len = 4; min = 0x10000; c &= 0x07; }
        else return (long)i;
        if (n - i < len)
            return (long)i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return (long)i;
            c = (c << 6) | (s[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return (long)i;
        i += len;
    }
    return -1;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > ST_MAX_INTEGER || d != floor(d))
        return 0;
    *out = (uint64_t)d;
    return 1;
}

static void format_shape(const st_tensor *t, char *buf, size_t len)
{
    size_t o = 0;
    o += (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < t->ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (o < len)
        snprintf(buf + o, len - o, "]");
}

static ddpm_status parse_tensor(const cJSON *item, uint64_t data_len, st_tensor *t, char *err, size_t errlen)
{
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return fail(err, errlen, DDPM_ERR_FORMAT, "tensor '%s': header entry is not a JSON object", name);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    if (!cJSON_IsString(dt))
        return fail(err, errlen, DDPM_ERR_FORMAT, "tensor '%s': missing or non-string \"dtype\"", name);
    int d = dtype_from_name(dt->valuestring);
    if (d < 0)
        return fail(err, errlen, DDPM_ERR_FORMAT, "tensor '%s': unknown dtype '%.32s'", name, dt->valuestring);
    t->dtype = (st_dtype)d;

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    if (!cJSON_IsArray(shape))
        return fail(err, errlen, DDPM_ERR_FORMAT, "tensor '%s': missing or non-array \"shape\"", name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > DDPM_MAX_DIMS)
        return fail(err, errlen, DDPM_ERR_UNSUPPORTED, "tensor '%s': %d dimensions (at most %d supported)",
                    name, ndim, DDPM_MAX_DIMS);
    t->ndim = ndim;
    /* numel may not exceed the data buffer's bit count, which bounds every
     * product below 2^61 and so keeps the arithmetic exact. */
    uint64_t numel = 1, limit = data_len < (1ull << 58) ? data_len * 8 + 1 : (1ull << 61);
    int i = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, shape) {
        uint64_t v;
        if (!json_uint(dim, &v))
            return fail(err, errlen, DDPM_ERR_FORMAT, "tensor '%s': shape entry %d is not a non-negative integer",
                        name, i);
        t->shape[i++] = (int64_t)v;
        if (v != 0 && numel > limit / v)
            numel = limit + 1;                  /* too big: reported below */
        else
            numel *= v;
    }
    t->numel = numel;

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    uint64_t begin, end;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(cJSON_GetArrayItem(off, 0), &begin) ||
        !json_uint(cJSON_GetArrayItem(off, 1), &end))
        return fail(err, errlen, DDPM_ERR_FORMAT,
                    "tensor '%s': \"data_offsets\" must be two non-negative integers [begin, end]", name);
    if (begin > end)
        return fail(err, errlen, DDPM_ERR_FORMAT, "tensor '%s': data_offsets [%llu, %llu] end before they begin",
                    name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_len)
        return fail(err, errlen, DDPM_ERR_FORMAT,
                    "tensor '%s': data_offsets [%llu, %llu] run past the end of the %llu-byte data buffer", name,
                    (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_len);
    t->begin = begin;
    t->end = end;

    char sh[160];
    format_shape(t, sh, sizeof sh);
    uint64_t bits = numel > limit ? 0 : numel * (uint64_t)dtype_info[d].bits;
    if (numel > limit || bits % 8 != 0 || bits / 8 != end - begin)
        return fail(err, errlen, DDPM_ERR_FORMAT,
                    "tensor '%s': data_offsets span %llu bytes but shape %s of %s needs %s%llu", name,
                    (unsigned long long)(end - begin), sh, dtype_info[d].name,
                    numel > limit ? "more than " : "", (unsigned long long)(numel > limit ? data_len : bits / 8));
    return DDPM_OK;
}

static int cmp_by_name(const void *a, const void *b)
{
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_by_offset(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* Sorted by begin, each tensor must start where the previous one ended, and
 * the last must end where the buffer does. */
static ddpm_status check_tiling(const st_file *f, uint64_t data_len, char *err, size_t errlen)
{
    if (f->count == 0)
        return data_len == 0 ? DDPM_OK
                             : fail(err, errlen, DDPM_ERR_FORMAT, "no tensors, but a %llu-byte data buffer",
                                    (unsigned long long)data_len);
    const st_tensor **order = malloc((size_t)f->count * sizeof *order);
    if (!order)
        return fail(err, errlen, DDPM_ERR_MEMORY, "out of memory reading the safetensors header");
    for (int i = 0; i < f->count; i++)
        order[i] = &f->tensors[i];
    qsort(order, (size_t)f->count, sizeof *order, cmp_by_offset);
    ddpm_status s = DDPM_OK;
    uint64_t pos = 0;
    for (int i = 0; i < f->count && s == DDPM_OK; i++) {
        const st_tensor *t = order[i];
        if (t->begin < pos)
            s = fail(err, errlen, DDPM_ERR_FORMAT, "tensors '%s' and '%s' overlap in the data buffer (byte %llu)",
                     order[i - 1]->name, t->name, (unsigned long long)t->begin);
        else if (t->begin > pos)
            s = fail(err, errlen, DDPM_ERR_FORMAT, "gap of %llu bytes in the data buffer before tensor '%s'",
                     (unsigned long long)(t->begin - pos), t->name);
        pos = t->end;
    }
    if (s == DDPM_OK && pos != data_len)
        s = fail(err, errlen, DDPM_ERR_FORMAT, "%llu bytes after the last tensor at the end of the data buffer",
                 (unsigned long long)(data_len - pos));
    free(order);
    return s;
}

static void free_tensors(st_file *f)
{
    for (int i = 0; i < f->count; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    f->tensors = NULL;
    f->count = 0;
}

ddpm_status st_parse_header(const char *header, size_t header_len, uint64_t data_len, st_file *f,
                            char *err, size_t errlen)
{
    f->tensors = NULL;
    f->count = 0;
    long bad = utf8_check((const unsigned char *)header, header_len);
    if (bad >= 0)
        return fail(err, errlen, DDPM_ERR_FORMAT, "header is not valid UTF-8 (byte %ld)", bad);

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(header, header_len, &end, 0);
    if (!root) {
        long at = end ? (long)(end - header) : 0;
        return fail(err, errlen, DDPM_ERR_FORMAT, "header is not valid JSON (byte %ld of %zu)", at, header_len);
    }
    /* Writers pad the header with spaces; nothing else may follow the object. */
    for (const char *p = end; p < header + header_len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return fail(err, errlen, DDPM_ERR_FORMAT, "header has trailing bytes after its JSON object (byte %ld)",
                        (long)(p - header));
        }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fail(err, errlen, DDPM_ERR_FORMAT, "header is JSON but not an object");
    }

    int n = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) n++;
    f->tensors = calloc((size_t)(n ? n : 1), sizeof *f->tensors);
    if (!f->tensors) {
        cJSON_Delete(root);
        return fail(err, errlen, DDPM_ERR_MEMORY, "out of memory reading the safetensors header");
    }

    ddpm_status s = DDPM_OK;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") == 0) {
            /* string -> string map, informational ({"format": "pt"}) */
            const cJSON *kv;
            if (!cJSON_IsObject(item)) {
                s = fail(err, errlen, DDPM_ERR_FORMAT, "__metadata__ is not a JSON object");
                break;
            }
            cJSON_ArrayForEach(kv, item) if (!cJSON_IsString(kv)) {
                s = fail(err, errlen, DDPM_ERR_FORMAT, "__metadata__ entry '%s' is not a string", kv->string);
                break;
            }
            if (s != DDPM_OK)
                break;
            continue;
        }
        st_tensor *t = &f->tensors[f->count];
        s = parse_tensor(item, data_len, t, err, errlen);
        if (s != DDPM_OK)
            break;
        t->name = strdup(item->string);
        if (!t->name) {
            s = fail(err, errlen, DDPM_ERR_MEMORY, "out of memory reading the safetensors header");
            break;
        }
        f->count++;
    }
    cJSON_Delete(root);

    if (s == DDPM_OK) {
        qsort(f->tensors, (size_t)f->count, sizeof *f->tensors, cmp_by_name);
        for (int i = 1; i < f->count && s == DDPM_OK; i++)
            if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0)
                s = fail(err, errlen, DDPM_ERR_FORMAT, "tensor name '%s' appears twice in the header",
                         f->tensors[i].name);
    }
    if (s == DDPM_OK)
        s = check_tiling(f, data_len, err, errlen);
    if (s != DDPM_OK)
        free_tensors(f);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Opening                                                                   */
/* ------------------------------------------------------------------------ */

ddpm_status st_open(const char *path, st_file *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, errlen, DDPM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, errlen, DDPM_ERR_IO, "%s is not a regular file", path);
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < 8) {
        close(fd);
        return fail(err, errlen, DDPM_ERR_FORMAT, "%s: %llu bytes, too short for the 8-byte header length", path,
                    (unsigned long long)size);
    }
    if (size > (uint64_t)SIZE_MAX) {
        close(fd);
        return fail(err, errlen, DDPM_ERR_MEMORY, "%s: too large to map", path);
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED)
        return fail(err, errlen, DDPM_ERR_IO, "cannot map %s: %s", path, strerror(map_errno));

    const unsigned char *bytes = map;
    uint64_t header_len = load_le64(bytes);
    ddpm_status s = DDPM_OK;
    if (header_len > ST_MAX_HEADER)
        s = fail(err, errlen, DDPM_ERR_FORMAT, "%s: header length %llu exceeds the limit of %llu bytes", path,
                 (unsigned long long)header_len, ST_MAX_HEADER);
    else if (header_len > size - 8)
        s = fail(err, errlen, DDPM_ERR_FORMAT, "%s: header length %llu runs past the end of the %llu-byte file", path,
                 (unsigned long long)header_len, (unsigned long long)size);
    if (s == DDPM_OK) {
        char msg[384];
        s = st_parse_header((const char *)bytes + 8, (size_t)header_len, size - 8 - header_len, f, msg, sizeof msg);
        if (s != DDPM_OK)
            fail(err, errlen, s, "%s: %s", path, msg);
    }
    if (s != DDPM_OK) {
        munmap(map, (size_t)size);
        memset(f, 0, sizeof *f);
        return s;
    }
    f->map = map;
    f->map_len = (size_t)size;
    f->data = bytes + 8 + header_len;
    f->data_len = size - 8 - header_len;
    return DDPM_OK;
}

void st_close(st_file *f)
{
    if (!f)
        return;
    free_tensors(f);
    if (f->map)
        munmap(f->map, f->map_len);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    st_tensor key;
    key.name = (char *)name;
    return f->count ? bsearch(&key, f->tensors, (size_t)f->count, sizeof *f->tensors, cmp_by_name) : NULL;
}

ddpm_status st_read_f32(const st_file *f, const st_tensor *t, float *out, char *err, size_t errlen)
{
    const unsigned char *p = f->data + t->begin;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case ST_F32:
        for (size_t i = 0; i < n; i++)
            out[i] = bits_to_float(load_le32(p + 4 * i));
        return DDPM_OK;
    case ST_F16:
        for (size_t i = 0; i < n; i++)
            out[i] = st_f16_to_f32(load_le16(p + 2 * i));
        return DDPM_OK;
    case ST_BF16:
        for (size_t i = 0; i < n; i++)
            out[i] = st_bf16_to_f32(load_le16(p + 2 * i));
        return DDPM_OK;
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            uint64_t u = load_le64(p + 8 * i);
            double d;
            memcpy(&d, &u, 8);
            out[i] = (float)d;
        }
        return DDPM_OK;
    case ST_I64:
        for (size_t i = 0; i < n; i++)
            out[i] = (float)(int64_t)load_le64(p + 8 * i);
        return DDPM_OK;
    case ST_I32:
        for (size_t i = 0; i < n; i++)
            out[i] = (float)(int32_t)load_le32(p + 4 * i);
        return DDPM_OK;
    default:
        return fail(err, errlen, DDPM_ERR_UNSUPPORTED, "tensor '%s': dtype %s cannot be read as float", t->name,
                    st_dtype_name(t->dtype));
    }
}

/* ------------------------------------------------------------------------ */
/* The public tensor I/O of ddpm.h                                           */
/* ------------------------------------------------------------------------ */

ddpm_status ddpm_tensor_read(const char *path, const char *name, float **data,
                             int64_t shape[DDPM_MAX_DIMS], int *ndim, char *err, size_t errlen)
{
    if (!path || !name || !data || !shape || !ndim)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "ddpm_tensor_read: NULL argument");
    *data = NULL;
    st_file f;
    ddpm_status s = st_open(path, &f, err, errlen);
    if (s != DDPM_OK)
        return s;
    const st_tensor *t = st_find(&f, name);
    if (!t) {
        char names[160] = "";
        size_t o = 0;
        for (int i = 0; i < f.count && o + 1 < sizeof names; i++)
            o += (size_t)snprintf(names + o, sizeof names - o, "%s'%s'", i ? ", " : "", f.tensors[i].name);
        s = fail(err, errlen, DDPM_ERR_ARGUMENT, "%s has no tensor '%s' (it has %s%s)", path, name,
                 f.count ? names : "none", o + 1 >= sizeof names ? "..." : "");
        st_close(&f);
        return s;
    }
    if (t->numel > SIZE_MAX / sizeof(float)) {
        st_close(&f);
        return fail(err, errlen, DDPM_ERR_MEMORY, "tensor '%s' is too large", name);
    }
    float *buf = malloc(t->numel ? (size_t)t->numel * sizeof(float) : 1);
    if (!buf) {
        st_close(&f);
        return fail(err, errlen, DDPM_ERR_MEMORY, "out of memory reading tensor '%s'", name);
    }
    s = st_read_f32(&f, t, buf, err, errlen);
    if (s == DDPM_OK) {
        *ndim = t->ndim;
        for (int i = 0; i < DDPM_MAX_DIMS; i++)
            shape[i] = i < t->ndim ? t->shape[i] : 0;
        *data = buf;
    } else {
        free(buf);
    }
    st_close(&f);
    return s;
}

static void store_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* Header JSON for `count` F32 tensors laid out in order; *len excludes padding. */
static char *build_header(int count, const char *const *names, const int64_t *const *shapes, const int *ndims,
                          uint64_t *data_len, char *err, size_t errlen, ddpm_status *s)
{
    cJSON *root = cJSON_CreateObject();
    uint64_t pos = 0;
    *s = DDPM_OK;
    for (int i = 0; root && i < count && *s == DDPM_OK; i++) {
        uint64_t numel = 1;
        cJSON *t = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *off = cJSON_CreateArray();
        if (!t || !shape || !off) {
            cJSON_Delete(t);
            cJSON_Delete(shape);
            cJSON_Delete(off);
            *s = fail(err, errlen, DDPM_ERR_MEMORY, "out of memory writing a safetensors header");
            break;
        }
        for (int d = 0; d < ndims[i]; d++) {
            uint64_t v = (uint64_t)shapes[i][d];
            if (v != 0 && numel > (1ull << 50) / v)
                *s = fail(err, errlen, DDPM_ERR_ARGUMENT, "tensor '%s' is too large", names[i]);
            numel *= v;
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)v));
        }
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)pos));
        pos += numel * 4;
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)pos));
        cJSON_AddStringToObject(t, "dtype", "F32");
        cJSON_AddItemToObject(t, "shape", shape);
        cJSON_AddItemToObject(t, "data_offsets", off);
        cJSON_AddItemToObject(root, names[i], t);
    }
    char *text = root && *s == DDPM_OK ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (*s == DDPM_OK && !text)
        *s = fail(err, errlen, DDPM_ERR_MEMORY, "out of memory writing a safetensors header");
    *data_len = pos;
    return text;
}

ddpm_status ddpm_tensor_write(const char *path, int count, const char *const *names,
                              const float *const *data, const int64_t *const *shapes, const int *ndims,
                              char *err, size_t errlen)
{
    if (!path || count < 0 || (count > 0 && (!names || !data || !shapes || !ndims)))
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "ddpm_tensor_write: bad arguments");
    for (int i = 0; i < count; i++) {
        if (!names[i] || !names[i][0] || strcmp(names[i], "__metadata__") == 0)
            return fail(err, errlen, DDPM_ERR_ARGUMENT, "ddpm_tensor_write: tensor %d has an invalid name", i);
        if (utf8_check((const unsigned char *)names[i], strlen(names[i])) >= 0)
            return fail(err, errlen, DDPM_ERR_ARGUMENT, "ddpm_tensor_write: name of tensor %d is not UTF-8", i);
        if (ndims[i] < 0 || ndims[i] > DDPM_MAX_DIMS || (ndims[i] > 0 && !shapes[i]))
            return fail(err, errlen, DDPM_ERR_ARGUMENT, "ddpm_tensor_write: tensor '%s' has %d dimensions",
                        names[i], ndims[i]);
        int empty = 0;
        for (int d = 0; d < ndims[i]; d++) {
            if (shapes[i][d] < 0)
                return fail(err, errlen, DDPM_ERR_ARGUMENT, "ddpm_tensor_write: tensor '%s' has a negative size",
                            names[i]);
            empty |= shapes[i][d] == 0;
        }
        if (!empty && !data[i])
            return fail(err, errlen, DDPM_ERR_ARGUMENT, "ddpm_tensor_write: tensor '%s' has no data", names[i]);
        for (int j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return fail(err, errlen, DDPM_ERR_ARGUMENT, "ddpm_tensor_write: tensor name '%s' given twice",
                            names[i]);
    }

    ddpm_status s;
    uint64_t data_len;
    char *header = build_header(count, names, shapes, ndims, &data_len, err, errlen, &s);
    if (s != DDPM_OK) {
        free(header);
        return s;
    }
    size_t hlen = strlen(header);
    size_t padded = (hlen + 7) / 8 * 8;       /* 8-byte aligned data, as the reference writer does */

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) {
        free(header);
        return fail(err, errlen, DDPM_ERR_MEMORY, "out of memory");
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        s = fail(err, errlen, DDPM_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        free(header);
        return s;
    }
    fchmod(fd, 0644);
    FILE *fp = fdopen(fd, "wb");
    if (!fp) {
        close(fd);
        unlink(tmp);
        free(tmp);
        free(header);
        return fail(err, errlen, DDPM_ERR_IO, "cannot write %s", path);
    }

    int ok = 1;
    unsigned char len8[8];
    store_le32(len8, (uint32_t)padded);
    store_le32(len8 + 4, (uint32_t)((uint64_t)padded >> 32));
    ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(header, 1, hlen, fp) == hlen;
    for (size_t i = hlen; ok && i < padded; i++)
        ok = fputc(' ', fp) != EOF;
    free(header);

    unsigned char buf[4096];
    for (int i = 0; ok && i < count; i++) {
        size_t numel = 1;
        for (int d = 0; d < ndims[i]; d++)
            numel *= (size_t)shapes[i][d];
        for (size_t j = 0; ok && j < numel;) {
            size_t k = 0;
            for (; k < sizeof buf / 4 && j < numel; k++, j++) {
                uint32_t u;
                memcpy(&u, &data[i][j], 4);
                store_le32(buf + 4 * k, u);
            }
            ok = fwrite(buf, 4, k, fp) == k;
        }
    }
    if (fflush(fp) != 0)
        ok = 0;
    if (fclose(fp) != 0)
        ok = 0;
    if (ok && rename(tmp, path) != 0)
        ok = 0;
    if (!ok) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return fail(err, errlen, DDPM_ERR_IO, "cannot write %s: %s", path, e ? strerror(e) : "write failed");
    }
    free(tmp);
    return DDPM_OK;
}
