/*
 * registry.h - which compute backends this build has, and the choice
 * among them.  The only place that tests HAVE_CUDA.  Start-up only.
 */
#ifndef LLAMAD_REGISTRY_H
#define LLAMAD_REGISTRY_H

#include <stddef.h>

#include "backend.h"

/* Whether the CUDA backend was compiled into this binary. */
int registry_has_cuda(void);

/*
 * Resolve "auto", "cpu" or "cuda" to "cpu" or "cuda" in *chosen.  auto
 * picks CUDA when it is built and a device is present.  Asking for cuda
 * where it is not built or no device exists is ERR_UNSUPPORTED with a
 * message.  `desc` receives a line describing the device found (or why
 * none was).
 */
int registry_pick(const char *want, const char **chosen, char *desc, size_t desclen,
                  char *err, size_t errlen);

/*
 * Create the backend named `name` ("cpu" or "cuda", as registry_pick
 * chose) for model m.  On error *out is NULL and err says why.
 */
int registry_create_backend(const char *name, backend_t **out, const model_t *m,
                            const backend_opts_t *o, char *err, size_t errlen);

#endif
