/*
 * json_get.h - typed readers for the members of a parsed request body.
 *
 * Every reader treats a member that is absent or JSON null as absent
 * (null is every OpenAI field's default), checks the type and the range
 * of what is there, and on a bad value fills the api_error_t with a 400
 * whose param is the name given and whose message names it and the
 * value.  The names are the caller's (a field, or "messages[2].role").
 * Loop thread; no state; nothing is kept past the call.
 */
#ifndef LLAMAD_JSON_GET_H
#define LLAMAD_JSON_GET_H

#include <stdint.h>

#include "api.h"

struct cJSON;

/* The member `name` of obj, or NULL when it is absent or null. obj may be NULL. */
const struct cJSON *jget_field(const struct cJSON *obj, const char *name);

/* "a string", "a number", "null" ...: the JSON type of v for messages. */
const char *jget_type_name(const struct cJSON *v);

/* d printed as the shortest of %.15g and %.17g that reads back as d; buf is returned. */
const char *jget_num_str(double d, char buf[32]);

/* v (not NULL) as a finite number; else ERR_INVALID / ERR_RANGE naming `name`. */
int jget_number(const struct cJSON *v, const char *name, api_error_t *e);

/*
 * v (not NULL) as an integer in [lo, hi] into *out; *out is unchanged on
 * error (ERR_INVALID for a non-integer, ERR_RANGE outside the range).
 */
int jget_int(const struct cJSON *v, const char *name, double lo, double hi, int64_t *out,
             api_error_t *e);

/* jget_int whose message above hi says "past the cap of hi" (a documented cap). */
int jget_int_capped(const struct cJSON *v, const char *name, double lo, double hi,
                    int64_t *out, api_error_t *e);

/* The optional integer member `name`: *present says whether it was given. */
int jget_opt_int(const struct cJSON *obj, const char *name, double lo, double hi, int64_t *out,
                 int *present, api_error_t *e);

/*
 * The optional number member `name` in [lo, hi] ((lo, hi] when lo_open,
 * with lo itself excluded after rounding to float too) into *out;
 * *out unchanged when absent.
 */
int jget_opt_real(const struct cJSON *obj, const char *name, double lo, double hi, int lo_open,
                  float *out, api_error_t *e);

/* The optional boolean member `name` into *out (0/1); unchanged when absent. */
int jget_opt_bool(const struct cJSON *obj, const char *name, int *out, api_error_t *e);

/* 0 when v (not NULL) is a string, else ERR_INVALID naming `name`. */
int jget_want_string(const struct cJSON *v, const char *name, api_error_t *e);

/* The 503 server_error for a failed allocation; returns ERR_NOMEM. */
int jget_nomem(api_error_t *e);

#endif
