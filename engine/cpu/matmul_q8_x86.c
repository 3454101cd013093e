/*
 * matmul_q8_x86.c - the CPU_PREC_FAST kernels for x86-64 (matmul.h):
 * matmul_q8_x86.h instantiated once per level, each with its own target
 * attribute, so the file builds with plain -O2 and the driver picks a
 * level at run time (cpu_mm_x86_levels).  The levels differ only in
 * the instructions that form the exact integer sums and in tile shapes:
 *   AVX2     vpmaddubsw then vpmaddwd with ones (no overflow: |u| <= 128,
 *            |s| <= 127, so a pair is at most 32512), the pairs of small
 *            weights (nibbles, Q5_K, Q6_K) first added as int16 where
 *            the sums stay below 2^15; four tokens a tile
 *   AVXVNNI  vpdpbusd, VEX encoding; four tokens
 *   AVX512   vpdpbusd, EVEX encoding on 256-bit registers (AVX512-VL),
 *            which gives 32 registers: sixteen tokens; and for Q4_0,
 *            Q4_1, Q8_0, Q4_K, Q5_K and Q6_K at eight tokens or more,
 *            sixteen rows on 512-bit registers (tile16; where a row has
 *            at most Q8_SB_MAX blocks, n_in <= 8192, whose terms
 *            rows_type keeps); a packed matrix of those types
 *            (matmul_kern.h) at every token count by tile16p, the same
 *            sixteen-row tiles read without the gathers and transposes
 * AVX2 and AVXVNNI read a packed matrix too, each tile as two halves of
 * eight rows (tile8p, matmul_q8_p8.h).
 */
#include "matmul_kern.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>
#include <string.h>

#define Q8_TARGET "avx2,fma,f16c"
#define Q8_FN(name) name##_avx2
#define Q8_DOT(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1))
#define Q8_ACC(a, u, s) _mm256_add_epi32((a), Q8_DOT((u), (s)))
#define Q8_SIGNED 0
#define Q8_TOKS 4
#define Q8_RED1 0
#include "matmul_q8_x86.h"
#undef Q8_TARGET
#undef Q8_FN
#undef Q8_DOT
#undef Q8_ACC
#undef Q8_SIGNED
#undef Q8_TOKS
#undef Q8_RED1

#define Q8_TARGET "avx2,fma,f16c,avxvnni"
#define Q8_FN(name) name##_avxvnni
#define Q8_DOT(u, s) _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), (u), (s))
#define Q8_ACC(a, u, s) _mm256_dpbusd_avx_epi32((a), (u), (s))
#define Q8_SIGNED 1
#define Q8_TOKS 4
#include "matmul_q8_x86.h"
#undef Q8_TARGET
#undef Q8_FN
#undef Q8_DOT
#undef Q8_ACC
#undef Q8_SIGNED
#undef Q8_TOKS

#define Q8_TARGET "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"
#define Q8_FN(name) name##_avx512
#define Q8_DOT(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))
#define Q8_ACC(a, u, s) _mm256_dpbusd_epi32((a), (u), (s))
#define Q8_SIGNED 1
#define Q8_TOKS 16
#undef Q8_ZMM
#define Q8_ZMM 1
#include "matmul_q8_x86.h"
#undef Q8_TARGET
#undef Q8_FN
#undef Q8_DOT
#undef Q8_ACC
#undef Q8_SIGNED
#undef Q8_TOKS
#undef Q8_ZMM

#else /* no x86-64 kernels in this build: the driver never calls these */

void cpu_mmq_rows_avx2(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    cpu_mmq_rows_portable(j, o0, n);
}

void cpu_mmq_rows_avxvnni(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    cpu_mmq_rows_portable(j, o0, n);
}

void cpu_mmq_rows_avx512(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    cpu_mmq_rows_portable(j, o0, n);
}

#endif
