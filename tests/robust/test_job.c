/* test_job.c: the job layer under failure, with a real (small) U-Net.
 *
 *   test_robust_job MODEL_DIR SCRATCH_DIR
 *
 *   - cancellation at the first, a middle and the last step: DDPM_CANCELLED
 *     and `out` untouched, for generate and refine (also with out == in, with
 *     every sampler, and for a tiled run);
 *   - the memory budget: a run at exactly its estimate goes, one byte less
 *     is refused with DDPM_ERR_MEMORY before anything is allocated;
 *   - NaN and Inf weights (a copy of MODEL_DIR with one value poisoned, made
 *     here): the load refuses or the job reports DDPM_ERR_NUMERIC, and never
 *     writes the image;
 *   - tiles: a tiled run is deterministic, independent of the thread count,
 *     stays in [-1, 1], and stays close to the uncut run;
 *   - period-first generation: refined from t = 1 the image repeats the
 *     tileable generate of the period's size (fitted to a tileable image's
 *     axes), from t = 400 it does not; progress counts both chains; cancel
 *     and budget leave `out` untouched; bad periods are refused; with DDIM
 *     both chains take period_eta and never eta; period_steps is the
 *     period's own step count, checked with steps before either chain runs.
 */
#include "ddpm.h"
#include "job_internal.h"

#include "../core/check.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

static const char *model_dir, *scratch;
static const float SENTINEL = 7.0f;  /* what `out` holds before a run */

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct {
    int cancel_at;   /* step at which to ask to stop, 0 = never */
    int calls, last_step, total;
} progress_log;

static int on_progress(void *ctx, int step, int total)
{
    progress_log *l = ctx;
    l->calls++;
    l->last_step = step;
    l->total = total;
    return step == l->cancel_at;
}

static float *image(size_t n, float v)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = v;
    return x;
}

static int all_equal(const float *x, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&x[i], &v, sizeof v) != 0)
            return 0;
    return 1;
}

static int in_range(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(x[i] >= -1.0f && x[i] <= 1.0f))
            return 0;
    return 1;
}

/* A smooth test picture in [-0.8, 0.8]. */
static void picture(float *x, int W, int H)
{
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < H; y++)
            for (int i = 0; i < W; i++)
                x[((size_t)c * H + y) * W + i] = 0.8f * sinf(0.3f * (float)i + 0.2f * (float)y + (float)c);
}

static ddpm_job_params params(int steps, int timestep)
{
    ddpm_job_params p = {0};
    p.steps = steps;
    p.variance = DDPM_VARIANCE_POSTERIOR;
    p.seed = 42;
    p.timestep = timestep;
    p.memory_budget = 0;
    return p;
}

/* ------------------------------------------------------------------------ */
/* Cancellation                                                              */
/* ------------------------------------------------------------------------ */

static void test_cancel(const ddpm_model *m)
{
    const int W = 24, H = 16, K = 5;  /* 24 x 16: padded to the stride 8 */
    size_t n = (size_t)3 * W * H;
    int at[3] = {1, 3, K};
    char err[256];
    for (int refine = 0; refine <= 1; refine++)
        for (int k = 0; k < 3; k++) {
            ddpm_job_params p = params(K, 400);
            progress_log log = {at[k], 0, 0, 0};
            float *in = image(n, 0.0f), *out = image(n, SENTINEL);
            picture(in, W, H);
            float *in_copy = malloc(n * sizeof *in_copy);
            memcpy(in_copy, in, n * sizeof *in);
            err[0] = 0;
            ddpm_status s = refine ? ddpm_job_refine(m, &p, W, H, in, NULL, on_progress, &log, out, err, sizeof err)
                                   : ddpm_job_generate(m, &p, W, H, on_progress, &log, out, err, sizeof err);
            const char *what = refine ? "refine" : "generate";
            CHECK(s == DDPM_CANCELLED, "%s cancelled at step %d: %s (%s)", what, at[k], ddpm_status_name(s), err);
            CHECK(strstr(err, "cancel") != NULL, "%s: no word of the cancellation: '%s'", what, err);
            CHECK(log.calls == at[k] && log.total == K, "%s: %d progress calls of %d, cancelling at %d", what,
                  log.calls, log.total, at[k]);
            CHECK(all_equal(out, n, SENTINEL), "%s cancelled at step %d wrote the output", what, at[k]);
            CHECK(memcmp(in, in_copy, n * sizeof *in) == 0, "%s changed its input", what);

            /* refine in place: out == in must stay the input */
            if (refine) {
                log = (progress_log){at[k], 0, 0, 0};
                s = ddpm_job_refine(m, &p, W, H, in, NULL, on_progress, &log, in, err, sizeof err);
                CHECK(s == DDPM_CANCELLED && memcmp(in, in_copy, n * sizeof *in) == 0,
                      "refine in place cancelled at step %d: %s, input %s", at[k], ddpm_status_name(s),
                      memcmp(in, in_copy, n * sizeof *in) ? "changed" : "kept");
            }
            free(in);
            free(in_copy);
            free(out);
        }

    /* Every sampler cancels the same way (middle step). */
    for (int k = 1; ddpm_sampler_name((ddpm_sampler)k) != NULL; k++)
        for (int refine = 0; refine <= 1; refine++) {
            ddpm_job_params p = params(K, 400);
            p.sampler = (ddpm_sampler)k;
            progress_log log = {3, 0, 0, 0};
            float *in = image(n, 0.0f), *out = image(n, SENTINEL);
            picture(in, W, H);
            ddpm_status s = refine ? ddpm_job_refine(m, &p, W, H, in, NULL, on_progress, &log, out, err, sizeof err)
                                   : ddpm_job_generate(m, &p, W, H, on_progress, &log, out, err, sizeof err);
            CHECK(s == DDPM_CANCELLED && log.calls == 3 && all_equal(out, n, SENTINEL),
                  "%s with %s cancelled at step 3: %s after %d steps, output %s", refine ? "refine" : "generate",
                  ddpm_sampler_name(p.sampler), ddpm_status_name(s), log.calls,
                  all_equal(out, n, SENTINEL) ? "kept" : "written");
            free(in);
            free(out);
        }

    /* The same run without cancelling completes and writes the image. */
    ddpm_job_params p = params(K, 400);
    progress_log log = {0, 0, 0, 0};
    float *out = image(n, SENTINEL);
    ddpm_status s = ddpm_job_generate(m, &p, W, H, on_progress, &log, out, err, sizeof err);
    CHECK(s == DDPM_OK && log.calls == K && in_range(out, n), "uncancelled generate: %s (%s), %d steps",
          ddpm_status_name(s), err, log.calls);

    /* A tiled run cancels the same way (tile 16, halo 8 on 64 x 64). */
    const int S = 64;
    size_t ns = (size_t)3 * S * S;
    float *big = image(ns, SENTINEL), *in = image(ns, 0.0f);
    picture(in, S, S);
    for (int refine = 0; refine <= 1; refine++) {
        log = (progress_log){2, 0, 0, 0};
        s = refine ? job_refine_tiled(m, &p, 16, 8, S, S, in, NULL, on_progress, &log, big, err, sizeof err)
                   : job_generate_tiled(m, &p, 16, 8, S, S, on_progress, &log, big, err, sizeof err);
        CHECK(s == DDPM_CANCELLED && all_equal(big, ns, SENTINEL), "tiled %s cancelled: %s, output %s",
              refine ? "refine" : "generate", ddpm_status_name(s), all_equal(big, ns, SENTINEL) ? "kept" : "written");
    }
    free(big);
    free(in);
    free(out);
}

/* ------------------------------------------------------------------------ */
/* Memory budget                                                             */
/* ------------------------------------------------------------------------ */

static void test_budget(const ddpm_model *m)
{
    const int W = 40, H = 24;
    size_t n = (size_t)3 * W * H;
    char err[256];
    for (int refine = 0; refine <= 1; refine++) {
        const char *what = refine ? "refine" : "generate";
        ddpm_job_params p = params(2, 100);
        size_t need = ddpm_job_memory_estimate(m, &p, W, H, refine);
        size_t plan = ddpm_unet_plan_bytes_estimate(m, 1, H, W);
        CHECK(need > plan && need >= plan + (size_t)(refine ? 6 : 4) * n * sizeof(float),
              "%s: estimate %zu does not cover the plan %zu and the images", what, need, plan);
        float *in = image(n, 0.25f), *out = image(n, SENTINEL);

        p.memory_budget = need - 1;
        err[0] = 0;
        ddpm_status s = refine ? ddpm_job_refine(m, &p, W, H, in, NULL, NULL, NULL, out, err, sizeof err)
                               : ddpm_job_generate(m, &p, W, H, NULL, NULL, out, err, sizeof err);
        CHECK(s == DDPM_ERR_MEMORY && strstr(err, "memory budget") && strstr(err, "40x24"),
              "%s one byte over the budget: %s '%s'", what, ddpm_status_name(s), err);
        CHECK(all_equal(out, n, SENTINEL), "%s refused but wrote the output", what);

        p.memory_budget = need;
        s = refine ? ddpm_job_refine(m, &p, W, H, in, NULL, NULL, NULL, out, err, sizeof err)
                   : ddpm_job_generate(m, &p, W, H, NULL, NULL, out, err, sizeof err);
        CHECK(s == DDPM_OK && in_range(out, n), "%s exactly at the budget: %s '%s'", what, ddpm_status_name(s), err);
        free(in);
        free(out);
    }

    /* The largest image is refused from the estimate alone: nothing of its
     * 48 GiB per image is allocated, and `out` (one float here) is never
     * touched. */
    ddpm_job_params p = params(2, 100);
    p.memory_budget = (size_t)1 << 30;
    float dummy = SENTINEL;
    char msg[256] = "";
    ddpm_status s = ddpm_job_generate(m, &p, 65536, 65536, NULL, NULL, &dummy, msg, sizeof msg);
    CHECK(s == DDPM_ERR_MEMORY && dummy == SENTINEL, "65536^2 under 1 GiB: %s '%s'", ddpm_status_name(s), msg);
    printf("refused: %s\n", msg);

    /* Tiles keep the network's share flat: at 4096^2 the estimate is far
     * below the uncut plan, and grows by the images only. */
    p.memory_budget = 0;
    size_t e2k = ddpm_job_memory_estimate(m, &p, 2048, 2048, 1), e4k = ddpm_job_memory_estimate(m, &p, 4096, 4096, 1);
    size_t uncut = ddpm_unet_plan_bytes_estimate(m, 1, 4096, 4096);
    size_t images = (size_t)(6 * 3 + 1) * 4 * ((size_t)4096 * 4096 - (size_t)2048 * 2048);
    CHECK(e4k < uncut && e4k - e2k == images, "4096^2: estimate %zu MiB, uncut plan %zu MiB, growth %zu vs %zu",
          e4k >> 20, uncut >> 20, e4k - e2k, images);
    CHECK(ddpm_job_memory_estimate(m, &p, 0, 10, 0) == 0 && ddpm_job_memory_estimate(NULL, &p, 10, 10, 0) == 0,
          "impossible sizes must estimate 0");

    size_t def = ddpm_job_default_memory_budget();
    CHECK(def > ((size_t)64 << 20), "default budget %zu bytes is implausibly small", def);
    printf("default memory budget: %zu MiB\n", def >> 20);
}

/* ------------------------------------------------------------------------ */
/* NaN and Inf weights                                                       */
/* ------------------------------------------------------------------------ */

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size + 1);
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[size] = 0;
    *len = (size_t)size;
    return buf;
}

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = fwrite(data, 1, len, f) == len;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static int copy_file(const char *from_dir, const char *to_dir, const char *name)
{
    char a[2048], b[2048];
    snprintf(a, sizeof a, "%s/%s", from_dir, name);
    snprintf(b, sizeof b, "%s/%s", to_dir, name);
    size_t len;
    unsigned char *d = read_file(a, &len);
    if (!d)
        return errno == ENOENT ? 0 : -1;  /* scheduler_config.json is optional */
    int r = write_file(b, d, len);
    free(d);
    return r;
}

/* Copy the model to DIR with value `index` of tensor `name` replaced by
 * NaN (inf = 0) or +Inf (inf = 1), in the tensor's own dtype. */
static int poisoned_copy(const char *dir, const char *name, size_t index, int inf)
{
    mkdir(dir, 0755);
    if (copy_file(model_dir, dir, "config.json") || copy_file(model_dir, dir, "scheduler_config.json"))
        return -1;
    char path[2048];
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", model_dir);
    size_t len;
    unsigned char *d = read_file(path, &len);
    if (!d || len < 8)
        return -1;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | d[i];
    cJSON *root = hlen < len ? cJSON_ParseWithLength((const char *)d + 8, (size_t)hlen) : NULL;
    cJSON *t = cJSON_GetObjectItemCaseSensitive(root, name);
    cJSON *dtype = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    cJSON *offs = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    int r = -1;
    if (cJSON_IsString(dtype) && cJSON_IsArray(offs)) {
        size_t at = 8 + (size_t)hlen + (size_t)cJSON_GetArrayItem(offs, 0)->valuedouble;
        const char *ty = dtype->valuestring;
        if (!strcmp(ty, "F32") && at + 4 * index + 4 <= len) {
            float v = inf ? INFINITY : NAN;
            memcpy(d + at + 4 * index, &v, 4);  /* little-endian host, as the file */
            r = 0;
        } else if ((!strcmp(ty, "F16") || !strcmp(ty, "BF16")) && at + 2 * index + 2 <= len) {
            uint16_t v = !strcmp(ty, "F16") ? (inf ? 0x7C00 : 0x7E00) : (inf ? 0x7F80 : 0x7FC0);
            d[at + 2 * index] = (unsigned char)(v & 0xFF);
            d[at + 2 * index + 1] = (unsigned char)(v >> 8);
            r = 0;
        }
    }
    cJSON_Delete(root);
    if (r == 0) {
        snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
        r = write_file(path, d, len);
    }
    free(d);
    return r;
}

static void test_poisoned_weights(const ddpm_model *unused)
{
    (void)unused;
    struct {
        const char *tensor;
        size_t index;
        int inf;
    } cases[] = {
        {"conv_in.weight", 0, 0},
        {"mid_block.resnets.0.conv1.bias", 1, 1},
        {"up_blocks.0.resnets.0.norm1.weight", 2, 0},
        {"conv_out.bias", 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[1536];
        snprintf(dir, sizeof dir, "%s/poisoned-%zu", scratch, i);
        if (poisoned_copy(dir, cases[i].tensor, cases[i].index, cases[i].inf) != 0) {
            CHECK(0, "cannot make a copy of %s with %s in %s", model_dir, cases[i].inf ? "Inf" : "NaN",
                  cases[i].tensor);
            continue;
        }
        char err[512] = "";
        ddpm_model *m = NULL;
        ddpm_status s = ddpm_model_load(dir, &m, err, sizeof err);
        if (s != DDPM_OK) {  /* refusing at load is fine, if it says where */
            CHECK((s == DDPM_ERR_NUMERIC || s == DDPM_ERR_FORMAT) && strstr(err, cases[i].tensor),
                  "load of %s with a bad value: %s '%s'", cases[i].tensor, ddpm_status_name(s), err);
            printf("%s: the load refuses: %s\n", cases[i].tensor, err);
            continue;
        }
        const int W = 16, H = 16;
        size_t n = (size_t)3 * W * H;
        float *in = image(n, 0.1f), *out = image(n, SENTINEL);
        ddpm_job_params p = params(3, 300);
        for (int refine = 0; refine <= 1; refine++) {
            err[0] = 0;
            s = refine ? ddpm_job_refine(m, &p, W, H, in, NULL, NULL, NULL, out, err, sizeof err)
                       : ddpm_job_generate(m, &p, W, H, NULL, NULL, out, err, sizeof err);
            CHECK(s == DDPM_ERR_NUMERIC && (strstr(err, "NaN") || strstr(err, "Inf") || strstr(err, "infinite")),
                  "%s with %s in %s: %s '%s'", refine ? "refine" : "generate", cases[i].inf ? "Inf" : "NaN",
                  cases[i].tensor, ddpm_status_name(s), err);
            CHECK(all_equal(out, n, SENTINEL), "a job on poisoned weights wrote the output");
            if (refine)
                printf("%s: %s\n", cases[i].tensor, err);
        }
        /* tiled: the failing window is named */
        float *big = image(4 * n, SENTINEL);
        s = job_generate_tiled(m, &p, 8, 8, 2 * W, 2 * H, NULL, NULL, big, err, sizeof err);
        CHECK(s == DDPM_ERR_NUMERIC && strstr(err, "tile"), "tiled run on poisoned weights: %s '%s'",
              ddpm_status_name(s), err);
        CHECK(all_equal(big, 4 * n, SENTINEL), "a tiled job on poisoned weights wrote the output");
        free(big);
        free(in);
        free(out);
        ddpm_model_free(m);
    }
}

/* ------------------------------------------------------------------------ */
/* Tiles through the real network                                           */
/* ------------------------------------------------------------------------ */

/* One run of S x S with the given tile size and thread count. */
static float *tiled_run(const ddpm_model *m, const ddpm_job_params *p, int refine, const float *in, int S, int tile,
                        int halo, int threads)
{
    size_t n = (size_t)3 * S * S;
    float *out = image(n, SENTINEL);
    char err[256] = "";
    ddpm_set_threads(threads);
    ddpm_status s = refine ? job_refine_tiled(m, p, tile, halo, S, S, in, NULL, NULL, NULL, out, err, sizeof err)
                           : job_generate_tiled(m, p, tile, halo, S, S, NULL, NULL, out, err, sizeof err);
    ddpm_set_threads(1);
    CHECK(s == DDPM_OK && in_range(out, n), "%s %dx%d, tile %d, %d threads: %s '%s'", refine ? "refine" : "generate",
          S, S, tile, threads, ddpm_status_name(s), err);
    return out;
}

static void test_tiled_runs(const ddpm_model *m)
{
    const int S = 64, K = 4, tile = 32, halo = 8;  /* 2 x 2 tiles in windows of 48 */
    size_t n = (size_t)3 * S * S;
    float *in = image(n, 0.0f);
    picture(in, S, S);
    for (int tileable = 0; tileable <= 1; tileable++)
        for (int refine = 0; refine <= 1; refine++) {
            const char *what = refine ? "refine" : "generate";
            ddpm_job_params p = params(K, 250);
            p.tileable = tileable;
            float *tiled = tiled_run(m, &p, refine, in, S, tile, halo, 1);
            float *uncut = tiled_run(m, &p, refine, in, S, JOB_TILE, halo, 1);

            /* Repeatable, and the same with two threads (checked for two of
             * the four variants, to keep the test short). */
            if (tileable == refine) {
                float *again = tiled_run(m, &p, refine, in, S, tile, halo, 1);
                float *two = tiled_run(m, &p, refine, in, S, tile, halo, 2);
                CHECK(memcmp(tiled, again, n * sizeof(float)) == 0, "tiled %s is not deterministic", what);
                CHECK(memcmp(tiled, two, n * sizeof(float)) == 0, "tiled %s depends on the thread count", what);
                free(again);
                free(two);
            }

            /* Tiled and uncut differ (GroupNorm statistics are per window)
             * but only a little; a misplaced tile would not be close. */
            double sum = 0.0, max = 0.0;
            for (size_t i = 0; i < n; i++) {
                double d = fabs((double)tiled[i] - uncut[i]);
                sum += d;
                max = d > max ? d : max;
            }
            double mean = sum / (double)n;
            printf("%s%s %dx%d, tiles of %d + %d halo vs uncut: mean |diff| %.4f, max %.4f (of 2)\n", what,
                   tileable ? " tileable" : "", S, S, tile, halo, mean, max);
            CHECK(mean < 0.1, "tiled %s is far from the uncut run: mean |diff| %.4f", what, mean);
            free(tiled);
            free(uncut);
        }
    free(in);
}

/* ------------------------------------------------------------------------ */
/* Period-first generation                                                   */
/* ------------------------------------------------------------------------ */

/* Mean |out(y, x) - cell(y mod py, x mod px)| over a W x H image. */
static double repeat_error(const float *out, int W, int H, const float *cell, int px, int py)
{
    double sum = 0.0;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                sum += fabs((double)out[((size_t)c * H + y) * W + x] - cell[((size_t)c * py + y % py) * px + x % px]);
    return sum / (3.0 * W * H);
}

static void test_period(const ddpm_model *m)
{
    /* Tileable 96 x 80 with a period of 32: 32 divides 96; of the sizes that
     * divide 80 (8, 16, 40) 40 is the nearest, so the cell is 32 x 40. */
    const int W = 96, H = 80, K = 3, px = 32, py = 40;
    size_t n = (size_t)3 * W * H, cell_n = (size_t)3 * px * py;
    char err[256] = "";
    ddpm_job_params p = params(K, 0);
    p.tileable = 1;
    p.period = 32;
    p.period_t = 1;   /* a refine from t = 1 keeps the repeated period almost exactly */

    float *out = image(n, SENTINEL);
    progress_log log = {0};
    ddpm_status s = ddpm_job_generate(m, &p, W, H, on_progress, &log, out, err, sizeof err);
    CHECK(s == DDPM_OK && in_range(out, n), "period run: %s '%s'", ddpm_status_name(s), err);
    CHECK(log.total == K + 1 && log.last_step == K + 1 && log.calls == K + 1,
          "period run: progress counted %d calls to %d of %d, expected %d steps of the period and 1 of the refine",
          log.calls, log.last_step, log.total, K);

    /* The result is the tileable generate of the cell's size, repeated. */
    ddpm_job_params q = p;
    q.period = 0;
    float *cell = image(cell_n, SENTINEL);
    s = ddpm_job_generate(m, &q, px, py, NULL, NULL, cell, err, sizeof err);
    CHECK(s == DDPM_OK, "the period alone: %s '%s'", ddpm_status_name(s), err);
    double e = repeat_error(out, W, H, cell, px, py);
    printf("period 32 of 96x80 tileable, refined from t = 1: mean |out - repeated 32x40 cell| %.4f (of 2)\n", e);
    CHECK(e < 0.05, "the result does not repeat the 32x40 period: mean |diff| %.4f", e);

    /* A larger period_t changes the image: it must not be the bare repetition. */
    p.period_t = 400;
    float *refined = image(n, SENTINEL);
    s = ddpm_job_generate(m, &p, W, H, NULL, NULL, refined, err, sizeof err);
    e = repeat_error(refined, W, H, cell, px, py);
    printf("refined from t = 400: mean |out - repeated cell| %.4f\n", e);
    CHECK(s == DDPM_OK && e > 0.05, "refined from t = 400: %s, mean |diff| from the repetition %.4f",
          ddpm_status_name(s), e);

    /* A period that covers the image is an ordinary generate. */
    float *whole = image(n, SENTINEL), *plain = image(n, SENTINEL);
    p.period = 128;
    q = p;
    q.period = 0;
    s = ddpm_job_generate(m, &p, W, H, NULL, NULL, whole, err, sizeof err);
    ddpm_status s2 = ddpm_job_generate(m, &q, W, H, NULL, NULL, plain, err, sizeof err);
    CHECK(s == DDPM_OK && s2 == DDPM_OK && memcmp(whole, plain, n * sizeof(float)) == 0,
          "a period larger than the image changed the result");

    /* Cancelled in either chain, or refused for memory: out is untouched. */
    p.period = 32;
    for (int at = 1; at <= K + 1; at += K) {
        float *x = image(n, SENTINEL);
        progress_log stop = { .cancel_at = at };
        s = ddpm_job_generate(m, &p, W, H, on_progress, &stop, x, err, sizeof err);
        CHECK(s == DDPM_CANCELLED && all_equal(x, n, SENTINEL), "period run cancelled at step %d: %s, out %s", at,
              ddpm_status_name(s), all_equal(x, n, SENTINEL) ? "untouched" : "written");
        free(x);
    }
    size_t need = ddpm_job_memory_estimate(m, &p, W, H, 0);
    q = p;
    q.period = 0;
    CHECK(need > ddpm_job_memory_estimate(m, &q, W, H, 0), "the estimate does not count the period's refine");
    p.memory_budget = need - 1;
    float *x = image(n, SENTINEL);
    s = ddpm_job_generate(m, &p, W, H, NULL, NULL, x, err, sizeof err);
    CHECK(s == DDPM_ERR_MEMORY && all_equal(x, n, SENTINEL), "period run one byte over budget: %s",
          ddpm_status_name(s));
    p.memory_budget = need;
    s = ddpm_job_generate(m, &p, W, H, NULL, NULL, x, err, sizeof err);
    CHECK(s == DDPM_OK, "period run at exactly its estimate: %s '%s'", ddpm_status_name(s), err);

    /* Refused: a period off the stride, a period timestep past T. */
    p.memory_budget = 0;
    p.period = 20;
    s = ddpm_job_generate(m, &p, W, H, NULL, NULL, x, err, sizeof err);
    CHECK(s == DDPM_ERR_ARGUMENT && strstr(err, "multiple of 8"), "period 20: %s '%s'", ddpm_status_name(s), err);
    p.period = 32;
    p.period_t = 1001;
    s = ddpm_job_generate(m, &p, W, H, NULL, NULL, x, err, sizeof err);
    CHECK(s == DDPM_ERR_ARGUMENT, "period timestep 1001: %s '%s'", ddpm_status_name(s), err);
    p.period_t = 400;
    p.period = -2;
    free(x);
    x = image(n, SENTINEL);
    s = ddpm_job_generate(m, &p, W, H, NULL, NULL, x, err, sizeof err);
    CHECK(s == DDPM_ERR_ARGUMENT && all_equal(x, n, SENTINEL), "period -2: %s '%s'", ddpm_status_name(s), err);

    /* DDPM_PERIOD_MODEL is the model's training size, here 16: the shape the
     * job reports, and the image, are those of period 16. */
    ddpm_model_info mi;
    ddpm_model_get_info(m, &mi);
    int gy = 0, gx = 0;
    p.period = DDPM_PERIOD_MODEL;
    int periodic = ddpm_job_period_shape(m, &p, W, H, &gy, &gx);
    CHECK(mi.sample_size == 16 && periodic && gy == 16 && gx == 16,
          "the model's period: sample_size %d, shape %d (%dx%d), expected 16x16", mi.sample_size, periodic, gx, gy);
    CHECK(!ddpm_job_period_shape(m, &p, 16, 16, &gy, &gx), "a 16x16 image at the model's period is period-first");
    q = p;
    q.period = 16;
    s = ddpm_job_generate(m, &p, W, H, NULL, NULL, x, err, sizeof err);
    s2 = ddpm_job_generate(m, &q, W, H, NULL, NULL, refined, err, sizeof err);
    CHECK(s == DDPM_OK && s2 == DDPM_OK && memcmp(x, refined, n * sizeof(float)) == 0,
          "period DDPM_PERIOD_MODEL is not period 16: %s / %s", ddpm_status_name(s), ddpm_status_name(s2));
    q.period = 0;
    CHECK(!ddpm_job_period_shape(m, &q, W, H, &gy, &gx), "period 0 reports a period");

    /* With DDIM both chains take period_eta, never eta (which is for images
     * generated whole): the period at period_t = 1 is the whole generate
     * of its size at eta = period_eta. */
    p.period = 32;
    p.period_t = 1;
    p.sampler = DDPM_SAMPLER_DDIM;
    p.eta = 1.0f;
    p.period_eta = 0.0f;
    s = ddpm_job_generate(m, &p, W, H, NULL, NULL, x, err, sizeof err);
    q = p;
    q.eta = 0.0f;
    s2 = ddpm_job_generate(m, &q, W, H, NULL, NULL, refined, err, sizeof err);
    CHECK(s == DDPM_OK && s2 == DDPM_OK && memcmp(x, refined, n * sizeof(float)) == 0,
          "eta changed a period-first image: %s / %s", ddpm_status_name(s), ddpm_status_name(s2));
    q.period = 0;
    s = ddpm_job_generate(m, &q, px, py, NULL, NULL, cell, err, sizeof err);
    e = repeat_error(x, W, H, cell, px, py);
    printf("ddim, period eta 0, refined from t = 1: mean |out - repeated deterministic cell| %.4f\n", e);
    CHECK(s == DDPM_OK && e < 0.05, "the period was not made at eta = period_eta: mean |diff| %.4f", e);
    q = p;
    q.period_eta = 1.0f;
    s = ddpm_job_generate(m, &q, W, H, NULL, NULL, refined, err, sizeof err);
    CHECK(s == DDPM_OK && memcmp(x, refined, n * sizeof(float)) != 0, "period_eta 1 gave the image of period_eta 0");
    q.period_eta = 1.5f;
    float *untouched = image(n, SENTINEL);
    s = ddpm_job_generate(m, &q, W, H, NULL, NULL, untouched, err, sizeof err);
    CHECK(s == DDPM_ERR_ARGUMENT && strstr(err, "period eta") && all_equal(untouched, n, SENTINEL),
          "period eta 1.5: %s '%s'", ddpm_status_name(s), err);

    /* period_steps is the period's own K: 0 takes steps, any other value
     * gives the period of a whole generate at that K (checked at t = 1), and
     * progress counts its steps, then the refine's one. */
    q = p;
    q.period_steps = K;
    s = ddpm_job_generate(m, &q, W, H, NULL, NULL, refined, err, sizeof err);
    CHECK(s == DDPM_OK && memcmp(x, refined, n * sizeof(float)) == 0, "period_steps = steps differs from 0: %s",
          ddpm_status_name(s));
    const int K_period = 7;
    q.period_steps = K_period;
    progress_log counted = {0};
    s = ddpm_job_generate(m, &q, W, H, on_progress, &counted, refined, err, sizeof err);
    CHECK(s == DDPM_OK && counted.total == K_period + 1 && counted.last_step == K_period + 1,
          "period_steps %d: %s, progress to %d of %d, expected %d", K_period, ddpm_status_name(s),
          counted.last_step, counted.total, K_period + 1);
    CHECK(memcmp(x, refined, n * sizeof(float)) != 0, "period_steps %d gave the image of %d steps", K_period, K);
    ddpm_job_params alone = q;
    alone.period = 0;
    alone.steps = K_period;
    alone.eta = q.period_eta;
    s = ddpm_job_generate(m, &alone, px, py, NULL, NULL, cell, err, sizeof err);
    e = repeat_error(refined, W, H, cell, px, py);
    alone.steps = K;
    ddpm_status s_K = ddpm_job_generate(m, &alone, px, py, NULL, NULL, cell, err, sizeof err);
    double e_K = repeat_error(refined, W, H, cell, px, py);
    printf("period_steps %d, refined from t = 1: mean |out - repeated cell| %.4f (%d-step cell), %.4f (%d-step)\n",
           K_period, e, K_period, e_K, K);
    CHECK(s == DDPM_OK && s_K == DDPM_OK && e < 0.05 && e < e_K / 2,
          "the period was not made in period_steps: mean |diff| %.4f, from a %d-step period %.4f", e, K, e_K);

    /* Refused before either chain runs: period_steps past T or negative, and
     * steps past T even when the period has its own. */
    int bad_period_steps[] = { 1001, -1 };
    for (int i = 0; i < 2; i++) {
        q.period_steps = bad_period_steps[i];
        s = ddpm_job_generate(m, &q, W, H, NULL, NULL, untouched, err, sizeof err);
        CHECK(s == DDPM_ERR_ARGUMENT && strstr(err, "period steps") && all_equal(untouched, n, SENTINEL),
              "period steps %d: %s '%s'", bad_period_steps[i], ddpm_status_name(s), err);
    }
    q.period_steps = K_period;
    q.steps = 1001;
    progress_log never = {0};
    s = ddpm_job_generate(m, &q, W, H, on_progress, &never, untouched, err, sizeof err);
    CHECK(s == DDPM_ERR_ARGUMENT && never.calls == 0 && all_equal(untouched, n, SENTINEL),
          "steps 1001 with period_steps %d: %s '%s', %d progress calls", K_period, ddpm_status_name(s), err,
          never.calls);
    free(untouched);
    free(x);
    free(out);
    free(cell);
    free(refined);
    free(whole);
    free(plain);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL_DIR SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    model_dir = argv[1];
    scratch = argv[2];
    /* One thread: the runs are small, and a busy machine makes thread
     * barriers slow; the thread-count check sets its own. */
    ddpm_set_threads(1);
    char err[512];
    ddpm_model *m = NULL;
    ddpm_status s = ddpm_model_load(model_dir, &m, err, sizeof err);
    if (s != DDPM_OK) {
        fprintf(stderr, "cannot load %s: %s\n", model_dir, err);
        return 1;
    }
    struct {
        const char *name;
        void (*run)(const ddpm_model *);
    } parts[] = {{"cancel", test_cancel}, {"budget", test_budget}, {"poisoned weights", test_poisoned_weights},
                 {"tiled runs", test_tiled_runs}, {"period-first generation", test_period}};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        clock_t t0 = clock();
        parts[i].run(m);
        printf("-- %s: %.2f s of CPU\n", parts[i].name, (double)(clock() - t0) / CLOCKS_PER_SEC);
    }
    ddpm_model_free(m);
    return check_report("robust job");
}
