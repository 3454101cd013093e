// qmatvec.cuh - layer weights kept in their GGUF blocks on the device
// (gpu-weight-type = native): the packed layout of base/qpack.h, the
// matrix-vector kernel for steps of 1..QMV_MAX_T tokens that dequantises
// in registers, and the dequantisation into a bf16 scratch that larger
// steps multiply on cuBLAS (cuda/qmatvec.cu).  For gemm.cu and upload.cu;
// engine thread only, like the backend.
#pragma once

#include "common.cuh"

extern "C" {
#include "base/qpack.h"
}

// The most tokens a step may have for the matrix-vector kernel; larger
// steps dequantise the weight into a bf16 scratch and run cuBLAS.
#define QMV_MAX_T 8

// A packed weight on the device: [total_bytes] at p, qs then meta (L).
struct qmat_t {
    uint8_t *p;             // NULL: the weight is not native (bf16 instead)
    qpack_layout_t L;
};

// 1 when `type` has a native kernel here (Q4_0, Q4_1, Q8_0, Q4_K); the
// other packed types (Q5_K, Q6_K) are served as bf16 for now.  C linkage:
// bench/bench_cuda.c counts the bytes a step reads with it.
extern "C" int qmv_has_kernel(uint32_t type);

// Quantise activations for the kernel: x [T, n_in] bf16 (row stride n_in)
// to xq [T, n_in] int8 and xds [T, n_in / 32] {dx, dx * sum of the block's
// int8 values}, one scale per 32 elements (dx = max |x| / 127).  T <= QMV_MAX_T.
// Launches on s; 0 or ERR_BACKEND (launch failed).
int qmv_quantize(cudaStream_t s, const w16_t *x, uint32_t T, uint32_t n_in, int8_t *xq, float2 *xds);

// y[t, r] (fp32, row stride ldy) = sum_i W[r, i] x[t, i] for t < T <= QMV_MAX_T,
// from the quantised x of qmv_quantize.  Launches on s; 0, ERR_INVALID
// (T out of range), ERR_UNSUPPORTED (no kernel for the type) or ERR_BACKEND.
int qmv_launch(cudaStream_t s, const qmat_t *w, const int8_t *xq, const float2 *xds, uint32_t T, float *y,
               uint32_t ldy);

// dst [n_out, n_in] bf16 = the packed weight, dequantised (steps of more
// than QMV_MAX_T tokens).  Launches on s; 0, ERR_UNSUPPORTED or ERR_BACKEND.
int qmat_dequant(cudaStream_t s, const qmat_t *w, w16_t *dst);
