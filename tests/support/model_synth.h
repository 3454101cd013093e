/*
 * model_synth.h - random-weight models for the backend tests and the
 * benchmarks (libtestsupport.a; not part of the engine library).
 */
#ifndef LLAMAD_MODEL_SYNTH_H
#define LLAMAD_MODEL_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "engine/model/model.h"

/*
 * A model with random weights and no tokenizer, for tests and benchmarks
 * of the backends.  Matrices are stored in `wtype` (any type of quant.h,
 * as valid random blocks whose values are roughly N(0, 0.02)), norm
 * vectors in F32 near 1.  With `host_data` false no memory is allocated
 * for the weights and every data pointer is NULL: a backend that can
 * (CUDA) fills them with random values itself; the CPU backend cannot use
 * such a model.  hp must have n_vocab, n_embd, n_layer, n_head,
 * n_head_kv, head_dim, n_ff, rms_eps, rope_theta and rope_dim set.
 */
int model_create_synthetic(model_t **out, const hparams_t *hp, qtype_t wtype, int host_data,
                           uint64_t seed, char *err, size_t errlen);

#endif
