// attention.cu - fused paged attention (flash-decoding): online softmax
// over the KV cache's blocks, never the score matrix in memory, GQA
// without repeating K/V.
//
// One thread block serves one (token, KV head, split of the keys) and all
// the query heads that share that KV head, so each key and value is read
// once per group.  Lanes work in groups of HD/8: each lane holds 8
// consecutive dimensions and reads K and V with one 16-byte load; a warp
// covers 32/(HD/8) keys at a time.  Every lane group keeps a running
// (max, sum, acc) per query head; the groups are merged in shared memory.
// With several splits, partial results go to a workspace and a second
// kernel merges them; with one split the block writes the output itself,
// as TO (bf16 or f16: the format the output projection's GEMM reads).
// Blocks of splits past a token's keys exit at once, so a grid may be
// sized for the longest context the step could have (a CUDA graph's
// fixed grid) rather than the longest it has.
#include "common.cuh"
#include "kernels.cuh"

#define ATT_THREADS 128
#define MAX_GROUP 8

// Keys per split for a token of n_keys keys: a.split_len, or with
// split_len 0 (a fixed grid of n_splits splits, as CUDA graphs launch it)
// ATT_SPLIT_MIN keys, more where n_splits of those would not cover n_keys:
// the same splits as a fixed split_len of ATT_SPLIT_MIN up to
// n_splits * ATT_SPLIT_MIN keys.  Always n_splits * result >= n_keys.
__device__ static inline uint32_t split_keys(const attn_args_t &a, uint32_t n_keys)
{
    if (a.split_len != 0)
        return a.split_len;
    uint32_t per = (n_keys + a.n_splits - 1) / a.n_splits;
    per = (per + 15u) & ~15u;
    return per > ATT_SPLIT_MIN ? per : ATT_SPLIT_MIN;
}

template <int HD, typename TO>
__global__ void __launch_bounds__(ATT_THREADS)
attn_split_kernel(attn_args_t a, int group)
{
    constexpr int LPK = HD / 8;               // lanes per key
    constexpr int NG = ATT_THREADS / LPK;     // lane groups per block
    __shared__ float sm_m[NG][MAX_GROUP];
    __shared__ float sm_l[NG][MAX_GROUP];
    __shared__ float sm_acc[NG][MAX_GROUP][HD];

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

    float q[MAX_GROUP][8], acc[MAX_GROUP][8], m[MAX_GROUP], l[MAX_GROUP];
#pragma unroll
    for (int j = 0; j < MAX_GROUP; j++) {
        m[j] = -INFINITY;
        l[j] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            acc[j][e] = 0.0f;
            q[j][e] = 0.0f;
        }
        if (j < group) {
            const float *qp = a.q + ((uint64_t)t * a.n_head + kvh * group + j) * HD + li * 8;
            float4 u = *(const float4 *)qp, v = *(const float4 *)(qp + 4);
            q[j][0] = u.x * a.scale; q[j][1] = u.y * a.scale; q[j][2] = u.z * a.scale; q[j][3] = u.w * a.scale;
            q[j][4] = v.x * a.scale; q[j][5] = v.y * a.scale; q[j][6] = v.z * a.scale; q[j][7] = v.w * a.scale;
        }
    }

    // Every lane of a warp runs the same number of iterations (the shuffles
    // need them all); lane groups past the split's end compute nothing.
    for (uint32_t base = k0; base < k1; base += NG) {
        const uint32_t key = base + lg;
        const bool valid = key < k1;
        float kf[8], vf[8];
        if (valid) {
            int32_t blk = table[key / a.block_tokens];
            uint64_t off = (((uint64_t)blk * a.n_kv + kvh) * a.block_tokens + key % a.block_tokens) * HD + li * 8;
            uint4 kr = *(const uint4 *)(a.kc + off);
            uint4 vr = *(const uint4 *)(a.vc + off);
            const bf16 *kb = (const bf16 *)&kr;
            const bf16 *vb = (const bf16 *)&vr;
#pragma unroll
            for (int e = 0; e < 8; e++) {
                kf[e] = __bfloat162float(kb[e]);
                vf[e] = __bfloat162float(vb[e]);
            }
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++)
                kf[e] = vf[e] = 0.0f;
        }
#pragma unroll
        for (int j = 0; j < MAX_GROUP; j++) {
            if (j >= group)
                break;
            float s = 0.0f;
#pragma unroll
            for (int e = 0; e < 8; e++)
                s += q[j][e] * kf[e];
#pragma unroll
            for (int o = LPK / 2; o > 0; o >>= 1)
                s += __shfl_xor_sync(0xffffffffu, s, o, LPK);
            if (valid) {
                float mn = fmaxf(m[j], s);
                float corr = __expf(m[j] - mn), p = __expf(s - mn);
                l[j] = l[j] * corr + p;
#pragma unroll
                for (int e = 0; e < 8; e++)
                    acc[j][e] = acc[j][e] * corr + p * vf[e];
                m[j] = mn;
            }
        }
    }

    // Merge the lane groups.
#pragma unroll
    for (int j = 0; j < MAX_GROUP; j++) {
        if (j >= group)
            break;
        if (li == 0) {
            sm_m[lg][j] = m[j];
            sm_l[lg][j] = l[j];
        }
#pragma unroll
        for (int e = 0; e < 8; e++)
            sm_acc[lg][j][li * 8 + e] = acc[j][e];
    }
    __syncthreads();
    for (int w = threadIdx.x; w < group * HD; w += ATT_THREADS) {
        int j = w / HD, d = w % HD;
        float M = -INFINITY;
        for (int g = 0; g < NG; g++)
            M = fmaxf(M, sm_m[g][j]);
        float L = 0.0f, A = 0.0f;
        if (M != -INFINITY) {
            for (int g = 0; g < NG; g++) {
                float f = __expf(sm_m[g][j] - M);
                L += sm_l[g][j] * f;
                A += sm_acc[g][j][d] * f;
            }
        }
        uint32_t h = kvh * group + j;
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

template <int HD, typename TO>
static void launch_hd(cudaStream_t s, const attn_args_t *a, int group)
{
    dim3 grid(a->n_splits, a->n_kv, a->n_tokens);
    attn_split_kernel<HD, TO><<<grid, ATT_THREADS, 0, s>>>(*a, group);
    if (a->n_splits > 1)
        attn_merge_kernel<HD, TO><<<dim3(a->n_head, a->n_tokens), HD, 0, s>>>(*a);
}

int launch_attention(cudaStream_t s, const attn_args_t *a)
{
    int group = (int)(a->n_head / a->n_kv);
    if (group < 1 || group > MAX_GROUP)
        return -4;
    if (a->n_tokens == 0)
        return 0;
    bool half_out = a->out_type == CUDA_R_16F;
    switch (a->head_dim) {
    case 64: half_out ? launch_hd<64, f16>(s, a, group) : launch_hd<64, bf16>(s, a, group); return 0;
    case 128: half_out ? launch_hd<128, f16>(s, a, group) : launch_hd<128, bf16>(s, a, group); return 0;
    default: return -4;
    }
}
