// rope_kv.cu - rotary position embedding of q and k at each token's
// position, and the write of k and v into the paged KV cache.  Kernel,
// launcher, and the backend's eager operation.
#include "backend_cuda.cuh"

// ---------------------------------------------------------------- rope + kv write

// grid: n_tokens, block: 128.
// qkv:   [n_tokens, (n_head + 2 n_kv) * hd] f32, the fused projection
// q:     [n_tokens, n_head * hd] f32, rotated
// kc, vc: this layer's cache [n_blocks, n_kv, B, hd] bf16
__global__ void rope_kv_kernel(const float *__restrict__ qkv, float *__restrict__ q,
                               bf16 *__restrict__ kc, bf16 *__restrict__ vc,
                               const int32_t *__restrict__ pos, const int32_t *__restrict__ tok_seq,
                               const int32_t *__restrict__ seq_table_off,
                               const int32_t *__restrict__ tables, const double *__restrict__ inv_freq,
                               rope_dims_t dm)
{
    extern __shared__ float cs[]; // [rope_dim / 2] cos, then [rope_dim / 2] sin
    uint32_t t = blockIdx.x, half = dm.rope_dim / 2;
    int32_t p = pos[t];
    for (uint32_t i = threadIdx.x; i < half; i += blockDim.x) {
        double s, c;
        sincos((double)p * inv_freq[i], &s, &c);
        cs[i] = (float)c;
        cs[half + i] = (float)s;
    }
    __syncthreads();

    uint32_t hd = dm.head_dim, nq = dm.n_head, nkv = dm.n_kv;
    uint64_t row = (uint64_t)(nq + 2 * nkv) * hd;
    const float *src = qkv + t * row;
    int32_t blk = tables[seq_table_off[tok_seq[t]] + p / (int32_t)dm.block_tokens];
    uint32_t slot = (uint32_t)p % dm.block_tokens;

    // Rotated pairs of q heads then k heads; (a, b) per the layout.
    uint32_t n_pairs = (nq + nkv) * (hd / 2);
    for (uint32_t w = threadIdx.x; w < n_pairs; w += blockDim.x) {
        uint32_t h = w / (hd / 2), i = w % (hd / 2);
        uint32_t a, b;
        float c = 1.0f, s = 0.0f;
        if (i < half) {
            a = dm.interleaved ? 2 * i : i;
            b = dm.interleaved ? 2 * i + 1 : i + half;
            c = cs[i];
            s = cs[half + i];
        } else {
            // dimensions past rope_dim are not rotated: pair them up in place
            uint32_t k = i - half;
            a = dm.rope_dim + 2 * k;
            b = a + 1;
        }
        float x0 = src[(uint64_t)h * hd + a], x1 = src[(uint64_t)h * hd + b];
        float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
        if (h < nq) {
            q[t * (uint64_t)nq * hd + (uint64_t)h * hd + a] = y0;
            q[t * (uint64_t)nq * hd + (uint64_t)h * hd + b] = y1;
        } else {
            uint64_t base = (((uint64_t)blk * nkv + (h - nq)) * dm.block_tokens + slot) * hd;
            kc[base + a] = __float2bfloat16(y0);
            kc[base + b] = __float2bfloat16(y1);
        }
    }
    for (uint32_t w = threadIdx.x; w < nkv * hd; w += blockDim.x) {
        uint32_t h = w / hd, i = w % hd;
        uint64_t base = (((uint64_t)blk * nkv + h) * dm.block_tokens + slot) * hd;
        vc[base + i] = __float2bfloat16(src[(uint64_t)(nq + nkv + h) * hd + i]);
    }
}

void launch_rope_kv(cudaStream_t s, const float *qkv, float *q, bf16 *kc, bf16 *vc, const int32_t *pos,
                    const int32_t *tok_seq, const int32_t *seq_table_off, const int32_t *tables,
                    const double *inv_freq, uint32_t n_tokens, rope_dims_t dm)
{
    rope_kv_kernel<<<n_tokens, 128, dm.rope_dim * sizeof(float), s>>>(qkv, q, kc, vc, pos, tok_seq,
                                                                      seq_table_off, tables, inv_freq, dm);
}

// ---------------------------------------------------------------- operation

int eager_rope_kv_write(void *vctx, uint32_t layer, bk_buf_t vq, bk_buf_t vk, bk_buf_t vv)
{
    (void)vk; (void)vv;
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    const hparams_t *hp = &c->m->hp;
    cbuf_t *q = (cbuf_t *)vq;
    uint32_t T = c->batch->n_tokens;
    if (do_poison(c, q->f, (uint64_t)T * q->cols * 4))
        return ERR_BACKEND;
    bf16 *kc = c->kv + (uint64_t)layer * 2 * c->kv_layer_elems;
    rope_dims_t dm = { hp->n_head, hp->n_head_kv, hp->head_dim, hp->rope_dim, c->B,
                       hp->rope_layout == ROPE_LAYOUT_INTERLEAVED };
    launch_rope_kv(c->stream, c->qkv, q->f, kc, kc + c->kv_layer_elems, c->d_pos, c->d_tok_seq, c->d_seq_off,
                   c->d_tables, c->inv_freq, T, dm);
    CU_LAUNCHED(&c->err);
    return 0;
}
