#include "registry.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../config.h"
#include "base/err.h"
#include "base/log.h"

#ifdef HAVE_CUDA
#include "backend_module.h"

#ifndef LLAMAD_BUILD_ID
#define LLAMAD_BUILD_ID PACKAGE_VERSION
#endif
#ifndef PKGLIBDIR
#define PKGLIBDIR NULL
#endif
#define CUDA_MODULE_FILE "llamad-cuda.so"

/*
 * The CUDA module's table: linked in (tests and benchmarks link the CUDA
 * backend whole, and with it the entry point) or opened from
 * llamad-cuda.so, again at each pick while it is not open (a model
 * reload retries).  Start-up only, one thread.
 */
const bk_module_t *llamad_backend_module(void) __attribute__((weak));
static const bk_module_t *cuda_module;
static void *cuda_module_handle;
static char cuda_module_err[ERR_MSG_MAX];
#endif
static const char *backend_dir;

void registry_set_backend_dir(const char *dir)
{
    backend_dir = dir;
}

int registry_has_cuda(void)
{
#ifdef HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

#ifdef HAVE_CUDA
/* The CUDA module, opened where it is not yet; NULL with *why set when it cannot be. */
static const bk_module_t *cuda_module_get(const char **why)
{
    if (cuda_module == NULL) {
        char path[4096];
        if (llamad_backend_module != NULL) {
            cuda_module = llamad_backend_module();
            if (bk_module_check(cuda_module, LLAMAD_BUILD_ID, "linked-in CUDA backend", cuda_module_err,
                                sizeof cuda_module_err) != 0)
                cuda_module = NULL;
        } else if (bk_module_open(backend_dir, PKGLIBDIR, CUDA_MODULE_FILE, LLAMAD_BUILD_ID, &cuda_module,
                                  &cuda_module_handle, path, sizeof path, cuda_module_err,
                                  sizeof cuda_module_err) == 0) {
            log_info("backend module %s loaded", path);
        }
    }
    *why = cuda_module_err;
    return cuda_module;
}

/* No device to use: close the module, so that serving on the CPU maps no CUDA library. */
static void cuda_module_release(const char *desc)
{
    if (cuda_module_handle == NULL)
        return;
    bk_module_close(cuda_module_handle);
    cuda_module_handle = NULL;
    cuda_module = NULL;         /* a later pick (a model reload) opens and probes it again */
    snprintf(cuda_module_err, sizeof cuda_module_err, "closed after its probe: %.400s", desc);
}
#endif

int registry_parse_device(const char *spec, int *index, const char **uuid)
{
    *index = 0;
    *uuid = NULL;
    if (spec == NULL || spec[0] == '\0')
        return 0;
    if (strncmp(spec, "GPU-", 4) == 0) {
        const char *u = spec + 4;
        size_t n = strnlen(u, 37);
        if (n != 36)
            return ERR_INVALID;
        for (size_t i = 0; i < n; i++) {
            bool dash = i == 8 || i == 13 || i == 18 || i == 23;
            if (dash ? u[i] != '-' : !isxdigit((unsigned char)u[i]))
                return ERR_INVALID;
        }
        *index = -1;
        *uuid = spec;
        return 0;
    }
    int v = 0;
    for (size_t i = 0; spec[i] != '\0'; i++) {
        if (spec[i] < '0' || spec[i] > '9' || i >= 4)
            return ERR_INVALID;
        v = v * 10 + (spec[i] - '0');
    }
    if (v > 4095)
        return ERR_INVALID;
    *index = v;
    return 0;
}

int registry_pick_device(const char *want, const char *gpu_device, const char **chosen,
                         int *device, char *desc, size_t desclen, char *err, size_t errlen)
{
    int n_dev = 0, index, found = -1;
    const char *uuid;
    *device = 0;
    if (registry_parse_device(gpu_device, &index, &uuid) != 0)
        return err_set(err, errlen, ERR_INVALID,
                       "gpu-device: \"%.60s\" is neither a device index nor a GPU-... UUID", gpu_device);
#ifdef HAVE_CUDA
    if (strcmp(want, "cpu") != 0) {
        const char *why;
        const bk_module_t *mod = cuda_module_get(&why);
        if (mod != NULL)
            n_dev = mod->device_find(index, uuid, &found, desc, desclen);
        else
            snprintf(desc, desclen, "the CUDA module does not load: %s", why);
    } else {
        snprintf(desc, desclen, "not probed");
    }
#else
    (void)found;
    snprintf(desc, desclen, "built without CUDA");
#endif
    if (strcmp(want, "cpu") == 0) {
        *chosen = "cpu";
        return 0;
    }
    if (strcmp(want, "auto") != 0 && strcmp(want, "cuda") != 0)
        return err_set(err, errlen, ERR_INVALID, "backend: \"%s\" is not auto, cpu or cuda", want);
    if (n_dev > 0) {
        if (found < 0)
            return err_set(err, errlen, ERR_INVALID, "gpu-device: %s", desc);
        *chosen = "cuda";
        *device = found;
        return 0;
    }
    if (strcmp(want, "auto") == 0) {
#ifdef HAVE_CUDA
        cuda_module_release(desc);
#endif
        *chosen = "cpu";
        return 0;
    }
    return err_set(err, errlen, ERR_UNSUPPORTED, "backend: cuda was asked for but %s", desc);
}

int registry_pick(const char *want, const char **chosen, char *desc, size_t desclen,
                  char *err, size_t errlen)
{
    int device;
    return registry_pick_device(want, NULL, chosen, &device, desc, desclen, err, errlen);
}

int registry_create_backend(const char *name, backend_t **out, const model_t *m,
                            const backend_opts_t *o, char *err, size_t errlen)
{
    if (strcmp(name, "cpu") == 0)
        return cpu_backend_create(out, m, o, err, errlen);
#ifdef HAVE_CUDA
    if (strcmp(name, "cuda") == 0) {
        const char *why;
        const bk_module_t *mod = cuda_module_get(&why);
        if (mod == NULL) {
            *out = NULL;
            return err_set(err, errlen, ERR_UNSUPPORTED, "backend cuda: %s", why);
        }
        return mod->create(out, m, o, err, errlen);
    }
#endif
    *out = NULL;
    return err_set(err, errlen, ERR_UNSUPPORTED, "backend: \"%s\" is not built into this llamad", name);
}

void backend_destroy(backend_t *b)
{
    if (b == NULL)
        return;
    b->ops->destroy(b->ctx);
    free(b);
}
