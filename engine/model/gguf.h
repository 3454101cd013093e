/*
 * gguf.h - a bounds-checked reader for GGUF files, versions 2 and 3.
 *
 * Owns: the mapping of one file and the parsed metadata and tensor table.
 * Every count, length, offset and size read from the file is checked
 * against hard caps and against the bytes left before anything is
 * allocated (shared/THREATS.md part A); a bad file gets ERR_FORMAT (or
 * ERR_UNSUPPORTED) and a message naming the file, the field and the
 * offset.  A gguf_t is immutable after creation and may be read from any
 * thread.
 */
#ifndef LLAMAD_GGUF_H
#define LLAMAD_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "base/quant.h"

/* Metadata value types, as numbered by the GGUF specification. */
typedef enum {
    GGUF_T_UINT8 = 0, GGUF_T_INT8 = 1, GGUF_T_UINT16 = 2, GGUF_T_INT16 = 3,
    GGUF_T_UINT32 = 4, GGUF_T_INT32 = 5, GGUF_T_FLOAT32 = 6, GGUF_T_BOOL = 7,
    GGUF_T_STRING = 8, GGUF_T_ARRAY = 9, GGUF_T_UINT64 = 10, GGUF_T_INT64 = 11,
    GGUF_T_FLOAT64 = 12,
} gguf_vtype_t;

/* Hard caps on what a file may declare. */
#define GGUF_MAX_DIMS       4
#define GGUF_MAX_STRING     (1u << 20)   /* bytes */
#define GGUF_MAX_ARRAY      (1u << 24)   /* elements */
#define GGUF_MAX_TENSORS    65536
#define GGUF_MAX_KV         65536
#define GGUF_MAX_ALIGNMENT  (1u << 20)

typedef struct gguf gguf_t;

/* A string that points into the mapped file: not NUL-terminated. */
typedef struct {
    const char *ptr;
    uint64_t len;
} gguf_str_t;

typedef struct {
    gguf_str_t name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the innermost (contiguous) dimension; unused dims are 1 */
    qtype_t type;
    uint64_t offset;            /* from the start of the data section */
    uint64_t nbytes;
    const void *data;           /* into the mapping; valid until gguf_destroy */
} gguf_tensor_t;

/*
 * Map and parse a file (read-only, private mapping, kept until
 * gguf_destroy).  Returns 0, or ERR_IO (cannot open/map), ERR_FORMAT
 * (malformed), ERR_UNSUPPORTED (a version, tensor type or nested array
 * this reader does not handle) or ERR_NOMEM; on error *out is NULL and
 * err holds a message naming the path, the field and the file offset.
 */
int gguf_create(gguf_t **out, const char *path, char *err, size_t errlen);
/*
 * gguf_create, or with private_copy != 0: read the whole file into
 * private anonymous memory (read-only after loading) instead of mapping
 * it, so that a file truncated or rewritten later changes nothing; costs
 * the file's size in resident memory that the page cache cannot share or
 * drop.  Same results, and ERR_IO when the file cannot be read whole.
 */
int gguf_open(gguf_t **out, const char *path, int private_copy, char *err, size_t errlen);
/* Parse a buffer (borrowed until gguf_destroy; need not be aligned);
 * `name` is used in messages.  Same results as gguf_create. */
int gguf_create_from_buffer(gguf_t **out, const void *buf, size_t len,
                            const char *name, char *err, size_t errlen);
/* Unmaps and frees everything; every pointer handed out dies.  NULL is a no-op. */
void gguf_destroy(gguf_t *g);

uint32_t gguf_version(const gguf_t *g);
uint32_t gguf_alignment(const gguf_t *g);
const char *gguf_path(const gguf_t *g);
/* File offset where the data section (tensor offsets count from here) starts. */
uint64_t gguf_data_offset(const gguf_t *g);
/* "UINT32", "STRING", ...; "unknown" for any other value. */
const char *gguf_vtype_name(gguf_vtype_t t);

/* ---- metadata ---- */
uint64_t gguf_kv_count(const gguf_t *g);
/* Index (file order) of a key, or -1.  O(log n_kv). */
int64_t gguf_find(const gguf_t *g, const char *key);
/* Entry i's key ({NULL, 0} when i >= gguf_kv_count(g)). */
gguf_str_t gguf_kv_key(const gguf_t *g, uint64_t i);
/* Entry i's type ((gguf_vtype_t)-1 when i >= gguf_kv_count(g)). */
gguf_vtype_t gguf_kv_type(const gguf_t *g, uint64_t i);
/*
 * Writes entry i's value as text into buf[len] (always NUL-terminated when
 * len > 0): numbers in C notation, strings quoted with non-printable bytes
 * escaped, arrays as "[N x TYPE: a, b, c, ...]" with the first few
 * elements.  For logging a model's metadata.  Returns 0, or ERR_RANGE
 * when i >= gguf_kv_count(g) (buf then holds "").
 */
int gguf_kv_format(const gguf_t *g, uint64_t i, char *buf, size_t len);

/*
 * Typed getters.  Return 0, ERR_NOTFOUND when the key is absent, or
 * ERR_FORMAT (with a message) when the value has another type or does not
 * fit.  Integer getters accept any integer type whose value fits; the
 * float getter accepts FLOAT32 and FLOAT64.
 */
int gguf_get_u32(const gguf_t *g, const char *key, uint32_t *out, char *err, size_t errlen);
int gguf_get_u64(const gguf_t *g, const char *key, uint64_t *out, char *err, size_t errlen);
int gguf_get_i32(const gguf_t *g, const char *key, int32_t *out, char *err, size_t errlen);
int gguf_get_f32(const gguf_t *g, const char *key, float *out, char *err, size_t errlen);
int gguf_get_bool(const gguf_t *g, const char *key, int *out, char *err, size_t errlen);
int gguf_get_str(const gguf_t *g, const char *key, gguf_str_t *out, char *err, size_t errlen);

/*
 * Arrays.  gguf_get_arr gives the element type and count.  Numeric
 * elements are read with gguf_arr_data (a pointer to `n` packed
 * little-endian elements of the element type; may be unaligned - copy out
 * with memcpy).  String elements are read with gguf_arr_str, which is
 * O(1) (offsets are indexed at parse time).
 */
int gguf_get_arr(const gguf_t *g, const char *key, gguf_vtype_t *elem_type,
                 uint64_t *n, char *err, size_t errlen);
/* NULL when the key is absent, not an array, or an array of strings. */
const void *gguf_arr_data(const gguf_t *g, const char *key);
/* Element i of a string array: 0, ERR_NOTFOUND (no such key), ERR_FORMAT
 * (not an array of strings) or ERR_RANGE (i >= n). */
int gguf_arr_str(const gguf_t *g, const char *key, uint64_t i, gguf_str_t *out);

/* ---- tensors ---- */
/*
 * Every tensor listed has passed these checks: 1..4 dims, each ne >= 1,
 * ne[0] a multiple of the type's block size, a supported type, nbytes =
 * elements x block bytes / block elements without overflow, offset a
 * multiple of the alignment, offset + nbytes inside the data section, no
 * two tensors overlapping and no two sharing a name.
 */
uint64_t gguf_tensor_count(const gguf_t *g);
/* Tensor i in file order, or NULL when i >= gguf_tensor_count(g). */
const gguf_tensor_t *gguf_tensor(const gguf_t *g, uint64_t i);
/* By name, or NULL.  O(log n_tensors). */
const gguf_tensor_t *gguf_find_tensor(const gguf_t *g, const char *name);

#endif
