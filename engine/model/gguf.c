/*
 * gguf.c - the GGUF reader.
 *
 * File layout (little-endian; versions 2 and 3 are read alike):
 *
 *   u32 magic "GGUF"; u32 version; u64 n_tensors; u64 n_kv
 *   n_kv x { string key; u32 value_type; value }
 *   n_tensors x { string name; u32 n_dims; u64 ne[n_dims]; u32 type; u64 offset }
 *   padding to general.alignment (default 32)
 *   data section: tensor bytes at `offset` from its start
 *
 * where a string is { u64 len; len bytes } and an array value is
 * { u32 elem_type; u64 n; n elements }.
 *
 * Nothing is copied out of the file: keys, strings and arrays point into
 * the buffer.  String arrays (a vocabulary of 49 152 tokens) get one index
 * of element offsets so that element i is found in O(1).
 *
 * Every read goes through need(), which checks the bytes left; every
 * count is capped and compared with the bytes it needs at minimum before
 * an allocation is sized from it.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "gguf_impl.h"

#define GGUF_MAGIC          "GGUF"
#define GGUF_DEFAULT_ALIGN  32u
#define GGUF_MAX_KEY        65535u  /* the specification's limit on a key */
#define GGUF_MAX_NAME       64u     /* ... and on a tensor name */

/* Smallest encodings: a kv is an empty key (8), its type (4) and a one-
 * byte value; a tensor info is an empty name (8), n_dims (4), one ne (8),
 * type (4) and offset (8). */
#define KV_MIN_BYTES     13u
#define TINFO_MIN_BYTES  32u

/* Here, with the parser that needs it, so that gguf_get.c only reads
 * what this file built and nothing here calls into gguf_get.c. */
const char *gguf_vtype_name(gguf_vtype_t t)
{
    static const char *const names[] = {
        "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
        "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64",
    };
    return (uint32_t)t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

static int cmp_name_ent(const void *x, const void *y)
{
    const gguf_name_ent_t *a = x, *b = y;
    int c = gguf_cmp_bytes(a->p, a->len, b->p, b->len);
    if (c != 0)
        return c;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* ------------------------------------------------------------- reader */

typedef struct {
    const uint8_t *base;
    uint64_t len;
    uint64_t pos;
    const char *name;
    char *err;
    size_t errlen;
    char ctx[128];            /* "kv 3 'general.name': " or "" */
} rd_t;

/* Check that `n` more bytes can be read; `field` names what is read. */
static int need(rd_t *r, uint64_t n, const char *field)
{
    uint64_t left = r->len - r->pos;
    if (n <= left)
        return 0;
    return err_set(r->err, r->errlen, ERR_FORMAT,
                   "%s: %s%s: truncated at file offset %" PRIu64
                   " (needs %" PRIu64 " bytes, %" PRIu64 " left)",
                   r->name, r->ctx, field, r->pos, n, left);
}

static int rd_u32(rd_t *r, const char *field, uint32_t *out)
{
    int rc = need(r, 4, field);
    if (rc)
        return rc;
    *out = (uint32_t)gguf_rd_le(r->base + r->pos, 4);
    r->pos += 4;
    return 0;
}

static int rd_u64(rd_t *r, const char *field, uint64_t *out)
{
    int rc = need(r, 8, field);
    if (rc)
        return rc;
    *out = gguf_rd_le(r->base + r->pos, 8);
    r->pos += 8;
    return 0;
}

/*
 * A string of at most `cap` bytes.  `field` names it ("key", "name"), and
 * elem >= 0 names it "element <elem> string" instead.  The common path
 * formats nothing: a vocabulary has ~10^5 strings.
 */
static int rd_str(rd_t *r, const char *field, int64_t elem, uint64_t cap, gguf_str_t *out)
{
    uint64_t left = r->len - r->pos;
    if (left >= 8) {
        uint64_t len = gguf_rd_le(r->base + r->pos, 8);
        if (len <= cap && len <= left - 8) {
            out->ptr = (const char *)(r->base + r->pos + 8);
            out->len = len;
            r->pos += 8 + len;
            return 0;
        }
    }
    /* Something is wrong: say what. */
    char name[48], f[64];
    if (elem >= 0) {
        snprintf(name, sizeof name, "element %" PRId64 " string", elem);
        field = name;
    }
    snprintf(f, sizeof f, "%s length", field);
    int rc = need(r, 8, f);
    if (rc)
        return rc;
    uint64_t len = gguf_rd_le(r->base + r->pos, 8);
    if (len > cap)
        return err_set(r->err, r->errlen, ERR_FORMAT,
                       "%s: %s%s %" PRIu64 " exceeds the cap of %" PRIu64
                       " bytes at file offset %" PRIu64,
                       r->name, r->ctx, f, len, cap, r->pos);
    r->pos += 8;
    snprintf(f, sizeof f, "%s bytes", field);
    return need(r, len, f);
}

static int check_bools(rd_t *r, const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i] > 1)
            return err_set(r->err, r->errlen, ERR_FORMAT,
                           "%s: %sbool value %u is not 0 or 1 at file offset %" PRIu64,
                           r->name, r->ctx, p[i], (uint64_t)(p + i - r->base));
    return 0;
}

static int parse_array(rd_t *r, gguf_kv_t *kv)
{
    uint32_t et;
    uint64_t n;
    int rc = rd_u32(r, "array element type", &et);
    if (rc)
        return rc;
    if (et == GGUF_T_ARRAY)
        return err_set(r->err, r->errlen, ERR_UNSUPPORTED,
                       "%s: %snested array (array of arrays) not supported at file offset %" PRIu64,
                       r->name, r->ctx, r->pos - 4);
    if (et != GGUF_T_STRING && gguf_vtype_size(et) == 0)
        return err_set(r->err, r->errlen, ERR_FORMAT,
                       "%s: %sarray element type %" PRIu32 " unknown at file offset %" PRIu64,
                       r->name, r->ctx, et, r->pos - 4);
    if ((rc = rd_u64(r, "array length", &n)) != 0)
        return rc;
    if (n > GGUF_MAX_ARRAY)
        return err_set(r->err, r->errlen, ERR_FORMAT,
                       "%s: %sarray length %" PRIu64 " exceeds the cap of %u at file offset %" PRIu64,
                       r->name, r->ctx, n, GGUF_MAX_ARRAY, r->pos - 8);
    kv->elem_type = (gguf_vtype_t)et;
    kv->n = n;
    kv->val = r->base + r->pos;

    if (et != GGUF_T_STRING) {
        char f[64];
        snprintf(f, sizeof f, "array data (%" PRIu64 " x %s)", n, gguf_vtype_name((gguf_vtype_t)et));
        /* n <= 2^24 and a size <= 8: the product cannot overflow */
        if ((rc = need(r, n * gguf_vtype_size(et), f)) != 0)
            return rc;
        if (et == GGUF_T_BOOL && (rc = check_bools(r, kv->val, n)) != 0)
            return rc;
        r->pos += n * gguf_vtype_size(et);
        return 0;
    }
    /* Every string needs at least its 8-byte length: check before sizing
     * the index from n. */
    if (n > (r->len - r->pos) / 8)
        return err_set(r->err, r->errlen, ERR_FORMAT,
                       "%s: %sarray length %" PRIu64 " of strings needs at least %" PRIu64
                       " bytes, %" PRIu64 " left at file offset %" PRIu64,
                       r->name, r->ctx, n, n * 8, r->len - r->pos, r->pos - 8);
    if (n == 0)
        return 0;
    kv->str_at = malloc(n * sizeof *kv->str_at);
    if (kv->str_at == NULL)
        return err_set(r->err, r->errlen, ERR_NOMEM, "%s: %sno memory for %" PRIu64 " strings",
                       r->name, r->ctx, n);
    for (uint64_t i = 0; i < n; i++) {
        gguf_str_t s;
        kv->str_at[i] = r->pos;
        if ((rc = rd_str(r, NULL, (int64_t)i, GGUF_MAX_STRING, &s)) != 0)
            return rc;
    }
    return 0;
}

static int parse_value(rd_t *r, gguf_kv_t *kv)
{
    uint32_t size = gguf_vtype_size(kv->type);
    kv->at = r->pos;
    if (size != 0) {
        int rc = need(r, size, "value");
        if (rc)
            return rc;
        kv->val = r->base + r->pos;
        if (kv->type == GGUF_T_BOOL && (rc = check_bools(r, kv->val, 1)) != 0)
            return rc;
        r->pos += size;
        return 0;
    }
    if (kv->type == GGUF_T_STRING) {
        gguf_str_t s;
        int rc = rd_str(r, "string", -1, GGUF_MAX_STRING, &s);
        if (rc)
            return rc;
        kv->val = (const uint8_t *)s.ptr;
        kv->n = s.len;
        return 0;
    }
    if (kv->type == GGUF_T_ARRAY)
        return parse_array(r, kv);
    return err_set(r->err, r->errlen, ERR_FORMAT,
                   "%s: %svalue type %u unknown at file offset %" PRIu64,
                   r->name, r->ctx, (unsigned)kv->type, r->pos - 4);
}

/* Sorts a name index and rejects duplicates; `what` is "key" or "tensor
 * name", `entry` "kv" or "tensor". */
static int index_names(rd_t *r, gguf_name_ent_t *ents, uint64_t n, const char *what,
                       const char *entry)
{
    if (n == 0)
        return 0;
    qsort(ents, n, sizeof *ents, cmp_name_ent);
    for (uint64_t i = 1; i < n; i++) {
        if (gguf_cmp_bytes(ents[i - 1].p, ents[i - 1].len, ents[i].p, ents[i].len) == 0) {
            char b[80];
            /* the later one's length field, 8 bytes before its bytes */
            uint64_t at = (uint64_t)((const uint8_t *)ents[i].p - r->base) - 8;
            return err_set(r->err, r->errlen, ERR_FORMAT,
                           "%s: duplicate %s '%s' (%s %" PRIu32 " and %s %" PRIu32
                           ") at file offset %" PRIu64,
                           r->name, what, err_shown(b, sizeof b, ents[i].p, ents[i].len),
                           entry, ents[i - 1].idx, entry, ents[i].idx, at);
        }
    }
    return 0;
}

static int parse_kvs(rd_t *r, gguf_t *g)
{
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->kv_by_key = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv_by_key);
    if (g->kv == NULL || g->kv_by_key == NULL)
        return err_set(r->err, r->errlen, ERR_NOMEM, "%s: no memory for %" PRIu64 " kvs",
                       r->name, g->n_kv);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        gguf_kv_t *kv = &g->kv[i];
        uint32_t type;
        char b[80];
        int rc;
        snprintf(r->ctx, sizeof r->ctx, "kv %" PRIu64 ": ", i);
        if ((rc = rd_str(r, "key", -1, GGUF_MAX_KEY, &kv->key)) != 0)
            return rc;
        if (kv->key.len == 0)
            return err_set(r->err, r->errlen, ERR_FORMAT, "%s: %skey is empty at file offset %" PRIu64,
                           r->name, r->ctx, r->pos - 8);
        snprintf(r->ctx, sizeof r->ctx, "kv %" PRIu64 " '%s': ", i,
                 err_shown(b, sizeof b, kv->key.ptr, kv->key.len));
        if ((rc = rd_u32(r, "value type", &type)) != 0)
            return rc;
        kv->type = (gguf_vtype_t)type;
        if ((rc = parse_value(r, kv)) != 0)
            return rc;
        g->kv_by_key[i] = (gguf_name_ent_t){ kv->key.ptr, kv->key.len, (uint32_t)i };
    }
    r->ctx[0] = '\0';
    return index_names(r, g->kv_by_key, g->n_kv, "key", "kv");
}

static int read_alignment(rd_t *r, gguf_t *g)
{
    g->alignment = GGUF_DEFAULT_ALIGN;
    int64_t i = gguf_index_find(g->kv_by_key, g->n_kv, "general.alignment");
    if (i < 0)
        return 0;
    const gguf_kv_t *kv = &g->kv[i];
    if (kv->type != GGUF_T_UINT32)
        return err_set(r->err, r->errlen, ERR_FORMAT,
                       "%s: general.alignment has type %s, must be UINT32 at file offset %" PRIu64,
                       r->name, gguf_vtype_name(kv->type), kv->at);
    uint32_t a = (uint32_t)gguf_rd_le(kv->val, 4);
    if (a == 0 || (a & (a - 1)) != 0 || a > GGUF_MAX_ALIGNMENT)
        return err_set(r->err, r->errlen, ERR_FORMAT,
                       "%s: general.alignment %" PRIu32 " is not a power of two in 1..%u"
                       " at file offset %" PRIu64, r->name, a, GGUF_MAX_ALIGNMENT, kv->at);
    g->alignment = a;
    return 0;
}

/* Reads one tensor info and checks its shape and type; `at` gets the
 * file offset of its `offset` field. */
static int parse_tinfo(rd_t *r, uint64_t i, gguf_tensor_t *t, uint64_t *at)
{
    char b[80], f[16];
    uint32_t type;
    int rc;
    snprintf(r->ctx, sizeof r->ctx, "tensor %" PRIu64 ": ", i);
    if ((rc = rd_str(r, "name", -1, GGUF_MAX_NAME, &t->name)) != 0)
        return rc;
    snprintf(r->ctx, sizeof r->ctx, "tensor '%s': ", err_shown(b, sizeof b, t->name.ptr, t->name.len));
    if ((rc = rd_u32(r, "n_dims", &t->n_dims)) != 0)
        return rc;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return err_set(r->err, r->errlen, ERR_FORMAT,
                       "%s: %sn_dims %" PRIu32 " not in 1..%d at file offset %" PRIu64,
                       r->name, r->ctx, t->n_dims, GGUF_MAX_DIMS, r->pos - 4);
    uint64_t n_elems = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= t->n_dims)
            continue;
        snprintf(f, sizeof f, "ne[%" PRIu32 "]", d);
        if ((rc = rd_u64(r, f, &t->ne[d])) != 0)
            return rc;
        if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX)
            return err_set(r->err, r->errlen, ERR_FORMAT,
                           "%s: %s%s %" PRIu64 " not in 1..2^63-1 at file offset %" PRIu64,
                           r->name, r->ctx, f, t->ne[d], r->pos - 8);
        if (__builtin_mul_overflow(n_elems, t->ne[d], &n_elems) || n_elems > (uint64_t)INT64_MAX)
            return err_set(r->err, r->errlen, ERR_FORMAT,
                           "%s: %selement count overflows at %s %" PRIu64 " at file offset %" PRIu64,
                           r->name, r->ctx, f, t->ne[d], r->pos - 8);
    }
    if ((rc = rd_u32(r, "type", &type)) != 0)
        return rc;
    const qtype_info_t *ti = qtype_info(type);
    if (ti == NULL)
        return err_set(r->err, r->errlen, ERR_UNSUPPORTED,
                       "%s: %stype id %" PRIu32 " not supported at file offset %" PRIu64,
                       r->name, r->ctx, type, r->pos - 4);
    t->type = (qtype_t)type;
    if (t->ne[0] % ti->block_elems != 0)
        return err_set(r->err, r->errlen, ERR_FORMAT,
                       "%s: %sne[0] %" PRIu64 " is not a multiple of %s's block size %" PRIu32
                       " at file offset %" PRIu64,
                       r->name, r->ctx, t->ne[0], ti->name, ti->block_elems, r->pos - 4);
    rc = qtype_nbytes(type, n_elems, &t->nbytes);
    if (rc != 0 || t->nbytes > (uint64_t)INT64_MAX)
        return err_set(r->err, r->errlen, ERR_FORMAT,
                       "%s: %sbyte size of %" PRIu64 " %s elements overflows at file offset %" PRIu64,
                       r->name, r->ctx, n_elems, ti->name, r->pos - 4);
    *at = r->pos;
    return rd_u64(r, "offset", &t->offset);
}

typedef struct {
    uint64_t offset;
    uint32_t idx;
} off_ent_t;

static int cmp_off_ent(const void *x, const void *y)
{
    const off_ent_t *a = x, *b = y;
    if (a->offset != b->offset)
        return a->offset < b->offset ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Offsets: aligned, inside the data section, not overlapping. */
static int check_placement(rd_t *r, gguf_t *g, const uint64_t *at)
{
    char b[80], b2[80];
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor_t *t = &g->tensors[i];
        uint64_t end;
        err_shown(b, sizeof b, t->name.ptr, t->name.len);
        if (t->offset % g->alignment != 0)
            return err_set(r->err, r->errlen, ERR_FORMAT,
                           "%s: tensor '%s': offset %" PRIu64 " is not a multiple of the alignment %"
                           PRIu32 " at file offset %" PRIu64,
                           r->name, b, t->offset, g->alignment, at[i]);
        if (__builtin_add_overflow(t->offset, t->nbytes, &end) || end > g->data_len)
            return err_set(r->err, r->errlen, ERR_FORMAT,
                           "%s: tensor '%s': offset %" PRIu64 " + size %" PRIu64
                           " past end of data (%" PRIu64 " bytes) at file offset %" PRIu64,
                           r->name, b, t->offset, t->nbytes, g->data_len, at[i]);
        t->data = g->base + g->data_start + t->offset;
    }
    if (g->n_tensors < 2)
        return 0;
    off_ent_t *ents = malloc(g->n_tensors * sizeof *ents);
    if (ents == NULL)
        return err_set(r->err, r->errlen, ERR_NOMEM, "%s: no memory for the tensor table", r->name);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        ents[i] = (off_ent_t){ g->tensors[i].offset, (uint32_t)i };
    qsort(ents, g->n_tensors, sizeof *ents, cmp_off_ent);
    int rc = 0;
    for (uint64_t i = 1; i < g->n_tensors && rc == 0; i++) {
        const gguf_tensor_t *a = &g->tensors[ents[i - 1].idx];
        const gguf_tensor_t *t = &g->tensors[ents[i].idx];
        if (a->offset + a->nbytes > t->offset) /* both ends checked above */
            rc = err_set(r->err, r->errlen, ERR_FORMAT,
                         "%s: tensor '%s': offset %" PRIu64 " overlaps tensor '%s' (offset %" PRIu64
                         ", %" PRIu64 " bytes) at file offset %" PRIu64,
                         r->name, err_shown(b, sizeof b, t->name.ptr, t->name.len), t->offset,
                         err_shown(b2, sizeof b2, a->name.ptr, a->name.len), a->offset, a->nbytes,
                         at[ents[i].idx]);
    }
    free(ents);
    return rc;
}

static int parse_tensors(rd_t *r, gguf_t *g)
{
    uint64_t n = g->n_tensors ? g->n_tensors : 1;
    uint64_t *at = calloc(n, sizeof *at);
    g->tensors = calloc(n, sizeof *g->tensors);
    g->t_by_name = calloc(n, sizeof *g->t_by_name);
    int rc = 0;
    if (at == NULL || g->tensors == NULL || g->t_by_name == NULL) {
        rc = err_set(r->err, r->errlen, ERR_NOMEM, "%s: no memory for %" PRIu64 " tensors",
                     r->name, g->n_tensors);
        goto done;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor_t *t = &g->tensors[i];
        if ((rc = parse_tinfo(r, i, t, &at[i])) != 0)
            goto done;
        g->t_by_name[i] = (gguf_name_ent_t){ t->name.ptr, t->name.len, (uint32_t)i };
    }
    r->ctx[0] = '\0';
    if ((rc = index_names(r, g->t_by_name, g->n_tensors, "tensor name", "tensor")) != 0)
        goto done;

    /* The data section starts at the next multiple of the alignment. */
    uint64_t start;
    if (__builtin_add_overflow(r->pos, (uint64_t)g->alignment - 1, &start)) {
        rc = err_set(r->err, r->errlen, ERR_FORMAT,
                     "%s: data section offset overflows at file offset %" PRIu64, r->name, r->pos);
        goto done;
    }
    g->data_start = start & ~((uint64_t)g->alignment - 1);
    g->data_len = g->data_start < g->len ? g->len - g->data_start : 0;
    rc = check_placement(r, g, at);
done:
    free(at);
    return rc;
}

static int parse_header(rd_t *r, gguf_t *g)
{
    int rc = need(r, 4, "magic");
    if (rc)
        return rc;
    if (memcmp(r->base, GGUF_MAGIC, 4) != 0)
        return err_set(r->err, r->errlen, ERR_FORMAT,
                       "%s: bad magic 0x%08" PRIx32 " (not a GGUF file) at file offset 0",
                       r->name, (uint32_t)gguf_rd_le(r->base, 4));
    r->pos = 4;
    if ((rc = rd_u32(r, "version", &g->version)) != 0)
        return rc;
    if (g->version != 2 && g->version != 3)
        return err_set(r->err, r->errlen, ERR_UNSUPPORTED,
                       "%s: version %" PRIu32 " not supported (2 or 3%s) at file offset 4",
                       r->name, g->version,
                       (g->version & 0xffffu) == 0 ? "; a big-endian file?" : "");
    if ((rc = rd_u64(r, "n_tensors", &g->n_tensors)) != 0 ||
        (rc = rd_u64(r, "n_kv", &g->n_kv)) != 0)
        return rc;
    if (g->n_tensors > GGUF_MAX_TENSORS)
        return err_set(r->err, r->errlen, ERR_FORMAT,
                       "%s: n_tensors %" PRIu64 " exceeds the cap of %d at file offset 8",
                       r->name, g->n_tensors, GGUF_MAX_TENSORS);
    if (g->n_kv > GGUF_MAX_KV)
        return err_set(r->err, r->errlen, ERR_FORMAT,
                       "%s: n_kv %" PRIu64 " exceeds the cap of %d at file offset 16",
                       r->name, g->n_kv, GGUF_MAX_KV);
    /* Both are capped at 2^16, so these products cannot overflow. */
    uint64_t left = r->len - r->pos;
    uint64_t kv_min = g->n_kv * KV_MIN_BYTES, t_min = g->n_tensors * TINFO_MIN_BYTES;
    if (kv_min > left)
        return err_set(r->err, r->errlen, ERR_FORMAT,
                       "%s: n_kv %" PRIu64 " needs at least %" PRIu64 " bytes, %" PRIu64
                       " left at file offset 16", r->name, g->n_kv, kv_min, left);
    if (t_min > left - kv_min)
        return err_set(r->err, r->errlen, ERR_FORMAT,
                       "%s: n_tensors %" PRIu64 " needs at least %" PRIu64 " bytes, %" PRIu64
                       " left after the kvs at file offset 8", r->name, g->n_tensors, t_min,
                       left - kv_min);
    return 0;
}

/* ------------------------------------------------------ create/destroy */

static int create(gguf_t **out, gguf_t *g, char *err, size_t errlen)
{
    rd_t r = { .base = g->base, .len = g->len, .name = g->name, .err = err, .errlen = errlen };
    int rc;
    if ((rc = parse_header(&r, g)) != 0 || (rc = parse_kvs(&r, g)) != 0 ||
        (rc = read_alignment(&r, g)) != 0 || (rc = parse_tensors(&r, g)) != 0) {
        gguf_destroy(g);
        return rc;
    }
    *out = g;
    return 0;
}

int gguf_create_from_buffer(gguf_t **out, const void *buf, size_t len,
                            const char *name, char *err, size_t errlen)
{
    *out = NULL;
    if (name == NULL)
        name = "(buffer)";
    if (buf == NULL && len > 0)
        return err_set(err, errlen, ERR_INVALID, "%s: NULL buffer", name);
    gguf_t *g = calloc(1, sizeof *g);
    if (g == NULL || (g->name = strdup(name)) == NULL) {
        free(g);
        return err_set(err, errlen, ERR_NOMEM, "%s: out of memory", name);
    }
    static const uint8_t empty[1];
    g->base = len ? buf : empty;
    g->len = len;
    return create(out, g, err, errlen);
}

/*
 * Read len bytes of fd into a fresh anonymous mapping, made read-only
 * afterwards: the copy no longer depends on the file.  Logs progress every
 * 10% for files of 1 GiB or more.  Returns the mapping or MAP_FAILED with
 * errno set.
 */
static void *read_private(int fd, size_t len, const char *path)
{
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return MAP_FAILED;
    const size_t chunk = (size_t)64 << 20;
    const int progress = len >= ((size_t)1 << 30);
    size_t got = 0, next_report = len / 10;
    while (got < len) {
        size_t want = len - got < chunk ? len - got : chunk;
        ssize_t r = pread(fd, (char *)map + got, want, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r == 0 ? EIO : errno; /* the file shrank while being read */
            munmap(map, len);
            errno = e;
            return MAP_FAILED;
        }
        got += (size_t)r;
        if (progress && got >= next_report && got < len) {
            log_info("%s: read %zu of %zu MiB into private memory", path, got >> 20, len >> 20);
            next_report += len / 10;
        }
    }
    mprotect(map, len, PROT_READ);
    return map;
}

int gguf_create(gguf_t **out, const char *path, char *err, size_t errlen)
{
    return gguf_open(out, path, 0, err, errlen);
}

int gguf_open(gguf_t **out, const char *path, int private_copy, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(err, errlen, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return err_set(err, errlen, ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, errlen, ERR_IO, "%s: not a regular file", path);
    }
    void *map = NULL;
    size_t len = (size_t)st.st_size;
    if (len > 0) {
        map = private_copy ? read_private(fd, len, path)
                           : mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return err_set(err, errlen, ERR_IO, "%s: cannot %s %zu bytes: %s", path,
                           private_copy ? "read" : "map", len, strerror(e));
        }
    }
    close(fd);
    gguf_t *g = calloc(1, sizeof *g);
    if (g == NULL || (g->name = strdup(path)) == NULL) {
        free(g);
        if (map != NULL)
            munmap(map, len);
        return err_set(err, errlen, ERR_NOMEM, "%s: out of memory", path);
    }
    static const uint8_t empty[1];
    g->map = map;
    g->map_len = len;
    g->base = map != NULL ? map : empty;
    g->len = len;
    return create(out, g, err, errlen);
}

void gguf_destroy(gguf_t *g)
{
    if (g == NULL)
        return;
    if (g->kv != NULL)
        for (uint64_t i = 0; i < g->n_kv; i++)
            free(g->kv[i].str_at);
    free(g->kv);
    free(g->kv_by_key);
    free(g->tensors);
    free(g->t_by_name);
    if (g->map != NULL)
        munmap(g->map, g->map_len);
    free(g->name);
    free(g);
}
