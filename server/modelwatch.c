/*
 * modelwatch.c - the served model file, watched with stat(2) once a tick.
 */
#include "modelwatch.h"

#include <string.h>

#include "base/log.h"

void modelwatch_init(modelwatch_t *w, const char *path, int mapped)
{
    memset(w, 0, sizeof *w);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return;
    w->active = 1;
    w->mapped = mapped;
    w->dev = st.st_dev;
    w->ino = st.st_ino;
    w->size = st.st_size;
    w->mtime = st.st_mtim;
}

int modelwatch_check(modelwatch_t *w, const char *path)
{
    if (!w->active)
        return 0;
    struct stat st;
    int same_file = stat(path, &st) == 0 && st.st_dev == w->dev && st.st_ino == w->ino;
    if (!same_file) {
        if (!w->replaced_noted)
            log_warn("model file %s was replaced or removed; the weights loaded at start are still "
                     "served (restart llamad to serve the new file)", path);
        w->replaced_noted = 1;
        return 0;
    }
    if (st.st_size == w->size && st.st_mtim.tv_sec == w->mtime.tv_sec &&
        st.st_mtim.tv_nsec == w->mtime.tv_nsec)
        return 0;
    if (!w->mapped) {
        if (!w->replaced_noted)
            log_warn("model file %s changed; llamad serves its private copy of the weights "
                     "(model-mmap = no) and is not affected (restart it to serve the new file)", path);
        w->replaced_noted = 1;
        return 0;
    }
    log_error("model file %s was written to while llamad reads its weights from it (size %lld -> "
              "%lld bytes): answers can no longer be trusted; failing /health and exiting for a "
              "restart (replace model files by rename, or set model-mmap = no)", path,
              (long long)w->size, (long long)st.st_size);
    w->active = 0;   /* said once */
    return 1;
}
