#include "backend_module.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"

#define BUILD_ID_MAX 128
#define MAX_PHDRS 256

#if defined(__x86_64__)
#define HOST_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define HOST_MACHINE EM_AARCH64
#else
#define HOST_MACHINE EM_NONE      /* not checked */
#endif

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
                       "%s: module ABI %u, this llamad speaks %u: refused (use the module of the same build)",
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

/*
 * Whether the file at `path` is a 64-bit ELF shared object of this machine
 * whose loadable segments lie within the file: dlopen maps them as the
 * headers say, and a truncated file would fault (SIGBUS) on first touch.
 * 0, or ERR_UNSUPPORTED with err saying what is wrong.
 */
static int elf_sane(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(err, errlen, ERR_UNSUPPORTED, "%s: cannot open it", path);
    struct stat st;
    Elf64_Ehdr eh;
    const char *bad = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        bad = "not a regular file";
    else if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
        bad = "not an ELF file";
    else if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_type != ET_DYN ||
             (HOST_MACHINE != EM_NONE && eh.e_machine != HOST_MACHINE))
        bad = "not a shared object for this machine";
    else if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > MAX_PHDRS ||
             eh.e_phoff > (uint64_t)st.st_size ||
             (uint64_t)st.st_size - eh.e_phoff < (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr))
        bad = "its program headers lie outside the file";
    for (unsigned i = 0; bad == NULL && i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + i * sizeof ph)) != (ssize_t)sizeof ph)
            bad = "its program headers cannot be read";
        else if (ph.p_type == PT_LOAD &&
                 (ph.p_offset > (uint64_t)st.st_size || ph.p_filesz > (uint64_t)st.st_size - ph.p_offset))
            bad = "truncated: a segment lies past its end";
    }
    close(fd);
    if (bad != NULL)
        return err_set(err, errlen, ERR_UNSUPPORTED, "%s: %s", path, bad);
    return 0;
}

int bk_module_open(const char *dir, const char *installed, const char *file, const char *build_id,
                   const bk_module_t **out, void **handle, char *path, size_t pathlen,
                   char *err, size_t errlen)
{
    char tried[512] = "";
    *out = NULL;
    *handle = NULL;
    if (!find_module(dir, installed, file, path, pathlen, tried, sizeof tried))
        return err_set(err, errlen, ERR_NOTFOUND,
                       "%s not found in %s (the backend-dir setting or LLAMAD_BACKEND_DIR names another place)",
                       file, tried);
    int rc = elf_sane(path, err, errlen);
    if (rc != 0)
        return rc;
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
    rc = bk_module_check(mod, build_id, path, err, errlen);
    if (rc != 0) {
        dlclose(h);
        return rc;
    }
    *out = mod;     /* h stays open: the backend's code lives in it */
    *handle = h;
    return 0;
}

void bk_module_close(void *handle)
{
    if (handle != NULL)
        dlclose(handle);
}
