/*
 * refuse.h - GGUF metadata that changes what a model computes and that
 * llamad does not implement (sliding-window attention, mixture of
 * experts, soft-capping, ALiBi, LayerNorm, other RoPE scalings, ...).
 *
 * A model that needs one of these would load and produce wrong text, so
 * the loader refuses it.  Keys whose value is the neutral one (0 experts,
 * a sliding window of 0, a scale of 1) are accepted: converters write
 * some of them for plain models.  config.json has its own checks in
 * hf_config.c.  No state; any thread.
 */
#ifndef LLAMAD_REFUSE_H
#define LLAMAD_REFUSE_H

#include <stddef.h>

#include "gguf.h"
#include "hparams.h"

/*
 * Check g's metadata (architecture "llama", whose hyper-parameters are
 * already in *hp) for keys llamad does not implement.  Returns 0, or
 * ERR_UNSUPPORTED with "PATH: KEY = VALUE: llamad does not implement
 * WHAT" in err for the first such key in the table's order.
 */
int refuse_gguf_keys(const gguf_t *g, const hparams_t *hp, char *err, size_t errlen);

#endif
