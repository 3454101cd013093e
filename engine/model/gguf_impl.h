/*
 * gguf_impl.h - the private layout of a gguf_t, shared by gguf.c (which
 * maps and parses a file) and gguf_get.c (which reads the parsed table).
 * Nothing outside those two files includes it.  Same threading as gguf.h:
 * immutable after creation, readable from any thread.
 */
#ifndef LLAMAD_GGUF_IMPL_H
#define LLAMAD_GGUF_IMPL_H

#include <stdint.h>
#include <string.h>

#include "gguf.h"

/* One metadata entry; every pointer is into the file's bytes. */
typedef struct {
    gguf_str_t key;
    gguf_vtype_t type;
    gguf_vtype_t elem_type;  /* ARRAY only */
    uint64_t n;              /* ARRAY: element count; STRING: byte length */
    uint64_t at;             /* file offset of the value (after the type) */
    const uint8_t *val;      /* scalar bytes, string bytes, or first array element */
    uint64_t *str_at;        /* string ARRAY: [n] file offset of each element's length (owned) */
} gguf_kv_t;

/* One entry of a by-name index (keys or tensor names). */
typedef struct {
    const char *p;
    uint64_t len;
    uint32_t idx;            /* position in file order */
} gguf_name_ent_t;

struct gguf {
    char *name;               /* path or buffer name, for messages (owned) */
    const uint8_t *base;      /* [len] the whole file */
    uint64_t len;
    void *map;                /* the mapping, when gguf_create made one */
    size_t map_len;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_start;      /* file offset of the data section */
    uint64_t data_len;
    uint64_t n_kv;
    gguf_kv_t *kv;            /* [n_kv] in file order */
    gguf_name_ent_t *kv_by_key; /* [n_kv] sorted by key */
    uint64_t n_tensors;
    gguf_tensor_t *tensors;   /* [n_tensors] in file order */
    gguf_name_ent_t *t_by_name; /* [n_tensors] sorted by name */
};

/* Size of a fixed-size value type, or 0 for STRING, ARRAY and unknown ids. */
static inline uint32_t gguf_vtype_size(uint32_t t)
{
    switch (t) {
    case GGUF_T_UINT8: case GGUF_T_INT8: case GGUF_T_BOOL:      return 1;
    case GGUF_T_UINT16: case GGUF_T_INT16:                      return 2;
    case GGUF_T_UINT32: case GGUF_T_INT32: case GGUF_T_FLOAT32: return 4;
    case GGUF_T_UINT64: case GGUF_T_INT64: case GGUF_T_FLOAT64: return 8;
    default:                                                    return 0;
    }
}

/* An n-byte little-endian unsigned integer at p (any alignment). */
static inline uint64_t gguf_rd_le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Byte-wise order of two counted strings (shorter first on a tie). */
static inline int gguf_cmp_bytes(const char *a, uint64_t alen, const char *b, uint64_t blen)
{
    uint64_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Binary search of an index sorted by gguf_cmp_bytes: the entry's idx, or -1. */
static inline int64_t gguf_index_find(const gguf_name_ent_t *ents, uint64_t n, const char *key)
{
    uint64_t klen = strlen(key), lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = gguf_cmp_bytes(ents[mid].p, ents[mid].len, key, klen);
        if (c == 0)
            return ents[mid].idx;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

#endif
