/*
 * backend_module.h - a compute backend built as a shared object that
 * llamad opens at run time (the CUDA backend: llamad-cuda.so), so that a
 * binary serving on the CPU maps none of the device libraries.
 *
 * The module exports one C function, BK_MODULE_ENTRY, that returns its
 * table.  The table carries what makes a module compatible with the
 * binary that opens it (the ABI number, the sizes of the structures both
 * sides share, the build id) and the backend's two entry points.  The
 * module calls back into llamad's base/ (err_set, log_msg, qpack_*,
 * quant_*), which the binary exports (linked with --export-dynamic).
 * Start-up only, engine thread.
 */
#ifndef LLAMAD_BACKEND_MODULE_H
#define LLAMAD_BACKEND_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

/* Raise on any change to bk_module_t or to the meaning of its fields. */
#define BK_MODULE_ABI 1
#define BK_MODULE_ENTRY "llamad_backend_module"

/* The sizes a module and the binary must agree on (bk_module_t.sizes). */
#define BK_MODULE_SIZES                                                        \
    { (uint32_t)sizeof(backend_ops_t), (uint32_t)sizeof(backend_opts_t),     \
      (uint32_t)sizeof(backend_t), (uint32_t)sizeof(batch_t), (uint32_t)sizeof(model_t) }
#define BK_MODULE_N_SIZES 5

typedef struct {
    uint32_t abi;                       /* BK_MODULE_ABI of the module's build */
    uint32_t sizes[BK_MODULE_N_SIZES];  /* BK_MODULE_SIZES of the module's build */
    const char *name;                   /* the backend's name: "cuda" */
    const char *build_id;               /* the configure run it was built by (LLAMAD_BUILD_ID) */
    /* cuda_device_find's contract (cuda/cuda_probe.h) */
    int (*device_find)(int index, const char *uuid, int *found, char *desc, size_t desclen);
    /* cuda_backend_create's contract (backend.h) */
    int (*create)(backend_t **out, const model_t *m, const backend_opts_t *o, char *err, size_t errlen);
} bk_module_t;

typedef const bk_module_t *(*bk_module_entry_t)(void);

/*
 * Whether `mod`, a module's table, fits this binary: the same ABI number,
 * structure sizes and build id (`build_id` is this binary's), and both
 * entry points present.  0, or ERR_UNSUPPORTED with err saying what
 * differs.  `path` only names the module in the message.
 */
int bk_module_check(const bk_module_t *mod, const char *build_id, const char *path,
                    char *err, size_t errlen);

/*
 * Open the module file `file` ("llamad-cuda.so") from the first directory
 * that has it among: `dir` when not NULL or "", else $LLAMAD_BACKEND_DIR
 * when set, else the directory of the running binary, its parent (the
 * build tree's bench/ and tests/) and `installed` (the $(pkglibdir) of
 * the build; may be NULL).  Then resolve its entry point and check its
 * table (bk_module_check).  On success *out is the table (the module
 * stays open for the life of the process) and the path it came from is
 * written to `path` (pathlen bytes).  ERR_NOTFOUND when no directory has
 * the file (*handle is the dlopen handle, for bk_module_close);
 * ERR_UNSUPPORTED when it is no sound ELF shared object of this
 * machine (checked before dlopen, which would fault on a truncated one),
 * does not load (dlerror's text, e.g. a missing libcublasLt), has no entry
 * point or does not fit; err says which.
 */
int bk_module_open(const char *dir, const char *installed, const char *file, const char *build_id,
                   const bk_module_t **out, void **handle, char *path, size_t pathlen,
                   char *err, size_t errlen);

/*
 * Close a module bk_module_open opened (its `handle`; NULL is a no-op),
 * where none of its backends exists: llamad serving on the CPU then
 * unmaps the module and the libraries it brought (the CUDA ones).
 */
void bk_module_close(void *handle);

#endif
