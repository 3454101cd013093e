#include "registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../config.h"
#include "base/err.h"

#ifdef HAVE_CUDA
#include "../cuda/cuda_probe.h"
#endif

int registry_has_cuda(void)
{
#ifdef HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

int registry_pick(const char *want, const char **chosen, char *desc, size_t desclen,
                  char *err, size_t errlen)
{
    int n_dev = 0;
#ifdef HAVE_CUDA
    n_dev = cuda_device_count(desc, desclen);
#else
    snprintf(desc, desclen, "built without CUDA");
#endif
    if (strcmp(want, "cpu") == 0) {
        *chosen = "cpu";
        return 0;
    }
    if (strcmp(want, "auto") == 0) {
        *chosen = n_dev > 0 ? "cuda" : "cpu";
        return 0;
    }
    if (strcmp(want, "cuda") == 0) {
        if (n_dev > 0) {
            *chosen = "cuda";
            return 0;
        }
        return err_set(err, errlen, ERR_UNSUPPORTED, "backend: cuda was asked for but %s", desc);
    }
    return err_set(err, errlen, ERR_INVALID, "backend: \"%s\" is not auto, cpu or cuda", want);
}

int registry_create_backend(const char *name, backend_t **out, const model_t *m,
                            const backend_opts_t *o, char *err, size_t errlen)
{
    if (strcmp(name, "cpu") == 0)
        return cpu_backend_create(out, m, o, err, errlen);
#ifdef HAVE_CUDA
    if (strcmp(name, "cuda") == 0)
        return cuda_backend_create(out, m, o, err, errlen);
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
