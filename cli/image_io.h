/* image_io.h: 8-bit PNG files for the ddpm command line (libpng).
 *
 * Pixels stay 8-bit here; the one mapping to model space is ddpm_from_u8 /
 * ddpm_to_u8 in the core, so the CLI and the plug-in give identical pixels.
 * Functions return 0 on success and -1 with one line in `err` on failure.
 */
#ifndef DDPM_CLI_IMAGE_IO_H
#define DDPM_CLI_IMAGE_IO_H

#include <stddef.h>
#include <stdint.h>

/* Largest width or height read or written (libpng allows more; nothing here
 * can use more). */
#define IMAGE_MAX_SIDE 16384

typedef struct {
    int width, height;
    int channels;     /* 1 = gray, 3 = RGB, 4 = RGBA                      */
    uint8_t *pixels;  /* height rows of width * channels bytes, interleaved */
} image_u8;

typedef enum {
    IMAGE_READ_COLOR, /* RGB, or RGBA when the file has alpha (or a tRNS chunk) */
    IMAGE_READ_GRAY   /* one gray channel: color is converted, alpha dropped   */
} image_read_mode;

/* Read any PNG (gray, RGB, palette, with or without alpha, 1..16 bit,
 * interlaced or not) as 8-bit pixels in the layout `mode` asks for. */
int image_read_png(const char *path, image_read_mode mode, image_u8 *img, char *err, size_t errlen);

/* Write an 8-bit gray, RGB or RGBA PNG.  All or nothing: the pixels go to a
 * temporary file beside `path` that is renamed into place at the end, so a
 * failed write never leaves a half-written `path` behind. */
int image_write_png(const char *path, const image_u8 *img, char *err, size_t errlen);

/* Allocate width x height x channels bytes (zeroed); -1 if too large. */
int image_alloc(image_u8 *img, int width, int height, int channels, char *err, size_t errlen);
void image_free(image_u8 *img);

#endif /* DDPM_CLI_IMAGE_IO_H */
