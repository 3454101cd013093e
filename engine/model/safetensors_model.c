/*
 * safetensors_model.c - a model as one .safetensors file or as shards
 * listed by model.safetensors.index.json (see safetensors.h).
 *
 * Each file is mapped read-only and parsed by st_header_parse.  The
 * index is trusted for nothing: its shard names must be plain basenames,
 * opened relative to the model directory with O_NOFOLLOW, and its weight
 * map must match the shards' own tensor tables one to one.
 */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/err.h"

typedef struct {
    void *map;                /* [size] bytes, read-only */
    size_t size;
    st_header_t *hdr;
} shard_t;

struct st_model {
    char *path;
    shard_t *shards;          /* [n_shards] */
    uint32_t n_shards;
    const st_tensor_t **tensors; /* [n_tensors], shard by shard */
    uint64_t n_tensors;
};

/* ============================ helpers ============================ */

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ============================ shards ============================ */

/* Map an open file and parse it as one shard; takes ownership of fd. */
static int add_shard(st_model_t *m, int fd, const char *path, char *err, size_t errlen)
{
    struct stat sb;
    shard_t *s = &m->shards[m->n_shards];
    int rc;
    if (fstat(fd, &sb) != 0) {
        rc = err_set(err, errlen, ERR_IO, "%s: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        rc = err_set(err, errlen, ERR_FORMAT, "%s: not a regular file", path);
    } else if (sb.st_size < 8) {
        rc = err_set(err, errlen, ERR_FORMAT,
                     "%s: file is %lld bytes, shorter than the 8-byte header length", path,
                     (long long)sb.st_size);
    } else {
        s->size = (size_t)sb.st_size;
        s->map = mmap(NULL, s->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (s->map == MAP_FAILED) {
            s->map = NULL;
            rc = err_set(err, errlen, ERR_IO, "%s: mmap: %s", path, strerror(errno));
        } else {
            m->n_shards++; /* unmapped by st_destroy from here on */
            rc = st_header_parse(&s->hdr, s->map, s->size, path, err, errlen);
        }
    }
    close(fd);
    return rc;
}

/*
 * Flags for every file opened inside a model directory: never through a
 * symlink, and O_NONBLOCK so that a FIFO planted there cannot hang the
 * open (fstat then refuses it as not a regular file).
 */
#define DIR_OPEN_FLAGS (O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)

/* openat a file in the model directory. */
static int open_in_dir(int dirfd, const char *name, const char *path, int *fd,
                       char *err, size_t errlen)
{
    *fd = openat(dirfd, name, DIR_OPEN_FLAGS);
    if (*fd >= 0)
        return 0;
    if (errno == ELOOP)
        return err_set(err, errlen, ERR_FORMAT, "%s: is a symlink (not followed)", path);
    return err_set(err, errlen, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: %s", path,
                   strerror(errno));
}

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (s != NULL) {
        memcpy(s, dir, a);
        s[a] = '/';
        memcpy(s + a + 1, name, b + 1);
    }
    return s;
}

/* Read a whole small file into a NUL-terminated buffer. */
static int read_small(int fd, const char *path, size_t cap, char **out, size_t *len,
                      char *err, size_t errlen)
{
    struct stat sb;
    *out = NULL;
    if (fstat(fd, &sb) != 0)
        return err_set(err, errlen, ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return err_set(err, errlen, ERR_FORMAT, "%s: not a regular file", path);
    if ((uint64_t)sb.st_size > cap)
        return err_set(err, errlen, ERR_FORMAT, "%s: %lld bytes (cap %zu)", path,
                       (long long)sb.st_size, cap);
    char *buf = malloc((size_t)sb.st_size + 1);
    if (buf == NULL)
        return err_set(err, errlen, ERR_NOMEM, "%s: out of memory", path);
    size_t got = 0;
    while (got < (size_t)sb.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)sb.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            return err_set(err, errlen, ERR_IO, "%s: short read", path);
        }
        got += (size_t)r;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

typedef struct {
    const char *tensor;
    const char *shard;
    uint32_t shard_idx;
} wm_entry_t;

static int cmp_wm(const void *a, const void *b)
{
    return strcmp(((const wm_entry_t *)a)->tensor, ((const wm_entry_t *)b)->tensor);
}

static int plain_basename(const char *s)
{
    return s[0] != '\0' && strchr(s, '/') == NULL && strcmp(s, ".") != 0 &&
           strcmp(s, "..") != 0;
}

/* Check the weight map (root's "weight_map") and open every shard it names. */
static int load_weight_map(st_model_t *m, int dirfd, const char *dir, const char *ipath,
                           const cJSON *root, char *err, size_t errlen)
{
    char b1[64], b2[64];
    const cJSON *wm = NULL;
    for (const cJSON *c = root->child; c != NULL; c = c->next)
        if (strcmp(c->string, "weight_map") == 0) {
            if (wm != NULL)
                return err_set(err, errlen, ERR_FORMAT, "%s: duplicate key 'weight_map'", ipath);
            wm = c;
        }
    if (!cJSON_IsObject(wm) || wm->child == NULL)
        return err_set(err, errlen, ERR_FORMAT, "%s: 'weight_map' missing, empty or not an object",
                       ipath);
    uint64_t n = 0;
    for (const cJSON *c = wm->child; c != NULL; c = c->next)
        if (++n > ST_MAX_TENSORS)
            return err_set(err, errlen, ERR_FORMAT, "%s: weight_map has more than %d tensors",
                           ipath, ST_MAX_TENSORS);
    wm_entry_t *e = calloc(n, sizeof *e);
    const char **names = calloc(n, sizeof *names);
    int rc = 0;
    uint64_t k = 0, n_shards = 0;
    if (e == NULL || names == NULL) {
        rc = err_set(err, errlen, ERR_NOMEM, "%s: out of memory", ipath);
        goto out;
    }
    for (const cJSON *c = wm->child; c != NULL; c = c->next, k++) {
        if (!cJSON_IsString(c) || !plain_basename(c->valuestring)) {
            rc = err_set(err, errlen, ERR_FORMAT,
                         "%s: weight_map entry '%s': shard '%s' is not a plain file name",
                         ipath, err_show(b1, sizeof b1, c->string),
                         err_show(b2, sizeof b2, cJSON_IsString(c) ? c->valuestring : "(not a string)"));
            goto out;
        }
        e[k].tensor = c->string;
        e[k].shard = names[k] = c->valuestring;
    }
    qsort(e, n, sizeof *e, cmp_wm);
    for (k = 1; k < n; k++)
        if (strcmp(e[k - 1].tensor, e[k].tensor) == 0) {
            rc = err_set(err, errlen, ERR_FORMAT, "%s: weight_map has duplicate key '%s'",
                         ipath, err_show(b1, sizeof b1, e[k].tensor));
            goto out;
        }
    /* the distinct shard names, sorted */
    qsort(names, n, sizeof *names, cmp_str_ptr);
    for (k = 0; k < n; k++)
        if (k == 0 || strcmp(names[k - 1], names[k]) != 0)
            names[n_shards++] = names[k];
    if (n_shards > ST_MAX_SHARDS) {
        rc = err_set(err, errlen, ERR_FORMAT, "%s: %llu shards (cap %d)", ipath,
                     (unsigned long long)n_shards, ST_MAX_SHARDS);
        goto out;
    }
    m->shards = calloc(n_shards, sizeof *m->shards);
    if (m->shards == NULL) {
        rc = err_set(err, errlen, ERR_NOMEM, "%s: out of memory", ipath);
        goto out;
    }
    for (k = 0; k < n_shards && rc == 0; k++) {
        char *spath = join(dir, names[k]);
        int fd = -1;
        if (spath == NULL)
            rc = err_set(err, errlen, ERR_NOMEM, "%s: out of memory", ipath);
        else if ((rc = open_in_dir(dirfd, names[k], spath, &fd, err, errlen)) == 0)
            rc = add_shard(m, fd, spath, err, errlen);
        free(spath);
    }
    /* weight_map -> shard: every entry is in the shard it names */
    for (k = 0; k < n && rc == 0; k++) {
        const char **at = bsearch(&e[k].shard, names, n_shards, sizeof *names, cmp_str_ptr);
        e[k].shard_idx = (uint32_t)(at - names);
        if (st_header_find(m->shards[e[k].shard_idx].hdr, e[k].tensor) == NULL)
            rc = err_set(err, errlen, ERR_FORMAT,
                         "%s: weight_map tensor '%s' is missing from shard %s", ipath,
                         err_show(b1, sizeof b1, e[k].tensor), err_show(b2, sizeof b2, e[k].shard));
    }
    /* shard -> weight_map: every tensor of a shard is listed under that shard */
    for (uint32_t s = 0; s < m->n_shards && rc == 0; s++)
        for (uint64_t i = 0; i < st_header_tensor_count(m->shards[s].hdr) && rc == 0; i++) {
            wm_entry_t key = { .tensor = st_header_tensor(m->shards[s].hdr, i)->name };
            const wm_entry_t *hit = bsearch(&key, e, n, sizeof *e, cmp_wm);
            if (hit == NULL || hit->shard_idx != s)
                rc = err_set(err, errlen, ERR_FORMAT,
                             "%s: tensor '%s' of shard %s is not in weight_map under that shard",
                             ipath, err_show(b1, sizeof b1, key.tensor), err_show(b2, sizeof b2, names[s]));
        }
out:
    free(e);
    free(names);
    return rc;
}

static int load_index(st_model_t *m, int dirfd, const char *dir, const char *iname,
                      char *err, size_t errlen)
{
    char *ipath = join(dir, iname), *text = NULL;
    cJSON *root = NULL;
    size_t len = 0;
    int fd = -1, rc;
    if (ipath == NULL)
        return err_set(err, errlen, ERR_NOMEM, "%s: out of memory", dir);
    rc = open_in_dir(dirfd, iname, ipath, &fd, err, errlen);
    if (rc == 0)
        rc = read_small(fd, ipath, ST_MAX_INDEX, &text, &len, err, errlen);
    if (rc == 0 && st_json_check_depth(text, len, ST_MAX_JSON_DEPTH) != 0)
        rc = err_set(err, errlen, ERR_FORMAT, "%s: JSON nests deeper than %d levels", ipath,
                     ST_MAX_JSON_DEPTH);
    if (rc == 0 && !cJSON_IsObject(root = cJSON_ParseWithLength(text, len)))
        rc = err_set(err, errlen, ERR_FORMAT, "%s: not a valid JSON object", ipath);
    if (rc == 0)
        rc = load_weight_map(m, dirfd, dir, ipath, root, err, errlen);
    if (fd >= 0)
        close(fd);
    cJSON_Delete(root);
    free(text);
    free(ipath);
    return rc;
}

/* Open `path` per st_create's rules; fills m->shards. */
static int open_model(st_model_t *m, const char *path, char *err, size_t errlen)
{
    static const char single[] = "model.safetensors";
    static const char index[] = "model.safetensors.index.json";
    struct stat sb;
    if (stat(path, &sb) != 0)
        return err_set(err, errlen, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: %s", path,
                       strerror(errno));
    size_t plen = strlen(path);
    int is_index = S_ISREG(sb.st_mode) && plen >= 5 && strcmp(path + plen - 5, ".json") == 0;
    if (S_ISREG(sb.st_mode) && !is_index) {
        m->shards = calloc(1, sizeof *m->shards);
        if (m->shards == NULL)
            return err_set(err, errlen, ERR_NOMEM, "%s: out of memory", path);
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            return err_set(err, errlen, ERR_IO, "%s: %s", path, strerror(errno));
        return add_shard(m, fd, path, err, errlen);
    }
    /* a directory, or an index file and the directory it sits in */
    char *dir = strdup(path);
    if (dir == NULL)
        return err_set(err, errlen, ERR_NOMEM, "%s: out of memory", path);
    const char *iname = index;
    if (is_index) {
        char *slash = strrchr(dir, '/');
        iname = path + (slash != NULL ? (size_t)(slash - dir) + 1 : 0);
        if (slash == NULL)
            strcpy(dir, ".");
        else if (slash == dir)
            dir[1] = '\0';
        else
            *slash = '\0';
    }
    int rc = 0, fd = -1;
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        rc = err_set(err, errlen, ERR_IO, "%s: %s", dir, strerror(errno));
    } else if (!is_index && (fd = openat(dirfd, single, DIR_OPEN_FLAGS)) >= 0) {
        char *spath = join(dir, single);
        m->shards = calloc(1, sizeof *m->shards);
        if (spath == NULL || m->shards == NULL) {
            close(fd);
            rc = err_set(err, errlen, ERR_NOMEM, "%s: out of memory", path);
        } else {
            rc = add_shard(m, fd, spath, err, errlen);
        }
        free(spath);
    } else if (!is_index && errno != ENOENT) {
        rc = err_set(err, errlen, errno == ELOOP ? ERR_FORMAT : ERR_IO, "%s/%s: %s", dir,
                     single, errno == ELOOP ? "is a symlink (not followed)" : strerror(errno));
    } else if (!is_index && fstatat(dirfd, index, &sb, AT_SYMLINK_NOFOLLOW) != 0 &&
               errno == ENOENT) {
        rc = err_set(err, errlen, ERR_NOTFOUND, "%s: no %s or %s", dir, single, index);
    } else {
        rc = load_index(m, dirfd, dir, iname, err, errlen);
    }
    if (dirfd >= 0)
        close(dirfd);
    free(dir);
    return rc;
}

int st_create(st_model_t **out, const char *path, char *err, size_t errlen)
{
    *out = NULL;
    st_model_t *m = calloc(1, sizeof *m);
    if (m == NULL || (m->path = strdup(path)) == NULL) {
        free(m);
        return err_set(err, errlen, ERR_NOMEM, "%s: out of memory", path);
    }
    int rc = open_model(m, path, err, errlen);
    if (rc != 0)
        goto fail;
    for (uint32_t s = 0; s < m->n_shards; s++)
        m->n_tensors += st_header_tensor_count(m->shards[s].hdr);
    if (m->n_tensors > ST_MAX_TENSORS) {
        rc = err_set(err, errlen, ERR_FORMAT, "%s: more than %d tensors", path, ST_MAX_TENSORS);
        goto fail;
    }
    m->tensors = malloc((m->n_tensors + 1) * sizeof *m->tensors);
    if (m->tensors == NULL) {
        rc = err_set(err, errlen, ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    uint64_t k = 0;
    for (uint32_t s = 0; s < m->n_shards; s++)
        for (uint64_t i = 0; i < st_header_tensor_count(m->shards[s].hdr); i++, k++)
            m->tensors[k] = st_header_tensor(m->shards[s].hdr, i);
    *out = m;
    return 0;
fail:
    st_destroy(m);
    return rc;
}

void st_destroy(st_model_t *m)
{
    if (m == NULL)
        return;
    for (uint32_t s = 0; s < m->n_shards; s++) {
        st_header_destroy(m->shards[s].hdr);
        munmap(m->shards[s].map, m->shards[s].size);
    }
    free(m->shards);
    free(m->tensors);
    free(m->path);
    free(m);
}

uint64_t st_tensor_count(const st_model_t *m) { return m->n_tensors; }

const st_tensor_t *st_tensor(const st_model_t *m, uint64_t i)
{
    return i < m->n_tensors ? m->tensors[i] : NULL;
}

/* Each name is in exactly one shard (checked at load), so the first hit is the one. */
const st_tensor_t *st_find_tensor(const st_model_t *m, const char *name)
{
    for (uint32_t s = 0; s < m->n_shards; s++) {
        const st_tensor_t *t = st_header_find(m->shards[s].hdr, name);
        if (t != NULL)
            return t;
    }
    return NULL;
}

uint32_t st_shard_count(const st_model_t *m) { return m->n_shards; }

const char *st_path(const st_model_t *m) { return m->path; }
