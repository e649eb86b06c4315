/* vector_file.h: a minimal reader for the core tests' reference files
 * (tools/make_scheduler_vectors.py, tools/make_solver_vectors.py): F32
 * tensors of a safetensors file and the JSON strings of its __metadata__,
 * plus float comparisons.  Static functions, one copy per test program. */
#ifndef DDPM_TEST_VECTOR_FILE_H
#define DDPM_TEST_VECTOR_FILE_H

#include "check.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------ */
/* A minimal safetensors reader (F32 only):                                   */
/* u64 little-endian header length, JSON header, then the data block.         */
/* ------------------------------------------------------------------------ */

typedef struct {
    unsigned char *bytes;
    size_t size;
    cJSON *header;
    const unsigned char *data;
    size_t data_size;
} vector_file;

static int vectors_open(vector_file *v, const char *path)
{
    memset(v, 0, sizeof *v);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        return 0;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size < 8 || (v->bytes = malloc((size_t)size)) == NULL || fread(v->bytes, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        fprintf(stderr, "cannot read %s\n", path);
        return 0;
    }
    fclose(f);
    v->size = (size_t)size;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | v->bytes[i];
    if (n > v->size - 8) {
        fprintf(stderr, "%s: bad header length\n", path);
        return 0;
    }
    v->header = cJSON_ParseWithLength((const char *)v->bytes + 8, (size_t)n);
    v->data = v->bytes + 8 + n;
    v->data_size = v->size - 8 - (size_t)n;
    return v->header != NULL;
}

static void vectors_close(vector_file *v)
{
    cJSON_Delete(v->header);
    free(v->bytes);
}

/* Tensor `name` as floats (a malloc'ed copy; the file is little-endian like
 * the machines we build on); *count receives the number of values. */
static float *vectors_get(const vector_file *v, const char *name, size_t *count)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(v->header, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    if (!cJSON_IsString(dtype) || strcmp(dtype->valuestring, "F32") != 0 || cJSON_GetArraySize(offsets) != 2) {
        CHECK(0, "tensor %s missing or not F32", name);
        return NULL;
    }
    double b = cJSON_GetArrayItem(offsets, 0)->valuedouble, e = cJSON_GetArrayItem(offsets, 1)->valuedouble;
    if (!(b >= 0 && e >= b && e <= (double)v->data_size) || fmod(e - b, 4) != 0) {
        CHECK(0, "tensor %s: bad offsets", name);
        return NULL;
    }
    size_t n = (size_t)(e - b) / 4;
    float *out = malloc(n * sizeof(float) + 1);
    if (out != NULL)
        memcpy(out, v->data + (size_t)b, n * sizeof(float));
    *count = n;
    return out;
}

/* A JSON document stored as a string in the header's __metadata__. */
static cJSON *vectors_metadata_json(const vector_file *v, const char *key)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(v->header, "__metadata__");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(meta, key);
    if (!cJSON_IsString(text)) {
        CHECK(0, "metadata %s missing", key);
        return NULL;
    }
    return cJSON_Parse(text->valuestring);
}

static const char *json_string(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double json_number(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : (cJSON_IsTrue(v) ? 1 : 0);
}

/* Max ulp distance between two arrays, and how many entries differ. */
static int64_t compare_ulp(const float *got, const float *want, size_t n, size_t *differ)
{
    int64_t worst = 0;
    *differ = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t d = ulp_distance(got[i], want[i]);
        if (d > 0)
            (*differ)++;
        if (d > worst)
            worst = d;
    }
    return worst;
}

#endif
