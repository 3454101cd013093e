/*
 * registry.h - which compute backends this build has, and the choice
 * among them.  The only place that tests HAVE_CUDA.  Start-up only.
 */
#ifndef LLAMAD_REGISTRY_H
#define LLAMAD_REGISTRY_H

#include <stddef.h>

#include "backend.h"

/*
 * The directory to open backend modules from (the backend-dir setting;
 * NULL or "": $LLAMAD_BACKEND_DIR, else beside the binary, else the
 * installed $(pkglibdir); backend_module.h).  Borrowed: it must outlive
 * the registry's use.  Before the first registry_pick*.
 */
void registry_set_backend_dir(const char *dir);

/*
 * Whether this build has the CUDA backend (as the module llamad-cuda.so,
 * opened when a backend other than cpu is asked for).
 */
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
 * registry_pick with the gpu-device setting: `gpu_device` (NULL or "" for
 * 0) is an index among the visible CUDA devices or a UUID "GPU-" followed
 * by 32 hex digits and dashes (nvidia-smi -L).  A malformed value is
 * ERR_INVALID whatever the backend; where CUDA is chosen, *device is the
 * index it names, and a device that does not exist is ERR_INVALID with a
 * message (never a silent fall-back to the CPU or to device 0).
 */
int registry_pick_device(const char *want, const char *gpu_device, const char **chosen,
                         int *device, char *desc, size_t desclen, char *err, size_t errlen);

/*
 * Parse a gpu-device value: an index (0..4095) into *index, with *uuid
 * NULL; or "GPU-..." (36 hex digits and dashes after the prefix, checked)
 * with *uuid pointing into `spec` and *index -1.  NULL or "" is index 0.
 * 0, or ERR_INVALID.
 */
int registry_parse_device(const char *spec, int *index, const char **uuid);

/*
 * Create the backend named `name` ("cpu" or "cuda", as registry_pick
 * chose) for model m.  On error *out is NULL and err says why.
 */
int registry_create_backend(const char *name, backend_t **out, const model_t *m,
                            const backend_opts_t *o, char *err, size_t errlen);

#endif
