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
 * For tests: the CUDA backend's greedy argmax (logits_argmax's kernel)
 * over host logits [n_rows, V] into out [n_rows] (bk_argmax_t of
 * engine/backend.h).  Synchronous; 0, or ERR_BACKEND.
 */
int cuda_argmax_rows(const float *logits, unsigned n_rows, unsigned V, void *out);

#endif
