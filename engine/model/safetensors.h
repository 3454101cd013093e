/*
 * safetensors.h - a bounds-checked reader for Hugging Face .safetensors
 * files, single or sharded through model.safetensors.index.json.
 *
 * Owns: the read-only mappings of every shard, the parsed tensor tables
 * and a name index over all of them.  A file is an 8-byte little-endian
 * header length N, N bytes of JSON, then the data section; the JSON maps
 * each tensor name to {dtype, shape, data_offsets} (offsets relative to
 * the data section).  Everything in the header is hostile
 * (shared/THREATS.md A8, A9): N is capped and checked against the file
 * before anything is allocated, the header must be UTF-8 JSON opening
 * with '{' and nested at most ST_MAX_JSON_DEPTH deep, keys may not
 * repeat, every range must match its shape and dtype, and the ranges must
 * tile the data section exactly.  Shard names in an index are plain
 * basenames opened relative to the model directory without following
 * symlinks.  A bad file gets ERR_FORMAT (ERR_UNSUPPORTED for a dtype we
 * do not run) and one message naming the file, the tensor or key, and the
 * bad value.
 *
 * st_header_t and st_model_t are immutable after creation and may be read
 * from any thread; create and destroy them on one thread.
 */
#ifndef LLAMAD_SAFETENSORS_H
#define LLAMAD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/quant.h"

/* Hard caps on what a file may declare. */
#define ST_MAX_HEADER     100000000ull /* header bytes, as the reference library */
#define ST_MAX_DIMS       4
#define ST_MAX_TENSORS    65536        /* per file and per model */
#define ST_MAX_SHARDS     4096
#define ST_MAX_INDEX      (64u << 20)  /* bytes of model.safetensors.index.json */
#define ST_MAX_JSON_DEPTH 64           /* nesting of objects and arrays */

typedef struct st_header st_header_t; /* one parsed file */
typedef struct st_model st_model_t;   /* all shards of one model */

typedef struct {
    const char *name;           /* NUL-terminated; owned by the header */
    qtype_t type;               /* QT_F32, QT_F16 or QT_BF16 */
    uint32_t n_dims;            /* 0 (a scalar) to ST_MAX_DIMS */
    /*
     * ne[0] is the innermost (contiguous) dimension, as in GGUF: a
     * safetensors shape [rows, cols] gives ne[0] = cols, ne[1] = rows.
     * Unused dims are 1.
     */
    uint64_t ne[ST_MAX_DIMS];
    uint64_t offset;            /* from the start of the data section */
    uint64_t nbytes;            /* == prod(ne) * element size */
    /*
     * Into the mapping, valid until the owner is destroyed; laid out
     * [ne[n_dims-1], ..., ne[1], ne[0]], innermost last.  Not necessarily
     * aligned to the element size (a writer may leave the header
     * unpadded): read through memcpy or check the alignment.
     */
    const void *data;
} st_tensor_t;

/* ---- one file ---- */

/*
 * Parse a whole file image (length prefix, header and data) from buf,
 * which is borrowed until st_header_destroy: tensor data pointers point
 * into it.  `name` (the file's path) is used in messages and copied.
 * On error *out is NULL, a negative ERR_* code is returned and err names
 * the file, the tensor or key and the bad value.
 */
int st_header_parse(st_header_t **out, const void *buf, size_t len,
                    const char *name, char *err, size_t errlen);
/* Free a parsed header (the borrowed buffer is not touched).  NULL is a no-op. */
void st_header_destroy(st_header_t *h);

/* Tensors in the order the header lists them. */
uint64_t st_header_tensor_count(const st_header_t *h);
/* The i-th tensor; i must be below st_header_tensor_count. */
const st_tensor_t *st_header_tensor(const st_header_t *h, uint64_t i);
/* By name (O(log n)), or NULL. */
const st_tensor_t *st_header_find(const st_header_t *h, const char *name);
/* A "__metadata__" string value by key, or NULL. */
const char *st_header_metadata(const st_header_t *h, const char *key);

/* ---- a model: one file, or a directory with one file or a sharded index ---- */

/*
 * Open a model.  `path` may be
 *   - a .safetensors file,
 *   - a model.safetensors.index.json file (its shards beside it), or
 *   - a directory holding model.safetensors or, failing that,
 *     model.safetensors.index.json.
 * Files inside a directory are opened with openat(O_NOFOLLOW), so a
 * symlinked shard is rejected.  Each file is mapped read-only and
 * parsed as st_header_parse does; for an index, every tensor of the
 * weight map must be in the shard it names and every tensor of every
 * shard must be in the weight map under that shard.
 * On error *out is NULL and err names the file and the cause.
 */
int st_create(st_model_t **out, const char *path, char *err, size_t errlen);
/* Unmap and free everything.  NULL is a no-op. */
void st_destroy(st_model_t *m);

/* All tensors of all shards, shard by shard in index order. */
uint64_t st_tensor_count(const st_model_t *m);
/* The i-th tensor; i must be below st_tensor_count. */
const st_tensor_t *st_tensor(const st_model_t *m, uint64_t i);
/* By name (O(log n)), or NULL. */
const st_tensor_t *st_find_tensor(const st_model_t *m, const char *name);
/* Number of files mapped (1 for a single file). */
uint32_t st_shard_count(const st_model_t *m);
/* The path given to st_create. */
const char *st_path(const st_model_t *m);

/* ---- helper shared with the other JSON loaders of model directories ---- */

/*
 * Scan JSON text (not parsed, possibly invalid) and return 0 when its
 * objects and arrays nest at most max_depth deep, outside strings, or
 * ERR_FORMAT otherwise.  Run it before cJSON sees the text, so that a
 * hostile file cannot drive cJSON's recursion deep.
 */
int st_json_check_depth(const char *text, size_t len, unsigned max_depth);

#endif
