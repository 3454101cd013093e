/*
 * forward.c - the LLaMA forward pass, as the paper describes it:
 *
 *   x = embed(tokens)
 *   for each layer:
 *       h = rmsnorm(x) * g_attn                   pre-normalisation
 *       q, k, v = Wq h, Wk h, Wv h                 k, v: n_head_kv heads (GQA)
 *       q, k = rope(q), rope(k); cache k, v        rotary positions
 *       x = x + Wo attention(q, cached k, v)       causal
 *       h = rmsnorm(x) * g_ffn
 *       x = x + W2 (silu(W1 h) * W3 h)             SwiGLU
 *   logits = Wout (rmsnorm(x) * g_out)             only the rows that want them
 *
 * Residual adds ride on the next operation (add_rmsnorm, logits) so a
 * backend can fuse them.
 */
#include "forward.h"

#include <stdlib.h>

#include "base/err.h"
#include "base/log.h"

struct forward {
    const model_t *m;
    backend_t *b;
    uint32_t max_tokens;
    bk_buf_t x;    /* [T, n_embd] the residual stream */
    bk_buf_t h;    /* [T, n_embd] normalised input of a sub-layer */
    bk_buf_t y;    /* [T, n_embd] a sub-layer's output, added to x next */
    bk_buf_t q;    /* [T, n_head * head_dim] */
    bk_buf_t k;    /* [T, n_head_kv * head_dim] */
    bk_buf_t v;    /* [T, n_head_kv * head_dim] */
    bk_buf_t att;  /* [T, n_head * head_dim] */
    bk_buf_t gate; /* [T, n_ff] */
    bk_buf_t up;   /* [T, n_ff] */
    bk_argmax_t *am; /* [T] greedy choices of the logit rows (forward_step_argmax) */
    char refused[160]; /* why the last step's batch was refused; "" when it was not */
};

int forward_create(forward_t **out, const model_t *m, backend_t *b, uint32_t max_tokens,
                   char *err, size_t errlen)
{
    const hparams_t *hp = &m->hp;
    const backend_ops_t *ops = b->ops;
    *out = NULL;
    if (b->block_tokens == 0) /* batch_check divides by it */
        return err_set(err, errlen, ERR_INVALID, "%s backend: KV blocks of 0 tokens", ops->name);
    forward_t *f = calloc(1, sizeof *f);
    if (f == NULL)
        return err_set(err, errlen, ERR_NOMEM, "out of memory");
    f->m = m;
    f->b = b;
    f->max_tokens = max_tokens;
    uint32_t qd = hp->n_head * hp->head_dim, kvd = hp->n_head_kv * hp->head_dim;
    f->x = ops->buf_alloc(b->ctx, max_tokens, hp->n_embd, BK_BUF_RESIDUAL);
    f->h = ops->buf_alloc(b->ctx, max_tokens, hp->n_embd, BK_BUF_NORMED);
    f->y = ops->buf_alloc(b->ctx, max_tokens, hp->n_embd, BK_BUF_PROJ);
    f->q = ops->buf_alloc(b->ctx, max_tokens, qd, BK_BUF_Q);
    f->k = ops->buf_alloc(b->ctx, max_tokens, kvd, BK_BUF_K);
    f->v = ops->buf_alloc(b->ctx, max_tokens, kvd, BK_BUF_V);
    f->att = ops->buf_alloc(b->ctx, max_tokens, qd, BK_BUF_ATT);
    f->gate = ops->buf_alloc(b->ctx, max_tokens, hp->n_ff, BK_BUF_GATE);
    f->up = ops->buf_alloc(b->ctx, max_tokens, hp->n_ff, BK_BUF_UP);
    f->am = calloc(max_tokens ? max_tokens : 1, sizeof *f->am);
    if (!f->x || !f->h || !f->y || !f->q || !f->k || !f->v || !f->att || !f->gate || !f->up || !f->am) {
        free(f->am);
        free(f);
        return err_set(err, errlen, ERR_NOMEM,
                       "%s backend: no memory for the activations of %u tokens", ops->name, max_tokens);
    }
    *out = f;
    return 0;
}

void forward_destroy(forward_t *f)
{
    if (f == NULL)
        return;
    free(f->am);
    free(f); /* the activation buffers belong to the backend */
}

#define TRY(call)                  \
    do {                           \
        int rc_ = (call);          \
        if (rc_ != 0)              \
            return rc_;            \
    } while (0)

/* One pass over the layers; the logits (or, with am, the greedy choices) come out last. */
static int step_once(forward_t *f, const batch_t *batch, float *logits, bk_argmax_t *am)
{
    const backend_ops_t *ops = f->b->ops;
    void *bk = f->b->ctx;
    TRY(ops->set_batch(bk, batch));
    TRY(ops->embed(bk, f->x));
    for (uint32_t l = 0; l < f->m->hp.n_layer; l++) {
        /* attention sub-layer (the previous layer's FFN output joins x first) */
        TRY(ops->add_rmsnorm(bk, f->x, l == 0 ? NULL : f->y, l, W_ATTN_NORM, f->h));
        TRY(ops->matmul_qkv(bk, l, f->h, f->q, f->k, f->v));
        TRY(ops->rope_kv_write(bk, l, f->q, f->k, f->v));
        TRY(ops->attention(bk, l, f->q, f->att));
        TRY(ops->matmul(bk, l, W_O, f->att, f->y));
        /* feed-forward sub-layer */
        TRY(ops->add_rmsnorm(bk, f->x, f->y, l, W_FFN_NORM, f->h));
        TRY(ops->matmul_gate_up(bk, l, f->h, f->gate, f->up));
        TRY(ops->swiglu(bk, f->gate, f->up));
        TRY(ops->matmul(bk, l, W_DOWN, f->gate, f->y));
    }
    return am ? ops->logits_argmax(bk, f->x, f->y, am) : ops->logits(bk, f->x, f->y, logits);
}

/*
 * A backend answers BK_STEP_AGAIN when it did not compute the step (a
 * CUDA graph capture failed and graphs are now off): run it once more.
 * Nothing was written to the KV cache by the attempt that failed.
 */
static int step(forward_t *f, const batch_t *batch, float *logits, bk_argmax_t *am)
{
    /* Every step's batch is checked (batch_check): the backends index the
     * embedding by token id and the KV pool by block id and position, so
     * a scheduler's fault is an error here, not a read or write out of
     * bounds.  Its cost is a pass over the ids and block tables, which the
     * step's attention walks anyway with every block's K and V. */
    if (batch_check(batch, f->m->hp.n_vocab, f->max_tokens, f->b->n_kv_blocks, f->b->block_tokens, f->refused,
                    sizeof f->refused) != 0) {
        log_error("forward: step refused: %s", f->refused);
        return ERR_INVALID;
    }
    f->refused[0] = 0;
    int rc = step_once(f, batch, logits, am);
    if (rc == BK_STEP_AGAIN)
        rc = step_once(f, batch, logits, am);
    return rc == BK_STEP_AGAIN ? ERR_BACKEND : rc;
}

const char *forward_last_error(const forward_t *f)
{
    return f->refused[0] ? f->refused : f->b->ops->last_error(f->b->ctx);
}

int forward_step(forward_t *f, const batch_t *batch, float *logits)
{
    return step(f, batch, logits, NULL);
}

int forward_kv_copy(forward_t *f, const int32_t *src, const int32_t *dst, uint32_t n)
{
    if (n == 0)
        return 0;
    if (f->b->ops->kv_copy == NULL)
        return ERR_UNSUPPORTED;
    return f->b->ops->kv_copy(f->b->ctx, src, dst, n);
}

int forward_has_argmax(const forward_t *f)
{
    return f->b->ops->logits_argmax != NULL;
}

int forward_step_argmax(forward_t *f, const batch_t *batch, const bk_argmax_t **out)
{
    *out = NULL;
    if (f->b->ops->logits_argmax == NULL)
        return ERR_UNSUPPORTED;
    int rc = step(f, batch, NULL, f->am);
    if (rc == 0)
        *out = f->am;
    return rc;
}
