/*
 * json_get.c - typed readers for request members (json_get.h).
 * Loop thread; no state outside the call.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "json_get.h"

/* A 400 invalid_request_error naming `param`. */
#define BAD(e, code, param, ...) api_error_set((e), (code), 400, NULL, (param), NULL, __VA_ARGS__)
#define NUM(d) jget_num_str((d), (char[32]){ 0 })

const struct cJSON *jget_field(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return (v == NULL || cJSON_IsNull(v)) ? NULL : v;
}

const char *jget_type_name(const cJSON *v)
{
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsNumber(v)) return "a number";
    return "an invalid value";
}

const char *jget_num_str(double d, char buf[32])
{
    snprintf(buf, 32, "%.15g", d);
    if (strtod(buf, NULL) != d)
        snprintf(buf, 32, "%.17g", d);
    return buf;
}

int jget_number(const cJSON *v, const char *name, api_error_t *e)
{
    if (!cJSON_IsNumber(v))
        return BAD(e, ERR_INVALID, name, "%s: expected a number, got %s", name,
                   jget_type_name(v));
    if (!isfinite(v->valuedouble))
        return BAD(e, ERR_RANGE, name, "%s: number too large", name);
    return 0;
}

/* The integer checks of jget_int and jget_int_capped; `capped` picks the message above hi. */
static int int_checked(const cJSON *v, const char *name, double lo, double hi, int capped,
                       int64_t *out, api_error_t *e)
{
    if (!cJSON_IsNumber(v))
        return BAD(e, ERR_INVALID, name, "%s: expected an integer, got %s", name,
                   jget_type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return BAD(e, ERR_INVALID, name, "%s: %s is not an integer", name, NUM(d));
    if (capped && d > hi)
        return BAD(e, ERR_RANGE, name, "%s: %s is past the cap of %.0f", name, NUM(d), hi);
    if (d < lo || d > hi)
        return BAD(e, ERR_RANGE, name, "%s: %s is out of range [%.0f, %.0f]", name, NUM(d), lo,
                   hi);
    *out = (int64_t)d;
    return 0;
}

int jget_int(const cJSON *v, const char *name, double lo, double hi, int64_t *out,
             api_error_t *e)
{
    return int_checked(v, name, lo, hi, 0, out, e);
}

int jget_int_capped(const cJSON *v, const char *name, double lo, double hi, int64_t *out,
                    api_error_t *e)
{
    return int_checked(v, name, lo, hi, 1, out, e);
}

int jget_opt_int(const cJSON *obj, const char *name, double lo, double hi, int64_t *out,
                 int *present, api_error_t *e)
{
    const cJSON *v = jget_field(obj, name);
    *present = v != NULL;
    return v != NULL ? jget_int(v, name, lo, hi, out, e) : 0;
}

int jget_opt_real(const cJSON *obj, const char *name, double lo, double hi, int lo_open,
                  float *out, api_error_t *e)
{
    const cJSON *v = jget_field(obj, name);
    if (v == NULL)
        return 0;
    int rc = jget_number(v, name, e);
    if (rc != 0)
        return rc;
    double d = v->valuedouble;
    if ((lo_open ? !(d > lo) : !(d >= lo)) || !(d <= hi) || (lo_open && (float)d <= (float)lo))
        return BAD(e, ERR_RANGE, name, "%s: %s is out of range %c%g, %g]", name, NUM(d),
                   lo_open ? '(' : '[', lo, hi);
    *out = (float)d;
    return 0;
}

int jget_opt_bool(const cJSON *obj, const char *name, int *out, api_error_t *e)
{
    const cJSON *v = jget_field(obj, name);
    if (v == NULL)
        return 0;
    if (!cJSON_IsBool(v))
        return BAD(e, ERR_INVALID, name, "%s: expected a boolean, got %s", name,
                   jget_type_name(v));
    *out = cJSON_IsTrue(v);
    return 0;
}

int jget_want_string(const cJSON *v, const char *name, api_error_t *e)
{
    if (cJSON_IsString(v) && v->valuestring != NULL)
        return 0;
    return BAD(e, ERR_INVALID, name, "%s: expected a string, got %s", name, jget_type_name(v));
}

int jget_nomem(api_error_t *e)
{
    return api_error_set(e, ERR_NOMEM, 503, "server_error", NULL, NULL, "out of memory");
}
