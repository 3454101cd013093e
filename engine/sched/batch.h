/*
 * batch.h - one forward step's ragged batch: tokens from many sequences.
 *
 * The tokens of one sequence are contiguous in the batch and in
 * increasing position order; a token at position p attends to positions
 * 0..p of its own sequence, whose keys and values for positions before
 * the step's first token of that sequence are already in the KV cache.
 * Logits are computed only for the token rows listed in logit_rows.
 * Plain data, built by the caller (the scheduler, or a test) on the
 * engine thread and borrowed by the backend for one step.
 */
#ifndef LLAMAD_BATCH_H
#define LLAMAD_BATCH_H

#include <stdint.h>

typedef struct {
    const int32_t *block_table; /* [n_blocks] KV block ids covering positions 0..last */
    uint32_t n_blocks;
    uint32_t first;             /* index of its first token in the batch */
    uint32_t n_new;             /* tokens of this sequence in the batch */
} batch_seq_t;

typedef struct {
    uint32_t n_tokens;
    const int32_t *tokens;      /* [n_tokens] token ids */
    const int32_t *pos;         /* [n_tokens] position of each token in its sequence */
    uint32_t n_seqs;
    const batch_seq_t *seqs;    /* [n_seqs] */
    uint32_t n_logits;
    const int32_t *logit_rows;  /* [n_logits] token indices whose next-token logits are wanted */
} batch_t;

/*
 * Check a batch against the limits of a forward pass: ids below n_vocab,
 * sequences contiguous and covering every token, positions increasing and
 * inside their block tables (block ids below n_kv_blocks), logit rows in
 * range and distinct (a backend adds the last sub-layer's output into
 * each logit row of x in place before the final norm: a row named twice
 * would be added twice, or raced on).  A sequence may ask for the logits
 * of several of its rows (tests/tools/forward_dump does).  Returns 0 or
 * ERR_INVALID with a message.  Cheap: forward_step calls it on every
 * step.
 */
int batch_check(const batch_t *b, uint32_t n_vocab, uint32_t max_tokens, uint32_t n_kv_blocks,
                uint32_t block_tokens, char *err, size_t errlen);

#endif
