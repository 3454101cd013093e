// upload.cu - the weights onto the device at start: each weight read from
// the mapped model file in pieces through a pinned staging buffer of two
// halves (reading one half overlaps the copy and the dequantisation of the
// other), dequantised on the device into the backend's 16-bit format, Q, K
// and V (and gate and up) side by side so that each pair runs as one GEMM;
// progress is logged every 10%.  Synthetic models (no host data) get random
// weights made on the device.  With gpu-weight-type = native, a layer
// weight of a type with a native kernel (qmv_has_kernel) is instead
// repacked on the host (base/qpack.h) into the staging buffer and copied
// up as it is: its quants and its scales into their two arrays.
#include <cstring>
#include <vector>

#include "backend_cuda.cuh"

extern "C" {
#include "base/err.h"
#include "base/log.h"
#include "base/qpack.h"
#include "base/quant.h"
}
#include "dequant.cuh"

struct uploader_t {
    cuda_ctx_t *c;
    void *staging_host;     // pinned, 2 halves
    void *staging_dev;      // raw blocks on the device, 2 halves
    uint64_t half_bytes;
    int which;
    cudaEvent_t done[2];
    uint64_t uploaded, total;
    int last_pct;
    uint64_t seed;
    unsigned *bad_dev;                  // [max_checked] non-finite values of each uploaded weight
    uint32_t max_checked;
    std::vector<const char *> checked;  // the names of the weights counted into bad_dev
};

// Upload rows [0, n_out) of w, dequantised to wtype, at dst; in pieces of at
// most half the staging buffer, double-buffered so that reading the file
// overlaps the copy and the dequantisation of the previous piece.
static int upload_weight(uploader_t *u, const weight_t *w, w16_t *dst)
{
    cuda_ctx_t *c = u->c;
    uint64_t n_elems = w->n_in * w->n_out;
    if (w->data == nullptr) { // a synthetic model without host data
        bool norm = w->n_out == 1;
        int rc = cuda_fill_random(dst, c->wtype, n_elems, u->seed++ * 0x51ed27u, norm ? 0.2f : 0.02f,
                                  norm ? 1.0f : 0.0f, c->stream);
        return rc == 0 ? 0 : cuda_fail(&c->err, "fill_random_kernel", "launch failed", __FILE__, __LINE__);
    }
    const qtype_info_t *qi = qtype_info(w->type);
    uint64_t row_bytes = w->nbytes / w->n_out;
    uint64_t rows_per = u->half_bytes / row_bytes;
    if (rows_per == 0)
        return cuda_fail(&c->err, "upload", "a weight row is larger than the staging buffer", __FILE__, __LINE__);
    for (uint64_t r0 = 0; r0 < w->n_out; r0 += rows_per) {
        uint64_t nr = w->n_out - r0 < rows_per ? w->n_out - r0 : rows_per;
        uint64_t bytes = nr * row_bytes;
        int h = u->which;
        u->which ^= 1;
        CU_TRY(&c->err, cudaEventSynchronize(u->done[h])); // this half's previous copy is finished
        char *hs = (char *)u->staging_host + h * u->half_bytes;
        char *ds = (char *)u->staging_dev + h * u->half_bytes;
        memcpy(hs, (const char *)w->data + r0 * row_bytes, bytes);
        CU_TRY(&c->err, cudaMemcpyAsync(ds, hs, bytes, cudaMemcpyHostToDevice, c->stream));
        if (cuda_dequant(w->type, ds, dst + r0 * w->n_in, c->wtype, nr * w->n_in, c->stream) != 0)
            return cuda_fail(&c->err, "dequant_kernel", qi ? qi->name : "?", __FILE__, __LINE__);
        CU_TRY(&c->err, cudaEventRecord(u->done[h], c->stream));
    }
    // inf or NaN after the conversion: beyond fp16's range, or in the file itself
    if (u->checked.size() < u->max_checked) {
        if (cuda_count_nonfinite(dst, c->wtype, n_elems, u->bad_dev + u->checked.size(), c->stream) != 0)
            return cuda_fail(&c->err, "nonfinite_kernel", "launch failed", __FILE__, __LINE__);
        u->checked.push_back(w->name);
    }
    u->uploaded += w->nbytes;
    int pct = (int)(100.0 * u->uploaded / (u->total ? u->total : 1));
    if (pct / 10 != u->last_pct / 10) {
        log_info("cuda: uploading weights %d%% (%.0f of %.0f MiB)", pct, u->uploaded / 1048576.0,
                 u->total / 1048576.0);
        u->last_pct = pct;
    }
    return 0;
}

// Upload w (GGUF blocks on the host) packed into q (native mode): the
// layout, one allocation, then pieces of rows packed into a staging half
// (quants, then scales) and copied to their places in the two arrays.
static int upload_packed(uploader_t *u, const weight_t *w, qmat_t *q)
{
    cuda_ctx_t *c = u->c;
    char msg[256];
    if (qpack_layout(w->type, w->n_out, w->n_in, &q->L, msg, sizeof msg) != 0)
        return cuda_fail(&c->err, w->name, msg, __FILE__, __LINE__);
    if (dev_alloc(c, (void **)&q->p, q->L.total_bytes) != 0)
        return ERR_BACKEND;
    // the gap between the arrays is never read; zero it anyway, for tools that check
    CU_TRY(&c->err, cudaMemsetAsync(q->p, 0, q->L.total_bytes, c->stream));
    const qpack_layout_t *L = &q->L;
    uint64_t row_src = (uint64_t)L->blocks_per_row * L->src_block_bytes;
    uint64_t row_qs = (uint64_t)L->blocks_per_row * L->qs_bytes, row_meta = (uint64_t)L->blocks_per_row * L->meta_bytes;
    uint64_t rows_per = u->half_bytes / (row_qs + row_meta);
    if (rows_per == 0)
        return cuda_fail(&c->err, "upload", "a weight row is larger than the staging buffer", __FILE__, __LINE__);
    for (uint64_t r0 = 0; r0 < L->n_out; r0 += rows_per) {
        uint64_t nr = L->n_out - r0 < rows_per ? L->n_out - r0 : rows_per;
        int h = u->which;
        u->which ^= 1;
        CU_TRY(&c->err, cudaEventSynchronize(u->done[h]));
        char *hs = (char *)u->staging_host + h * u->half_bytes;
        if (qpack_rows(L, (const char *)w->data + r0 * row_src, r0, nr, hs, hs + nr * row_qs) != 0)
            return cuda_fail(&c->err, "qpack_rows", w->name, __FILE__, __LINE__);
        CU_TRY(&c->err, cudaMemcpyAsync(q->p + qpack_qs_offset(L, r0), hs, nr * row_qs, cudaMemcpyHostToDevice,
                                        c->stream));
        CU_TRY(&c->err, cudaMemcpyAsync(q->p + qpack_meta_offset(L, r0), hs + nr * row_qs, nr * row_meta,
                                        cudaMemcpyHostToDevice, c->stream));
        CU_TRY(&c->err, cudaEventRecord(u->done[h], c->stream));
    }
    u->uploaded += w->nbytes;
    return 0;
}

// Native mode: whether w is uploaded packed.  Synthetic weights without
// host data are made on the device as wtype (random packed blocks are a
// follow-up), so the benchmark's 7B shape is bf16 either way for now.
static bool packed(const cuda_ctx_t *c, const weight_t *w)
{
    return c->native && w->data != nullptr && qmv_has_kernel(w->type) && qpack_supported(w->type);
}

// Native mode: one role's weight, packed, or in wtype into its own allocation.
static int upload_role(uploader_t *u, const weight_t *w, layer_dev_t &L, w_role_t role)
{
    if (packed(u->c, w))
        return upload_packed(u, w, &L.qm[role]);
    if (dev_alloc(u->c, (void **)&L.w[role], w->n_in * w->n_out * 2) != 0)
        return ERR_BACKEND;
    return upload_weight(u, w, L.w[role]);
}

// Every setup copy and memset runs on the backend's stream: the legacy
// default stream is not ordered with it (a non-blocking stream), so the
// first step's kernels could otherwise run before them.
static int cuda_memset_checked(cuda_ctx_t *c, void *p, uint64_t bytes)
{
    CU_TRY(&c->err, cudaMemsetAsync(p, 0, bytes, c->stream));
    return 0;
}

// After the upload: a weight that holds inf or NaN on the device makes
// every request fail (or, in the output matrix, one token win every step),
// so the backend refuses the model, naming the first such weight.
static int refuse_nonfinite(cuda_ctx_t *c, const uploader_t *u)
{
    std::vector<unsigned> bad(u->checked.size());
    if (bad.empty())
        return 0;
    CU_TRY(&c->err, cudaMemcpyAsync(bad.data(), u->bad_dev, bad.size() * sizeof(unsigned), cudaMemcpyDeviceToHost,
                                    c->stream));
    CU_TRY(&c->err, cudaStreamSynchronize(c->stream));
    for (size_t i = 0; i < bad.size(); i++) {
        if (bad[i] == 0)
            continue;
        if (c->wtype == CUDA_R_16F)
            snprintf(c->err.msg, sizeof c->err.msg,
                     "weight %s: %u values are inf or NaN as fp16 (beyond 65504, or so in the file); "
                     "use gpu-weight-type = bf16", u->checked[i], bad[i]);
        else
            snprintf(c->err.msg, sizeof c->err.msg, "weight %s: %u values are inf or NaN", u->checked[i], bad[i]);
        return ERR_RANGE;
    }
    return 0;
}

// An event for a staging half, recorded once so that its first use need not wait.
static int staging_event(cuda_ctx_t *c, cudaEvent_t *e)
{
    CU_TRY(&c->err, cudaEventCreateWithFlags(e, cudaEventDisableTiming));
    CU_TRY(&c->err, cudaEventRecord(*e, c->stream));
    return 0;
}

static int upload_norm(cuda_ctx_t *c, const weight_t *w, float **dst)
{
    if (dev_alloc(c, (void **)dst, w->n_in * 4) != 0)
        return ERR_BACKEND;
    std::vector<float> h(w->n_in, 1.0f);
    if (w->data != nullptr && quant_dequant(w->type, w->data, h.data(), w->n_in) != 0)
        return cuda_fail(&c->err, "norm weight", "unsupported type", __FILE__, __LINE__);
    // From pageable memory: the call returns once h is staged, so h may go.
    CU_TRY(&c->err, cudaMemcpyAsync(*dst, h.data(), w->n_in * 4, cudaMemcpyHostToDevice, c->stream));
    return 0;
}

// Native mode: a layer's weights.  Q, K and V stay one fused bf16 matrix
// when none of them is packed (likewise gate and up), else each role has
// its own; the scratch for steps above QMV_MAX_T and the int8 activations
// are sized for the largest packed weight and input.
static int upload_native_layer(uploader_t *u, const layer_weights_t *w, layer_dev_t &L)
{
    cuda_ctx_t *c = u->c;
    const hparams_t *hp = &c->m->hp;
    uint64_t d = hp->n_embd, qd = (uint64_t)hp->n_head * hp->head_dim, kvd = (uint64_t)hp->n_head_kv * hp->head_dim;
    uint64_t ff = hp->n_ff;
    int rc;
    if (!packed(c, &w->wq) && !packed(c, &w->wk) && !packed(c, &w->wv)) {
        if ((rc = dev_alloc(c, (void **)&L.wqkv, (qd + 2 * kvd) * d * 2)) || (rc = upload_weight(u, &w->wq, L.wqkv)) ||
            (rc = upload_weight(u, &w->wk, L.wqkv + qd * d)) ||
            (rc = upload_weight(u, &w->wv, L.wqkv + (qd + kvd) * d)))
            return rc;
    } else if ((rc = upload_role(u, &w->wq, L, W_Q)) || (rc = upload_role(u, &w->wk, L, W_K)) ||
               (rc = upload_role(u, &w->wv, L, W_V))) {
        return rc;
    }
    if (!packed(c, &w->w_gate) && !packed(c, &w->w_up)) {
        if ((rc = dev_alloc(c, (void **)&L.wgu, 2 * ff * d * 2)) || (rc = upload_weight(u, &w->w_gate, L.wgu)) ||
            (rc = upload_weight(u, &w->w_up, L.wgu + ff * d)))
            return rc;
    } else if ((rc = upload_role(u, &w->w_gate, L, W_GATE)) || (rc = upload_role(u, &w->w_up, L, W_UP))) {
        return rc;
    }
    if (!packed(c, &w->wo)) {
        if ((rc = dev_alloc(c, (void **)&L.wo, d * qd * 2)) || (rc = upload_weight(u, &w->wo, L.wo)))
            return rc;
    } else if ((rc = upload_role(u, &w->wo, L, W_O)) != 0) {
        return rc;
    }
    if (!packed(c, &w->w_down)) {
        if ((rc = dev_alloc(c, (void **)&L.wdown, d * ff * 2)) || (rc = upload_weight(u, &w->w_down, L.wdown)))
            return rc;
    } else if ((rc = upload_role(u, &w->w_down, L, W_DOWN)) != 0) {
        return rc;
    }
    if ((rc = upload_norm(c, &w->attn_norm, &L.attn_norm)) || (rc = upload_norm(c, &w->ffn_norm, &L.ffn_norm)))
        return rc;
    return 0;
}

// Native mode, after the weights: the bf16 scratch (the largest packed
// weight) and the int8 activations (QMV_MAX_T rows of the widest input).
static int native_buffers(cuda_ctx_t *c)
{
    const hparams_t *hp = &c->m->hp;
    uint64_t scratch = 0;
    for (const layer_dev_t &L : c->layers)
        for (int r = 0; r < W_COUNT; r++)
            if (L.qm[r].p != nullptr && (uint64_t)L.qm[r].L.n_out * L.qm[r].L.n_in > scratch)
                scratch = (uint64_t)L.qm[r].L.n_out * L.qm[r].L.n_in;
    if (scratch == 0)
        return 0;
    uint64_t qd = (uint64_t)hp->n_head * hp->head_dim, n_in = hp->n_embd;
    if (qd > n_in)
        n_in = qd;
    if (hp->n_ff > n_in)
        n_in = hp->n_ff;
    int rc;
    if ((rc = dev_alloc(c, (void **)&c->qscratch, scratch * 2)) ||
        (rc = dev_alloc(c, (void **)&c->qx, QMV_MAX_T * n_in)) ||
        (rc = dev_alloc(c, (void **)&c->qx_ds, QMV_MAX_T * (n_in / 32) * sizeof(float2))))
        return rc;
    c->act_bytes += scratch * 2 + QMV_MAX_T * n_in + QMV_MAX_T * (n_in / 32) * sizeof(float2);
    return 0;
}

int upload_weights(cuda_ctx_t *c)
{
    const model_t *m = c->m;
    const hparams_t *hp = &m->hp;
    uint64_t d = hp->n_embd, qd = (uint64_t)hp->n_head * hp->head_dim;
    uint64_t kvd = (uint64_t)hp->n_head_kv * hp->head_dim, ff = hp->n_ff;
    uploader_t u = {};
    u.c = c;
    u.half_bytes = 32ull << 20;
    u.total = m->weight_bytes;
    u.last_pct = -10;
    u.seed = 12345;
    CU_TRY(&c->err, cudaMallocHost(&u.staging_host, 2 * u.half_bytes));
    int rc = dev_alloc(c, &u.staging_dev, 2 * u.half_bytes);
    u.max_checked = 2 + 7 * hp->n_layer;    // the embeddings, the output, 7 matrices per layer
    if (rc == 0 && (rc = dev_alloc(c, (void **)&u.bad_dev, u.max_checked * sizeof(unsigned))) == 0)
        rc = cuda_memset_checked(c, u.bad_dev, u.max_checked * sizeof(unsigned));
    for (int h = 0; rc == 0 && h < 2; h++)
        rc = staging_event(c, &u.done[h]);
    c->layers.resize(hp->n_layer);
    if (rc == 0 && (rc = dev_alloc(c, (void **)&c->tok_embd, d * hp->n_vocab * 2)) == 0)
        rc = upload_weight(&u, &m->tok_embd, c->tok_embd);
    if (rc == 0) {
        if (hp->tied_embeddings)
            c->output = c->tok_embd;
        else if ((rc = dev_alloc(c, (void **)&c->output, d * hp->n_vocab * 2)) == 0)
            rc = upload_weight(&u, &m->output, c->output);
    }
    if (rc == 0)
        rc = upload_norm(c, &m->output_norm, &c->output_norm);
    for (uint32_t l = 0; rc == 0 && l < hp->n_layer; l++) {
        const layer_weights_t *w = &m->layers[l];
        layer_dev_t &L = c->layers[l];
        if (c->native) {
            rc = upload_native_layer(&u, w, L);
            continue;
        }
        if ((rc = dev_alloc(c, (void **)&L.wqkv, (qd + 2 * kvd) * d * 2)) ||
            (rc = dev_alloc(c, (void **)&L.wo, d * qd * 2)) ||
            (rc = dev_alloc(c, (void **)&L.wgu, 2 * ff * d * 2)) ||
            (rc = dev_alloc(c, (void **)&L.wdown, d * ff * 2)) ||
            (rc = upload_weight(&u, &w->wq, L.wqkv)) ||
            (rc = upload_weight(&u, &w->wk, L.wqkv + qd * d)) ||
            (rc = upload_weight(&u, &w->wv, L.wqkv + (qd + kvd) * d)) ||
            (rc = upload_weight(&u, &w->wo, L.wo)) ||
            (rc = upload_weight(&u, &w->w_gate, L.wgu)) ||
            (rc = upload_weight(&u, &w->w_up, L.wgu + ff * d)) ||
            (rc = upload_weight(&u, &w->w_down, L.wdown)) ||
            (rc = upload_norm(c, &w->attn_norm, &L.attn_norm)) ||
            (rc = upload_norm(c, &w->ffn_norm, &L.ffn_norm)))
            break;
    }
    // On failure too: no copy from the staging buffer may be in flight when it is freed.
    cudaError_t e = cudaStreamSynchronize(c->stream);
    for (int h = 0; h < 2; h++)
        if (u.done[h] != nullptr)
            cudaEventDestroy(u.done[h]);
    if (e == cudaSuccess)
        cudaFreeHost(u.staging_host);   // else the device may still read it: leak it rather than free it
    if (rc == 0) {
        CU_TRY(&c->err, e);
        CU_TRY(&c->err, cudaGetLastError());
        rc = refuse_nonfinite(c, &u);
    }
    dev_free(c, u.staging_dev);
    dev_free(c, u.bad_dev);
    if (rc == 0 && c->native)
        rc = native_buffers(c);
    return rc;
}
