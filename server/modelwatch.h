/*
 * modelwatch.h - notice when the served model file changes under the
 * daemon.  Weights read straight from a mapping change with the file: an
 * overwrite in place makes every later answer untrustworthy, so /health
 * must fail (and the daemon exit for a restart) rather than serve it.
 * Loop thread.
 */
#ifndef LLAMAD_MODELWATCH_H
#define LLAMAD_MODELWATCH_H

#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

typedef struct {
    int active;                 /* a regular file, stat'ed at start */
    int mapped;                 /* the weights are read from the mapping */
    int replaced_noted;         /* a replacement (another file at the path) was logged */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} modelwatch_t;

/* Remember the file at `path` as it is now (a directory or a missing file is not watched). */
void modelwatch_init(modelwatch_t *w, const char *path, int mapped);

/*
 * Compare the file with what modelwatch_init saw.  Returns 1 when the
 * weights in use can no longer be trusted: the mapped file itself was
 * written to or truncated.  A file replaced at the path (a new inode, what
 * `mv` and package managers do), or any change under model-mmap = no,
 * leaves the weights in use intact: logged once, returns 0.
 */
int modelwatch_check(modelwatch_t *w, const char *path);

#endif
