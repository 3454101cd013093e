// attention_prefill.cu - causal attention for prompt chunks on tensor cores
// (FlashAttention-2's loop: online softmax, one pass over K/V, key tiles
// above the causal diagonal skipped).
//
// One thread block serves a tile of up to 64 consecutive query tokens of
// one sequence and one query head; each of its 4 warps owns 16 query rows.
// Key tiles of 64 (four KV blocks of 16) are staged in shared memory, K as
// [key][dim] and V transposed as [dim][key], so that both products,
// S = Q K^T and O += P V, run as mma.sync m16n8k16 (bf16 in, fp32
// accumulate).  P never leaves registers: the S accumulators of two
// adjacent 8-key column tiles are exactly the A operand of the next MMA.
// The queries may start at any position (chunked prefill against cached
// keys): the mask compares each key's position with each query's.  The
// output is written as TO (bf16 or f16: the format the output projection's
// GEMM reads); Q, K, V and P stay bf16 in the MMAs.
#include "common.cuh"
#include "kernels.cuh"

extern "C" {
#include "base/err.h"
}

#define PF_THREADS 128
#define PF_TILE 64

__device__ static inline uint32_t pack_bf16(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

__device__ static inline void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// grid: (n_tiles, n_head), block: 128.  tiles: [n_tiles] {first token, count}
template <int HD, typename TO>
__global__ void __launch_bounds__(PF_THREADS)
attn_prefill_kernel(attn_args_t a, const int32_t *__restrict__ tiles)
{
    constexpr int KS = HD + 8;        // K row stride in smem (bf16), padded against bank conflicts
    constexpr int VS = PF_TILE + 8;   // Vt row stride
    __shared__ __align__(16) bf16 sk[PF_TILE * KS];
    __shared__ __align__(16) bf16 sv[HD * VS];

    const int tile = blockIdx.x, h = blockIdx.y;
    const int t0 = tiles[2 * tile], n_q = tiles[2 * tile + 1];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, tq = lane & 3;
    const uint32_t group = a.n_head / a.n_kv, kvh = h / group;
    const int32_t p0 = a.pos[t0];
    const int32_t p_last = p0 + n_q - 1;
    const int32_t *table = a.tables + a.seq_table_off[a.tok_seq[t0]];
    const float qscale = a.scale * 1.4426950408889634f; // exp2 domain

    // Q fragments of this warp's 16 rows (rows past n_q read row n_q - 1: harmless, never written)
    uint32_t qf[HD / 16][4];
    {
        int r0 = min(warp * 16 + g, n_q - 1), r1 = min(warp * 16 + g + 8, n_q - 1);
        const float *q0 = a.q + ((uint64_t)(t0 + r0) * a.n_head + h) * HD;
        const float *q1 = a.q + ((uint64_t)(t0 + r1) * a.n_head + h) * HD;
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
            int c = kk * 16 + tq * 2;
            qf[kk][0] = pack_bf16(q0[c] * qscale, q0[c + 1] * qscale);
            qf[kk][1] = pack_bf16(q1[c] * qscale, q1[c + 1] * qscale);
            qf[kk][2] = pack_bf16(q0[c + 8] * qscale, q0[c + 9] * qscale);
            qf[kk][3] = pack_bf16(q1[c + 8] * qscale, q1[c + 9] * qscale);
        }
    }
    const int32_t qpos0 = p0 + warp * 16 + g, qpos1 = qpos0 + 8;

    float o[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++)
        o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

    for (int32_t k0 = 0; k0 <= p_last; k0 += PF_TILE) {
        __syncthreads(); // the previous tile is no longer read
        // Stage K [key][dim] and V^T [dim][key]; keys past p_last are zero.
        constexpr int CHUNKS = PF_TILE * HD / 8; // 16-byte pieces
        for (int c = threadIdx.x; c < CHUNKS; c += PF_THREADS) {
            int key = c / (HD / 8), d8 = (c % (HD / 8)) * 8;
            int32_t kp = k0 + key;
            uint4 kr = make_uint4(0, 0, 0, 0), vr = make_uint4(0, 0, 0, 0);
            if (kp <= p_last) {
                int32_t blk = table[kp / a.block_tokens];
                uint64_t off = (((uint64_t)blk * a.n_kv + kvh) * a.block_tokens + kp % a.block_tokens) * HD + d8;
                kr = *(const uint4 *)(a.kc + off);
                vr = *(const uint4 *)(a.vc + off);
            }
            *(uint4 *)(sk + key * KS + d8) = kr;
            const bf16 *vb = (const bf16 *)&vr;
#pragma unroll
            for (int e = 0; e < 8; e++)
                sv[(d8 + e) * VS + key] = vb[e];
        }
        __syncthreads();

        // This warp's rows all lie before this tile's first key: nothing to do
        // (the tile is above the causal diagonal for them).
        if (k0 > p0 + warp * 16 + 15)
            continue;

        // S = Q K^T: 16 rows x 64 keys as 8 column tiles of 8 keys.
        float s[8][4];
#pragma unroll
        for (int n = 0; n < 8; n++) {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
                const bf16 *kp = sk + (n * 8 + g) * KS + kk * 16 + tq * 2;
                uint32_t b0 = *(const uint32_t *)kp, b1 = *(const uint32_t *)(kp + 8);
                mma_bf16(s[n], qf[kk], b0, b1);
            }
        }
        // Causal mask and the online softmax; rows g and g + 8 of this warp.
        float mx0 = m0, mx1 = m1;
#pragma unroll
        for (int n = 0; n < 8; n++) {
            int32_t kp = k0 + n * 8 + tq * 2;
            if (kp > qpos0) s[n][0] = -INFINITY;
            if (kp + 1 > qpos0) s[n][1] = -INFINITY;
            if (kp > qpos1) s[n][2] = -INFINITY;
            if (kp + 1 > qpos1) s[n][3] = -INFINITY;
            mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
            mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        // A row with no key yet (impossible: key 0 precedes every query) keeps -inf safely.
        float c0 = mx0 == -INFINITY ? 1.0f : exp2f(m0 - mx0);
        float c1 = mx1 == -INFINITY ? 1.0f : exp2f(m1 - mx1);
        float rs0 = 0.0f, rs1 = 0.0f;
        uint32_t pf[4][4]; // P as A fragments: 4 k-steps of 16 keys
#pragma unroll
        for (int n = 0; n < 8; n++) {
            float e0 = mx0 == -INFINITY ? 0.0f : exp2f(s[n][0] - mx0);
            float e1 = mx0 == -INFINITY ? 0.0f : exp2f(s[n][1] - mx0);
            float e2 = mx1 == -INFINITY ? 0.0f : exp2f(s[n][2] - mx1);
            float e3 = mx1 == -INFINITY ? 0.0f : exp2f(s[n][3] - mx1);
            rs0 += e0 + e1;
            rs1 += e2 + e3;
            int kk = n / 2, hi = n % 2;
            pf[kk][hi ? 2 : 0] = pack_bf16(e0, e1);
            pf[kk][hi ? 3 : 1] = pack_bf16(e2, e3);
        }
        rs0 += __shfl_xor_sync(0xffffffffu, rs0, 1);
        rs0 += __shfl_xor_sync(0xffffffffu, rs0, 2);
        rs1 += __shfl_xor_sync(0xffffffffu, rs1, 1);
        rs1 += __shfl_xor_sync(0xffffffffu, rs1, 2);
        l0 = l0 * c0 + rs0;
        l1 = l1 * c1 + rs1;
        m0 = mx0;
        m1 = mx1;
        // O = O * c + P V
#pragma unroll
        for (int n = 0; n < HD / 8; n++) {
            o[n][0] *= c0; o[n][1] *= c0; o[n][2] *= c1; o[n][3] *= c1;
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                const bf16 *vp = sv + (n * 8 + g) * VS + kk * 16 + tq * 2;
                uint32_t b0 = *(const uint32_t *)vp, b1 = *(const uint32_t *)(vp + 8);
                mma_bf16(o[n], pf[kk], b0, b1);
            }
        }
    }

    // Write rows that exist: out [T, n_head * HD] TO.
    int r0 = warp * 16 + g, r1 = r0 + 8;
    float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
        int c = n * 8 + tq * 2;
        if (r0 < n_q) {
            TO *op = (TO *)a.out + ((uint64_t)(t0 + r0) * a.n_head + h) * HD + c;
            *(uint32_t *)op = to16x2<TO>(o[n][0] * inv0, o[n][1] * inv0);
        }
        if (r1 < n_q) {
            TO *op = (TO *)a.out + ((uint64_t)(t0 + r1) * a.n_head + h) * HD + c;
            *(uint32_t *)op = to16x2<TO>(o[n][2] * inv1, o[n][3] * inv1);
        }
    }
}

int launch_attention_prefill(cudaStream_t s, const attn_args_t *a, const int32_t *tiles, uint32_t n_tiles)
{
    if (n_tiles == 0)
        return 0;
    dim3 grid(n_tiles, a->n_head);
    bool half_out = a->out_type == CUDA_R_16F;
    switch (a->head_dim) {
    case 64:
        if (half_out)
            attn_prefill_kernel<64, f16><<<grid, PF_THREADS, 0, s>>>(*a, tiles);
        else
            attn_prefill_kernel<64, bf16><<<grid, PF_THREADS, 0, s>>>(*a, tiles);
        return 0;
    case 128:
        if (half_out)
            attn_prefill_kernel<128, f16><<<grid, PF_THREADS, 0, s>>>(*a, tiles);
        else
            attn_prefill_kernel<128, bf16><<<grid, PF_THREADS, 0, s>>>(*a, tiles);
        return 0;
    default:
        return ERR_UNSUPPORTED;
    }
}
