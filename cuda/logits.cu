// logits.cu - the logit rows: the final RMSNorm of each wanted row, the
// output GEMM, and either the rows copied back (logits) or their greedy
// choices (logits_argmax, argmax.cu).  The eager operations; graph.cu
// launches the same work over a graph's padded rows.
#include <cstring>

#include "backend_cuda.cuh"

int logits_launch(cuda_ctx_t *c, cbuf_t *x, cbuf_t *add, const int32_t *rows, uint32_t n_rows, int argmax)
{
    const hparams_t *hp = &c->m->hp;
    launch_add_rmsnorm(c->stream, c->wtype, x->f, add ? add->f : nullptr, rows, c->output_norm, c->logit_x,
                       n_rows, hp->n_embd, hp->rms_eps);
    CU_LAUNCHED(&c->err);
    int rc = gemm(c, c->output, hp->n_vocab, hp->n_embd, c->logit_x, n_rows, c->logits_dev);
    if (rc != 0 || !argmax)
        return rc;
    launch_argmax(c->stream, c->logits_dev, n_rows, hp->n_vocab, c->am_dev);
    CU_LAUNCHED(&c->err);
    return 0;
}

// The eager `logits`: the rows to host memory `out` [n_logits, V].
int eager_logits(cuda_ctx_t *c, cbuf_t *x, cbuf_t *add, float *out)
{
    const hparams_t *hp = &c->m->hp;
    const batch_t *b = c->batch;
    if (b->n_logits == 0)
        return 0;
    int rc = prof_mark(c, BK_OP_LOGITS);
    if (rc != 0 || (rc = logits_launch(c, x, add, c->d_rows, b->n_logits, 0)) != 0)
        return rc;
    CU_TRY(&c->err, cudaMemcpyAsync(out, c->logits_dev, (uint64_t)b->n_logits * hp->n_vocab * 4,
                                    cudaMemcpyDeviceToHost, c->stream));
    CU_TRY(&c->err, cudaStreamSynchronize(c->stream));
    return prof_flush(c);
}

// The eager `logits_argmax`: only each row's greedy choice (argmax.cu) crosses back.
int eager_logits_argmax(cuda_ctx_t *c, cbuf_t *x, cbuf_t *add, bk_argmax_t *out)
{
    const batch_t *b = c->batch;
    if (b->n_logits == 0)
        return 0;
    int rc = prof_mark(c, BK_OP_LOGITS);
    if (rc != 0 || (rc = logits_launch(c, x, add, c->d_rows, b->n_logits, 1)) != 0)
        return rc;
    CU_TRY(&c->err, cudaMemcpyAsync(c->am_host, c->am_dev, (uint64_t)b->n_logits * sizeof *c->am_dev,
                                    cudaMemcpyDeviceToHost, c->stream));
    CU_TRY(&c->err, cudaStreamSynchronize(c->stream));
    memcpy(out, c->am_host, (size_t)b->n_logits * sizeof *out);
    return prof_flush(c);
}
