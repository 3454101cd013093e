#include "backend_module.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"

#define BUILD_ID_MAX 128

int bk_module_check(const bk_module_t *mod, const char *build_id, const char *path,
                    char *err, size_t errlen)
{
    static const char *const what[BK_MODULE_N_SIZES] = {
        "backend_ops_t", "backend_opts_t", "backend_t", "batch_t", "model_t",
    };
    const uint32_t sizes[BK_MODULE_N_SIZES] = BK_MODULE_SIZES;
    if (mod == NULL)
        return err_set(err, errlen, ERR_UNSUPPORTED, "%s: %s returned no table", path, BK_MODULE_ENTRY);
    if (mod->abi != BK_MODULE_ABI)
        return err_set(err, errlen, ERR_UNSUPPORTED,
                       "%s: module ABI %u, this llamad speaks %u: refused (install the module of the same build)",
                       path, (unsigned)mod->abi, (unsigned)BK_MODULE_ABI);
    for (int i = 0; i < BK_MODULE_N_SIZES; i++)
        if (mod->sizes[i] != sizes[i])
            return err_set(err, errlen, ERR_UNSUPPORTED,
                           "%s: its %s is %u bytes, this llamad's %u: refused (another build)",
                           path, what[i], (unsigned)mod->sizes[i], (unsigned)sizes[i]);
    const char *mid = mod->build_id ? mod->build_id : "";
    if (strnlen(mid, BUILD_ID_MAX) >= BUILD_ID_MAX || strcmp(mid, build_id) != 0)
        return err_set(err, errlen, ERR_UNSUPPORTED,
                       "%s: built by another llamad build (module \"%.60s\", this llamad \"%.60s\"): refused",
                       path, mid, build_id);
    if (mod->device_find == NULL || mod->create == NULL || mod->name == NULL)
        return err_set(err, errlen, ERR_UNSUPPORTED, "%s: its table lacks an entry point", path);
    return 0;
}

/* The directory of the running binary into dir (PATH_MAX bytes); 0 or ERR_NOTFOUND. */
static int exe_dir(char *dir, size_t dirlen)
{
    ssize_t n = readlink("/proc/self/exe", dir, dirlen - 1);
    if (n <= 0 || (size_t)n >= dirlen - 1)
        return ERR_NOTFOUND;
    dir[n] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        return ERR_NOTFOUND;
    *slash = '\0';
    return 0;
}

/* dir/file into path when that file exists; 1 if so, 0 if not (or too long). */
static int try_path(const char *dir, const char *file, char *path, size_t pathlen)
{
    int n = snprintf(path, pathlen, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= pathlen)
        return 0;
    return access(path, F_OK) == 0;
}

/* Find the module file; 1 with its path, or 0. */
static int find_module(const char *dir, const char *installed, const char *file,
                       char *path, size_t pathlen, char *tried, size_t triedlen)
{
    const char *env = getenv("LLAMAD_BACKEND_DIR");
    if (dir == NULL || dir[0] == '\0')
        dir = env != NULL && env[0] != '\0' ? env : NULL;
    if (dir != NULL) {
        snprintf(tried, triedlen, "%.200s", dir);
        return try_path(dir, file, path, pathlen);
    }
    char self[PATH_MAX] = "";
    if (exe_dir(self, sizeof self) == 0) {
        if (try_path(self, file, path, pathlen))
            return 1;
        size_t n = strlen(self);
        if (n + 4 < sizeof self) {
            memcpy(self + n, "/..", 4);
            if (try_path(self, file, path, pathlen))
                return 1;
            self[n] = '\0';
        }
    }
    if (installed != NULL && installed[0] != '\0' && try_path(installed, file, path, pathlen))
        return 1;
    snprintf(tried, triedlen, "%.200s (beside the binary) and %.200s", self,
             installed != NULL ? installed : "-");
    return 0;
}

int bk_module_open(const char *dir, const char *installed, const char *file, const char *build_id,
                   const bk_module_t **out, char *path, size_t pathlen, char *err, size_t errlen)
{
    char tried[512] = "";
    *out = NULL;
    if (!find_module(dir, installed, file, path, pathlen, tried, sizeof tried))
        return err_set(err, errlen, ERR_NOTFOUND, "%s not found in %s (backend-dir, LLAMAD_BACKEND_DIR)",
                       file, tried);
    dlerror();
    /* RTLD_LOCAL: the module's symbols serve only itself; RTLD_NOW: a missing library fails here */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *why = dlerror();
        return err_set(err, errlen, ERR_UNSUPPORTED, "%.300s", why ? why : "dlopen failed");
    }
    void *sym = dlsym(h, BK_MODULE_ENTRY);
    if (sym == NULL) {
        dlclose(h);
        return err_set(err, errlen, ERR_UNSUPPORTED, "%s: not a llamad backend module (no %s)", path,
                       BK_MODULE_ENTRY);
    }
    bk_module_entry_t entry;
    memcpy(&entry, &sym, sizeof entry);     /* object pointer to function pointer, as POSIX allows */
    const bk_module_t *mod = entry();
    int rc = bk_module_check(mod, build_id, path, err, errlen);
    if (rc != 0) {
        dlclose(h);
        return rc;
    }
    *out = mod;     /* h stays open: the backend's code lives in it */
    return 0;
}
