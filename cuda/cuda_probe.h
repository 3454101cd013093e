/*
 * cuda_probe.h - what the CUDA backend exports before it is chosen:
 * plain C, no CUDA types.  Any thread.
 */
#ifndef LLAMAD_CUDA_PROBE_H
#define LLAMAD_CUDA_PROBE_H

#include <stddef.h>

/*
 * Number of usable CUDA devices; 0 where the driver is missing or no
 * device is present (which is not an error: llamad then runs on the CPU).
 * `desc` receives a one-line description of device 0 or of why none was
 * found.
 */
int cuda_device_count(char *desc, size_t desclen);

/*
 * Find the device the gpu-device setting names: `index` among the visible
 * devices (CUDA_VISIBLE_DEVICES applies), or, when `uuid` is not NULL,
 * the device whose UUID is `uuid` ("GPU-" and 36 characters, as
 * registry_parse_device checked; case-insensitive).  Returns the number of
 * visible devices (0 with `desc` saying why, the CUDA error string
 * included, when there are none); *found is the device's index, or -1
 * with `desc` saying which device is missing.  Otherwise `desc` describes
 * the device found.
 */
int cuda_device_find(int index, const char *uuid, int *found, char *desc, size_t desclen);

/*
 * For tests: the CUDA backend's greedy argmax (logits_argmax's kernel)
 * over host logits [n_rows, V] into out [n_rows] (bk_argmax_t of
 * engine/backend.h).  Synchronous; 0, or ERR_BACKEND.
 */
int cuda_argmax_rows(const float *logits, unsigned n_rows, unsigned V, void *out);

#endif
