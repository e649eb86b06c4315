/* png_check.c: pixel checks on PNG files for the plug-in tests.
 *
 * GIMP runs the Script-Fu test scripts and exports layers as PNG; this
 * program then checks the decoded samples (no gamma or color conversion):
 *
 *   png_check same A.png B.png
 *       same size and identical R, G, B (alpha too when both have it)
 *   png_check inside A.png B.png X Y W H
 *       identical outside the rectangle, and more than a quarter of the
 *       pixels inside it differ (the refine test: changed inside, untouched outside)
 *   png_check close A.png B.png TOL
 *       same size and R, G, B differ by at most TOL levels (high bit depth
 *       images exported as PNG against the 8-bit result)
 *   png_check alpha A.png B.png
 *       same size and identical alpha channels (missing alpha = 255)
 *   png_check texture A.png W H
 *       W x H and not flat: every channel's standard deviation is above 2
 *       levels and many distinct colors occur (a generated texture)
 *
 * Exit 0 if the check holds, 1 if not (with one line saying why), 2 on bad
 * usage or an unreadable file.
 */
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A decoded PNG as 8-bit RGBA; has_alpha says whether A came from the file. */
typedef struct {
    int width, height, has_alpha;
    unsigned char *rgba;
} image;

static int read_png(const char *path, image *img)
{
    FILE *f = fopen(path, "rb");
    png_structp png = NULL;
    png_infop info = NULL;
    png_bytep *volatile rows = NULL;
    int color, depth;

    memset(img, 0, sizeof *img);
    if (!f) {
        fprintf(stderr, "png_check: cannot open %s\n", path);
        return -1;
    }
    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    info = png ? png_create_info_struct(png) : NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "png_check: %s is not a readable PNG\n", path);
        png_destroy_read_struct(&png, &info, NULL);
        free(rows);
        free(img->rgba);
        img->rgba = NULL;
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_read_info(png, info);
    color = png_get_color_type(png, info);
    depth = png_get_bit_depth(png, info);
    img->width = (int)png_get_image_width(png, info);
    img->height = (int)png_get_image_height(png, info);
    img->has_alpha = (color & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS);

    /* Everything to 8-bit RGBA, samples as stored (no gamma handling). */
    if (color == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_tRNS_to_alpha(png);
    if (depth == 16)
        png_set_strip_16(png);
    if (depth < 8)
        png_set_expand(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    if (!(color & PNG_COLOR_MASK_ALPHA))
        png_set_filler(png, 0xff, PNG_FILLER_AFTER);
    png_read_update_info(png, info);

    img->rgba = malloc((size_t)img->width * img->height * 4);
    rows = malloc(sizeof *rows * (size_t)img->height);
    if (!img->rgba || !rows)
        png_error(png, "out of memory");
    for (int y = 0; y < img->height; y++)
        rows[y] = img->rgba + (size_t)y * img->width * 4;
    png_read_image(png, rows);
    png_read_end(png, NULL);

    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    fclose(f);
    return 0;
}

static const unsigned char *pixel(const image *img, int x, int y)
{
    return img->rgba + ((size_t)y * img->width + x) * 4;
}

static int same_size(const image *a, const image *b)
{
    if (a->width == b->width && a->height == b->height)
        return 1;
    printf("sizes differ: %dx%d and %dx%d\n", a->width, a->height, b->width, b->height);
    return 0;
}

/* Channels 0 .. n-1 of one pixel are equal. */
static int pixel_equal(const image *a, const image *b, int x, int y, int n)
{
    return memcmp(pixel(a, x, y), pixel(b, x, y), (size_t)n) == 0;
}

static int check_same(const image *a, const image *b)
{
    int n = (a->has_alpha && b->has_alpha) ? 4 : 3;

    if (!same_size(a, b))
        return 1;
    for (int y = 0; y < a->height; y++)
        for (int x = 0; x < a->width; x++)
            if (!pixel_equal(a, b, x, y, n)) {
                const unsigned char *p = pixel(a, x, y), *q = pixel(b, x, y);
                printf("pixel (%d, %d) differs: %d %d %d %d and %d %d %d %d\n", x, y,
                       p[0], p[1], p[2], p[3], q[0], q[1], q[2], q[3]);
                return 1;
            }
    printf("identical: %dx%d, %d channels compared\n", a->width, a->height, n);
    return 0;
}

static int check_inside(const image *a, const image *b, int rx, int ry, int rw, int rh)
{
    long inside = 0, changed = 0;

    if (!same_size(a, b))
        return 1;
    for (int y = 0; y < a->height; y++)
        for (int x = 0; x < a->width; x++) {
            int in = x >= rx && x < rx + rw && y >= ry && y < ry + rh;
            int eq = pixel_equal(a, b, x, y, 4);
            if (!in && !eq) {
                printf("pixel (%d, %d) outside the rectangle changed\n", x, y);
                return 1;
            }
            inside += in;
            changed += in && !eq;
        }
    if (inside == 0 || 4 * changed <= inside) {
        printf("only %ld of %ld pixels inside the rectangle changed\n", changed, inside);
        return 1;
    }
    printf("outside identical; %ld of %ld pixels inside changed\n", changed, inside);
    return 0;
}

static int check_close(const image *a, const image *b, int tol)
{
    int worst = 0;

    if (!same_size(a, b))
        return 1;
    for (int y = 0; y < a->height; y++)
        for (int x = 0; x < a->width; x++)
            for (int c = 0; c < 3; c++) {
                int d = abs(pixel(a, x, y)[c] - pixel(b, x, y)[c]);
                if (d > tol) {
                    printf("pixel (%d, %d) channel %d differs by %d > %d\n", x, y, c, d, tol);
                    return 1;
                }
                worst = d > worst ? d : worst;
            }
    printf("close: largest difference %d <= %d\n", worst, tol);
    return 0;
}

static int check_alpha(const image *a, const image *b)
{
    if (!same_size(a, b))
        return 1;
    for (int y = 0; y < a->height; y++)
        for (int x = 0; x < a->width; x++)
            if (pixel(a, x, y)[3] != pixel(b, x, y)[3]) {
                printf("alpha at (%d, %d) differs: %d and %d\n", x, y,
                       pixel(a, x, y)[3], pixel(b, x, y)[3]);
                return 1;
            }
    printf("alpha identical\n");
    return 0;
}

static int check_texture(const image *a, int w, int h)
{
    size_t n = (size_t)a->width * a->height;
    long distinct = 0;
    unsigned char *seen;

    if (a->width != w || a->height != h) {
        printf("size is %dx%d, expected %dx%d\n", a->width, a->height, w, h);
        return 1;
    }
    for (int c = 0; c < 3; c++) {
        double sum = 0, sum2 = 0, sd;
        for (size_t i = 0; i < n; i++) {
            double v = a->rgba[4 * i + c];
            sum += v;
            sum2 += v * v;
        }
        sd = sqrt(fmax(sum2 / n - (sum / n) * (sum / n), 0.0));
        if (sd <= 2.0) {
            printf("channel %d is flat: standard deviation %.2f\n", c, sd);
            return 1;
        }
    }
    /* Distinct colors, quantized to 5 bits per channel. */
    seen = calloc(1u << 15, 1);
    if (!seen)
        return 2;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = a->rgba + 4 * i;
        unsigned key = (unsigned)(p[0] >> 3) << 10 | (unsigned)(p[1] >> 3) << 5 | (unsigned)(p[2] >> 3);
        distinct += !seen[key];
        seen[key] = 1;
    }
    free(seen);
    if (distinct < 16) {
        printf("only %ld distinct colors\n", distinct);
        return 1;
    }
    printf("texture: %dx%d, %ld distinct colors\n", w, h, distinct);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: png_check same A B | inside A B X Y W H | close A B TOL | alpha A B | texture A W H\n");
    return 2;
}

int main(int argc, char **argv)
{
    image a, b;
    int rc;

    if (argc < 3)
        return usage();
    if (read_png(argv[2], &a) != 0)
        return 2;
    memset(&b, 0, sizeof b);

    if (strcmp(argv[1], "texture") == 0 && argc == 5) {
        rc = check_texture(&a, atoi(argv[3]), atoi(argv[4]));
    } else if (argc >= 4 && (strcmp(argv[1], "same") == 0 || strcmp(argv[1], "inside") == 0 ||
                             strcmp(argv[1], "close") == 0 || strcmp(argv[1], "alpha") == 0)) {
        if (read_png(argv[3], &b) != 0) {
            free(a.rgba);
            return 2;
        }
        if (strcmp(argv[1], "same") == 0 && argc == 4)
            rc = check_same(&a, &b);
        else if (strcmp(argv[1], "close") == 0 && argc == 5)
            rc = check_close(&a, &b, atoi(argv[4]));
        else if (strcmp(argv[1], "alpha") == 0 && argc == 4)
            rc = check_alpha(&a, &b);
        else if (strcmp(argv[1], "inside") == 0 && argc == 8)
            rc = check_inside(&a, &b, atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), atoi(argv[7]));
        else
            rc = usage();
    } else {
        rc = usage();
    }
    free(a.rgba);
    free(b.rgba);
    return rc;
}
