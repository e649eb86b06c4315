/* test_image_io.c: PNG reading and writing of the ddpm command line.
 *
 * Round trips through image_write_png / image_read_png, files in the other
 * PNG flavours (palette + tRNS, 16 bit, interlaced, gray) written here with
 * libpng directly, broken files, and the all-or-nothing write.
 *
 * usage: test_image_io SCRATCH_DIR
 */
#include <dirent.h>
#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image_io.h"

static int failures = 0;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            failures++;                                                        \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

static char scratch[4096];

static const char *scratch_path(const char *name)
{
    static char path[8192];
    snprintf(path, sizeof path, "%s/%s", scratch, name);
    return path;
}

/* Deterministic pixels that hit every byte value. */
static void fill_pattern(image_u8 *img, unsigned seed)
{
    size_t n = (size_t)img->width * img->height * img->channels;
    unsigned s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        img->pixels[i] = (uint8_t)(s >> 24);
    }
}

static int same_pixels(const image_u8 *a, const image_u8 *b)
{
    return a->width == b->width && a->height == b->height && a->channels == b->channels &&
           memcmp(a->pixels, b->pixels, (size_t)a->width * a->height * a->channels) == 0;
}

/* ------------------------------------------------------------------------ */
/* A raw libpng writer for the flavours image_write_png never produces.      */
/* ------------------------------------------------------------------------ */

typedef struct {
    int width, height, bit_depth, color_type, interlace;
    const png_byte *data; /* rows packed as libpng expects for this format */
    size_t row_bytes;
    const png_color *palette;
    int npalette;
    const png_byte *trns;
    int ntrns;
} raw_png;

static int write_raw_png(const char *path, const raw_png *r)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_bytep *rows = malloc((size_t)r->height * sizeof *rows);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(rows);
        fclose(fp);
        return -1;
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, r->width, r->height, r->bit_depth, r->color_type, r->interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (r->palette)
        png_set_PLTE(png, info, r->palette, r->npalette);
    if (r->trns)
        png_set_tRNS(png, info, r->trns, r->ntrns, NULL);
    png_write_info(png, info);
    for (int y = 0; y < r->height; y++)
        rows[y] = (png_bytep)(r->data + (size_t)y * r->row_bytes);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return fclose(fp);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */
/* ------------------------------------------------------------------------ */

static void test_round_trip(int channels)
{
    char err[512] = "";
    image_u8 out, in;
    CHECK(image_alloc(&out, 37, 23, channels, err, sizeof err) == 0, "%s", err);
    fill_pattern(&out, 7u + (unsigned)channels);
    const char *path = scratch_path("round_trip.png");
    CHECK(image_write_png(path, &out, err, sizeof err) == 0, "%s", err);

    image_read_mode mode = channels == 1 ? IMAGE_READ_GRAY : IMAGE_READ_COLOR;
    CHECK(image_read_png(path, mode, &in, err, sizeof err) == 0, "%s", err);
    CHECK(same_pixels(&out, &in), "%d channels: pixels differ after a round trip", channels);
    image_free(&in);
    image_free(&out);
}

/* A gray file read as color has R = G = B = gray; color read as gray keeps
 * pixels whose R = G = B. */
static void test_gray_color_conversion(void)
{
    char err[512] = "";
    image_u8 gray, rgb;
    CHECK(image_alloc(&gray, 16, 16, 1, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < 256; i++)
        gray.pixels[i] = (uint8_t)i;
    const char *path = scratch_path("gray.png");
    CHECK(image_write_png(path, &gray, err, sizeof err) == 0, "%s", err);
    CHECK(image_read_png(path, IMAGE_READ_COLOR, &rgb, err, sizeof err) == 0, "%s", err);
    CHECK(rgb.channels == 3, "gray read as color has %d channels", rgb.channels);
    int bad = 0;
    for (int i = 0; i < 256 && rgb.channels == 3; i++)
        bad += rgb.pixels[3 * i] != i || rgb.pixels[3 * i + 1] != i || rgb.pixels[3 * i + 2] != i;
    CHECK(bad == 0, "%d gray pixels changed when read as RGB", bad);

    /* Back the other way: write the RGB, read it as gray. */
    image_u8 back;
    path = scratch_path("gray_as_rgb.png");
    CHECK(image_write_png(path, &rgb, err, sizeof err) == 0, "%s", err);
    CHECK(image_read_png(path, IMAGE_READ_GRAY, &back, err, sizeof err) == 0, "%s", err);
    CHECK(same_pixels(&gray, &back), "R = G = B read as gray is not the gray value");
    image_free(&back);
    image_free(&rgb);
    image_free(&gray);
}

/* RGBA read as gray drops alpha; pure red is darker than pure green. */
static void test_color_to_gray(void)
{
    char err[512] = "";
    image_u8 rgba, g;
    CHECK(image_alloc(&rgba, 2, 1, 4, err, sizeof err) == 0, "%s", err);
    const uint8_t px[8] = { 255, 0, 0, 10, 0, 255, 0, 200 };
    memcpy(rgba.pixels, px, sizeof px);
    const char *path = scratch_path("red_green.png");
    CHECK(image_write_png(path, &rgba, err, sizeof err) == 0, "%s", err);
    CHECK(image_read_png(path, IMAGE_READ_GRAY, &g, err, sizeof err) == 0, "%s", err);
    CHECK(g.channels == 1, "%d channels", g.channels);
    if (g.channels == 1)
        CHECK(g.pixels[0] > 0 && g.pixels[0] < g.pixels[1] && g.pixels[1] < 255,
              "gray of red %d, of green %d", g.pixels[0], g.pixels[1]);
    image_free(&g);
    image_free(&rgba);
}

/* A 4-entry palette with a transparent entry becomes RGBA. */
static void test_palette_with_transparency(void)
{
    const png_color palette[4] = { { 0, 0, 0 }, { 255, 0, 0 }, { 0, 255, 0 }, { 10, 20, 30 } };
    const png_byte trns[1] = { 0 };           /* entry 0 fully transparent */
    const png_byte data[2] = { 0x1B, 0xE4 };  /* 2 bit indices: 0 1 2 3 / 3 2 1 0 */
    raw_png r = { 4, 2, 2, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, data, 1, palette, 4, trns, 1 };
    const char *path = scratch_path("palette.png");
    CHECK(write_raw_png(path, &r) == 0, "cannot write %s", path);

    char err[512] = "";
    image_u8 img;
    CHECK(image_read_png(path, IMAGE_READ_COLOR, &img, err, sizeof err) == 0, "%s", err);
    CHECK(img.width == 4 && img.height == 2 && img.channels == 4, "%dx%d, %d channels", img.width, img.height,
          img.channels);
    if (img.channels == 4) {
        const uint8_t *p = img.pixels;
        CHECK(p[3] == 0 && p[7] == 255, "alpha %d %d, expected 0 255", p[3], p[7]);
        CHECK(p[4] == 255 && p[5] == 0 && p[6] == 0, "index 1 is (%d,%d,%d), expected red", p[4], p[5], p[6]);
        CHECK(p[12] == 10 && p[13] == 20 && p[14] == 30, "index 3 is (%d,%d,%d)", p[12], p[13], p[14]);
        CHECK(p[16] == 10 && p[17] == 20 && p[18] == 30, "second row starts with (%d,%d,%d)", p[16], p[17], p[18]);
    }
    image_free(&img);
}

/* 16-bit RGB v * 257 is 8-bit v; Adam7 interlacing reads the same pixels. */
static void test_16bit_interlaced(void)
{
    enum { W = 9, H = 7 };
    png_byte data[H][W * 6];
    uint8_t expected[H * W * 3];
    unsigned s = 99;
    for (int y = 0; y < H; y++)
        for (int i = 0; i < W * 3; i++) {
            s = s * 1664525u + 1013904223u;
            uint8_t v = (uint8_t)(s >> 24);
            expected[(y * W * 3) + i] = v;
            data[y][2 * i] = v; /* big-endian v * 257 = (v, v) */
            data[y][2 * i + 1] = v;
        }
    raw_png r = { W, H, 16, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_ADAM7, &data[0][0], W * 6, NULL, 0, NULL, 0 };
    const char *path = scratch_path("rgb16_adam7.png");
    CHECK(write_raw_png(path, &r) == 0, "cannot write %s", path);

    char err[512] = "";
    image_u8 img;
    CHECK(image_read_png(path, IMAGE_READ_COLOR, &img, err, sizeof err) == 0, "%s", err);
    CHECK(img.width == W && img.height == H && img.channels == 3, "%dx%d, %d channels", img.width, img.height,
          img.channels);
    if (img.channels == 3 && img.width == W && img.height == H)
        CHECK(memcmp(img.pixels, expected, sizeof expected) == 0, "16-bit interlaced pixels differ");
    image_free(&img);
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    CHECK(fp && fwrite(data, 1, n, fp) == n, "cannot write %s", path);
    if (fp)
        fclose(fp);
}

static void test_bad_files(void)
{
    char err[512] = "";
    image_u8 img;
    CHECK(image_read_png(scratch_path("does_not_exist.png"), IMAGE_READ_COLOR, &img, err, sizeof err) != 0,
          "a missing file was read");
    CHECK(strstr(err, "does_not_exist.png") != NULL, "message does not name the file: %s", err);

    const char text[] = "this is not a PNG file at all\n";
    write_bytes(scratch_path("text.png"), text, sizeof text);
    CHECK(image_read_png(scratch_path("text.png"), IMAGE_READ_COLOR, &img, err, sizeof err) != 0,
          "a text file was read as PNG");
    CHECK(strstr(err, "not a PNG") != NULL, "message: %s", err);

    /* Every proper prefix of a valid PNG must fail cleanly. */
    image_u8 good;
    CHECK(image_alloc(&good, 20, 10, 3, err, sizeof err) == 0, "%s", err);
    fill_pattern(&good, 3);
    CHECK(image_write_png(scratch_path("good.png"), &good, err, sizeof err) == 0, "%s", err);
    image_free(&good);
    FILE *fp = fopen(scratch_path("good.png"), "rb");
    unsigned char buf[4096];
    size_t size = fp ? fread(buf, 1, sizeof buf, fp) : 0;
    if (fp)
        fclose(fp);
    CHECK(size > 100 && size < sizeof buf, "good.png has %zu bytes", size);
    int accepted = 0;
    for (size_t cut = 0; cut < size; cut += 7) {
        write_bytes(scratch_path("truncated.png"), buf, cut);
        if (image_read_png(scratch_path("truncated.png"), IMAGE_READ_COLOR, &img, err, sizeof err) == 0) {
            accepted++;
            image_free(&img);
        } else {
            CHECK(img.pixels == NULL && err[0] != '\0', "failed read left pixels or no message");
        }
    }
    /* libpng may accept a file cut inside IEND's CRC; nothing before it. */
    CHECK(accepted == 0, "%d truncated files were accepted", accepted);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/* Writes go through a temporary file: a failure leaves nothing behind and an
 * existing file untouched; success replaces it with plain permissions. */
static void test_atomic_write(void)
{
    char dir[8192], path[8300], err[512] = "";
    snprintf(dir, sizeof dir, "%s/atomic", scratch);
    mkdir(dir, 0777);
    snprintf(path, sizeof path, "%s/out.png", dir);

    image_u8 img;
    CHECK(image_alloc(&img, 8, 8, 3, err, sizeof err) == 0, "%s", err);
    fill_pattern(&img, 11);
    umask(022);
    CHECK(image_write_png(path, &img, err, sizeof err) == 0, "%s", err);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644, "mode %o, expected 644", st.st_mode & 0777);

    /* An invalid image fails before touching anything. */
    image_u8 bad = img;
    bad.channels = 5;
    CHECK(image_write_png(path, &bad, err, sizeof err) != 0, "a 5-channel image was written");
    image_u8 back;
    CHECK(image_read_png(path, IMAGE_READ_COLOR, &back, err, sizeof err) == 0, "%s", err);
    CHECK(same_pixels(&img, &back), "a failed write changed the existing file");
    image_free(&back);

    /* Overwriting replaces the content. */
    fill_pattern(&img, 12);
    CHECK(image_write_png(path, &img, err, sizeof err) == 0, "%s", err);
    CHECK(image_read_png(path, IMAGE_READ_COLOR, &back, err, sizeof err) == 0, "%s", err);
    CHECK(same_pixels(&img, &back), "overwriting did not replace the pixels");
    image_free(&back);
    CHECK(count_entries(dir) == 1, "%d files in %s, expected only out.png", count_entries(dir), dir);

    char missing[8400];
    snprintf(missing, sizeof missing, "%s/no/such/dir/out.png", dir);
    CHECK(image_write_png(missing, &img, err, sizeof err) != 0, "wrote into a missing directory");
    CHECK(strstr(err, "out.png") != NULL, "message does not name the file: %s", err);
    image_free(&img);
}

static void test_limits(void)
{
    char err[512] = "";
    image_u8 img;
    CHECK(image_alloc(&img, IMAGE_MAX_SIDE + 1, 1, 3, err, sizeof err) != 0, "oversized width accepted");
    CHECK(image_alloc(&img, 1, 0, 3, err, sizeof err) != 0, "zero height accepted");
    CHECK(image_alloc(&img, 1, 1, 0, err, sizeof err) != 0, "zero channels accepted");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    snprintf(scratch, sizeof scratch, "%s/image_io", argv[1]);
    if (mkdir(scratch, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create %s: %s\n", scratch, strerror(errno));
        return 1;
    }
    test_round_trip(1);
    test_round_trip(3);
    test_round_trip(4);
    test_gray_color_conversion();
    test_color_to_gray();
    test_palette_with_transparency();
    test_16bit_interlaced();
    test_bad_files();
    test_atomic_write();
    test_limits();
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    else
        printf("image_io: all checks passed\n");
    return failures ? 1 : 0;
}
