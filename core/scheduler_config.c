/* scheduler_config.c: diffusers' scheduler_config.json -> ddpm_scheduler_config.
 *
 * The keys are those of diffusers' DDPMScheduler.__init__; a missing key takes
 * the DDPMScheduler default.  A value is refused in one of two ways:
 *   DDPM_ERR_FORMAT       the file is not what diffusers would accept (bad JSON,
 *                         a wrong type, out of range, an unknown name);
 *   DDPM_ERR_UNSUPPORTED  diffusers knows the value but this core cannot sample
 *                         with it (learned variances, thresholding, ...).
 * Keys that only matter for features we refuse (dynamic_thresholding_ratio,
 * sample_max_value) and bookkeeping keys (_class_name, _diffusers_version)
 * are ignored. */
#include "ddpm.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TRAIN_TIMESTEPS 100000
#define MAX_CONFIG_BYTES (1 << 20) /* a scheduler config is a few hundred bytes */

static ddpm_status fail(char *err, size_t errlen, ddpm_status status, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}

void ddpm_scheduler_config_default(ddpm_scheduler_config *c)
{
    if (c == NULL)
        return;
    c->num_train_timesteps = 1000;
    c->beta_start = 0.0001;
    c->beta_end = 0.02;
    c->beta_schedule = DDPM_BETA_LINEAR;
    c->variance_type = DDPM_VARIANCE_POSTERIOR; /* "fixed_small" */
    c->clip_sample = 1;
    c->clip_sample_range = 1.0;
    c->prediction_type = DDPM_PREDICT_EPSILON;
    c->timestep_spacing = DDPM_SPACING_LEADING;
    c->steps_offset = 0;
}

/* What a JSON value is, for messages like "got a string". */
static const char *json_kind(const cJSON *v)
{
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsBool(v))   return "a boolean";
    if (cJSON_IsNull(v))   return "null";
    if (cJSON_IsArray(v))  return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an invalid value";
}

/* An integer key in lo .. hi. */
static ddpm_status get_int(const cJSON *root, const char *key, int lo, int hi, int *out,
                           char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (v == NULL)
        return DDPM_OK;
    if (!cJSON_IsNumber(v))
        return fail(err, errlen, DDPM_ERR_FORMAT,
                    "scheduler config: %s must be an integer in %d..%d (got %s)", key, lo, hi, json_kind(v));
    double d = v->valuedouble;
    if (d != floor(d) || d < lo || d > hi)
        return fail(err, errlen, DDPM_ERR_FORMAT,
                    "scheduler config: %s must be an integer in %d..%d (got %g)", key, lo, hi, d);
    *out = (int)d;
    return DDPM_OK;
}

/* A beta: a number strictly between 0 and 1 (a variance fraction). */
static ddpm_status get_beta(const cJSON *root, const char *key, double *out, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (v == NULL)
        return DDPM_OK;
    if (!cJSON_IsNumber(v))
        return fail(err, errlen, DDPM_ERR_FORMAT,
                    "scheduler config: %s must be a number in (0, 1) (got %s)", key, json_kind(v));
    if (!(v->valuedouble > 0.0 && v->valuedouble < 1.0))
        return fail(err, errlen, DDPM_ERR_FORMAT,
                    "scheduler config: %s must be in (0, 1) (got %g)", key, v->valuedouble);
    *out = v->valuedouble;
    return DDPM_OK;
}

static ddpm_status get_bool(const cJSON *root, const char *key, int *out, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (v == NULL)
        return DDPM_OK;
    if (!cJSON_IsBool(v))
        return fail(err, errlen, DDPM_ERR_FORMAT,
                    "scheduler config: %s must be true or false (got %s)", key, json_kind(v));
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return DDPM_OK;
}

/* One accepted name of a string key and the enum value it stands for;
 * value -1 marks a name diffusers knows but this core does not implement. */
typedef struct {
    const char *name;
    int value;
} choice;

#define UNSUPPORTED_CHOICE (-1)

/* A string key from a table of names.  `supported` lists the names we take,
 * for the messages. */
static ddpm_status get_choice(const cJSON *root, const char *key, const choice *table, int count,
                              const char *supported, int *out, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (v == NULL)
        return DDPM_OK;
    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return fail(err, errlen, DDPM_ERR_FORMAT,
                    "scheduler config: %s must be a string, one of %s (got %s)", key, supported, json_kind(v));
    for (int i = 0; i < count; i++) {
        if (strcmp(v->valuestring, table[i].name) != 0)
            continue;
        if (table[i].value == UNSUPPORTED_CHOICE)
            return fail(err, errlen, DDPM_ERR_UNSUPPORTED,
                        "scheduler config: %s \"%s\" is not supported (supported: %s)",
                        key, v->valuestring, supported);
        *out = table[i].value;
        return DDPM_OK;
    }
    return fail(err, errlen, DDPM_ERR_FORMAT, "scheduler config: %s \"%.64s\" is not one of %s",
                key, v->valuestring, supported);
}

/* A boolean feature this core does not have: false (or absent) is fine. */
static ddpm_status refuse_if_true(const cJSON *root, const char *key, const char *what,
                                  char *err, size_t errlen)
{
    int on = 0;
    ddpm_status st = get_bool(root, key, &on, err, errlen);
    if (st != DDPM_OK)
        return st;
    if (on)
        return fail(err, errlen, DDPM_ERR_UNSUPPORTED, "scheduler config: %s = true (%s) is not supported",
                    key, what);
    return DDPM_OK;
}

static const choice beta_schedules[] = {
    {"linear", DDPM_BETA_LINEAR},
    {"scaled_linear", DDPM_BETA_SCALED_LINEAR},
    {"squaredcos_cap_v2", DDPM_BETA_SQUAREDCOS_CAP_V2},
    {"sigmoid", UNSUPPORTED_CHOICE},
};
static const choice variance_types[] = {
    {"fixed_small", DDPM_VARIANCE_POSTERIOR},
    {"fixed_large", DDPM_VARIANCE_BETA},
    {"fixed_small_log", UNSUPPORTED_CHOICE},
    {"fixed_large_log", UNSUPPORTED_CHOICE},
    {"learned", UNSUPPORTED_CHOICE},
    {"learned_range", UNSUPPORTED_CHOICE},
};
static const choice prediction_types[] = {
    {"epsilon", DDPM_PREDICT_EPSILON},
    {"sample", DDPM_PREDICT_SAMPLE},
    {"v_prediction", DDPM_PREDICT_V},
};
static const choice spacings[] = {
    {"leading", DDPM_SPACING_LEADING},
    {"linspace", DDPM_SPACING_LINSPACE},
    {"trailing", DDPM_SPACING_TRAILING},
};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Read every key we know from the parsed object into *c. */
static ddpm_status read_keys(const cJSON *root, ddpm_scheduler_config *c, char *err, size_t errlen)
{
    ddpm_status st;
    int value;

    if ((st = get_int(root, "num_train_timesteps", 1, MAX_TRAIN_TIMESTEPS, &c->num_train_timesteps,
                      err, errlen)) != DDPM_OK)
        return st;
    if ((st = get_beta(root, "beta_start", &c->beta_start, err, errlen)) != DDPM_OK)
        return st;
    if ((st = get_beta(root, "beta_end", &c->beta_end, err, errlen)) != DDPM_OK)
        return st;

    value = (int)c->beta_schedule;
    if ((st = get_choice(root, "beta_schedule", beta_schedules, COUNT(beta_schedules),
                         "linear, scaled_linear, squaredcos_cap_v2", &value, err, errlen)) != DDPM_OK)
        return st;
    c->beta_schedule = (ddpm_beta_schedule)value;

    /* trained_betas: diffusers writes null; an explicit array would replace
     * the schedule, which ddpm_scheduler_config has no room for. */
    const cJSON *trained = cJSON_GetObjectItemCaseSensitive(root, "trained_betas");
    if (trained != NULL && !cJSON_IsNull(trained)) {
        if (cJSON_IsArray(trained))
            return fail(err, errlen, DDPM_ERR_UNSUPPORTED,
                        "scheduler config: trained_betas (an explicit beta array) is not supported; "
                        "use beta_schedule");
        return fail(err, errlen, DDPM_ERR_FORMAT,
                    "scheduler config: trained_betas must be null or an array (got %s)", json_kind(trained));
    }

    value = (int)c->variance_type;
    if ((st = get_choice(root, "variance_type", variance_types, COUNT(variance_types),
                         "fixed_small, fixed_large", &value, err, errlen)) != DDPM_OK)
        return st;
    c->variance_type = (ddpm_variance)value;

    if ((st = get_bool(root, "clip_sample", &c->clip_sample, err, errlen)) != DDPM_OK)
        return st;
    const cJSON *range = cJSON_GetObjectItemCaseSensitive(root, "clip_sample_range");
    if (range != NULL) {
        if (!cJSON_IsNumber(range) || !(range->valuedouble > 0.0) || !isfinite(range->valuedouble))
            return fail(err, errlen, DDPM_ERR_FORMAT,
                        "scheduler config: clip_sample_range must be a positive number");
        c->clip_sample_range = range->valuedouble;
    }

    value = (int)c->prediction_type;
    if ((st = get_choice(root, "prediction_type", prediction_types, COUNT(prediction_types),
                         "epsilon, sample, v_prediction", &value, err, errlen)) != DDPM_OK)
        return st;
    c->prediction_type = (ddpm_prediction)value;

    value = (int)c->timestep_spacing;
    if ((st = get_choice(root, "timestep_spacing", spacings, COUNT(spacings),
                         "leading, linspace, trailing", &value, err, errlen)) != DDPM_OK)
        return st;
    c->timestep_spacing = (ddpm_spacing)value;

    if ((st = get_int(root, "steps_offset", 0, MAX_TRAIN_TIMESTEPS, &c->steps_offset, err, errlen)) != DDPM_OK)
        return st;

    if ((st = refuse_if_true(root, "thresholding", "dynamic thresholding of x_0", err, errlen)) != DDPM_OK)
        return st;
    if ((st = refuse_if_true(root, "rescale_betas_zero_snr", "zero terminal SNR betas", err, errlen)) != DDPM_OK)
        return st;
    return DDPM_OK;
}

ddpm_status ddpm_scheduler_config_parse(const char *json, size_t len, ddpm_scheduler_config *c,
                                        char *err, size_t errlen)
{
    if (json == NULL || c == NULL)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "scheduler config: no text or no output given");

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (root == NULL) {
        size_t at = (end != NULL && end >= json) ? (size_t)(end - json) : 0;
        return fail(err, errlen, DDPM_ERR_FORMAT, "scheduler config: not valid JSON (error near byte %zu of %zu)",
                    at, len);
    }
    if (!cJSON_IsObject(root)) {
        const char *kind = json_kind(root);
        cJSON_Delete(root);
        return fail(err, errlen, DDPM_ERR_FORMAT, "scheduler config: the top level must be an object (got %s)",
                    kind);
    }

    /* Work on a copy so that *c is only written when every key is good. */
    ddpm_scheduler_config parsed;
    ddpm_scheduler_config_default(&parsed);
    ddpm_status st = read_keys(root, &parsed, err, errlen);
    cJSON_Delete(root);
    if (st == DDPM_OK)
        *c = parsed;
    return st;
}

ddpm_status ddpm_scheduler_config_load(const char *path, ddpm_scheduler_config *c, char *err, size_t errlen)
{
    if (path == NULL || c == NULL)
        return fail(err, errlen, DDPM_ERR_ARGUMENT, "scheduler config: no path or no output given");

    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return fail(err, errlen, DDPM_ERR_IO, "%s: %s", path, strerror(errno));

    /* Read at most MAX_CONFIG_BYTES + 1 to notice a file that is too large
     * without trusting its reported size. */
    char *text = malloc((size_t)MAX_CONFIG_BYTES + 1);
    if (text == NULL) {
        fclose(f);
        return fail(err, errlen, DDPM_ERR_MEMORY, "%s: out of memory", path);
    }
    size_t len = fread(text, 1, (size_t)MAX_CONFIG_BYTES + 1, f);
    int read_error = ferror(f);
    fclose(f);
    if (read_error) {
        free(text);
        return fail(err, errlen, DDPM_ERR_IO, "%s: read error", path);
    }
    if (len > MAX_CONFIG_BYTES) {
        free(text);
        return fail(err, errlen, DDPM_ERR_FORMAT, "%s: larger than %d bytes, not a scheduler config", path,
                    MAX_CONFIG_BYTES);
    }

    char message[256] = "";
    ddpm_status st = ddpm_scheduler_config_parse(text, len, c, message, sizeof message);
    free(text);
    if (st != DDPM_OK)
        return fail(err, errlen, st, "%s: %s", path, message);
    return DDPM_OK;
}
