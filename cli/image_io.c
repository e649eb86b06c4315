/* image_io.c: reading and writing 8-bit PNG files with libpng. */
#include "image_io.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* libpng reports an error through a callback that must not return: it longjmps
 * back to the setjmp of the function that called libpng.  The message lands in
 * the caller's buffer, which libpng hands back as its "error pointer". */
typedef struct {
    char *err;
    size_t errlen;
    const char *path;
} png_error_sink;

static void on_png_error(png_structp png, png_const_charp msg)
{
    png_error_sink *sink = png_get_error_ptr(png);
    snprintf(sink->err, sink->errlen, "'%s': %s", sink->path, msg);
    png_longjmp(png, 1);
}

/* Warnings (odd ICC profiles, unknown chunks) do not change the pixels. */
static void on_png_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

int image_alloc(image_u8 *img, int width, int height, int channels, char *err, size_t errlen)
{
    memset(img, 0, sizeof *img);
    if (width < 1 || height < 1 || width > IMAGE_MAX_SIDE || height > IMAGE_MAX_SIDE) {
        snprintf(err, errlen, "image size %dx%d is outside 1 .. %d per side", width, height, IMAGE_MAX_SIDE);
        return -1;
    }
    if (channels < 1 || channels > 4) {
        snprintf(err, errlen, "images have 1 to 4 channels, not %d", channels);
        return -1;
    }
    /* At most 16384^2 x 4 = 1 GiB: fits a size_t on every platform. */
    img->pixels = calloc((size_t)width * (size_t)height * (size_t)channels, 1);
    if (!img->pixels) {
        snprintf(err, errlen, "out of memory for a %dx%d image", width, height);
        return -1;
    }
    img->width = width;
    img->height = height;
    img->channels = channels;
    return 0;
}

void image_free(image_u8 *img)
{
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                   */
/* ------------------------------------------------------------------------ */

/* Ask libpng to deliver whatever the file holds as 8-bit pixels in the layout
 * `mode` wants.  libpng applies these transformations in its own fixed order. */
static void request_layout(png_structp png, png_infop info, image_read_mode mode)
{
    png_byte color_type = png_get_color_type(png, info);
    png_set_expand(png);   /* palette -> RGB, gray 1/2/4 bit -> 8 bit, tRNS -> alpha */
    png_set_scale_16(png); /* 16 bit -> 8 bit, rounded (v * 255 / 65535)            */
    if (mode == IMAGE_READ_GRAY) {
        if (color_type & PNG_COLOR_MASK_COLOR)
            png_set_rgb_to_gray_fixed(png, 1, -1, -1); /* default luma weights */
        png_set_strip_alpha(png);
    } else if (!(color_type & PNG_COLOR_MASK_COLOR)) {
        png_set_gray_to_rgb(png);
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

/* Everything that may longjmp back here on a libpng error.  Resources are kept
 * in the caller's objects (img, *rows) so that the caller frees them either way. */
static int read_pixels(png_structp png, png_infop info, image_read_mode mode, image_u8 *img,
                       png_bytep **rows, const char *path, char *err, size_t errlen)
{
    if (setjmp(png_jmpbuf(png)))
        return -1;
    png_read_info(png, info);
    request_layout(png, info, mode);

    int width = (int)png_get_image_width(png, info);
    int height = (int)png_get_image_height(png, info);
    int channels = png_get_channels(png, info);
    int layout_ok = mode == IMAGE_READ_GRAY ? channels == 1 : (channels == 3 || channels == 4);
    if (!layout_ok || png_get_bit_depth(png, info) != 8) {
        snprintf(err, errlen, "'%s': unexpected pixel layout after conversion", path);
        return -1;
    }
    if (image_alloc(img, width, height, channels, err, errlen) != 0)
        return -1;
    *rows = malloc((size_t)height * sizeof **rows);
    if (!*rows) {
        snprintf(err, errlen, "out of memory reading '%s'", path);
        return -1;
    }
    for (int y = 0; y < height; y++)
        (*rows)[y] = img->pixels + (size_t)y * (size_t)width * (size_t)channels;
    png_read_image(png, *rows);
    png_read_end(png, NULL);
    return 0;
}

int image_read_png(const char *path, image_read_mode mode, image_u8 *img, char *err, size_t errlen)
{
    memset(img, 0, sizeof *img);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    png_byte signature[8];
    if (fread(signature, 1, sizeof signature, fp) != sizeof signature ||
        png_sig_cmp(signature, 0, sizeof signature) != 0) {
        snprintf(err, errlen, "'%s' is not a PNG file", path);
        fclose(fp);
        return -1;
    }

    png_error_sink sink = { err, errlen, path };
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &sink, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep *rows = NULL;
    int rc = -1;
    if (!png || !info) {
        snprintf(err, errlen, "out of memory reading '%s'", path);
    } else {
        png_init_io(png, fp);
        png_set_sig_bytes(png, sizeof signature);
        png_set_user_limits(png, IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
        rc = read_pixels(png, info, mode, img, &rows, path, err, errlen);
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    fclose(fp);
    if (rc != 0)
        image_free(img);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */
/* ------------------------------------------------------------------------ */

static int write_pixels(png_structp png, png_infop info, const image_u8 *img)
{
    static const int color_type[5] = { 0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                       PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA };
    if (setjmp(png_jmpbuf(png)))
        return -1;
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8,
                 color_type[img->channels], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t row_bytes = (size_t)img->width * (size_t)img->channels;
    for (int y = 0; y < img->height; y++)
        png_write_row(png, img->pixels + (size_t)y * row_bytes);
    png_write_end(png, NULL);
    return 0;
}

/* Create "<path>.XXXXXX" in the directory of `path` (rename needs the same
 * file system), with the permissions a plain new file would get. */
static FILE *open_temp_beside(const char *path, char **tmp_path, char *err, size_t errlen)
{
    size_t n = strlen(path) + sizeof ".XXXXXX";
    char *tmp = malloc(n);
    if (!tmp) {
        snprintf(err, errlen, "out of memory writing '%s'", path);
        return NULL;
    }
    snprintf(tmp, n, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create '%s': %s", path, strerror(errno));
        free(tmp);
        return NULL;
    }
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0) { /* mkstemp made it 0600; not fatal */ }
    FILE *fp = fdopen(fd, "wb");
    if (!fp) {
        snprintf(err, errlen, "cannot write '%s': %s", path, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return NULL;
    }
    *tmp_path = tmp;
    return fp;
}

int image_write_png(const char *path, const image_u8 *img, char *err, size_t errlen)
{
    if (!img->pixels || img->channels < 1 || img->channels > 4 || img->width < 1 || img->height < 1 ||
        img->width > IMAGE_MAX_SIDE || img->height > IMAGE_MAX_SIDE) {
        snprintf(err, errlen, "'%s': invalid image (%dx%d, %d channels)", path, img->width, img->height,
                 img->channels);
        return -1;
    }
    char *tmp = NULL;
    FILE *fp = open_temp_beside(path, &tmp, err, errlen);
    if (!fp)
        return -1;

    png_error_sink sink = { err, errlen, path };
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int rc = -1;
    if (!png || !info) {
        snprintf(err, errlen, "out of memory writing '%s'", path);
    } else {
        png_init_io(png, fp);
        rc = write_pixels(png, info, img);
    }
    png_destroy_write_struct(&png, &info);

    /* A full disk often shows only when the buffers are flushed. */
    if (rc == 0 && (fflush(fp) != 0 || ferror(fp))) {
        snprintf(err, errlen, "writing '%s': %s", path, strerror(errno));
        rc = -1;
    }
    if (fclose(fp) != 0 && rc == 0) {
        snprintf(err, errlen, "writing '%s': %s", path, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        rc = -1;
    }
    if (rc != 0)
        unlink(tmp);
    free(tmp);
    return rc;
}
