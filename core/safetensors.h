/* safetensors.h: reading and writing safetensors files (private to core/).
 *
 * A safetensors file is
 *
 *     [8 bytes]  N, the header length, unsigned 64-bit little-endian
 *     [N bytes]  a JSON object  name -> {"dtype", "shape", "data_offsets": [begin, end]}
 *     [rest]     the data buffer; offsets are relative to its first byte
 *
 * st_open maps the file and checks everything a corrupt or hostile file could
 * get wrong (spec 4.1) before anyone looks at a tensor, so the readers below
 * never need to re-check an offset.
 */
#ifndef DDPM_SAFETENSORS_H
#define DDPM_SAFETENSORS_H

#include "ddpm.h"

typedef enum {
    ST_BOOL, ST_U8, ST_I8, ST_I16, ST_U16, ST_F16, ST_BF16, ST_I32, ST_U32, ST_F32,
    ST_F64, ST_I64, ST_U64, ST_C64,
    ST_F8_E5M2, ST_F8_E4M3, ST_F8_E8M0, ST_F8_E4M3FNUZ, ST_F8_E5M2FNUZ,
    ST_F4, ST_F6_E2M3, ST_F6_E3M2,
    ST_DTYPE_COUNT
} st_dtype;

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[DDPM_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;          /* byte range inside the data buffer */
} st_tensor;

typedef struct {
    void *map;                    /* the whole file, read-only        */
    size_t map_len;
    const unsigned char *data;    /* the data buffer inside the map   */
    uint64_t data_len;
    st_tensor *tensors;           /* sorted by name                   */
    int count;
} st_file;

/* Map and validate `path`.  On failure f is left empty (st_close is safe). */
ddpm_status st_open(const char *path, st_file *f, char *err, size_t errlen);
void st_close(st_file *f);

/* Validate a header already in memory (used by st_open; exposed for tests):
 * `header` is the N JSON bytes, `data_len` the size of the data buffer. */
ddpm_status st_parse_header(const char *header, size_t header_len, uint64_t data_len, st_file *f,
                            char *err, size_t errlen);

const st_tensor *st_find(const st_file *f, const char *name);
const char *st_dtype_name(st_dtype d);

/* Convert one tensor to float32 (F32, F16, BF16, F64, I64, I32); `out` has
 * room for t->numel floats.  Other dtypes give DDPM_ERR_UNSUPPORTED. */
ddpm_status st_read_f32(const st_file *f, const st_tensor *t, float *out, char *err, size_t errlen);

/* IEEE half and bfloat16 -> float, exactly (subnormals, Inf and NaN too). */
float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t h);

#endif
