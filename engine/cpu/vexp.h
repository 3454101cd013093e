/*
 * vexp.h - exp() on eight floats at once (vexp8; vexp16 on sixteen, for
 * code built for AVX-512), in plain GCC/Clang vector arithmetic (no
 * intrinsics): the softmax of the CPU attention kernel, and SwiGLU
 * (vexp_silu_mul, below; backend_cpu.c).
 *
 * Method: x is clamped to [-87, 88]; n = round(x / ln 2) by the
 * 1.5 * 2^23 rounding trick; r = x - n ln2 in two steps (Cody-Waite,
 * ln2 split into a high part exact in float and a low part), so
 * |r| <= ln2 / 2; e^r by its degree-6 Taylor polynomial in Horner form;
 * the result is that times 2^n, built in the exponent bits.
 *
 * Error bound: the polynomial's truncation error is at most
 * |r|^7 / 7! * e^|r| <= 0.3466^7 / 5040 * 1.415 < 1.7e-7 relative; the
 * reduction and the float Horner steps add a few ulps (about 3e-7 more),
 * so the result is within 5e-7 relative of exp(x) for x in [-87, 88]
 * (tests/unit/test_cpu_attention.c checks it against libm's double exp
 * over that range).  Below -87 the result is exactly 0 (exp(-87) is 1.6e-38, at
 * the bottom of float's normal range; -inf gives 0 too); above 88 it is
 * exp(88).  NaN in gives an unspecified value.
 *
 * Each lane is computed alone by a fixed sequence of operations, so a
 * value's exp does not depend on its lane or its neighbours.  The C
 * sources are compiled with -ffp-contract=off (Makefile.am), which keeps
 * GCC and Clang from fusing the multiply-adds: a build with and without
 * AVX2 gives the same bits, and vexp16 gives each lane the bits vexp8
 * gives it (test_cpu_attention).
 */
#ifndef LLAMAD_CPU_VEXP_H
#define LLAMAD_CPU_VEXP_H

#include <stddef.h>
#include <stdint.h>

typedef float vexp_f8 __attribute__((vector_size(32)));
typedef int32_t vexp_i8 __attribute__((vector_size(32)));

/* *out = where *m is -1, a's lane; where 0, b's (m from a vector
   comparison), for vectors of integer type I and a float type of the same
   size (a and b are read and out written by memcpy).  Vectors go by
   pointer: a 32-byte vector passed by value has a different ABI with and
   without AVX (a 64-byte one, with and without AVX-512). */
#define VEXP_SELECT(I, out, m, a, b) do {                                     \
        I ia_, ib_;                                                           \
        __builtin_memcpy(&ia_, (a), sizeof ia_);                              \
        __builtin_memcpy(&ib_, (b), sizeof ib_);                              \
        ia_ = (ia_ & *(m)) | (ib_ & ~*(m));                                   \
        __builtin_memcpy((out), &ia_, sizeof ia_);                            \
    } while (0)

/* *v = e^*v for each lane of a vector of float type F, integer type I of
   the same lanes: the one sequence of operations every width runs, so a
   lane's result is the same in any of them. */
#define VEXP_BODY(F, I, v) do {                                               \
        const F zero_ = { 0 };                                                \
        F x_ = *(v), lo_ = zero_ - 87.0f, hi_ = zero_ + 88.0f;                \
        const float magic_ = 12582912.0f;                 /* 1.5 * 2^23 */    \
        const float log2e_ = 1.44269504088896341f;                            \
        const float ln2_hi_ = 0.693359375f, ln2_lo_ = -2.12194440e-4f;        \
        I keep_ = x_ >= lo_;           /* -1 where x >= -87, else 0 (and NaN) */ \
        F xc_;                                                                \
        VEXP_SELECT(I, &xc_, &keep_, &x_, &lo_);                              \
        I over_ = xc_ > hi_;                                                  \
        VEXP_SELECT(I, &xc_, &over_, &hi_, &xc_);                             \
        F t_ = xc_ * log2e_ + magic_;                                         \
        F n_ = t_ - magic_;                       /* round(x / ln2), exactly */ \
        F r_ = xc_ - n_ * ln2_hi_;                                            \
        r_ = r_ - n_ * ln2_lo_;                                               \
        F p_ = r_ * (1.0f / 720.0f) + (1.0f / 120.0f);                        \
        p_ = p_ * r_ + (1.0f / 24.0f);                                        \
        p_ = p_ * r_ + (1.0f / 6.0f);                                         \
        p_ = p_ * r_ + 0.5f;                                                  \
        p_ = p_ * r_ + 1.0f;                                                  \
        p_ = p_ * r_ + 1.0f;                                                  \
        I bits_ = (__builtin_convertvector(n_, I) + 127) << 23;               \
        F two_n_;                                                             \
        __builtin_memcpy(&two_n_, &bits_, sizeof two_n_);                     \
        F y_ = p_ * two_n_;                                                   \
        VEXP_SELECT(I, (v), &keep_, &y_, &zero_);                             \
    } while (0)

static inline __attribute__((always_inline)) void vexp_select(vexp_f8 *out, const vexp_i8 *m,
                                                              const vexp_f8 *a, const vexp_f8 *b)
{
    VEXP_SELECT(vexp_i8, out, m, a, b);
}

/* *v = e^*v for each lane (see the bounds above). */
static inline __attribute__((always_inline)) void vexp8(vexp_f8 *v)
{
    VEXP_BODY(vexp_f8, vexp_i8, v);
}

/* The same on sixteen lanes: only in code built for AVX-512. */
typedef float vexp_f16 __attribute__((vector_size(64)));
typedef int32_t vexp_i16 __attribute__((vector_size(64)));

static inline __attribute__((always_inline)) void vexp16(vexp_f16 *v)
{
    VEXP_BODY(vexp_f16, vexp_i16, v);
}

/*
 * g[i] = silu(g[i]) * u[i] = g[i] / (1 + e^-g[i]) * u[i] over [0, n), eight
 * at a time, a last part of fewer than eight in a padded vector: each
 * element by the same operations whatever its place, so its result
 * depends on its value alone.  Within about 1e-6 relative of the exact
 * value for g >= -88 (test_cpu_attention.c).  Below -88 the result is 0
 * (vexp8 stops at e^88, so g / (1 + e^88) would grow with |g|; the exact
 * value is below 1e-36 in size there), -inf included; NaN stays NaN.
 */
static inline __attribute__((always_inline)) void vexp_silu_mul8(vexp_f8 *x, const vexp_f8 *up)
{
    const vexp_f8 floor = { -88.0f, -88.0f, -88.0f, -88.0f, -88.0f, -88.0f, -88.0f, -88.0f }, zero = { 0 };
    vexp_f8 e = -*x, y;
    vexp8(&e);
    y = *x / (1.0f + e) * *up;
    vexp_i8 below = *x < floor; /* -1 below -88; 0 at or above it, and for NaN */
    vexp_select(x, &below, &zero, &y);
}

static inline __attribute__((always_inline)) void vexp_silu_mul(float *g, const float *u, uint64_t n)
{
    uint64_t i = 0;
    vexp_f8 x, up;
    for (; i + 8 <= n; i += 8) {
        __builtin_memcpy(&x, g + i, sizeof x);
        __builtin_memcpy(&up, u + i, sizeof up);
        vexp_silu_mul8(&x, &up);
        __builtin_memcpy(g + i, &x, sizeof x);
    }
    if (i < n) {
        float xt[8] = { 0 }, ut[8] = { 0 };
        __builtin_memcpy(xt, g + i, (size_t)(n - i) * sizeof *g);
        __builtin_memcpy(ut, u + i, (size_t)(n - i) * sizeof *u);
        __builtin_memcpy(&x, xt, sizeof x);
        __builtin_memcpy(&up, ut, sizeof up);
        vexp_silu_mul8(&x, &up);
        __builtin_memcpy(xt, &x, sizeof x);
        __builtin_memcpy(g + i, xt, (size_t)(n - i) * sizeof *g);
    }
}

#endif
