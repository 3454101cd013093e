// dequant.cu - GGUF block formats to bf16 or fp16 (the backend's weight
// format) on the device, one thread per block of the source type.  The
// layouts are ggml's (see base/quant.c, the reference these kernels are
// tested against through the CPU backend).  To fp16, a weight beyond 65504
// becomes inf, which cuda_count_nonfinite finds after the upload (the
// backend then refuses the model rather than compute with it), and one
// under 2^-14 (6.1e-5) in magnitude is a subnormal, exact to 2^-25, an
// absolute error no GEMM notices.
#include <type_traits>

#include "dequant.cuh"

extern "C" {
#include "base/err.h"
#include "base/quant.h"
}

__device__ static inline float h2f(const uint8_t *p)
{
    __half h;
    memcpy(&h, p, 2);
    return __half2float(h);
}

__device__ static inline void k4_scale_min(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// grid: cdiv(n_blocks, 256), block: 256.  src: [n_blocks] blocks of `type`; dst: [n_blocks * block_elems] T
template <typename T>
__global__ void dequant_kernel(int type, const uint8_t *__restrict__ src, T *__restrict__ dst,
                               uint64_t n_blocks, uint32_t block_bytes)
{
    uint64_t b = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= n_blocks)
        return;
    const uint8_t *p = src + b * block_bytes;
    switch (type) {
    case QT_F32: {
        float f;
        memcpy(&f, p, 4);
        dst[b] = to16<T>(f);
        break;
    }
    case QT_F16:
        dst[b] = to16<T>(h2f(p));
        break;
    case QT_BF16: {
        uint16_t u = (uint16_t)(p[0] | (p[1] << 8));
        if constexpr (std::is_same<T, bf16>::value)
            dst[b] = __ushort_as_bfloat16(u);
        else
            dst[b] = to16<T>(__uint_as_float((uint32_t)u << 16));
        break;
    }
    case QT_Q8_0: {
        float d = h2f(p);
        T *y = dst + b * 32;
        for (int j = 0; j < 32; j++)
            y[j] = to16<T>((float)(int8_t)p[2 + j] * d);
        break;
    }
    case QT_Q4_0: {
        float d = h2f(p);
        T *y = dst + b * 32;
        for (int j = 0; j < 16; j++) {
            y[j] = to16<T>((float)((p[2 + j] & 0xF) - 8) * d);
            y[j + 16] = to16<T>((float)((p[2 + j] >> 4) - 8) * d);
        }
        break;
    }
    case QT_Q4_1: {
        float d = h2f(p), m = h2f(p + 2);
        T *y = dst + b * 32;
        for (int j = 0; j < 16; j++) {
            y[j] = to16<T>((float)(p[4 + j] & 0xF) * d + m);
            y[j + 16] = to16<T>((float)(p[4 + j] >> 4) * d + m);
        }
        break;
    }
    case QT_Q4_K:
    case QT_Q5_K: {
        float d = h2f(p), dmin = h2f(p + 2);
        const uint8_t *scales = p + 4;
        const uint8_t *qh = p + 16;                        // Q5_K only
        const uint8_t *q = p + (type == QT_Q5_K ? 48 : 16);
        T *y = dst + b * 256;
        uint8_t u1 = 1, u2 = 2;
        for (int is = 0; is < 8; is += 2) {
            int sc, m;
            k4_scale_min(is, scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            k4_scale_min(is + 1, scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) {
                int lo = q[l] & 0xF, hi = q[l] >> 4;
                if (type == QT_Q5_K) {
                    lo += (qh[l] & u1) ? 16 : 0;
                    hi += (qh[l] & u2) ? 16 : 0;
                }
                y[l] = to16<T>(d1 * lo - m1);
                y[l + 32] = to16<T>(d2 * hi - m2);
            }
            y += 64;
            q += 32;
            u1 <<= 2;
            u2 <<= 2;
        }
        break;
    }
    case QT_Q6_K: {
        const uint8_t *ql = p, *qh = p + 128;
        const int8_t *sc = (const int8_t *)(p + 192);
        float d = h2f(p + 208);
        T *y = dst + b * 256;
        for (int n = 0; n < 2; n++) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = (int)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = to16<T>(d * sc[is] * q1);
                y[l + 32] = to16<T>(d * sc[is + 2] * q2);
                y[l + 64] = to16<T>(d * sc[is + 4] * q3);
                y[l + 96] = to16<T>(d * sc[is + 6] * q4);
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
        break;
    }
    }
}

// Random values, roughly uniform in offset + [-scale*1.7, scale*1.7): synthetic weights.
// grid: cdiv(n, 256), block: 256.  dst: [n] T
template <typename T>
__global__ void fill_random_kernel(T *dst, uint64_t n, uint64_t seed, float scale, float offset)
{
    uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    uint64_t z = seed + i * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    float u = (float)(z >> 40) * (1.0f / (1u << 23)) - 1.0f;
    dst[i] = to16<T>(offset + u * scale * 1.7f);
}

// dst_dev: [n_elems] in dst_type, CUDA_R_16BF or CUDA_R_16F.  Launches on
// stream; 0, ERR_UNSUPPORTED for an unknown type, or ERR_BACKEND when the launch failed.
extern "C" int cuda_dequant(int type, const void *src_dev, void *dst_dev, cudaDataType dst_type, uint64_t n_elems,
                            cudaStream_t stream)
{
    const qtype_info_t *qi = qtype_info((uint32_t)type);
    if (qi == NULL)
        return ERR_UNSUPPORTED;
    uint64_t nb = n_elems / qi->block_elems;
    if (nb == 0)
        return 0;
    if (dst_type == CUDA_R_16F)
        dequant_kernel<f16><<<cdiv(nb, 256), 256, 0, stream>>>(type, (const uint8_t *)src_dev, (f16 *)dst_dev,
                                                               nb, qi->block_bytes);
    else
        dequant_kernel<bf16><<<cdiv(nb, 256), 256, 0, stream>>>(type, (const uint8_t *)src_dev, (bf16 *)dst_dev,
                                                                nb, qi->block_bytes);
    return cudaGetLastError() == cudaSuccess ? 0 : ERR_BACKEND;
}

// Non-finite 16-bit values (exponent bits all ones: inf or NaN), added to *count.
// grid: up to 1024 blocks of 256, striding.  p: [n] 16-bit values, `exp_mask` their exponent bits.
__global__ void nonfinite_kernel(const uint16_t *p, uint64_t n, uint16_t exp_mask, unsigned *count)
{
    unsigned bad = 0;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x)
        bad += (p[i] & exp_mask) == exp_mask;
    if (bad != 0)
        atomicAdd(count, bad);
}

// Add to *count_dev (device memory) the values of p_dev [n] in `type`
// (CUDA_R_16BF or CUDA_R_16F) that are inf or NaN.  Launches on stream; 0 or ERR_BACKEND.
extern "C" int cuda_count_nonfinite(const void *p_dev, cudaDataType type, uint64_t n, unsigned *count_dev,
                                    cudaStream_t stream)
{
    if (n == 0)
        return 0;
    unsigned blocks = cdiv(n, 256) < 1024 ? cdiv(n, 256) : 1024;
    nonfinite_kernel<<<blocks, 256, 0, stream>>>((const uint16_t *)p_dev, n,
                                                 type == CUDA_R_16F ? 0x7c00 : 0x7f80, count_dev);
    return cudaGetLastError() == cudaSuccess ? 0 : ERR_BACKEND;
}

// dst_dev: [n] in dst_type, CUDA_R_16BF or CUDA_R_16F.  Launches on stream; 0 or ERR_BACKEND.
extern "C" int cuda_fill_random(void *dst_dev, cudaDataType dst_type, uint64_t n, uint64_t seed, float scale,
                                float offset, cudaStream_t stream)
{
    if (n == 0)
        return 0;
    if (dst_type == CUDA_R_16F)
        fill_random_kernel<f16><<<cdiv(n, 256), 256, 0, stream>>>((f16 *)dst_dev, n, seed, scale, offset);
    else
        fill_random_kernel<bf16><<<cdiv(n, 256), 256, 0, stream>>>((bf16 *)dst_dev, n, seed, scale, offset);
    return cudaGetLastError() == cudaSuccess ? 0 : ERR_BACKEND;
}
