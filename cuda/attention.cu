// attention.cu - fused paged attention (flash-decoding): online softmax
// over the KV cache's blocks, never the score matrix in memory, GQA
// without repeating K/V.
//
// One thread block serves one (token, KV head, split of the keys) and all
// the query heads that share that KV head, so each key and value is read
// once per group.  Lanes work in groups of HD/8: each lane holds 8
// consecutive dimensions and reads K and V with one 16-byte load; a warp
// covers 32/(HD/8) keys at a time, and each lane group has ATT_UNROLL
// keys' loads in flight together.  The GQA ratio is a template parameter,
// so that a group of one query head holds registers for one (more blocks
// fit on an SM, more loads are in flight).  Every lane group keeps a running
// (max, sum, acc) per query head; the groups are merged in shared memory.
// With several splits, partial results go to a workspace and a second
// kernel merges them; with one split the block writes the output itself,
// as TO (bf16 or f16: the format the output projection's GEMM reads).
// Blocks of splits past a token's keys exit at once, so a grid may be
// sized for the longest context the step could have (a CUDA graph's
// fixed grid) rather than the longest it has.
#include "backend_cuda.cuh"

extern "C" {
#include "base/err.h"
}

#define ATT_THREADS 128
#define MAX_GROUP 8     // the largest GQA ratio served (one instance of the kernel per ratio)
#define ATT_UNROLL 2    // keys per lane group whose loads are in flight together

// Keys per split for a token of n_keys keys (att_split.h).
__device__ static inline uint32_t split_keys(const attn_args_t &a, uint32_t n_keys)
{
    return att_split_keys(att_split_t{ a.split_len, a.n_splits }, n_keys);
}

// One lane's share of a key: 8 consecutive dimensions of K and of V.
struct kv8_t {
    uint4 k, v;
};

// The key's K and V at this lane's dimensions (zeros past the split).
template <int HD>
__device__ static inline kv8_t load_key(const attn_args_t &a, const int32_t *table, uint32_t kvh, uint32_t key,
                                        bool valid, int li)
{
    kv8_t r;
    if (valid) {
        int32_t blk = table[key / a.block_tokens];
        uint64_t off = (((uint64_t)blk * a.n_kv + kvh) * a.block_tokens + key % a.block_tokens) * HD + li * 8;
        r.k = *(const uint4 *)(a.kc + off);
        r.v = *(const uint4 *)(a.vc + off);
    } else {
        r.k = r.v = make_uint4(0, 0, 0, 0);
    }
    return r;
}

__device__ static inline void unpack8(const uint4 &u, float f[8])
{
    const bf16 *b = (const bf16 *)&u;
#pragma unroll
    for (int e = 0; e < 8; e++)
        f[e] = __bfloat162float(b[e]);
}

// G query heads share each KV head (the GQA ratio, a template parameter so
// that q and the accumulators take registers for G heads only).  Each lane
// group takes ATT_UNROLL keys per iteration, their loads issued together.
template <int HD, int G, typename TO>
__global__ void __launch_bounds__(ATT_THREADS)
attn_split_kernel(attn_args_t a)
{
    constexpr int LPK = HD / 8;               // lanes per key
    constexpr int NG = ATT_THREADS / LPK;     // lane groups per block
    __shared__ float sm_m[NG][G];
    __shared__ float sm_l[NG][G];
    __shared__ float sm_acc[NG][G][HD];

    const uint32_t split = blockIdx.x, kvh = blockIdx.y, ti = blockIdx.z;
    const uint32_t t = (uint32_t)a.tok_list[ti];
    const int lg = threadIdx.x / LPK, li = threadIdx.x % LPK;
    const int32_t pos = a.pos[t];
    const uint32_t n_keys = (uint32_t)pos + 1;
    const uint32_t sl = split_keys(a, n_keys);
    const uint32_t k0 = split * sl;
    if (k0 >= n_keys)   // a split past this token's keys: the merge never reads it (the block exits whole)
        return;
    const uint32_t k1 = min(n_keys, k0 + sl);
    const int32_t *table = a.tables + a.seq_table_off[a.tok_seq[t]];

    float q[G][8], acc[G][8], m[G], l[G];
#pragma unroll
    for (int j = 0; j < G; j++) {
        m[j] = -INFINITY;
        l[j] = 0.0f;
        const float *qp = a.q + ((uint64_t)t * a.n_head + kvh * G + j) * HD + li * 8;
        float4 u = *(const float4 *)qp, v = *(const float4 *)(qp + 4);
        q[j][0] = u.x * a.scale; q[j][1] = u.y * a.scale; q[j][2] = u.z * a.scale; q[j][3] = u.w * a.scale;
        q[j][4] = v.x * a.scale; q[j][5] = v.y * a.scale; q[j][6] = v.z * a.scale; q[j][7] = v.w * a.scale;
#pragma unroll
        for (int e = 0; e < 8; e++)
            acc[j][e] = 0.0f;
    }

    // Every lane of a warp runs the same number of iterations (the shuffles
    // need them all); keys past the split's end score -inf and weigh 0.
    for (uint32_t base = k0; base < k1; base += NG * ATT_UNROLL) {
        kv8_t r[ATT_UNROLL];
        bool valid[ATT_UNROLL];
#pragma unroll
        for (int u = 0; u < ATT_UNROLL; u++) {
            const uint32_t key = base + u * NG + lg;
            valid[u] = key < k1;
            r[u] = load_key<HD>(a, table, kvh, key, valid[u], li);
        }
#pragma unroll
        for (int j = 0; j < G; j++) {
            float s[ATT_UNROLL];
            float mn = m[j];
            bool none = m[j] == -INFINITY;  // nothing seen yet, and nothing now: no update
#pragma unroll
            for (int u = 0; u < ATT_UNROLL; u++) {
                float kf[8];
                unpack8(r[u].k, kf);
                float d = 0.0f;
#pragma unroll
                for (int e = 0; e < 8; e++)
                    d += q[j][e] * kf[e];
#pragma unroll
                for (int o = LPK / 2; o > 0; o >>= 1)
                    d += __shfl_xor_sync(0xffffffffu, d, o, LPK);
                s[u] = valid[u] ? d : -INFINITY;
                mn = fmaxf(mn, s[u]);
                none = none && s[u] == -INFINITY;
            }
            // The same in all lanes of a group.  A NaN score is not `none`:
            // it reaches corr or p and the output, as on the CPU.
            if (none)
                continue;
            const float corr = __expf(m[j] - mn);
            l[j] *= corr;
#pragma unroll
            for (int e = 0; e < 8; e++)
                acc[j][e] *= corr;
#pragma unroll
            for (int u = 0; u < ATT_UNROLL; u++) {
                const float p = __expf(s[u] - mn);
                float vf[8];
                unpack8(r[u].v, vf);
                l[j] += p;
#pragma unroll
                for (int e = 0; e < 8; e++)
                    acc[j][e] += p * vf[e];
            }
            m[j] = mn;
        }
    }

    // Merge the lane groups.
#pragma unroll
    for (int j = 0; j < G; j++) {
        if (li == 0) {
            sm_m[lg][j] = m[j];
            sm_l[lg][j] = l[j];
        }
#pragma unroll
        for (int e = 0; e < 8; e++)
            sm_acc[lg][j][li * 8 + e] = acc[j][e];
    }
    __syncthreads();
    for (int w = threadIdx.x; w < G * HD; w += ATT_THREADS) {
        int j = w / HD, d = w % HD;
        float M = -INFINITY;
        for (int g = 0; g < NG; g++)
            M = fmaxf(M, sm_m[g][j]);
        // With M -inf no lane group saw a finite score: the sums are 0 where
        // it saw none and NaN where it saw only NaN, which the split's
        // partial must carry to the merge (a weight of 0 there keeps NaN).
        float L = 0.0f, A = 0.0f;
        for (int g = 0; g < NG; g++) {
            float f = M != -INFINITY ? __expf(sm_m[g][j] - M) : 1.0f;
            L += sm_l[g][j] * f;
            A += sm_acc[g][j][d] * f;
        }
        uint32_t h = kvh * G + j;
        if (a.n_splits == 1) {
            ((TO *)a.out)[((uint64_t)t * a.n_head + h) * HD + d] = to16<TO>(A / L);
        } else {
            float *wp = a.work + (((uint64_t)ti * a.n_head + h) * a.n_splits + split) * (HD + 2);
            wp[2 + d] = A;
            if (d == 0) {
                wp[0] = M;
                wp[1] = L;
            }
        }
    }
}

// grid: (n_head, n_tokens of the list), block: HD.  Merge the splits' partials.
template <int HD, typename TO>
__global__ void attn_merge_kernel(attn_args_t a)
{
    uint32_t h = blockIdx.x, ti = blockIdx.y, d = threadIdx.x;
    uint32_t t = (uint32_t)a.tok_list[ti];
    uint32_t n_keys = (uint32_t)a.pos[t] + 1;
    uint32_t sl = split_keys(a, n_keys);
    uint32_t used = (n_keys + sl - 1) / sl;
    const float *wp = a.work + ((uint64_t)ti * a.n_head + h) * a.n_splits * (HD + 2);
    float M = -INFINITY;
    for (uint32_t s = 0; s < used; s++)
        M = fmaxf(M, wp[s * (HD + 2)]);
    float L = 0.0f, A = 0.0f;
    for (uint32_t s = 0; s < used; s++) {
        float f = __expf(wp[s * (HD + 2)] - M);
        L += wp[s * (HD + 2) + 1] * f;
        A += wp[s * (HD + 2) + 2 + d] * f;
    }
    ((TO *)a.out)[((uint64_t)t * a.n_head + h) * HD + d] = to16<TO>(A / L);
}

template <int HD, int G, typename TO>
static void launch_hd(cudaStream_t s, const attn_args_t *a)
{
    dim3 grid(a->n_splits, a->n_kv, a->n_tokens);
    attn_split_kernel<HD, G, TO><<<grid, ATT_THREADS, 0, s>>>(*a);
    if (a->n_splits > 1)
        attn_merge_kernel<HD, TO><<<dim3(a->n_head, a->n_tokens), HD, 0, s>>>(*a);
}

template <int HD, typename TO>
static int launch_group(cudaStream_t s, const attn_args_t *a, uint32_t group)
{
    switch (group) {
    case 1: launch_hd<HD, 1, TO>(s, a); return 0;
    case 2: launch_hd<HD, 2, TO>(s, a); return 0;
    case 3: launch_hd<HD, 3, TO>(s, a); return 0;
    case 4: launch_hd<HD, 4, TO>(s, a); return 0;
    case 5: launch_hd<HD, 5, TO>(s, a); return 0;
    case 6: launch_hd<HD, 6, TO>(s, a); return 0;
    case 7: launch_hd<HD, 7, TO>(s, a); return 0;
    case 8: launch_hd<HD, 8, TO>(s, a); return 0;
    default: return ERR_UNSUPPORTED;
    }
}

int launch_attention(cudaStream_t s, const attn_args_t *a)
{
    if (a->n_kv == 0 || a->n_head % a->n_kv != 0)
        return ERR_UNSUPPORTED;
    uint32_t group = a->n_head / a->n_kv;
    if (group < 1 || group > MAX_GROUP)
        return ERR_UNSUPPORTED;
    if (a->n_tokens == 0)
        return 0;
    bool half_out = a->out_type == CUDA_R_16F;
    switch (a->head_dim) {
    case 64: return half_out ? launch_group<64, f16>(s, a, group) : launch_group<64, bf16>(s, a, group);
    case 128: return half_out ? launch_group<128, f16>(s, a, group) : launch_group<128, bf16>(s, a, group);
    default: return ERR_UNSUPPORTED;
    }
}

// ---------------------------------------------------------------- operation

int eager_attention(void *vctx, uint32_t layer, bk_buf_t vq, bk_buf_t vout)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    const hparams_t *hp = &c->m->hp;
    cbuf_t *q = (cbuf_t *)vq, *out = (cbuf_t *)vout;
    uint32_t T = c->batch->n_tokens;
    if (do_poison(c, out->h, (uint64_t)T * out->cols * 2))
        return ERR_BACKEND;
    bf16 *kc = c->kv + (uint64_t)layer * 2 * c->kv_layer_elems;
    attn_args_t a;
    a.q = q->f;
    a.kc = kc;
    a.vc = kc + c->kv_layer_elems;
    a.out = out->h;
    a.out_type = c->wtype;
    a.work = c->attn_work;
    a.pos = c->d_pos;
    a.tok_seq = c->d_tok_seq;
    a.seq_table_off = c->d_seq_off;
    a.tables = c->d_tables;
    a.tok_list = c->d_rest;
    a.n_tokens = c->n_rest;
    a.n_head = hp->n_head;
    a.n_kv = hp->n_head_kv;
    a.head_dim = hp->head_dim;
    a.block_tokens = c->B;
    a.scale = 1.0f / sqrtf((float)hp->head_dim);
    // Split long contexts across blocks when the (token, KV head) pairs
    // would not keep enough loads in flight (att_split.h); a graph's grid
    // is fixed per padded size (split_len 0, at most g_splits).
    att_split_t sp = att_choose_splits(c->n_rest, hp->n_head_kv, c->n_sms, c->batch_max_keys,
                                       c->gmode == GM_EAGER ? 0 : c->g_splits);
    if (sp.n_splits > 1 && (uint64_t)c->n_rest * hp->n_head * sp.n_splits * (hp->head_dim + 2) > c->attn_work_floats)
        sp = att_split_t{ ATT_NO_SPLIT, 1 };    // never: att_work_floats covers every choice
    a.split_len = sp.split_len;
    a.n_splits = sp.n_splits;
    if (launch_attention(c->stream, &a) != 0 || launch_attention_prefill(c->stream, &a, c->d_tiles, c->n_tiles) != 0)
        return ERR_UNSUPPORTED;
    CU_LAUNCHED(&c->err);
    return 0;
}
