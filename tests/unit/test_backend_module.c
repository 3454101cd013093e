/*
 * test_backend_module.c - the backend module loader (engine/backend_module.c):
 * which tables fit, and files that are not a module (missing, corrupt,
 * truncated, a foreign shared object) refused with a message, no crash.
 * The real llamad-cuda.so is checked by tests/e2e/test_cuda_module.sh.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <math.h>

#include "engine/backend_module.h"
#include "base/err.h"
#include "test.h"

static int fake_find(int index, const char *uuid, int *found, char *desc, size_t desclen)
{
    (void)index, (void)uuid, (void)desc, (void)desclen;
    *found = -1;
    return 0;
}

static int fake_create(backend_t **out, const model_t *m, const backend_opts_t *o, char *err, size_t errlen)
{
    (void)m, (void)o, (void)err, (void)errlen;
    *out = NULL;
    return ERR_UNSUPPORTED;
}

static bk_module_t good_table(void)
{
    bk_module_t mod = { BK_MODULE_ABI, BK_MODULE_SIZES, "fake", "build 1", fake_find, fake_create };
    return mod;
}

TEST(check_accepts_same_build)
{
    char err[ERR_MSG_MAX] = "";
    bk_module_t mod = good_table();
    ASSERT_EQ_INT(bk_module_check(&mod, "build 1", "m.so", err, sizeof err), 0);
}

TEST(check_refuses_other_builds)
{
    char err[ERR_MSG_MAX];
    bk_module_t mod = good_table();
    ASSERT_EQ_INT(bk_module_check(NULL, "build 1", "m.so", err, sizeof err), ERR_UNSUPPORTED);
    mod.abi = BK_MODULE_ABI + 1;
    ASSERT_EQ_INT(bk_module_check(&mod, "build 1", "m.so", err, sizeof err), ERR_UNSUPPORTED);
    ASSERT_MSG(strstr(err, "ABI") != NULL && strstr(err, "m.so") != NULL, "%s", err);
    mod = good_table();
    mod.sizes[0] += 8;      /* backend_ops_t grew: a module of another version */
    ASSERT_EQ_INT(bk_module_check(&mod, "build 1", "m.so", err, sizeof err), ERR_UNSUPPORTED);
    ASSERT_MSG(strstr(err, "backend_ops_t") != NULL, "%s", err);
    mod = good_table();
    ASSERT_EQ_INT(bk_module_check(&mod, "build 2", "m.so", err, sizeof err), ERR_UNSUPPORTED);
    ASSERT_MSG(strstr(err, "another llamad build") != NULL, "%s", err);
    mod.build_id = NULL;
    ASSERT_EQ_INT(bk_module_check(&mod, "build 1", "m.so", err, sizeof err), ERR_UNSUPPORTED);
    mod = good_table();
    mod.create = NULL;
    ASSERT_EQ_INT(bk_module_check(&mod, "build 1", "m.so", err, sizeof err), ERR_UNSUPPORTED);
}

/* A fresh directory holding `file` with n bytes of `data` (n 0: no file). */
static void make_dir(char *dir, size_t dirlen, const void *data, size_t n)
{
    snprintf(dir, dirlen, "/tmp/llamad-bkmod.XXXXXX");
    ASSERT(mkdtemp(dir) != NULL);
    if (n == 0)
        return;
    char path[512];
    snprintf(path, sizeof path, "%s/llamad-cuda.so", dir);
    FILE *f = fopen(path, "wb");
    ASSERT(f != NULL);
    ASSERT_EQ_INT((int)fwrite(data, 1, n, f), (int)n);
    fclose(f);
}

static void remove_dir(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/llamad-cuda.so", dir);
    unlink(path);
    rmdir(dir);
}

/* Open llamad-cuda.so from dir; the rc, with the message in err. */
static int open_in(const char *dir, char *err, size_t errlen)
{
    const bk_module_t *mod = (const bk_module_t *)1;
    void *handle = (void *)1;
    char path[512];
    int rc = bk_module_open(dir, NULL, "llamad-cuda.so", "build 1", &mod, &handle, path, sizeof path,
                            err, errlen);
    ASSERT(rc != 0 || (mod != NULL && handle != NULL));
    if (rc != 0)
        ASSERT(mod == NULL && handle == NULL);
    bk_module_close(handle);
    return rc;
}

TEST(open_missing_is_not_found)
{
    char dir[64], err[ERR_MSG_MAX];
    make_dir(dir, sizeof dir, NULL, 0);
    ASSERT_EQ_INT(open_in(dir, err, sizeof err), ERR_NOTFOUND);
    ASSERT_MSG(strstr(err, dir) != NULL, "%s", err);
    remove_dir(dir);
}

TEST(open_refuses_corrupt_file)
{
    char dir[64], err[ERR_MSG_MAX];
    unsigned char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 131u + 7u);
    make_dir(dir, sizeof dir, junk, sizeof junk);
    ASSERT_EQ_INT(open_in(dir, err, sizeof err), ERR_UNSUPPORTED);
    ASSERT_MSG(strstr(err, "llamad-cuda.so") != NULL, "%s", err);
    remove_dir(dir);
}

/* The path of the libm this test runs with: a real shared object that is no module. */
static const char *libm_path(void)
{
    Dl_info info;
    double (*f)(double) = cos;
    void *p;
    memcpy(&p, &f, sizeof p);
    if (dladdr(p, &info) == 0 || info.dli_fname == NULL || strstr(info.dli_fname, ".so") == NULL)
        return NULL;
    return info.dli_fname;
}

/* The first n bytes of file `src` into buf; the count read. */
static size_t read_head(const char *src, unsigned char *buf, size_t n)
{
    FILE *f = fopen(src, "rb");
    if (f == NULL)
        return 0;
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    return got;
}

TEST(open_refuses_truncated_elf)
{
    const char *lib = libm_path();
    if (lib == NULL)
        TEST_SKIP("libm's path not found (statically linked?)");
    static unsigned char head[2048];
    char dir[64], err[ERR_MSG_MAX];
    size_t n = read_head(lib, head, sizeof head);
    ASSERT_EQ_INT((int)n, (int)sizeof head);
    make_dir(dir, sizeof dir, head, n);
    /* dlopen itself would map the missing segments and fault on them (SIGBUS) */
    ASSERT_EQ_INT(open_in(dir, err, sizeof err), ERR_UNSUPPORTED);
    ASSERT_MSG(strstr(err, "truncated") != NULL || strstr(err, "outside") != NULL, "%s", err);
    remove_dir(dir);
}

TEST(open_refuses_foreign_object)
{
    const char *lib = libm_path();
    if (lib == NULL)
        TEST_SKIP("libm's path not found (statically linked?)");
    char dir[64], path[512], err[ERR_MSG_MAX];
    make_dir(dir, sizeof dir, NULL, 0);
    snprintf(path, sizeof path, "%s/llamad-cuda.so", dir);
    ASSERT_EQ_INT(symlink(lib, path), 0);
    ASSERT_EQ_INT(open_in(dir, err, sizeof err), ERR_UNSUPPORTED);
    ASSERT_MSG(strstr(err, "not a llamad backend module") != NULL, "%s", err);
    remove_dir(dir);
}

TEST(open_follows_env_dir)
{
    char dir[64], err[ERR_MSG_MAX];
    make_dir(dir, sizeof dir, "junk", 4);
    ASSERT_EQ_INT(setenv("LLAMAD_BACKEND_DIR", dir, 1), 0);
    ASSERT_EQ_INT(open_in(NULL, err, sizeof err), ERR_UNSUPPORTED);     /* found there, refused */
    ASSERT_MSG(strstr(err, dir) != NULL, "%s", err);
    unsetenv("LLAMAD_BACKEND_DIR");
    remove_dir(dir);
}

TEST_LIST(T(check_accepts_same_build), T(check_refuses_other_builds), T(open_missing_is_not_found),
          T(open_refuses_corrupt_file), T(open_refuses_truncated_elf), T(open_refuses_foreign_object),
          T(open_follows_env_dir));
