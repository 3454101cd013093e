/*
 * api_common.c - what both sides of the API layer use: the error record,
 * and the UTF-8 repair of every string we write into JSON (over
 * base/utf8.h, which also checks requests).  Pure functions; any thread.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "strlist.h"

/* ================================================================== */
/* Model names                                                         */
/* ================================================================== */

int api_model_matches(const api_limits_t *lim, const char *name)
{
    return lim->model_name == NULL || strcmp(name, lim->model_name) == 0 ||
           strlist_has(lim->model_aliases, name, strlen(name), 0);
}

/* ================================================================== */
/* Errors                                                              */
/* ================================================================== */

int api_error_set(api_error_t *e, int code, unsigned status, const char *type,
                  const char *param, const char *ecode, const char *fmt, ...)
{
    if (e == NULL)
        return code;
    e->status = status;
    e->type = type != NULL ? type : "invalid_request_error";
    snprintf(e->param, sizeof e->param, "%s", param != NULL ? param : "");
    e->code = ecode;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return code;
}

/* ================================================================== */
/* UTF-8                                                               */
/* ================================================================== */

/* A sink into a buffer the caller sized for the worst case (3 bytes per input byte). */
static int append_cb(void *ctx, const char *p, size_t n)
{
    char **o = ctx;
    memcpy(*o, p, n);
    *o += n;
    return 0;
}

char *api_utf8_repair(const char *s, size_t len)
{
    if (s == NULL) {
        s = "";
        len = 0;
    }
    size_t cap;
    if (__builtin_mul_overflow(len, (size_t)3, &cap) || __builtin_add_overflow(cap, 1, &cap))
        return NULL;
    char *out = malloc(utf8_valid(s, len) && memchr(s, 0, len) == NULL ? len + 1 : cap);
    if (out == NULL)
        return NULL;
    char *o = out;
    size_t rest;
    utf8_repair(s, len, UTF8_FINAL | UTF8_NO_NUL, append_cb, &o, &rest);
    *o = '\0';
    return out;
}
