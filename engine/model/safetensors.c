/*
 * safetensors.c - the .safetensors reader (see safetensors.h).
 *
 * The header is parsed in three passes over cJSON's tree: all top-level
 * keys are sorted once to reject duplicates (cJSON keeps both copies and
 * its lookups return the first), each entry is checked on its own, and
 * finally the entries are sorted by offset and must tile the data
 * section from 0 to its end with no gap and no overlap.  Opening files
 * and sharded models is in safetensors_model.c.
 */
#include "safetensors.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/err.h"
#include "base/utf8.h"

#define MAX_EXACT_INT 9007199254740992.0 /* 2^53: doubles above it are not exact */

typedef struct {
    char *key, *value;
} st_meta_t;

struct st_header {
    char *name;               /* the file, for messages */
    st_tensor_t *tensors;     /* [n_tensors], header order; names owned */
    const st_tensor_t **by_name; /* [n_tensors], sorted by name */
    uint64_t n_tensors;
    st_meta_t *meta;          /* [n_meta], sorted by key */
    uint64_t n_meta;
};

/* ============================ small helpers ============================ */

static uint64_t rd_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

int st_json_check_depth(const char *text, size_t len, unsigned max_depth)
{
    unsigned depth = 0;
    int in_string = 0, escaped = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (escaped)
                escaped = 0;
            else if (c == '\\')
                escaped = 1;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth)
                return ERR_FORMAT;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return 0;
}

/* A JSON number that is an exact non-negative integer (<= 2^53). */
static int json_u64(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0.0 && d <= MAX_EXACT_INT))
        return -1;
    uint64_t u = (uint64_t)d;
    if ((double)u != d)
        return -1;
    *out = u;
    return 0;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    const st_tensor_t *x = *(const st_tensor_t *const *)a;
    const st_tensor_t *y = *(const st_tensor_t *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const st_tensor_t *x = *(const st_tensor_t *const *)a;
    const st_tensor_t *y = *(const st_tensor_t *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

static const st_tensor_t *find_sorted(const st_tensor_t *const *by_name,
                                      uint64_t n, const char *name)
{
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, by_name[mid]->name);
        if (c == 0)
            return by_name[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ============================ one header ============================ */

/* Map a dtype string; 0, or ERR_UNSUPPORTED with a message. */
static int map_dtype(const char *file, const char *tname, const char *dtype,
                     qtype_t *type, uint64_t *size, char *err, size_t errlen)
{
    static const char *const known[] = {
        "F64", "I64", "U64", "I32", "U32", "I16", "U16", "I8", "U8", "BOOL",
        "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64",
    };
    char b1[64], b2[64];
    if (strcmp(dtype, "F32") == 0) { *type = QT_F32; *size = 4; return 0; }
    if (strcmp(dtype, "F16") == 0) { *type = QT_F16; *size = 2; return 0; }
    if (strcmp(dtype, "BF16") == 0) { *type = QT_BF16; *size = 2; return 0; }
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(dtype, known[i]) == 0)
            return err_set(err, errlen, ERR_UNSUPPORTED,
                           "%s: tensor '%s': dtype %s not supported (F32, F16, BF16 only)",
                           file, err_show(b1, sizeof b1, tname), known[i]);
    return err_set(err, errlen, ERR_UNSUPPORTED,
                   "%s: tensor '%s': unknown dtype '%s'", file, err_show(b1, sizeof b1, tname),
                   err_show(b2, sizeof b2, dtype));
}

/* Check one tensor entry and fill t (name not yet set). */
static int parse_entry(const char *file, const cJSON *item, uint64_t data_len,
                       st_tensor_t *t, char *err, size_t errlen)
{
    const char *tname = item->string;
    const cJSON *dtype = NULL, *shape = NULL, *offs = NULL;
    char b1[64], b2[64];

    if (!cJSON_IsObject(item))
        return err_set(err, errlen, ERR_FORMAT, "%s: tensor '%s': entry is not an object",
                       file, err_show(b1, sizeof b1, tname));
    for (const cJSON *c = item->child; c != NULL; c = c->next) {
        const cJSON **slot = NULL;
        if (strcmp(c->string, "dtype") == 0)
            slot = &dtype;
        else if (strcmp(c->string, "shape") == 0)
            slot = &shape;
        else if (strcmp(c->string, "data_offsets") == 0)
            slot = &offs;
        else
            return err_set(err, errlen, ERR_FORMAT, "%s: tensor '%s': unknown key '%s'",
                           file, err_show(b1, sizeof b1, tname), err_show(b2, sizeof b2, c->string));
        if (*slot != NULL)
            return err_set(err, errlen, ERR_FORMAT, "%s: tensor '%s': duplicate key '%s'",
                           file, err_show(b1, sizeof b1, tname), c->string);
        *slot = c;
    }
    if (dtype == NULL || shape == NULL || offs == NULL)
        return err_set(err, errlen, ERR_FORMAT, "%s: tensor '%s': missing '%s'",
                       file, err_show(b1, sizeof b1, tname),
                       dtype == NULL ? "dtype" : shape == NULL ? "shape" : "data_offsets");

    if (!cJSON_IsString(dtype))
        return err_set(err, errlen, ERR_FORMAT, "%s: tensor '%s': dtype is not a string",
                       file, err_show(b1, sizeof b1, tname));
    uint64_t esize = 0;
    int rc = map_dtype(file, tname, dtype->valuestring, &t->type, &esize, err, errlen);
    if (rc != 0)
        return rc;

    if (!cJSON_IsArray(shape))
        return err_set(err, errlen, ERR_FORMAT, "%s: tensor '%s': shape is not an array",
                       file, err_show(b1, sizeof b1, tname));
    int nd = cJSON_GetArraySize(shape);
    if (nd > ST_MAX_DIMS)
        return err_set(err, errlen, ERR_UNSUPPORTED, "%s: tensor '%s': %d dims (at most %d)",
                       file, err_show(b1, sizeof b1, tname), nd, ST_MAX_DIMS);
    t->n_dims = (uint32_t)nd;
    for (int i = 0; i < ST_MAX_DIMS; i++)
        t->ne[i] = 1;
    uint64_t numel = 1;
    int i = 0;
    for (const cJSON *d = shape->child; d != NULL; d = d->next, i++) {
        uint64_t v;
        if (json_u64(d, &v) != 0)
            return err_set(err, errlen, ERR_FORMAT,
                           "%s: tensor '%s': shape[%d] is not a non-negative integer (%g)",
                           file, err_show(b1, sizeof b1, tname), i, cJSON_IsNumber(d) ? d->valuedouble : 0.0);
        t->ne[nd - 1 - i] = v; /* innermost last in the file, first in ne[] */
        if (__builtin_mul_overflow(numel, v, &numel))
            return err_set(err, errlen, ERR_FORMAT,
                           "%s: tensor '%s': shape element count overflows", file,
                           err_show(b1, sizeof b1, tname));
    }
    if (__builtin_mul_overflow(numel, esize, &t->nbytes))
        return err_set(err, errlen, ERR_FORMAT, "%s: tensor '%s': byte size overflows",
                       file, err_show(b1, sizeof b1, tname));

    uint64_t begin, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        json_u64(offs->child, &begin) != 0 || json_u64(offs->child->next, &end) != 0)
        return err_set(err, errlen, ERR_FORMAT,
                       "%s: tensor '%s': data_offsets is not [begin, end] of non-negative integers",
                       file, err_show(b1, sizeof b1, tname));
    if (begin > end)
        return err_set(err, errlen, ERR_FORMAT,
                       "%s: tensor '%s': data_offsets begin %llu > end %llu", file,
                       err_show(b1, sizeof b1, tname), (unsigned long long)begin, (unsigned long long)end);
    if (end > data_len)
        return err_set(err, errlen, ERR_FORMAT,
                       "%s: tensor '%s': data_offsets end %llu past the data section (%llu bytes)",
                       file, err_show(b1, sizeof b1, tname), (unsigned long long)end,
                       (unsigned long long)data_len);
    if (end - begin != t->nbytes)
        return err_set(err, errlen, ERR_FORMAT,
                       "%s: tensor '%s': data_offsets span %llu bytes "
                       "but shape x dtype is %llu bytes", file, err_show(b1, sizeof b1, tname),
                       (unsigned long long)(end - begin), (unsigned long long)t->nbytes);
    t->offset = begin;
    return 0;
}

static int cmp_meta(const void *a, const void *b)
{
    return strcmp(((const st_meta_t *)a)->key, ((const st_meta_t *)b)->key);
}

/* "__metadata__": string values only, no repeated key; kept sorted by key. */
static int parse_metadata(st_header_t *h, const cJSON *meta, char *err, size_t errlen)
{
    char b1[64];
    if (!cJSON_IsObject(meta))
        return err_set(err, errlen, ERR_FORMAT, "%s: __metadata__ is not an object", h->name);
    uint64_t n = 0;
    for (const cJSON *c = meta->child; c != NULL; c = c->next)
        if (++n > ST_MAX_TENSORS)
            return err_set(err, errlen, ERR_FORMAT, "%s: __metadata__ has more than %d keys",
                           h->name, ST_MAX_TENSORS);
    h->meta = calloc(n + 1, sizeof *h->meta);
    if (h->meta == NULL)
        return err_set(err, errlen, ERR_NOMEM, "%s: out of memory", h->name);
    for (const cJSON *c = meta->child; c != NULL; c = c->next) {
        if (!cJSON_IsString(c))
            return err_set(err, errlen, ERR_FORMAT,
                           "%s: __metadata__ value of '%s' is not a string", h->name,
                           err_show(b1, sizeof b1, c->string));
        st_meta_t *kv = &h->meta[h->n_meta++];
        kv->key = strdup(c->string);
        kv->value = strdup(c->valuestring);
        if (kv->key == NULL || kv->value == NULL)
            return err_set(err, errlen, ERR_NOMEM, "%s: out of memory", h->name);
    }
    qsort(h->meta, h->n_meta, sizeof *h->meta, cmp_meta);
    for (uint64_t k = 1; k < h->n_meta; k++)
        if (strcmp(h->meta[k - 1].key, h->meta[k].key) == 0)
            return err_set(err, errlen, ERR_FORMAT, "%s: __metadata__ has duplicate key '%s'",
                           h->name, err_show(b1, sizeof b1, h->meta[k].key));
    return 0;
}

/* The entries sorted by offset must tile [0, data_len) exactly. */
static int check_tiling(st_header_t *h, uint64_t data_len, char *err, size_t errlen)
{
    char b1[64], b2[64];
    const st_tensor_t **by_off = malloc((h->n_tensors + 1) * sizeof *by_off);
    if (by_off == NULL)
        return err_set(err, errlen, ERR_NOMEM, "%s: out of memory", h->name);
    for (uint64_t i = 0; i < h->n_tensors; i++)
        by_off[i] = &h->tensors[i];
    qsort(by_off, h->n_tensors, sizeof *by_off, cmp_tensor_offset);
    uint64_t expect = 0;
    int rc = 0;
    for (uint64_t i = 0; i < h->n_tensors && rc == 0; i++) {
        const st_tensor_t *t = by_off[i];
        if (t->offset < expect)
            rc = err_set(err, errlen, ERR_FORMAT,
                         "%s: tensors '%s' and '%s' overlap at data offset %llu", h->name,
                         err_show(b1, sizeof b1, by_off[i - 1]->name), err_show(b2, sizeof b2, t->name),
                         (unsigned long long)t->offset);
        else if (t->offset > expect)
            rc = err_set(err, errlen, ERR_FORMAT,
                         "%s: hole of %llu bytes before tensor '%s' at data offset %llu",
                         h->name, (unsigned long long)(t->offset - expect), err_show(b1, sizeof b1, t->name),
                         (unsigned long long)t->offset);
        expect = t->offset + t->nbytes; /* <= data_len, checked per entry */
    }
    if (rc == 0 && expect != data_len)
        rc = err_set(err, errlen, ERR_FORMAT,
                     "%s: %llu trailing bytes after the last tensor (data section %llu bytes)",
                     h->name, (unsigned long long)(data_len - expect),
                     (unsigned long long)data_len);
    free(by_off);
    return rc;
}

/* Steps after the JSON parsed: keys, entries, tiling, name index. */
static int parse_tree(st_header_t *h, const cJSON *root, const uint8_t *data,
                      uint64_t data_len, char *err, size_t errlen)
{
    char b1[64];
    uint64_t n_keys = 0;
    const cJSON *meta = NULL;
    for (const cJSON *c = root->child; c != NULL; c = c->next)
        if (++n_keys > ST_MAX_TENSORS + 1)
            return err_set(err, errlen, ERR_FORMAT, "%s: more than %d tensors", h->name,
                           ST_MAX_TENSORS);

    /* duplicate keys, __metadata__ included */
    const char **keys = malloc((n_keys + 1) * sizeof *keys);
    if (keys == NULL)
        return err_set(err, errlen, ERR_NOMEM, "%s: out of memory", h->name);
    uint64_t k = 0;
    for (const cJSON *c = root->child; c != NULL; c = c->next)
        keys[k++] = c->string;
    qsort(keys, n_keys, sizeof *keys, cmp_str_ptr);
    for (k = 1; k < n_keys; k++)
        if (strcmp(keys[k - 1], keys[k]) == 0) {
            int rc = err_set(err, errlen, ERR_FORMAT, "%s: duplicate key '%s' in header",
                             h->name, err_show(b1, sizeof b1, keys[k]));
            free(keys);
            return rc;
        }
    free(keys);

    h->tensors = calloc(n_keys + 1, sizeof *h->tensors);
    if (h->tensors == NULL)
        return err_set(err, errlen, ERR_NOMEM, "%s: out of memory", h->name);
    for (const cJSON *c = root->child; c != NULL; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            meta = c;
            continue;
        }
        if (c->string[0] == '\0')
            return err_set(err, errlen, ERR_FORMAT, "%s: empty tensor name", h->name);
        if (h->n_tensors == ST_MAX_TENSORS)
            return err_set(err, errlen, ERR_FORMAT, "%s: more than %d tensors", h->name,
                           ST_MAX_TENSORS);
        st_tensor_t *t = &h->tensors[h->n_tensors];
        int rc = parse_entry(h->name, c, data_len, t, err, errlen);
        if (rc != 0)
            return rc;
        t->name = strdup(c->string);
        if (t->name == NULL)
            return err_set(err, errlen, ERR_NOMEM, "%s: out of memory", h->name);
        t->data = data + t->offset;
        h->n_tensors++;
    }
    if (meta != NULL) {
        int rc = parse_metadata(h, meta, err, errlen);
        if (rc != 0)
            return rc;
    }
    int rc = check_tiling(h, data_len, err, errlen);
    if (rc != 0)
        return rc;

    h->by_name = malloc((h->n_tensors + 1) * sizeof *h->by_name);
    if (h->by_name == NULL)
        return err_set(err, errlen, ERR_NOMEM, "%s: out of memory", h->name);
    for (uint64_t i = 0; i < h->n_tensors; i++)
        h->by_name[i] = &h->tensors[i];
    qsort(h->by_name, h->n_tensors, sizeof *h->by_name, cmp_tensor_name);
    return 0;
}

int st_header_parse(st_header_t **out, const void *buf, size_t len,
                    const char *name, char *err, size_t errlen)
{
    const uint8_t *p = buf;
    *out = NULL;
    if (name == NULL)
        name = "(buffer)";
    if (len < 8)
        return err_set(err, errlen, ERR_FORMAT,
                       "%s: file is %zu bytes, shorter than the 8-byte header length", name, len);
    uint64_t n = rd_le64(p);
    if (n == 0)
        return err_set(err, errlen, ERR_FORMAT, "%s: header length 0", name);
    if (n > ST_MAX_HEADER)
        return err_set(err, errlen, ERR_FORMAT,
                       "%s: header length %llu exceeds the cap of %llu bytes", name,
                       (unsigned long long)n, ST_MAX_HEADER);
    if (n > len - 8)
        return err_set(err, errlen, ERR_FORMAT,
                       "%s: header length %llu runs past the end of the file (%zu bytes)",
                       name, (unsigned long long)n, len);
    const uint8_t *hdr = p + 8;
    size_t bad = utf8_bad_at((const char *)hdr, n);
    if (bad != n)
        return err_set(err, errlen, ERR_FORMAT,
                       "%s: header is not valid UTF-8 (byte %zu of the header)", name, bad);
    for (size_t i = 0; i < n; i++)
        if (hdr[i] < 0x20 && hdr[i] != '\t' && hdr[i] != '\n' && hdr[i] != '\r')
            return err_set(err, errlen, ERR_FORMAT,
                           "%s: header has control byte 0x%02x at byte %zu", name, hdr[i], i);
    if (hdr[0] != '{')
        return err_set(err, errlen, ERR_FORMAT, "%s: header does not start with '{'", name);
    if (st_json_check_depth((const char *)hdr, n, ST_MAX_JSON_DEPTH) != 0)
        return err_set(err, errlen, ERR_FORMAT, "%s: header nests deeper than %d levels",
                       name, ST_MAX_JSON_DEPTH);

    st_header_t *h = calloc(1, sizeof *h);
    char *text = malloc(n + 1); /* n <= ST_MAX_HEADER, checked above */
    int rc = 0;
    cJSON *root = NULL;
    if (h == NULL || text == NULL || (h->name = strdup(name)) == NULL) {
        rc = err_set(err, errlen, ERR_NOMEM, "%s: out of memory", name);
        goto fail;
    }
    memcpy(text, hdr, n);
    text[n] = '\0';
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (root == NULL) {
        rc = err_set(err, errlen, ERR_FORMAT, "%s: header is not valid JSON (near byte %lld)",
                     name, end != NULL ? (long long)(end - text) : -1LL);
        goto fail;
    }
    for (; end < text + n; end++)
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
            rc = err_set(err, errlen, ERR_FORMAT,
                         "%s: header has trailing characters after the JSON object (byte %lld)",
                         name, (long long)(end - text));
            goto fail;
        }
    if (!cJSON_IsObject(root)) {
        rc = err_set(err, errlen, ERR_FORMAT, "%s: header is not a JSON object", name);
        goto fail;
    }
    rc = parse_tree(h, root, hdr + n, (uint64_t)len - 8 - n, err, errlen);
    if (rc != 0)
        goto fail;
    cJSON_Delete(root);
    free(text);
    *out = h;
    return 0;
fail:
    cJSON_Delete(root);
    free(text);
    st_header_destroy(h);
    return rc;
}

void st_header_destroy(st_header_t *h)
{
    if (h == NULL)
        return;
    for (uint64_t i = 0; i < h->n_tensors; i++)
        free((char *)h->tensors[i].name);
    for (uint64_t i = 0; i < h->n_meta; i++) {
        free(h->meta[i].key);
        free(h->meta[i].value);
    }
    free(h->meta);
    free(h->tensors);
    free(h->by_name);
    free(h->name);
    free(h);
}

uint64_t st_header_tensor_count(const st_header_t *h) { return h->n_tensors; }

const st_tensor_t *st_header_tensor(const st_header_t *h, uint64_t i)
{
    return i < h->n_tensors ? &h->tensors[i] : NULL;
}

const st_tensor_t *st_header_find(const st_header_t *h, const char *name)
{
    return find_sorted(h->by_name, h->n_tensors, name);
}

const char *st_header_metadata(const st_header_t *h, const char *key)
{
    st_meta_t probe = { .key = (char *)key };
    if (h->n_meta == 0)
        return NULL; /* h->meta may be NULL, which bsearch must not see */
    const st_meta_t *hit = bsearch(&probe, h->meta, h->n_meta, sizeof *h->meta, cmp_meta);
    return hit != NULL ? hit->value : NULL;
}
