#include <stddef.h>

#include "batch.h"
#include "base/err.h"

int batch_check(const batch_t *b, uint32_t n_vocab, uint32_t max_tokens, uint32_t n_kv_blocks,
                uint32_t block_tokens, char *err, size_t errlen)
{
    if (b->n_tokens == 0 || b->n_tokens > max_tokens)
        return err_set(err, errlen, ERR_INVALID, "batch: %u tokens (limit %u)", b->n_tokens, max_tokens);
    uint32_t next = 0;
    for (uint32_t s = 0; s < b->n_seqs; s++) {
        const batch_seq_t *q = &b->seqs[s];
        if (q->first != next || q->n_new == 0 || q->n_new > b->n_tokens - next)
            return err_set(err, errlen, ERR_INVALID, "batch: sequence %u does not follow on at token %u", s, next);
        for (uint32_t i = q->first; i < q->first + q->n_new; i++) {
            if (b->tokens[i] < 0 || (uint32_t)b->tokens[i] >= n_vocab)
                return err_set(err, errlen, ERR_INVALID, "batch: token %u has id %d", i, b->tokens[i]);
            if (b->pos[i] < 0 || (i > q->first && b->pos[i] != b->pos[i - 1] + 1))
                return err_set(err, errlen, ERR_INVALID, "batch: token %u has position %d", i, b->pos[i]);
            if ((uint64_t)b->pos[i] / block_tokens >= q->n_blocks)
                return err_set(err, errlen, ERR_INVALID, "batch: position %d is past sequence %u's blocks", b->pos[i], s);
        }
        for (uint32_t k = 0; k < q->n_blocks; k++)
            if (q->block_table[k] < 0 || (uint32_t)q->block_table[k] >= n_kv_blocks)
                return err_set(err, errlen, ERR_INVALID, "batch: sequence %u names block %d", s, q->block_table[k]);
        next += q->n_new;
    }
    if (next != b->n_tokens)
        return err_set(err, errlen, ERR_INVALID, "batch: sequences cover %u of %u tokens", next, b->n_tokens);
    /* Rows are usually increasing (the scheduler's are), which proves them distinct; only
       rows out of order are compared with all before them. */
    int32_t prev = -1;
    for (uint32_t i = 0; i < b->n_logits; i++) {
        int32_t r = b->logit_rows[i];
        if (r < 0 || (uint32_t)r >= b->n_tokens)
            return err_set(err, errlen, ERR_INVALID, "batch: logit row %d out of range", r);
        if (r <= prev)
            for (uint32_t k = 0; k < i; k++)
                if (b->logit_rows[k] == r)
                    return err_set(err, errlen, ERR_INVALID, "batch: logit row %d is asked for twice "
                                   "(at %u and %u)", r, k, i);
        prev = r > prev ? r : prev;
    }
    return 0;
}
