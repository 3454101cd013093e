// profile.cu - per-operation device time for benchmarks (backend_opts_t
// .profile).  Each eager operation records an event on the stream as it
// starts and the step records one more when it ends; after the step the
// time between consecutive events is added to the operation's bk_op_t.  The
// events are recorded between launches, so the device runs the same
// kernels as without profiling; CUDA graphs are off (a replayed graph has
// no operations to time).
#include <cstring>

#include "backend_cuda.cuh"

int prof_init(cuda_ctx_t *c, uint32_t n_layer)
{
    // about a dozen operations per layer, a few per step outside the layers
    uint32_t n = 16 * n_layer + 16;
    c->prof_ev.assign(n + 1, nullptr);
    c->prof_op.assign(n, 0);
    for (cudaEvent_t &e : c->prof_ev)
        CU_TRY(&c->err, cudaEventCreate(&e));
    c->prof_n = 0;
    memset(&c->prof, 0, sizeof c->prof);
    return 0;
}

int prof_mark(cuda_ctx_t *c, bk_op_t op)
{
    if (!c->profile || c->gmode != GM_EAGER || c->prof_n + 1 >= c->prof_ev.size())
        return 0;
    CU_TRY(&c->err, cudaEventRecord(c->prof_ev[c->prof_n], c->stream));
    c->prof_op[c->prof_n++] = (uint8_t)op;
    return 0;
}

int prof_flush(cuda_ctx_t *c)
{
    if (!c->profile || c->prof_n == 0)
        return 0;
    uint32_t n = c->prof_n;
    c->prof_n = 0;
    CU_TRY(&c->err, cudaEventRecord(c->prof_ev[n], c->stream));
    CU_TRY(&c->err, cudaEventSynchronize(c->prof_ev[n]));
    for (uint32_t i = 0; i < n; i++) {
        float ms = 0.0f;
        CU_TRY(&c->err, cudaEventElapsedTime(&ms, c->prof_ev[i], c->prof_ev[i + 1]));
        c->prof.ms[c->prof_op[i]] += ms;
        c->prof.calls[c->prof_op[i]]++;
    }
    return 0;
}

int prof_report(void *vctx, bk_profile_t *out)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    int rc = prof_flush(c);
    if (rc != 0)
        return rc;
    *out = c->prof;
    memset(&c->prof, 0, sizeof c->prof);
    return 0;
}

void prof_destroy(cuda_ctx_t *c)
{
    for (cudaEvent_t e : c->prof_ev)
        if (e != nullptr)
            cudaEventDestroy(e);
    c->prof_ev.clear();
}
