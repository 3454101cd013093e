/*
 * gguf_get.c - read access to a parsed GGUF file: header facts, typed
 * metadata getters, arrays and the tensor table.  Everything here reads
 * what gguf.c has already bounds-checked, so no access can leave the
 * buffer; what remains to check is that a value has the type and range
 * the caller asks for.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "gguf.h"
#include "gguf_impl.h"

/* ------------------------------------------------------------- header */

uint32_t gguf_version(const gguf_t *g) { return g->version; }
uint32_t gguf_alignment(const gguf_t *g) { return g->alignment; }
const char *gguf_path(const gguf_t *g) { return g->name; }
uint64_t gguf_data_offset(const gguf_t *g) { return g->data_start; }

/* ----------------------------------------------------------- metadata */

uint64_t gguf_kv_count(const gguf_t *g) { return g->n_kv; }

int64_t gguf_find(const gguf_t *g, const char *key)
{
    return gguf_index_find(g->kv_by_key, g->n_kv, key);
}

gguf_str_t gguf_kv_key(const gguf_t *g, uint64_t i)
{
    if (i >= g->n_kv)
        return (gguf_str_t){ NULL, 0 };
    return g->kv[i].key;
}

gguf_vtype_t gguf_kv_type(const gguf_t *g, uint64_t i)
{
    return i < g->n_kv ? g->kv[i].type : (gguf_vtype_t)-1;
}

/* The entry for `key`, or NULL with ERR_NOTFOUND in *rc. */
static const gguf_kv_t *lookup(const gguf_t *g, const char *key, int *rc)
{
    int64_t i = gguf_find(g, key);
    *rc = i < 0 ? ERR_NOTFOUND : 0;
    return i < 0 ? NULL : &g->kv[i];
}

/*
 * An integer of any width as (negative?, value): non-negative values in
 * *u, negative ones in *s.  Returns 0, or -1 when the type is not an
 * integer type.
 */
static int int_value(gguf_vtype_t type, const uint8_t *p, int *neg, uint64_t *u, int64_t *s)
{
    uint32_t size = gguf_vtype_size(type);
    uint64_t raw = size ? gguf_rd_le(p, size) : 0;
    *neg = 0;
    *u = 0;
    *s = 0;
    switch (type) {
    case GGUF_T_UINT8: case GGUF_T_UINT16: case GGUF_T_UINT32: case GGUF_T_UINT64:
        *u = raw;
        return 0;
    case GGUF_T_INT8:  *s = (int8_t)raw;  break;
    case GGUF_T_INT16: *s = (int16_t)raw; break;
    case GGUF_T_INT32: *s = (int32_t)raw; break;
    case GGUF_T_INT64: *s = (int64_t)raw; break;
    default:
        return -1;
    }
    *neg = *s < 0;
    if (!*neg)
        *u = (uint64_t)*s;
    return 0;
}

static int wrong_type(const gguf_t *g, const gguf_kv_t *kv, const char *want, char *err,
                      size_t errlen)
{
    char b[80];
    return err_set(err, errlen, ERR_FORMAT, "%s: key '%s' has type %s, expected %s",
                   g->name, err_shown(b, sizeof b, kv->key.ptr, kv->key.len),
                   gguf_vtype_name(kv->type), want);
}

/* Reads an integer value that must lie in [lo, hi] (lo <= 0). */
static int get_int(const gguf_t *g, const char *key, const char *want, int64_t lo, uint64_t hi,
                   int *neg, uint64_t *u, int64_t *s, char *err, size_t errlen)
{
    int rc;
    const gguf_kv_t *kv = lookup(g, key, &rc);
    if (kv == NULL)
        return rc;
    if (kv->type == GGUF_T_ARRAY || int_value(kv->type, kv->val, neg, u, s) != 0)
        return wrong_type(g, kv, "an integer", err, errlen);
    if (*neg ? *s < lo : *u > hi) {
        if (*neg)
            return err_set(err, errlen, ERR_FORMAT, "%s: key '%s': value %" PRId64
                           " does not fit %s", g->name, key, *s, want);
        return err_set(err, errlen, ERR_FORMAT, "%s: key '%s': value %" PRIu64
                       " does not fit %s", g->name, key, *u, want);
    }
    return 0;
}

int gguf_get_u32(const gguf_t *g, const char *key, uint32_t *out, char *err, size_t errlen)
{
    int neg;
    uint64_t u;
    int64_t s;
    int rc = get_int(g, key, "uint32", 0, UINT32_MAX, &neg, &u, &s, err, errlen);
    if (rc == 0)
        *out = (uint32_t)u;
    return rc;
}

int gguf_get_u64(const gguf_t *g, const char *key, uint64_t *out, char *err, size_t errlen)
{
    int neg;
    uint64_t u;
    int64_t s;
    int rc = get_int(g, key, "uint64", 0, UINT64_MAX, &neg, &u, &s, err, errlen);
    if (rc == 0)
        *out = u;
    return rc;
}

int gguf_get_i32(const gguf_t *g, const char *key, int32_t *out, char *err, size_t errlen)
{
    int neg;
    uint64_t u;
    int64_t s;
    int rc = get_int(g, key, "int32", INT32_MIN, INT32_MAX, &neg, &u, &s, err, errlen);
    if (rc == 0)
        *out = neg ? (int32_t)s : (int32_t)u;
    return rc;
}

int gguf_get_f32(const gguf_t *g, const char *key, float *out, char *err, size_t errlen)
{
    int rc;
    const gguf_kv_t *kv = lookup(g, key, &rc);
    if (kv == NULL)
        return rc;
    if (kv->type == GGUF_T_FLOAT32) {
        uint32_t u = (uint32_t)gguf_rd_le(kv->val, 4);
        memcpy(out, &u, sizeof *out);
        return 0;
    }
    if (kv->type == GGUF_T_FLOAT64) {
        uint64_t u = gguf_rd_le(kv->val, 8);
        double d;
        memcpy(&d, &u, sizeof d);
        *out = (float)d; /* rounds to nearest; out of float range becomes inf */
        return 0;
    }
    return wrong_type(g, kv, "FLOAT32 or FLOAT64", err, errlen);
}

int gguf_get_bool(const gguf_t *g, const char *key, int *out, char *err, size_t errlen)
{
    int rc;
    const gguf_kv_t *kv = lookup(g, key, &rc);
    if (kv == NULL)
        return rc;
    if (kv->type != GGUF_T_BOOL)
        return wrong_type(g, kv, "BOOL", err, errlen);
    *out = kv->val[0] != 0;
    return 0;
}

int gguf_get_str(const gguf_t *g, const char *key, gguf_str_t *out, char *err, size_t errlen)
{
    int rc;
    const gguf_kv_t *kv = lookup(g, key, &rc);
    if (kv == NULL)
        return rc;
    if (kv->type != GGUF_T_STRING)
        return wrong_type(g, kv, "STRING", err, errlen);
    out->ptr = (const char *)kv->val;
    out->len = kv->n;
    return 0;
}

/* ------------------------------------------------------------- arrays */

int gguf_get_arr(const gguf_t *g, const char *key, gguf_vtype_t *elem_type,
                 uint64_t *n, char *err, size_t errlen)
{
    int rc;
    const gguf_kv_t *kv = lookup(g, key, &rc);
    if (kv == NULL)
        return rc;
    if (kv->type != GGUF_T_ARRAY)
        return wrong_type(g, kv, "ARRAY", err, errlen);
    *elem_type = kv->elem_type;
    *n = kv->n;
    return 0;
}

const void *gguf_arr_data(const gguf_t *g, const char *key)
{
    int rc;
    const gguf_kv_t *kv = lookup(g, key, &rc);
    if (kv == NULL || kv->type != GGUF_T_ARRAY || kv->elem_type == GGUF_T_STRING)
        return NULL;
    return kv->val;
}

/* Element i of a string array entry (i < kv->n). */
static gguf_str_t arr_str_at(const gguf_t *g, const gguf_kv_t *kv, uint64_t i)
{
    uint64_t at = kv->str_at[i];
    return (gguf_str_t){ (const char *)(g->base + at + 8), gguf_rd_le(g->base + at, 8) };
}

int gguf_arr_str(const gguf_t *g, const char *key, uint64_t i, gguf_str_t *out)
{
    int rc;
    const gguf_kv_t *kv = lookup(g, key, &rc);
    if (kv == NULL)
        return rc;
    if (kv->type != GGUF_T_ARRAY || kv->elem_type != GGUF_T_STRING)
        return ERR_FORMAT;
    if (i >= kv->n)
        return ERR_RANGE;
    *out = arr_str_at(g, kv, i);
    return 0;
}

/* ---------------------------------------------------------- formatting */

typedef struct {
    char *buf;
    size_t len, pos;
} sbuf_t;

static void sb_printf(sbuf_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf_t *sb, const char *fmt, ...)
{
    if (sb->pos + 1 >= sb->len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sb->buf + sb->pos, sb->len - sb->pos, fmt, ap);
    va_end(ap);
    if (n > 0)
        sb->pos = (size_t)n < sb->len - sb->pos ? sb->pos + (size_t)n : sb->len - 1;
}

/* A quoted string, escaping quotes, backslashes and non-printable bytes,
 * at most 64 bytes of it. */
static void sb_str(sbuf_t *sb, const char *p, uint64_t len)
{
    sb_printf(sb, "\"");
    for (uint64_t i = 0; i < len && i < 64; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\')
            sb_printf(sb, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            sb_printf(sb, "%c", c);
        else
            sb_printf(sb, "\\x%02x", c);
    }
    sb_printf(sb, len > 64 ? "\"..." : "\"");
}

static void sb_scalar(sbuf_t *sb, gguf_vtype_t type, const uint8_t *p)
{
    int neg;
    uint64_t u;
    int64_t s;
    if (int_value(type, p, &neg, &u, &s) == 0) {
        if (neg)
            sb_printf(sb, "%" PRId64, s);
        else
            sb_printf(sb, "%" PRIu64, u);
    } else if (type == GGUF_T_FLOAT32) {
        uint32_t b = (uint32_t)gguf_rd_le(p, 4);
        float f;
        memcpy(&f, &b, sizeof f);
        sb_printf(sb, "%.9g", (double)f);
    } else if (type == GGUF_T_FLOAT64) {
        uint64_t b = gguf_rd_le(p, 8);
        double d;
        memcpy(&d, &b, sizeof d);
        sb_printf(sb, "%.17g", d);
    } else if (type == GGUF_T_BOOL) {
        sb_printf(sb, "%s", p[0] ? "true" : "false");
    }
}

int gguf_kv_format(const gguf_t *g, uint64_t i, char *buf, size_t len)
{
    sbuf_t sb = { buf, len, 0 };
    if (len > 0)
        buf[0] = '\0';
    if (i >= g->n_kv)
        return ERR_RANGE;
    const gguf_kv_t *kv = &g->kv[i];
    if (kv->type == GGUF_T_STRING) {
        sb_str(&sb, (const char *)kv->val, kv->n);
    } else if (kv->type != GGUF_T_ARRAY) {
        sb_scalar(&sb, kv->type, kv->val);
    } else {
        enum { SHOWN = 8 };
        sb_printf(&sb, "[%" PRIu64 " x %s:", kv->n, gguf_vtype_name(kv->elem_type));
        uint32_t size = gguf_vtype_size(kv->elem_type);
        for (uint64_t k = 0; k < kv->n && k < SHOWN; k++) {
            sb_printf(&sb, k ? ", " : " ");
            if (kv->elem_type == GGUF_T_STRING) {
                gguf_str_t s = arr_str_at(g, kv, k);
                sb_str(&sb, s.ptr, s.len);
            } else {
                sb_scalar(&sb, kv->elem_type, kv->val + k * size);
            }
        }
        sb_printf(&sb, kv->n > SHOWN ? ", ...]" : "]");
    }
    return 0;
}

/* ------------------------------------------------------------ tensors */

uint64_t gguf_tensor_count(const gguf_t *g) { return g->n_tensors; }

const gguf_tensor_t *gguf_tensor(const gguf_t *g, uint64_t i)
{
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gguf_tensor_t *gguf_find_tensor(const gguf_t *g, const char *name)
{
    int64_t i = gguf_index_find(g->t_by_name, g->n_tensors, name);
    return i < 0 ? NULL : &g->tensors[i];
}
