/* test_cli_run.c: `ddpm` end to end with a small test model.
 *
 *   generate   PNG of the asked size (not a multiple of the stride); same seed
 *              -> identical bytes, other seed -> different; any thread count
 *              -> identical; the .safetensors output maps to the PNG's pixels
 *              through ddpm_to_u8; Ctrl-C -> exit 130, output left unchanged;
 *              --sampler / --eta / --period reach the job (the PNG is
 *              ddpm_job_generate's)
 *   refine     RGBA PNG + mask: alpha kept, black part of the mask unchanged,
 *              white part changed; .safetensors in and out; mask of the
 *              wrong size -> exit 2
 *   forward    timestep [1] broadcasts like [N]; output shape [N,C,H,W]; the
 *              engine suite's diffusers vectors are reproduced (plain, --circular)
 *   info/bench run and print their figures
 *
 * usage: test_cli_run DDPM MODEL_DIR SCRATCH_DIR   (exit 77 = skipped: no model)
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "ddpm.h"
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

static const char *ddpm_path, *model_dir;
static char scratch[4096];
static char log_path[4200];

static const char *path_in_scratch(const char *name)
{
    static char paths[8][4300];
    static int next = 0;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", scratch, name);
    return p;
}

/* ------------------------------------------------------------------------ */
/* Running ddpm                                                              */
/* ------------------------------------------------------------------------ */

#define MAX_ARGS 40

static void collect_args(const char *argv[MAX_ARGS], const char *first, va_list ap)
{
    int n = 0;
    argv[n++] = ddpm_path;
    for (const char *a = first; a && n < MAX_ARGS - 1; a = va_arg(ap, const char *))
        argv[n++] = a;
    argv[n] = NULL;
}

static int exit_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Run `ddpm ARGS... NULL` with stdout and stderr in log_path; its exit code. */
static int ddpm(const char *first, ...)
{
    const char *argv[MAX_ARGS];
    va_list ap;
    va_start(ap, first);
    collect_args(argv, first, ap);
    va_end(ap);

    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            _exit(126);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execv(ddpm_path, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0)
        return -1;
    return exit_code(status);
}

static char *read_whole(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, fp)) > 0;) {
        n += got;
        if (n == cap) {
            char *bigger = realloc(buf, 2 * cap + 1);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(fp);
    if (buf)
        buf[n] = '\0';
    if (size)
        *size = n;
    return buf;
}

static int log_contains(const char *text)
{
    char *log = read_whole(log_path, NULL);
    int found = log && strstr(log, text) != NULL;
    free(log);
    return found;
}

static void show_log(void)
{
    char *log = read_whole(log_path, NULL);
    fprintf(stderr, "---- ddpm output ----\n%s---------------------\n", log ? log : "(none)\n");
    free(log);
}

/* Run ddpm and require exit code `want`; prints the output when it differs. */
#define RUN(want, ...)                                                         \
    do {                                                                       \
        int got_ = ddpm(__VA_ARGS__, (const char *)NULL);                      \
        CHECK(got_ == (want), "exit %d, expected %d", got_, (want));           \
        if (got_ != (want))                                                    \
            show_log();                                                        \
    } while (0)

static int same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = read_whole(a, &na), *y = read_whole(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* The 8-bit values of the RGB PNG at `path` that differ from ddpm_to_u8 of
 * x (3 x h x w planar); -1 when it cannot be read or has another size. */
static int png_values_differing(const char *path, const float *x, int w, int h)
{
    char err[512] = "";
    image_u8 img;
    if (image_read_png(path, IMAGE_READ_COLOR, &img, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", path, err);
        return -1;
    }
    int differ = img.width == w && img.height == h && img.channels == 3 ? 0 : -1;
    for (int i = 0; differ >= 0 && i < w * h; i++)
        for (int ch = 0; ch < 3; ch++)
            differ += ddpm_to_u8(x[ch * w * h + i]) != img.pixels[3 * i + ch];
    image_free(&img);
    return differ;
}

/* ------------------------------------------------------------------------ */
/* generate                                                                  */
/* ------------------------------------------------------------------------ */

enum { W = 20, H = 12 }; /* deliberately not a multiple of any stride > 4 */

static void test_generate(void)
{
    const char *a = path_in_scratch("a.png"), *b = path_in_scratch("b.png"), *c = path_in_scratch("c.png");
    RUN(0, "generate", "--model", model_dir, "--size", "20x12", "--steps", "3", "--seed", "1", "--output", a);
    CHECK(log_contains("seed 1"), "the seed is not printed");
    char err[512] = "";
    image_u8 img;
    CHECK(image_read_png(a, IMAGE_READ_COLOR, &img, err, sizeof err) == 0, "%s", err);
    CHECK(img.width == W && img.height == H && img.channels == 3, "%dx%d with %d channels, expected 20x12 RGB",
          img.width, img.height, img.channels);
    image_free(&img);

    RUN(0, "generate", "--model", model_dir, "--size", "20x12", "--steps", "3", "--seed", "1", "--output", b,
        "--threads", "1");
    CHECK(same_file(a, b), "same seed, 1 thread vs default: files differ");
    RUN(0, "generate", "--model", model_dir, "--size", "20x12", "--steps", "3", "--seed", "2", "--output", c);
    CHECK(!same_file(a, c), "seeds 1 and 2 gave the same file");

    /* The options reach the job: each changes the image. */
    RUN(0, "generate", "--model", model_dir, "--size", "20x12", "--steps", "3", "--seed", "1", "--output", c,
        "--tileable");
    CHECK(!same_file(a, c), "--tileable gave the same file");
    RUN(0, "generate", "--model", model_dir, "--size", "20x12", "--steps", "3", "--seed", "1", "--output", c,
        "--sampler", "ddpm", "--variance", "beta");
    RUN(0, "generate", "--model", model_dir, "--size", "20x12", "--steps", "3", "--seed", "1", "--output", b,
        "--sampler", "ddpm", "--variance", "posterior");
    CHECK(!same_file(b, c), "--variance beta and posterior gave the same file");
    RUN(0, "generate", "--model", model_dir, "--size", "20x12", "--steps", "4", "--seed", "1", "--output", c);
    CHECK(!same_file(a, c), "--steps 3 and 4 gave the same file");
}

/* --sampler, --eta and --eta-t-max reach the job: the PNG is exactly
 * ddpm_job_generate's image with those settings (the core's defaults where an
 * option is not given), and differs from DDPM's (ddpm.png). */
static void test_samplers(const ddpm_model *m)
{
    struct {
        const char *sampler, *eta, *eta_t_max;
        ddpm_sampler value;
        float eta_value;
        int eta_t_max_value;
    } runs[] = {
        {"ddim", "0", NULL, DDPM_SAMPLER_DDIM, 0.0f, DDPM_DEFAULT_ETA_T_MAX},
        {"ddim", "0.5", NULL, DDPM_SAMPLER_DDIM, 0.5f, DDPM_DEFAULT_ETA_T_MAX},
        {"ddim", "0.5", "0", DDPM_SAMPLER_DDIM, 0.5f, 0},          /* noise on every step */
        {"ddim", NULL, "900", DDPM_SAMPLER_DDIM, (float)DDPM_DEFAULT_ETA, 900},
        {"ddim", NULL, NULL, DDPM_SAMPLER_DDIM, (float)DDPM_DEFAULT_ETA, DDPM_DEFAULT_ETA_T_MAX},
        {"dpm-solver++", NULL, NULL, DDPM_SAMPLER_DPM_SOLVER_PP, 0.0f, DDPM_DEFAULT_ETA_T_MAX},
    };
    ddpm_model_info mi;
    ddpm_model_get_info(m, &mi);
    float *x = malloc(3 * W * H * sizeof(float));
    /* --period 0: a period-first image takes --period-eta instead of --eta. */
    RUN(0, "generate", "--model", model_dir, "--size", "20x12", "--steps", "3", "--seed", "1", "--period", "0",
        "--output", path_in_scratch("ddpm.png"), "--sampler", "ddpm");
    for (size_t k = 0; x != NULL && k < sizeof runs / sizeof runs[0]; k++) {
        const char *out = path_in_scratch("sampler.png");
        /* The options given, then NULLs: the first NULL ends the command line. */
        const char *opt[4] = {NULL, NULL, NULL, NULL};
        int n_opt = 0;
        if (runs[k].eta) {
            opt[n_opt++] = "--eta";
            opt[n_opt++] = runs[k].eta;
        }
        if (runs[k].eta_t_max) {
            opt[n_opt++] = "--eta-t-max";
            opt[n_opt++] = runs[k].eta_t_max;
        }
        RUN(0, "generate", "--model", model_dir, "--size", "20x12", "--steps", "3", "--seed", "1", "--period", "0",
            "--output", out, "--sampler", runs[k].sampler, opt[0], opt[1], opt[2], opt[3]);
        CHECK(log_contains(runs[k].sampler), "the sampler is not printed");
        CHECK(!same_file(out, path_in_scratch("ddpm.png")), "--sampler %s gave DDPM's image", runs[k].sampler);
        ddpm_job_params p = {.steps = 3, .variance = mi.scheduler->variance_type, .seed = 1,
                             .sampler = runs[k].value, .eta = runs[k].eta_value,
                             .eta_t_max = runs[k].eta_t_max_value};
        char err[512] = "";
        ddpm_status s = ddpm_job_generate(m, &p, W, H, NULL, NULL, x, err, sizeof err);
        CHECK(s == DDPM_OK, "%s: %s", runs[k].sampler, err);
        int differ = s == DDPM_OK ? png_values_differing(out, x, W, H) : -1;
        CHECK(differ == 0, "--sampler %s --eta %s --eta-t-max %s: %d values differ from ddpm_job_generate",
              runs[k].sampler, runs[k].eta ? runs[k].eta : "-", runs[k].eta_t_max ? runs[k].eta_t_max : "-", differ);
    }
    free(x);
    /* --variance with another sampler is accepted, with a note. */
    RUN(0, "generate", "--model", model_dir, "--size", "20x12", "--steps", "2", "--output",
        path_in_scratch("sampler.png"), "--sampler", "dpm-solver++", "--variance", "beta");
    CHECK(log_contains("--variance only changes --sampler ddpm"), "no note about --variance");
}

/* Errors found once the model is known: no output, the right exit code. */
static void test_generate_refused(int T)
{
    const char *out = path_in_scratch("refused.png");
    char steps[32];
    snprintf(steps, sizeof steps, "%d", T + 1);
    RUN(2, "generate", "--model", model_dir, "--size", "8x8", "--steps", steps, "--output", out);
    CHECK(log_contains("is more than T ="), "steps > T not explained");
    RUN(1, "generate", "--model", model_dir, "--size", "256x256", "--memory-budget", "1", "--output", out);
    CHECK(log_contains("memory budget"), "memory budget refusal not explained");
    RUN(2, "generate", "--model", model_dir, "--size", "64x64", "--period", "12", "--output", out);
    CHECK(log_contains("must be a multiple of 8"), "a period off the stride not explained");
    snprintf(steps, sizeof steps, "%d", T + 1);
    RUN(2, "generate", "--model", model_dir, "--size", "64x64", "--period", "16", "--period-t", steps, "--output",
        out);
    CHECK(log_contains("--period-t") && log_contains("is more than T ="), "period-t > T not explained");
    RUN(2, "generate", "--model", model_dir, "--size", "64x64", "--period", "16", "--period-steps", steps,
        "--output", out);
    CHECK(log_contains("--period-steps") && log_contains("is more than T ="), "period-steps > T not explained");
    CHECK(access(out, F_OK) != 0, "a refused run wrote its output");
}

/* --period and --period-t reach the job: the PNG is exactly ddpm_job_generate's
 * period-first image, which is not the plain one. */
static void test_period(const ddpm_model *m)
{
    enum { PW = 48, PH = 32 };
    ddpm_model_info mi;
    ddpm_model_get_info(m, &mi);
    const char *out = path_in_scratch("period.png"), *plain = path_in_scratch("period-plain.png");
    RUN(0, "generate", "--model", model_dir, "--size", "48x32", "--steps", "3", "--seed", "1", "--tileable",
        "--period", "16", "--period-t", "300", "--output", out);
    char period_line[96];
    snprintf(period_line, sizeof period_line, "period 16x16 in %d steps refined from t = 300",
             DDPM_DEFAULT_PERIOD_STEPS);
    CHECK(log_contains(period_line), "the period is not printed");
    RUN(0, "generate", "--model", model_dir, "--size", "48x32", "--steps", "3", "--seed", "1", "--tileable",
        "--period", "0", "--output", plain);
    CHECK(!log_contains("refined from"), "--period 0 printed a period");
    CHECK(!same_file(out, plain), "--period 16 gave the plain image");
    /* Without --period the period is the model's training size (its config's sample_size). */
    const char *auto_out = path_in_scratch("period-auto.png");
    RUN(0, "generate", "--model", model_dir, "--size", "48x32", "--steps", "3", "--seed", "1", "--tileable",
        "--period-t", "300", "--output", auto_out);
    CHECK(mi.sample_size == 16 && same_file(out, auto_out),
          "without --period: not --period 16's image (the model's sample_size is %d)", mi.sample_size);
    ddpm_job_params p = {.steps = 3, .variance = mi.scheduler->variance_type, .seed = 1, .tileable = 1,
                         .sampler = DDPM_DEFAULT_SAMPLER, .eta = (float)DDPM_DEFAULT_ETA,
                         .eta_t_max = DDPM_DEFAULT_ETA_T_MAX, .period = 16, .period_t = 300,
                         .period_steps = DDPM_DEFAULT_PERIOD_STEPS};
    float *x = malloc(3 * PW * PH * sizeof(float));
    char err[512] = "";
    int ok = x && ddpm_job_generate(m, &p, PW, PH, NULL, NULL, x, err, sizeof err) == DDPM_OK;
    CHECK(ok, "period: %s", err);
    int differ = ok ? png_values_differing(out, x, PW, PH) : -1;
    CHECK(differ == 0, "--period 16 --period-t 300: %d values differ from ddpm_job_generate", differ);
    /* --eta does not change a period-first image, and the user is told so. */
    const char *eta_out = path_in_scratch("period-with-eta.png");
    RUN(0, "generate", "--model", model_dir, "--size", "48x32", "--steps", "3", "--seed", "1", "--tileable",
        "--period", "16", "--period-t", "300", "--eta", "0.3", "--output", eta_out);
    CHECK(log_contains("--eta is for images generated whole"), "no note that --eta is not used");
    CHECK(same_file(out, eta_out), "--eta changed a period-first image");
    /* --period-eta reaches the job, and the run line shows the eta the chains take. */
    const char *noisy = path_in_scratch("period-eta.png");
    RUN(0, "generate", "--model", model_dir, "--size", "48x32", "--steps", "3", "--seed", "1", "--tileable",
        "--period", "16", "--period-t", "300", "--period-eta", "0.75", "--output", noisy);
    CHECK(log_contains("ddim, eta 0.75 from t <= "), "--period-eta is not printed as the chains' eta");
    CHECK(!same_file(out, noisy), "--period-eta 0.75 gave the image of the default period eta");
    p.period_eta = 0.75f;
    ok = x && ddpm_job_generate(m, &p, PW, PH, NULL, NULL, x, err, sizeof err) == DDPM_OK;
    CHECK(ok, "period eta: %s", err);
    differ = ok ? png_values_differing(noisy, x, PW, PH) : -1;
    CHECK(differ == 0, "--period-eta 0.75: %d values differ from ddpm_job_generate", differ);
    /* --period-steps reaches the job and the run line. */
    const char *short_period = path_in_scratch("period-steps.png");
    RUN(0, "generate", "--model", model_dir, "--size", "48x32", "--steps", "3", "--seed", "1", "--tileable",
        "--period", "16", "--period-t", "300", "--period-steps", "4", "--output", short_period);
    CHECK(log_contains("period 16x16 in 4 steps"), "--period-steps is not printed");
    CHECK(!same_file(out, short_period), "--period-steps 4 gave the image of the default period steps");
    p.period_eta = (float)DDPM_DEFAULT_PERIOD_ETA;
    p.period_steps = 4;
    ok = x && ddpm_job_generate(m, &p, PW, PH, NULL, NULL, x, err, sizeof err) == DDPM_OK;
    CHECK(ok, "period steps: %s", err);
    differ = ok ? png_values_differing(short_period, x, PW, PH) : -1;
    CHECK(differ == 0, "--period-steps 4: %d values differ from ddpm_job_generate", differ);
    free(x);
}

/* The raw tensor output, mapped with ddpm_to_u8, is the PNG output. */
static void test_generate_tensor(void)
{
    const char *t = path_in_scratch("a.safetensors");
    RUN(0, "generate", "--model", model_dir, "--size", "20x12", "--steps", "3", "--seed", "1", "--output", t);
    float *x = NULL;
    int64_t shape[DDPM_MAX_DIMS];
    int ndim = 0;
    char err[512] = "";
    CHECK(ddpm_tensor_read(t, "sample", &x, shape, &ndim, err, sizeof err) == DDPM_OK, "%s", err);
    CHECK(ndim == 4 && shape[0] == 1 && shape[1] == 3 && shape[2] == H && shape[3] == W,
          "shape has %d dims, expected [1,3,12,20]", ndim);
    if (x && ndim == 4 && shape[2] == H && shape[3] == W) {
        int differ = png_values_differing(path_in_scratch("a.png"), x, W, H);
        CHECK(differ == 0, "%d PNG values differ from ddpm_to_u8(tensor)", differ);
    }
    free(x);
}

/* Ctrl-C after the first step: exit 130, "cancelled", the old file intact. */
static void test_cancel(int T)
{
    const char *out = path_in_scratch("cancel.png");
    const char before[] = "previous content";
    FILE *fp = fopen(out, "wb");
    CHECK(fp && fwrite(before, 1, sizeof before, fp) == sizeof before, "cannot write %s", out);
    if (fp)
        fclose(fp);

    char steps[32];
    snprintf(steps, sizeof steps, "%d", T);
    const char *argv[] = { ddpm_path, "generate", "--model", model_dir, "--size", "32x32", "--steps", steps,
                           "--output", out, NULL };
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pipefd[1], STDERR_FILENO);
        close(pipefd[0]);
        close(pipefd[1]);
        execv(ddpm_path, (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    /* Wait for the first progress line, then press Ctrl-C. */
    char text[8192] = "";
    size_t n = 0;
    int signalled = 0;
    for (ssize_t got; n < sizeof text - 1 && (got = read(pipefd[0], text + n, sizeof text - 1 - n)) > 0;) {
        n += (size_t)got;
        text[n] = '\0';
        if (!signalled && strstr(text, "step ")) {
            kill(pid, SIGINT);
            signalled = 1;
        }
    }
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(signalled, "no progress line seen: %s", text);
    if (exit_code(status) == 0) {
        printf("note: the run finished before Ctrl-C arrived; cancel not checked\n");
        return;
    }
    CHECK(exit_code(status) == 130, "exit %d after Ctrl-C, expected 130:\n%s", exit_code(status), text);
    CHECK(strstr(text, "ddpm: cancelled") != NULL, "no 'ddpm: cancelled' in:\n%s", text);
    size_t size = 0;
    char *after = read_whole(out, &size);
    CHECK(after && size == sizeof before && memcmp(after, before, size) == 0, "a cancelled run changed %s", out);
    free(after);
}

/* ------------------------------------------------------------------------ */
/* refine                                                                    */
/* ------------------------------------------------------------------------ */

/* in.png: a.png with an alpha ramp; mask.png: left half black, right white. */
static int make_refine_inputs(void)
{
    char err[512] = "";
    image_u8 rgb, rgba, mask;
    if (image_read_png(path_in_scratch("a.png"), IMAGE_READ_COLOR, &rgb, err, sizeof err) != 0)
        return -1;
    int ok = image_alloc(&rgba, W, H, 4, err, sizeof err) == 0 && image_alloc(&mask, W, H, 1, err, sizeof err) == 0;
    for (int i = 0; ok && i < W * H; i++) {
        memcpy(rgba.pixels + 4 * i, rgb.pixels + 3 * i, 3);
        rgba.pixels[4 * i + 3] = (uint8_t)(10 * i);
        mask.pixels[i] = i % W < W / 2 ? 0 : 255;
    }
    ok = ok && image_write_png(path_in_scratch("in.png"), &rgba, err, sizeof err) == 0 &&
         image_write_png(path_in_scratch("mask.png"), &mask, err, sizeof err) == 0;
    CHECK(ok, "%s", err);
    image_free(&rgb);
    image_free(&rgba);
    image_free(&mask);
    return ok ? 0 : -1;
}

static void test_refine_png(int T)
{
    if (make_refine_inputs() != 0)
        return;
    const char *in = path_in_scratch("in.png"), *out = path_in_scratch("refined.png");
    char t[32];
    snprintf(t, sizeof t, "%d", T < 300 ? T : 300);
    RUN(0, "refine", "--model", model_dir, "--input", in, "--mask", path_in_scratch("mask.png"), "--t", t,
        "--steps", "3", "--seed", "5", "--output", out);

    char err[512] = "";
    image_u8 before, after;
    int ok = image_read_png(in, IMAGE_READ_COLOR, &before, err, sizeof err) == 0 &&
             image_read_png(out, IMAGE_READ_COLOR, &after, err, sizeof err) == 0;
    CHECK(ok, "%s", err);
    if (!ok)
        return;
    CHECK(after.width == W && after.height == H && after.channels == 4, "%dx%d, %d channels", after.width,
          after.height, after.channels);
    if (after.channels == 4 && after.width == W && after.height == H) {
        int alpha_changed = 0, kept_changed = 0, refined_changed = 0;
        for (int i = 0; i < W * H; i++) {
            alpha_changed += after.pixels[4 * i + 3] != before.pixels[4 * i + 3];
            int differs = memcmp(after.pixels + 4 * i, before.pixels + 4 * i, 3) != 0;
            if (i % W < W / 2)
                kept_changed += differs;
            else
                refined_changed += differs;
        }
        CHECK(alpha_changed == 0, "%d alpha values changed", alpha_changed);
        CHECK(kept_changed == 0, "%d pixels under black mask changed", kept_changed);
        CHECK(refined_changed > 0, "no pixel under the white mask changed");
    }
    image_free(&before);
    image_free(&after);

    /* The few-step samplers refine under the mask too: the black half
     * is kept exactly, the white half changes. */
    const char *samplers[] = {"ddim", "dpm-solver++"};
    char in_path[4300], mask_path[4300], out2[4300]; /* path_in_scratch's buffers are reused */
    snprintf(in_path, sizeof in_path, "%s", in);
    snprintf(mask_path, sizeof mask_path, "%s", path_in_scratch("mask.png"));
    snprintf(out2, sizeof out2, "%s", path_in_scratch("refined_sampler.png"));
    in = in_path;
    for (int k = 0; k < 2; k++) {
        RUN(0, "refine", "--model", model_dir, "--input", in, "--mask", mask_path, "--t", t, "--steps", "3",
            "--seed", "5", "--sampler", samplers[k], "--output", out2);
        ok = image_read_png(in, IMAGE_READ_COLOR, &before, err, sizeof err) == 0 &&
             image_read_png(out2, IMAGE_READ_COLOR, &after, err, sizeof err) == 0;
        CHECK(ok && after.channels == 4 && after.width == W && after.height == H, "%s: %s", samplers[k], err);
        if (!ok)
            continue;
        int kept_changed = 0, refined_changed = 0;
        for (int i = 0; i < W * H && after.channels == 4 && after.width == W && after.height == H; i++) {
            int differs = memcmp(after.pixels + 4 * i, before.pixels + 4 * i, 4) != 0;
            if (i % W < W / 2)
                kept_changed += differs;
            else
                refined_changed += differs;
        }
        CHECK(kept_changed == 0 && refined_changed > 0, "--sampler %s: %d kept pixels changed, %d refined changed",
              samplers[k], kept_changed, refined_changed);
        image_free(&before);
        image_free(&after);
    }

    /* A mask of another size is refused before any work. */
    image_u8 small;
    if (image_alloc(&small, W / 2, H, 1, err, sizeof err) == 0) {
        image_write_png(path_in_scratch("small_mask.png"), &small, err, sizeof err);
        image_free(&small);
    }
    RUN(2, "refine", "--model", model_dir, "--input", in, "--mask", path_in_scratch("small_mask.png"), "--t", "1",
        "--output", path_in_scratch("never.png"));
    CHECK(log_contains("mask is 10x12 but the input is 20x12"), "unclear message for a wrong mask size");
    CHECK(access(path_in_scratch("never.png"), F_OK) != 0, "a refused run wrote its output");
}

static void test_refine_tensor(int T)
{
    const char *out = path_in_scratch("refined.safetensors");
    char t[32], steps[32];
    snprintf(t, sizeof t, "%d", T < 20 ? T : 20);
    RUN(0, "refine", "--model", model_dir, "--input", path_in_scratch("a.safetensors"), "--t", t, "--output", out);
    /* Default steps: min(20, t). */
    snprintf(steps, sizeof steps, "%d steps", T < 20 ? T : 20);
    CHECK(log_contains(steps), "refine did not default to %s", steps);
    float *x = NULL;
    int64_t shape[DDPM_MAX_DIMS];
    int ndim = 0;
    char err[512] = "";
    CHECK(ddpm_tensor_read(out, "sample", &x, shape, &ndim, err, sizeof err) == DDPM_OK, "%s", err);
    CHECK(ndim == 4 && shape[0] == 1 && shape[1] == 3 && shape[2] == H && shape[3] == W, "refined shape wrong");
    free(x);

    /* More steps than timesteps: one step per timestep, and a note. */
    RUN(0, "refine", "--model", model_dir, "--input", path_in_scratch("a.safetensors"), "--t", "2", "--steps", "3",
        "--output", out);
    CHECK(log_contains("taking 2 steps") && log_contains(": 2 steps"), "steps > t not clamped to t");
}

static float *read_sample(const char *path, int64_t shape[DDPM_MAX_DIMS], int *ndim);

/* Without --eta, refine takes DDPM_DEFAULT_REFINE_ETA, not generate's
 * DDPM_DEFAULT_ETA: the tensor is exactly ddpm_job_refine's with it, and
 * --eta with generate's default gives another one. */
static void test_refine_default_eta(const ddpm_model *m, int T)
{
    const char *in = path_in_scratch("a.safetensors"), *out = path_in_scratch("refined_eta.safetensors");
    char t[32];
    int t0 = T < 20 ? T : 20;
    snprintf(t, sizeof t, "%d", t0);
    int64_t shape[DDPM_MAX_DIMS];
    int ndim = 0;
    float *x0 = read_sample(in, shape, &ndim), *by_cli = NULL, *other = NULL;
    float *by_job = malloc(3 * W * H * sizeof(float));
    RUN(0, "refine", "--model", model_dir, "--input", in, "--t", t, "--steps", "3", "--seed", "4", "--output", out);
    by_cli = read_sample(out, shape, &ndim);
    char eta[32];
    snprintf(eta, sizeof eta, "%g", (double)DDPM_DEFAULT_ETA);
    RUN(0, "refine", "--model", model_dir, "--input", in, "--t", t, "--steps", "3", "--seed", "4", "--eta", eta,
        "--output", out);
    other = read_sample(out, shape, &ndim);
    if (x0 && by_cli && other && by_job) {
        ddpm_model_info mi;
        ddpm_model_get_info(m, &mi);
        ddpm_job_params p = {.steps = 3, .variance = mi.scheduler->variance_type, .seed = 4, .timestep = t0,
                             .sampler = DDPM_DEFAULT_SAMPLER, .eta = (float)DDPM_DEFAULT_REFINE_ETA,
                             .eta_t_max = DDPM_DEFAULT_ETA_T_MAX};
        char err[512] = "";
        ddpm_status s = ddpm_job_refine(m, &p, W, H, x0, NULL, NULL, NULL, by_job, err, sizeof err);
        CHECK(s == DDPM_OK, "ddpm_job_refine: %s", err);
        CHECK(s == DDPM_OK && memcmp(by_cli, by_job, 3 * W * H * sizeof(float)) == 0,
              "refine without --eta is not ddpm_job_refine with eta %g", (double)DDPM_DEFAULT_REFINE_ETA);
        CHECK(memcmp(by_cli, other, 3 * W * H * sizeof(float)) != 0,
              "refine without --eta gave the image of --eta %s", eta);
    }
    CHECK(log_contains("eta"), "refine does not print its eta");
    free(x0);
    free(by_cli);
    free(other);
    free(by_job);
}

/* ------------------------------------------------------------------------ */
/* forward, info, bench                                                      */
/* ------------------------------------------------------------------------ */

static float *read_sample(const char *path, int64_t shape[DDPM_MAX_DIMS], int *ndim)
{
    float *x = NULL;
    char err[512] = "";
    CHECK(ddpm_tensor_read(path, "sample", &x, shape, ndim, err, sizeof err) == DDPM_OK, "%s", err);
    return x;
}

static void write_forward_input(const char *path, const float *sample, const int64_t shape[4], const float *t,
                                int nt)
{
    const char *names[2] = { "sample", "timestep" };
    const float *data[2] = { sample, t };
    const int64_t tshape[1] = { nt };
    const int64_t *shapes[2] = { shape, tshape };
    const int ndims[2] = { 4, 1 };
    char err[512] = "";
    CHECK(ddpm_tensor_write(path, 2, names, data, shapes, ndims, err, sizeof err) == DDPM_OK, "%s", err);
}

static void test_forward(const ddpm_model_info *mi)
{
    int side = mi->stride * 2;
    const int64_t shape[4] = { 2, mi->in_channels, side, side };
    size_t plane = (size_t)mi->in_channels * side * side;
    float *x = malloc(2 * plane * sizeof *x);
    if (!x)
        return;
    ddpm_noise_fill(3, 0, mi->in_channels, side, side, 0, 0, x);
    ddpm_noise_fill(3, 1, mi->in_channels, side, side, 0, 0, x + plane);

    const float t_one[1] = { 10.0f }, t_both[2] = { 10.0f, 10.0f };
    const char *in1 = path_in_scratch("fwd_in1.safetensors"), *in2 = path_in_scratch("fwd_in2.safetensors");
    const char *out1 = path_in_scratch("fwd_out1.safetensors"), *out2 = path_in_scratch("fwd_out2.safetensors");
    write_forward_input(in1, x, shape, t_one, 1);
    write_forward_input(in2, x, shape, t_both, 2);
    RUN(0, "forward", "--model", model_dir, "--input", in1, "--output", out1);
    RUN(0, "forward", "--model", model_dir, "--input", in2, "--output", out2);

    int64_t s1[DDPM_MAX_DIMS], s2[DDPM_MAX_DIMS];
    int n1 = 0, n2 = 0;
    float *e1 = read_sample(out1, s1, &n1), *e2 = read_sample(out2, s2, &n2);
    int shape_ok = n1 == 4 && s1[0] == 2 && s1[1] == mi->out_channels && s1[2] == side && s1[3] == side;
    CHECK(shape_ok, "forward output shape wrong (%d dims)", n1);
    if (e1 && e2 && shape_ok && n2 == 4) {
        size_t n = 2 * (size_t)mi->out_channels * side * side;
        int finite = 1;
        for (size_t i = 0; i < n; i++)
            finite &= isfinite(e1[i]) != 0;
        CHECK(finite, "forward output has NaN or Inf");
        CHECK(memcmp(e1, e2, n * sizeof *e1) == 0, "timestep [1] and [N] with the same value differ");
    }
    free(e1);
    free(e2);
    free(x);
}

static float *read_tensor(const char *path, const char *name, int64_t shape[DDPM_MAX_DIMS], int *ndim)
{
    float *x = NULL;
    char err[512] = "";
    CHECK(ddpm_tensor_read(path, name, &x, shape, ndim, err, sizeof err) == DDPM_OK, "%s", err);
    return x;
}

/* Largest |a - b| over n values. */
static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= worst))
            worst = d; /* NaN wins */
    }
    return worst;
}

/* `ddpm forward` reproduces diffusers' UNet2DModel on the engine suite's
 * reference vectors (x, t -> eps, eps_circular) of the same model, if any. */
static void test_forward_matches_diffusers(void)
{
    char vectors[4200];
    snprintf(vectors, sizeof vectors, "%s/vectors.safetensors", model_dir);
    if (access(vectors, R_OK) != 0) {
        printf("note: no %s; forward not compared with diffusers\n", vectors);
        return;
    }
    int64_t xs[DDPM_MAX_DIMS], ts[DDPM_MAX_DIMS], es[DDPM_MAX_DIMS];
    int xn = 0, tn = 0, en = 0;
    float *x = read_tensor(vectors, "x", xs, &xn), *t = read_tensor(vectors, "t", ts, &tn);
    const char *in = path_in_scratch("ref_in.safetensors"), *out = path_in_scratch("ref_out.safetensors");
    if (x && t && xn == 4 && tn == 1) {
        const char *names[2] = { "sample", "timestep" };
        const float *data[2] = { x, t };
        const int64_t *shapes[2] = { xs, ts };
        const int ndims[2] = { 4, 1 };
        char err[512] = "";
        CHECK(ddpm_tensor_write(in, 2, names, data, shapes, ndims, err, sizeof err) == DDPM_OK, "%s", err);
    }
    size_t n = xn == 4 ? (size_t)(xs[0] * xs[1] * xs[2] * xs[3]) : 0;
    const char *expected_name[2] = { "eps", "eps_circular" };
    for (int circular = 0; n > 0 && circular < 2; circular++) {
        if (circular)
            RUN(0, "forward", "--model", model_dir, "--input", in, "--output", out, "--circular");
        else
            RUN(0, "forward", "--model", model_dir, "--input", in, "--output", out);
        int64_t os[DDPM_MAX_DIMS];
        int on = 0;
        float *got = read_tensor(out, "sample", os, &on);
        float *want = read_tensor(vectors, expected_name[circular], es, &en);
        int same_shape = got && want && on == 4 && en == 4 && memcmp(os, es, 4 * sizeof *os) == 0 &&
                         memcmp(os, xs, 4 * sizeof *os) == 0;
        CHECK(same_shape, "forward output shape differs from %s", expected_name[circular]);
        if (same_shape) {
            double d = max_abs_diff(got, want, n);
            CHECK(d <= 1e-4, "forward%s differs from diffusers by %g", circular ? " --circular" : "", d);
        }
        free(got);
        free(want);
    }
    free(x);
    free(t);
}

static void test_info_bench(const ddpm_model_info *mi)
{
    char size[32];
    snprintf(size, sizeof size, "%dx%d", 2 * mi->stride, 2 * mi->stride);
    RUN(0, "info", "--model", model_dir, "--size", size);
    CHECK(log_contains("parameters") && log_contains("GFLOP"), "info lacks parameters or GFLOP");
    RUN(0, "bench", "--model", model_dir, "--iters", "2", "--size", size);
    CHECK(log_contains("median") && log_contains("GFLOP/s") && log_contains("peak RSS"), "bench lacks its figures");
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s DDPM MODEL_DIR SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    ddpm_path = argv[1];
    model_dir = argv[2];
    char config[4200];
    snprintf(config, sizeof config, "%s/config.json", model_dir);
    if (access(config, R_OK) != 0) {
        printf("skipped: no test model at %s\n", model_dir);
        return 77;
    }
    snprintf(scratch, sizeof scratch, "%s/cli_run", argv[3]);
    if (mkdir(scratch, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create %s: %s\n", scratch, strerror(errno));
        return 1;
    }
    snprintf(log_path, sizeof log_path, "%s/ddpm.log", scratch);

    ddpm_model *m = NULL;
    char err[512] = "";
    if (ddpm_model_load(model_dir, &m, err, sizeof err) != DDPM_OK) {
        fprintf(stderr, "FAIL: the test model does not load: %s\n", err);
        return 1;
    }
    ddpm_model_info mi;
    ddpm_model_get_info(m, &mi);
    int T = mi.scheduler ? mi.scheduler->num_train_timesteps : 1000;

    test_generate();
    test_samplers(m);
    test_generate_refused(T);
    test_period(m);
    test_generate_tensor();
    test_cancel(T);
    test_refine_png(T);
    test_refine_tensor(T);
    test_refine_default_eta(m, T);
    test_forward(&mi);
    test_forward_matches_diffusers();
    test_info_bench(&mi);
    ddpm_model_free(m);

    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    else
        printf("cli_run: all checks passed\n");
    return failures ? 1 : 0;
}
