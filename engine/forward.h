/*
 * forward.h - the transformer forward pass over one ragged batch, written
 * once against the backend's operations (backend.h).
 *
 * Owns the activation buffers, allocated from the backend at creation for
 * the largest step (max_tokens); forward_step allocates nothing.  Engine
 * thread only.
 */
#ifndef LLAMAD_FORWARD_H
#define LLAMAD_FORWARD_H

#include <stddef.h>

#include "backend.h"
#include "engine/sched/batch.h"
#include "engine/model/model.h"

typedef struct forward forward_t;

/* The model and backend are borrowed until forward_destroy. */
int forward_create(forward_t **out, const model_t *m, backend_t *b, uint32_t max_tokens,
                   char *err, size_t errlen);
void forward_destroy(forward_t *f);

/*
 * Run one step: write every token's K and V into the cache and the
 * next-token logits of the batch's logit rows into
 * logits[n_logits, n_vocab] (host memory).  Returns 0, ERR_INVALID for
 * a batch that batch_check refuses (nothing computed; the reason is
 * logged and kept for forward_last_error), or the backend's error.
 */
int forward_step(forward_t *f, const batch_t *batch, float *logits);

/*
 * Why the last step failed: batch_check's reason when it refused the
 * batch, else the backend's last_error ("" when it has none).  Valid
 * until the next step.
 */
const char *forward_last_error(const forward_t *f);

/*
 * Copy KV block src[i] into dst[i], every layer, for i in [0, n)
 * (copy-on-write, backend_ops_t.kv_copy): before the step whose writes
 * need them.  Returns 0, ERR_UNSUPPORTED when the backend cannot copy, or
 * the backend's error.
 */
int forward_kv_copy(forward_t *f, const int32_t *src, const int32_t *dst, uint32_t n);

/* Whether the backend can choose greedy tokens itself (forward_step_argmax). */
int forward_has_argmax(const forward_t *f);

/*
 * As forward_step, but only each logit row's greedy choice comes back
 * (backend.h, logits_argmax): *out points at [n_logits] results, owned by
 * f and valid until the next step.  ERR_UNSUPPORTED where the backend
 * has no such operation.
 */
int forward_step_argmax(forward_t *f, const batch_t *batch, const bk_argmax_t **out);

#endif
