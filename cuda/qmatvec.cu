// qmatvec.cu - matrix-vector products over weights in their GGUF blocks
// (the packed layout of base/qpack.h), for decode steps of 1..8 tokens,
// and the packed weights' dequantisation to bf16 for larger steps.
//
// Why int8 activations and dp4a (llama.cpp's MMVQ idea, written afresh
// here), not W4A16 with fp32 FMAs: the limit of a decode step is the bytes
// of the weights over the bandwidth, and the kernel must do its arithmetic
// in less time than that read.  The 7B shape (6.5 G layer parameters; the
// embeddings and output stay bf16) at Q4_0 reads 3.6 GB per step: 0.76 ms
// at the H200's 4.8 TB/s (0.86 ms at the 4.25 TB/s copy rate measured).
// With fp32 FMAs each weight costs about 4 instructions to unpack and
// convert (nibble, I2F or magic-number trick) plus one FMA per token:
// 6.5 G x 5 = 33 G instructions at T = 1, about 1.0 ms at the H200's
// ~33 T lane-instructions/s, already over the read, and at T = 8 about
// 12 per weight, 2.3 ms, three times the read.  With dp4a one instruction
// multiplies and adds 4 weights by 4 int8 activations: about 0.5
// instructions per weight at T = 1 (unpack 8 nibbles with 2 LOP3, 2 dp4a),
// and 0.5 + T/4 at T tokens: 2.5 per weight at T = 8, 0.5 ms, under the
// read.  The cost is int8 activations: one scale per 32 values (max/127),
// a relative error of about 2e-3 per product, under the bf16 GEMM path's
// tolerances (tests/gpu/test_cuda_native.c); Q8_0 (6.9 GB, 1.4 ms)
// has even more room.
//
// Resources (nvcc 13.0 -O3 -Xptxas -v, sm_90; sm_80 within a few
// registers of these): qmv_kernel, T = 1 .. 8 tokens, registers
//   Q4_0 40 54 62 72 88 96 108 118     Q4_1 40 56 63 72 87 96 108 120
//   Q8_0 32 40 46 55 62 64 72 78       Q4_K 48 62 62 64 69 67 68 70
// no spills and no stack frame for any, with __launch_bounds__(128, 4):
// without the 4, ptxas kept Q4_0 and Q4_1 at T = 7, 8 to 56 registers and
// spilled 4-12 bytes.  quantize_x_kernel 22, qdequant_kernel 22-23.
#include "qmatvec.cuh"
#include "qdequant.h"

extern "C" {
#include "base/err.h"
}

#define QMV_WARPS 4     // rows per thread block, one per warp

int qmv_has_kernel(uint32_t type)
{
    return type == QT_Q4_0 || type == QT_Q4_1 || type == QT_Q8_0 || type == QT_Q4_K;
}

__device__ __forceinline__ int dot16(uint4 w, int4 a)  // four words of int8 x four words of int8
{
    int s = __dp4a((int)w.x, a.x, 0);
    s = __dp4a((int)w.y, a.y, s);
    s = __dp4a((int)w.z, a.z, s);
    return __dp4a((int)w.w, a.w, s);
}

__device__ __forceinline__ int sum16(int4 a)
{
    const int ones = 0x01010101;
    return __dp4a(ones, a.x, __dp4a(ones, a.y, __dp4a(ones, a.z, __dp4a(ones, a.w, 0))));
}

__device__ __forceinline__ uint4 lo_nibbles(uint4 w)
{
    return make_uint4(w.x & 0x0f0f0f0fu, w.y & 0x0f0f0f0fu, w.z & 0x0f0f0f0fu, w.w & 0x0f0f0f0fu);
}

__device__ __forceinline__ uint4 hi_nibbles(uint4 w)
{
    return make_uint4((w.x >> 4) & 0x0f0f0f0fu, (w.y >> 4) & 0x0f0f0f0fu, (w.z >> 4) & 0x0f0f0f0fu,
                      (w.w >> 4) & 0x0f0f0f0fu);
}

// ---------------------------------------------------------------- activations to int8

// grid: (cdiv(n_in / 32, 8), T), block: 256; warp w quantises 32-element block
// blockIdx.x * 8 + w of token blockIdx.y.
// x: [T, n_in] bf16; xq: [T, n_in] int8; xds: [T, n_in / 32] {dx, dx * sum q}
__global__ void quantize_x_kernel(const bf16 *__restrict__ x, uint32_t n_in, int8_t *__restrict__ xq,
                                  float2 *__restrict__ xds)
{
    uint32_t nb = n_in / 32, blk = blockIdx.x * 8 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (blk >= nb)
        return;
    uint64_t i = (uint64_t)blockIdx.y * n_in + blk * 32 + lane;
    float v = __bfloat162float(x[i]);
    float amax = fabsf(v);
    for (int o = 16; o > 0; o >>= 1)
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    float dx = amax / 127.0f;
    int q = dx > 0.0f ? __float2int_rn(v / dx) : 0;
    xq[i] = (int8_t)q;
    int sum = q;
    for (int o = 16; o > 0; o >>= 1)
        sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0)
        xds[(uint64_t)blockIdx.y * nb + blk] = make_float2(dx, dx * (float)sum);
}

int qmv_quantize(cudaStream_t s, const w16_t *x, uint32_t T, uint32_t n_in, int8_t *xq, float2 *xds)
{
    if (T == 0 || n_in % 32 != 0)
        return T == 0 ? 0 : ERR_INVALID;
    quantize_x_kernel<<<dim3(cdiv(n_in / 32, 8), T), 256, 0, s>>>((const bf16 *)x, n_in, xq, xds);
    return cudaGetLastError() == cudaSuccess ? 0 : ERR_BACKEND;
}

// ---------------------------------------------------------------- the matrix-vector kernel

// One 16-byte unit of a row's quants, times token t's activations: the
// unit's share of y[t, row].  A unit is a Q4_0 / Q4_1 block (32 weights),
// half a Q8_0 block (16), or an eighth of a Q4_K super-block (32: 16 of
// sub-block 2i from the low nibbles, 16 of 2i+1 from the high).
// xq_t: token t's int8 row; xds_t its block scales.
template <int TYPE>
__device__ __forceinline__ float unit_dot(uint32_t u, uint4 w, const uint8_t *__restrict__ meta_row,
                                          const int8_t *__restrict__ xq_t, const float2 *__restrict__ xds_t)
{
    if constexpr (TYPE == QT_Q4_0 || TYPE == QT_Q4_1) {
        uint32_t m = *(const uint32_t *)(meta_row + 4 * u);
        const int4 *xa = (const int4 *)(xq_t + 32 * u);
        int dot = dot16(lo_nibbles(w), xa[0]) + dot16(hi_nibbles(w), xa[1]);
        float2 s = xds_t[u];
        if constexpr (TYPE == QT_Q4_0)
            return qd_half_lo(m) * (s.x * (float)dot - 8.0f * s.y);       // d (q - 8) x
        else
            return qd_half_lo(m) * s.x * (float)dot + qd_half_hi(m) * s.y;   // (d q + m) x
    } else if constexpr (TYPE == QT_Q8_0) {
        uint32_t b = u / 2;
        uint32_t m = *(const uint32_t *)(meta_row + 4 * b);
        int dot = dot16(w, *(const int4 *)(xq_t + 16 * u));
        return qd_half_lo(m) * xds_t[b].x * (float)dot;
    } else {    // Q4_K
        uint32_t sb = u / 8, c = u % 8, i = c / 2, half = c % 2;
        uint4 m = *(const uint4 *)(meta_row + 16 * sb);
        float d = qd_half_lo(m.x), dmin = qd_half_hi(m.x);
        int sc0, m0, sc1, m1;
        qd_kscale_min(2 * i, m.y, m.z, m.w, &sc0, &m0);
        qd_kscale_min(2 * i + 1, m.y, m.z, m.w, &sc1, &m1);
        uint32_t e0 = 256 * sb + 64 * i + 16 * half;               // the unit's first element of sub-block 2i
        int4 a0 = *(const int4 *)(xq_t + e0), a1 = *(const int4 *)(xq_t + e0 + 32);
        float dx0 = xds_t[e0 / 32].x, dx1 = xds_t[e0 / 32 + 1].x;
        float r0 = dx0 * (d * (float)sc0 * (float)dot16(lo_nibbles(w), a0) - dmin * (float)m0 * (float)sum16(a0));
        float r1 = dx1 * (d * (float)sc1 * (float)dot16(hi_nibbles(w), a1) - dmin * (float)m1 * (float)sum16(a1));
        return r0 + r1;
    }
}

// grid: cdiv(n_out, QMV_WARPS), block: 32 * QMV_WARPS; warp w of block b
// computes row r = b * QMV_WARPS + w for all T tokens: its lanes take the
// row's 16-byte units lane, lane + 32, ... (each warp load is 512
// consecutive bytes), two units in flight per lane, then a warp sum.
// qs: [n_out, units] 16-byte units; meta: [n_out, blocks_per_row, meta_bytes];
// xq: [T, n_in] int8; xds: [T, n_in / 32]; y: [T, ldy] fp32, columns [0, n_out) written.
template <int TYPE, int T>
__global__ void __launch_bounds__(32 * QMV_WARPS, 4)
qmv_kernel(const uint4 *__restrict__ qs, const uint8_t *__restrict__ meta, uint32_t n_out, uint32_t n_in,
           uint32_t units, uint32_t meta_row_bytes, const int8_t *__restrict__ xq, const float2 *__restrict__ xds,
           float *__restrict__ y, uint32_t ldy)
{
    uint32_t row = blockIdx.x * QMV_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= n_out)
        return;
    const uint4 *qrow = qs + (uint64_t)row * units;
    const uint8_t *mrow = meta + (uint64_t)row * meta_row_bytes;
    float acc[T];
#pragma unroll
    for (int t = 0; t < T; t++)
        acc[t] = 0.0f;
#pragma unroll 2
    for (uint32_t u = lane; u < units; u += 32) {
        uint4 w = qrow[u];
#pragma unroll
        for (int t = 0; t < T; t++)
            acc[t] += unit_dot<TYPE>(u, w, mrow, xq + (uint64_t)t * n_in, xds + (uint64_t)t * (n_in / 32));
    }
#pragma unroll
    for (int t = 0; t < T; t++) {
        float v = acc[t];
        for (int o = 16; o > 0; o >>= 1)
            v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0)
            y[(uint64_t)t * ldy + row] = v;
    }
}

template <int TYPE>
static void launch_t(cudaStream_t s, const qmat_t *w, const int8_t *xq, const float2 *xds, uint32_t T, float *y,
                     uint32_t ldy)
{
    const qpack_layout_t *L = &w->L;
    const uint4 *qs = (const uint4 *)w->p;
    const uint8_t *meta = w->p + L->meta_off;
    uint32_t units = L->blocks_per_row * L->qs_bytes / 16, mrb = L->blocks_per_row * L->meta_bytes;
    dim3 grid(cdiv(L->n_out, QMV_WARPS)), block(32 * QMV_WARPS);
#define QMV_CASE(n)                                                                                       \
    case n:                                                                                               \
        qmv_kernel<TYPE, n><<<grid, block, 0, s>>>(qs, meta, L->n_out, L->n_in, units, mrb, xq, xds, y, ldy); \
        break;
    switch (T) {
        QMV_CASE(1) QMV_CASE(2) QMV_CASE(3) QMV_CASE(4) QMV_CASE(5) QMV_CASE(6) QMV_CASE(7) QMV_CASE(8)
    }
#undef QMV_CASE
}

int qmv_launch(cudaStream_t s, const qmat_t *w, const int8_t *xq, const float2 *xds, uint32_t T, float *y,
               uint32_t ldy)
{
    if (T == 0)
        return 0;
    if (T > QMV_MAX_T || w->p == nullptr)
        return ERR_INVALID;
    switch (w->L.type) {
    case QT_Q4_0: launch_t<QT_Q4_0>(s, w, xq, xds, T, y, ldy); break;
    case QT_Q4_1: launch_t<QT_Q4_1>(s, w, xq, xds, T, y, ldy); break;
    case QT_Q8_0: launch_t<QT_Q8_0>(s, w, xq, xds, T, y, ldy); break;
    case QT_Q4_K: launch_t<QT_Q4_K>(s, w, xq, xds, T, y, ldy); break;
    default: return ERR_UNSUPPORTED;
    }
    return cudaGetLastError() == cudaSuccess ? 0 : ERR_BACKEND;
}

// ---------------------------------------------------------------- dequantisation of the packed layout

// grid: cdiv(n_elems / 8, 256), block: 256; thread i writes elements
// 8i .. 8i + 7 of the matrix as one 16-byte store (consecutive threads,
// consecutive stores), from 8 bytes of quants (a Q4 block's 16 bytes are
// read by its four threads, for the low nibbles and again for the high)
// and its block's meta (qd_dequant8, tests/unit/test_qdequant.c).
// qs, meta: the packed arrays; dst: [n_elems] bf16, n_elems a multiple of
// the block size (so of 8).  The float operations are base/qpack.c's, so
// each value is the reference's rounded once to bf16 (up to the FMA
// contractions nvcc makes).
template <int TYPE>
__global__ void qdequant_kernel(const uint8_t *__restrict__ qs, const uint8_t *__restrict__ meta, uint64_t n_elems,
                                bf16 *__restrict__ dst)
{
    uint64_t e0 = 8 * ((uint64_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (e0 >= n_elems)
        return;
    float v[8];
    qd_dequant8(TYPE, qs, meta, e0, v);     // cuda/qdequant.h; TYPE folds its branches away
    uint32_t w[4];
#pragma unroll
    for (int k = 0; k < 4; k++)
        w[k] = (uint32_t)__bfloat16_as_ushort(__float2bfloat16(v[2 * k])) |
               ((uint32_t)__bfloat16_as_ushort(__float2bfloat16(v[2 * k + 1])) << 16);
    *(uint4 *)(dst + e0) = make_uint4(w[0], w[1], w[2], w[3]);
}

int qmat_dequant(cudaStream_t s, const qmat_t *w, w16_t *dst)
{
    const qpack_layout_t *L = &w->L;
    uint64_t ne = (uint64_t)L->n_out * L->blocks_per_row * L->block_elems;
    const uint8_t *qs = w->p, *meta = w->p + L->meta_off;
    bf16 *y = (bf16 *)dst;
    unsigned grid = cdiv(ne / 8, 256);
    switch (L->type) {
    case QT_Q4_0: qdequant_kernel<QT_Q4_0><<<grid, 256, 0, s>>>(qs, meta, ne, y); break;
    case QT_Q4_1: qdequant_kernel<QT_Q4_1><<<grid, 256, 0, s>>>(qs, meta, ne, y); break;
    case QT_Q8_0: qdequant_kernel<QT_Q8_0><<<grid, 256, 0, s>>>(qs, meta, ne, y); break;
    case QT_Q4_K: qdequant_kernel<QT_Q4_K><<<grid, 256, 0, s>>>(qs, meta, ne, y); break;
    default: return ERR_UNSUPPORTED;
    }
    return cudaGetLastError() == cudaSuccess ? 0 : ERR_BACKEND;
}
