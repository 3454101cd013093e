// common.cuh - what every CUDA file of the backend shares: error checks
// that record the failing call, and the 16-bit float types.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cstdint>
#include <cstdio>

typedef __nv_bfloat16 bf16;
typedef __half f16;

// A 16-bit float of either format.  The weights and the activation copies
// that GEMMs read are bf16 or fp16, one format per backend (cuda_ctx_t.wtype:
// CUDA_R_16BF or CUDA_R_16F).  Host code holds them as w16_t, so that
// element offsets need no format; each launcher picks the kernel instance
// for the format once, and the kernels are templates on T, bf16 or f16.
typedef uint16_t w16_t;

// float to T, rounded to nearest even.  To fp16 a value of magnitude 65520
// or more (beyond 65504, the largest fp16) becomes +-inf, never a finite
// wrong value; bf16 has fp32's range.
template <typename T> __device__ __forceinline__ T to16(float x);
template <> __device__ __forceinline__ bf16 to16<bf16>(float x) { return __float2bfloat16(x); }
template <> __device__ __forceinline__ f16 to16<f16>(float x) { return __float2half_rn(x); }

__device__ __forceinline__ float from16(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float from16(f16 x) { return __half2float(x); }

// Two values as T, lo in the low half of the word (one 32-bit store).
template <typename T> __device__ __forceinline__ uint32_t to16x2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t to16x2<bf16>(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}
template <> __device__ __forceinline__ uint32_t to16x2<f16>(float lo, float hi)
{
    __half2 v = __floats2half2_rn(lo, hi);
    return *(uint32_t *)&v;
}

// Where the first failure is recorded (one per backend context).
struct cuda_err_t {
    char msg[512];
};

// Record `what` failed with `e` at file:line; returns ERR_BACKEND.
int cuda_fail(cuda_err_t *st, const char *what, const char *detail, const char *file, int line);

#define CU_TRY(st, call)                                                              \
    do {                                                                              \
        cudaError_t e_ = (call);                                                      \
        if (e_ != cudaSuccess)                                                        \
            return cuda_fail((st), #call, cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)

// After every launch: a launch error is reported where it happened.
#define CU_LAUNCHED(st) CU_TRY(st, cudaGetLastError())

static inline unsigned cdiv(uint64_t a, uint64_t b) { return (unsigned)((a + b - 1) / b); }
