/* test_scheduler_config.c: scheduler_config.json parsing -- the defaults,
 * every key, and every way a file can be refused.
 *
 * usage: test_scheduler_config SCRATCH_DIR   (files for _load are written there) */
#include "ddpm.h"
#include "check.h"

#include <stdlib.h>

static ddpm_status parse(const char *json, ddpm_scheduler_config *c, char *err, size_t errlen)
{
    return ddpm_scheduler_config_parse(json, strlen(json), c, err, errlen);
}

/* Field by field (the struct has padding, which assignment need not copy). */
static int same_config(const ddpm_scheduler_config *a, const ddpm_scheduler_config *b)
{
    return a->num_train_timesteps == b->num_train_timesteps && a->beta_start == b->beta_start &&
           a->beta_end == b->beta_end && a->beta_schedule == b->beta_schedule &&
           a->variance_type == b->variance_type && a->clip_sample == b->clip_sample &&
           a->clip_sample_range == b->clip_sample_range && a->prediction_type == b->prediction_type &&
           a->timestep_spacing == b->timestep_spacing && a->steps_offset == b->steps_offset;
}

/* diffusers' DDPMScheduler.__init__ defaults (scheduling_ddpm.py). */
static void test_defaults(void)
{
    ddpm_scheduler_config c;
    ddpm_scheduler_config_default(&c);
    CHECK(c.num_train_timesteps == 1000, "T = %d", c.num_train_timesteps);
    CHECK(c.beta_start == 0.0001 && c.beta_end == 0.02, "betas %g %g", c.beta_start, c.beta_end);
    CHECK(c.beta_schedule == DDPM_BETA_LINEAR, "schedule %d", c.beta_schedule);
    CHECK(c.variance_type == DDPM_VARIANCE_POSTERIOR, "variance %d", c.variance_type);
    CHECK(c.clip_sample == 1 && c.clip_sample_range == 1.0, "clip %d %g", c.clip_sample, c.clip_sample_range);
    CHECK(c.prediction_type == DDPM_PREDICT_EPSILON, "prediction %d", c.prediction_type);
    CHECK(c.timestep_spacing == DDPM_SPACING_LEADING, "spacing %d", c.timestep_spacing);
    CHECK(c.steps_offset == 0, "offset %d", c.steps_offset);

    /* An empty object keeps every default. */
    ddpm_scheduler_config d;
    memset(&d, 0x5a, sizeof d);
    char err[256] = "";
    CHECK(parse("{}", &d, err, sizeof err) == DDPM_OK, "{}: %s", err);
    CHECK(same_config(&c, &d), "{} does not give the defaults");
}

/* The google/ddpm-cifar10-32 and ddpm-*-256 files (spec 1.5), verbatim. */
static void test_real_files(void)
{
    const char *cifar = "{\n  \"_class_name\": \"DDPMScheduler\",\n  \"_diffusers_version\": \"0.1.0\",\n"
                        "  \"beta_end\": 0.02,\n  \"beta_schedule\": \"linear\",\n  \"beta_start\": 0.0001,\n"
                        "  \"clip_sample\": true,\n  \"num_train_timesteps\": 1000,\n  \"trained_betas\": null,\n"
                        "  \"variance_type\": \"fixed_large\"\n}\n";
    ddpm_scheduler_config c, def;
    ddpm_scheduler_config_default(&def);
    char err[256] = "";
    CHECK(strlen(cifar) == 256, "the cifar10 file is 256 bytes, this text is %zu", strlen(cifar));
    CHECK(parse(cifar, &c, err, sizeof err) == DDPM_OK, "cifar10: %s", err);
    CHECK(c.variance_type == DDPM_VARIANCE_BETA, "cifar10 variance %d", c.variance_type);
    def.variance_type = DDPM_VARIANCE_BETA;
    CHECK(same_config(&c, &def), "cifar10 config differs from the defaults + fixed_large");

    const char *church = "{\"_class_name\": \"DDPMScheduler\", \"_diffusers_version\": \"0.1.0\", "
                         "\"beta_end\": 0.02, \"beta_schedule\": \"linear\", \"beta_start\": 0.0001, "
                         "\"clip_sample\": true, \"num_train_timesteps\": 1000, \"trained_betas\": null, "
                         "\"variance_type\": \"fixed_small\"}";
    CHECK(parse(church, &c, err, sizeof err) == DDPM_OK, "church: %s", err);
    CHECK(c.variance_type == DDPM_VARIANCE_POSTERIOR, "church variance %d", c.variance_type);

    /* A later diffusers writes every key; unknown ones are ignored. */
    const char *modern = "{\"_class_name\": \"DDPMScheduler\", \"_diffusers_version\": \"0.30.0\", "
                         "\"beta_end\": 0.012, \"beta_schedule\": \"scaled_linear\", \"beta_start\": 0.00085, "
                         "\"clip_sample\": false, \"clip_sample_range\": 1.0, \"dynamic_thresholding_ratio\": 0.995, "
                         "\"num_train_timesteps\": 1000, \"prediction_type\": \"v_prediction\", "
                         "\"rescale_betas_zero_snr\": false, \"sample_max_value\": 1.0, \"steps_offset\": 1, "
                         "\"thresholding\": false, \"timestep_spacing\": \"trailing\", \"trained_betas\": null, "
                         "\"variance_type\": \"fixed_small\", \"some_future_key\": [1, 2, {\"x\": null}]}";
    CHECK(parse(modern, &c, err, sizeof err) == DDPM_OK, "modern: %s", err);
    CHECK(c.beta_schedule == DDPM_BETA_SCALED_LINEAR && c.beta_start == 0.00085 && c.beta_end == 0.012,
          "modern betas");
    CHECK(c.clip_sample == 0 && c.prediction_type == DDPM_PREDICT_V && c.steps_offset == 1 &&
              c.timestep_spacing == DDPM_SPACING_TRAILING,
          "modern keys");
}

/* Parse text that must be accepted, starting from the defaults. */
static ddpm_scheduler_config parse_ok(const char *json)
{
    ddpm_scheduler_config c;
    ddpm_scheduler_config_default(&c);
    char err[256] = "";
    ddpm_status st = parse(json, &c, err, sizeof err);
    CHECK(st == DDPM_OK, "%s -> %s (%s)", json, ddpm_status_name(st), err);
    return c;
}

/* Each key on its own, each accepted value. */
static void test_each_key(void)
{
    CHECK(parse_ok("{\"num_train_timesteps\": 1}").num_train_timesteps == 1, "T = 1");
    CHECK(parse_ok("{\"num_train_timesteps\": 4000}").num_train_timesteps == 4000, "T = 4000");
    CHECK(parse_ok("{\"num_train_timesteps\": 100000}").num_train_timesteps == 100000, "T = 100000");
    CHECK(parse_ok("{\"num_train_timesteps\": 1000.0}").num_train_timesteps == 1000, "T = 1000.0");
    CHECK(parse_ok("{\"beta_start\": 0.00085}").beta_start == 0.00085, "beta_start");
    CHECK(parse_ok("{\"beta_end\": 0.5}").beta_end == 0.5, "beta_end");
    CHECK(parse_ok("{\"beta_schedule\": \"linear\"}").beta_schedule == DDPM_BETA_LINEAR, "linear");
    CHECK(parse_ok("{\"beta_schedule\": \"scaled_linear\"}").beta_schedule == DDPM_BETA_SCALED_LINEAR,
          "scaled_linear");
    CHECK(parse_ok("{\"beta_schedule\": \"squaredcos_cap_v2\"}").beta_schedule == DDPM_BETA_SQUAREDCOS_CAP_V2,
          "squaredcos_cap_v2");
    CHECK(parse_ok("{\"trained_betas\": null}").beta_schedule == DDPM_BETA_LINEAR, "trained_betas null");
    CHECK(parse_ok("{\"variance_type\": \"fixed_small\"}").variance_type == DDPM_VARIANCE_POSTERIOR,
          "fixed_small");
    CHECK(parse_ok("{\"variance_type\": \"fixed_large\"}").variance_type == DDPM_VARIANCE_BETA, "fixed_large");
    CHECK(parse_ok("{\"clip_sample\": false}").clip_sample == 0, "clip false");
    CHECK(parse_ok("{\"clip_sample\": true}").clip_sample == 1, "clip true");
    CHECK(parse_ok("{\"clip_sample_range\": 2.5}").clip_sample_range == 2.5, "clip range");
    CHECK(parse_ok("{\"prediction_type\": \"epsilon\"}").prediction_type == DDPM_PREDICT_EPSILON, "epsilon");
    CHECK(parse_ok("{\"prediction_type\": \"sample\"}").prediction_type == DDPM_PREDICT_SAMPLE, "sample");
    CHECK(parse_ok("{\"prediction_type\": \"v_prediction\"}").prediction_type == DDPM_PREDICT_V, "v");
    CHECK(parse_ok("{\"timestep_spacing\": \"leading\"}").timestep_spacing == DDPM_SPACING_LEADING, "leading");
    CHECK(parse_ok("{\"timestep_spacing\": \"linspace\"}").timestep_spacing == DDPM_SPACING_LINSPACE,
          "linspace");
    CHECK(parse_ok("{\"timestep_spacing\": \"trailing\"}").timestep_spacing == DDPM_SPACING_TRAILING,
          "trailing");
    CHECK(parse_ok("{\"steps_offset\": 1}").steps_offset == 1, "steps_offset");
    CHECK(parse_ok("{\"thresholding\": false}").clip_sample == 1, "thresholding false");
    CHECK(parse_ok("{\"rescale_betas_zero_snr\": false}").clip_sample == 1, "rescale false");

    /* The length argument is honoured: the text after it is not read. */
    ddpm_scheduler_config c;
    char err[256] = "";
    ddpm_scheduler_config_default(&c);
    const char *longer = "{\"steps_offset\": 3}garbage that is not JSON";
    CHECK(ddpm_scheduler_config_parse(longer, 19, &c, err, sizeof err) == DDPM_OK && c.steps_offset == 3,
          "length-limited parse: %s", err);
}

/* Every refusal: the status, a word the message must contain (the key or
 * the offending value), and *c untouched. */
static void test_errors(void)
{
    struct {
        const char *json;
        ddpm_status status;
        const char *needle;
    } cases[] = {
        {"", DDPM_ERR_FORMAT, "not valid JSON"},
        {"{", DDPM_ERR_FORMAT, "not valid JSON"},
        {"{\"num_train_timesteps\": 1000,}", DDPM_ERR_FORMAT, "not valid JSON"},
        {"this is not json", DDPM_ERR_FORMAT, "not valid JSON"},
        {"[1, 2, 3]", DDPM_ERR_FORMAT, "top level"},
        {"\"fixed_small\"", DDPM_ERR_FORMAT, "top level"},
        {"{\"num_train_timesteps\": 0}", DDPM_ERR_FORMAT, "num_train_timesteps"},
        {"{\"num_train_timesteps\": -5}", DDPM_ERR_FORMAT, "num_train_timesteps"},
        {"{\"num_train_timesteps\": 100001}", DDPM_ERR_FORMAT, "num_train_timesteps"},
        {"{\"num_train_timesteps\": 1e12}", DDPM_ERR_FORMAT, "num_train_timesteps"},
        {"{\"num_train_timesteps\": 999.5}", DDPM_ERR_FORMAT, "num_train_timesteps"},
        {"{\"num_train_timesteps\": \"1000\"}", DDPM_ERR_FORMAT, "num_train_timesteps"},
        {"{\"num_train_timesteps\": null}", DDPM_ERR_FORMAT, "num_train_timesteps"},
        {"{\"beta_start\": 0}", DDPM_ERR_FORMAT, "beta_start"},
        {"{\"beta_start\": 1}", DDPM_ERR_FORMAT, "beta_start"},
        {"{\"beta_start\": -0.001}", DDPM_ERR_FORMAT, "beta_start"},
        {"{\"beta_start\": \"0.0001\"}", DDPM_ERR_FORMAT, "beta_start"},
        {"{\"beta_end\": 1.5}", DDPM_ERR_FORMAT, "beta_end"},
        {"{\"beta_end\": true}", DDPM_ERR_FORMAT, "beta_end"},
        {"{\"beta_schedule\": \"sigmoid\"}", DDPM_ERR_UNSUPPORTED, "sigmoid"},
        {"{\"beta_schedule\": \"quadratic\"}", DDPM_ERR_FORMAT, "quadratic"},
        {"{\"beta_schedule\": 1}", DDPM_ERR_FORMAT, "beta_schedule"},
        {"{\"trained_betas\": [0.1, 0.2]}", DDPM_ERR_UNSUPPORTED, "trained_betas"},
        {"{\"trained_betas\": 0.1}", DDPM_ERR_FORMAT, "trained_betas"},
        {"{\"variance_type\": \"learned\"}", DDPM_ERR_UNSUPPORTED, "learned"},
        {"{\"variance_type\": \"learned_range\"}", DDPM_ERR_UNSUPPORTED, "learned_range"},
        {"{\"variance_type\": \"fixed_small_log\"}", DDPM_ERR_UNSUPPORTED, "fixed_small_log"},
        {"{\"variance_type\": \"fixed_large_log\"}", DDPM_ERR_UNSUPPORTED, "fixed_large_log"},
        {"{\"variance_type\": \"fixed_medium\"}", DDPM_ERR_FORMAT, "fixed_medium"},
        {"{\"variance_type\": null}", DDPM_ERR_FORMAT, "variance_type"},
        {"{\"clip_sample\": 1}", DDPM_ERR_FORMAT, "clip_sample"},
        {"{\"clip_sample\": \"true\"}", DDPM_ERR_FORMAT, "clip_sample"},
        {"{\"clip_sample_range\": 0}", DDPM_ERR_FORMAT, "clip_sample_range"},
        {"{\"clip_sample_range\": -1}", DDPM_ERR_FORMAT, "clip_sample_range"},
        {"{\"clip_sample_range\": \"1\"}", DDPM_ERR_FORMAT, "clip_sample_range"},
        {"{\"prediction_type\": \"x0\"}", DDPM_ERR_FORMAT, "prediction_type"},
        {"{\"prediction_type\": 0}", DDPM_ERR_FORMAT, "prediction_type"},
        {"{\"timestep_spacing\": \"uniform\"}", DDPM_ERR_FORMAT, "timestep_spacing"},
        {"{\"steps_offset\": -1}", DDPM_ERR_FORMAT, "steps_offset"},
        {"{\"steps_offset\": 0.5}", DDPM_ERR_FORMAT, "steps_offset"},
        {"{\"thresholding\": true}", DDPM_ERR_UNSUPPORTED, "thresholding"},
        {"{\"thresholding\": \"no\"}", DDPM_ERR_FORMAT, "thresholding"},
        {"{\"rescale_betas_zero_snr\": true}", DDPM_ERR_UNSUPPORTED, "rescale_betas_zero_snr"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ddpm_scheduler_config c, before;
        memset(&c, 0x77, sizeof c);
        before = c;
        char err[256] = "";
        ddpm_status st = parse(cases[i].json, &c, err, sizeof err);
        CHECK(st == cases[i].status, "%s -> %s, expected %s (%s)", cases[i].json, ddpm_status_name(st),
              ddpm_status_name(cases[i].status), err);
        CHECK(strstr(err, cases[i].needle) != NULL, "%s: message \"%s\" does not name \"%s\"", cases[i].json, err,
              cases[i].needle);
        CHECK(strchr(err, '\n') == NULL, "%s: the message is not one line", cases[i].json);
        CHECK(memcmp(&c, &before, sizeof c) == 0, "%s: the output was written on error", cases[i].json);
    }

    /* Small or missing buffers are fine. */
    ddpm_scheduler_config c;
    char tiny[8];
    CHECK(parse("{\"beta_start\": 7}", &c, tiny, sizeof tiny) == DDPM_ERR_FORMAT && strlen(tiny) == 7,
          "truncated message");
    CHECK(parse("{\"beta_start\": 7}", &c, NULL, 0) == DDPM_ERR_FORMAT, "NULL err");
    CHECK(ddpm_scheduler_config_parse(NULL, 0, &c, NULL, 0) == DDPM_ERR_ARGUMENT, "NULL json");
    CHECK(ddpm_scheduler_config_parse("{}", 2, NULL, NULL, 0) == DDPM_ERR_ARGUMENT, "NULL config");
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        CHECK(0, "cannot write %s", path);
        return;
    }
    fwrite(text, 1, len, f);
    fclose(f);
}

static void test_load(const char *dir)
{
    char path[1024], err[512] = "";
    ddpm_scheduler_config c;

    snprintf(path, sizeof path, "%s/scheduler_config_test.json", dir);
    const char *text = "{\"variance_type\": \"fixed_large\", \"num_train_timesteps\": 500}";
    write_file(path, text, strlen(text));
    CHECK(ddpm_scheduler_config_load(path, &c, err, sizeof err) == DDPM_OK, "load: %s", err);
    CHECK(c.variance_type == DDPM_VARIANCE_BETA && c.num_train_timesteps == 500, "loaded values");

    /* Errors name the file. */
    write_file(path, "{\"variance_type\": \"learned\"}", 28);
    CHECK(ddpm_scheduler_config_load(path, &c, err, sizeof err) == DDPM_ERR_UNSUPPORTED, "load learned");
    CHECK(strstr(err, path) != NULL && strstr(err, "learned") != NULL, "message: %s", err);

    snprintf(path, sizeof path, "%s/no_such_dir/scheduler_config.json", dir);
    CHECK(ddpm_scheduler_config_load(path, &c, err, sizeof err) == DDPM_ERR_IO, "missing file");
    CHECK(strstr(err, path) != NULL, "message: %s", err);

    /* A directory is not a config. */
    CHECK(ddpm_scheduler_config_load(dir, &c, err, sizeof err) != DDPM_OK, "a directory");

    /* A large file is refused without being parsed. */
    snprintf(path, sizeof path, "%s/scheduler_config_huge.json", dir);
    size_t big = (1u << 20) + 10;
    char *huge = malloc(big);
    if (huge != NULL) {
        memset(huge, ' ', big);
        huge[0] = '{';
        huge[big - 1] = '}';
        write_file(path, huge, big);
        free(huge);
        CHECK(ddpm_scheduler_config_load(path, &c, err, sizeof err) == DDPM_ERR_FORMAT, "huge file: %s", err);
    }
}

int main(int argc, char **argv)
{
    test_defaults();
    test_real_files();
    test_each_key();
    test_errors();
    test_load(argc > 1 ? argv[1] : ".");
    return check_report("test_scheduler_config");
}
