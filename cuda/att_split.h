/*
 * att_split.h - how decode attention splits each token's keys across
 * thread blocks (flash-decoding): the rule the CUDA backend applies on the
 * host, the split length the kernels compute on the device, and the size
 * of the partials' workspace.  Plain C (host and device), so that unit
 * tests check the arithmetic where there is no GPU (tests/unit/test_att_split.c).
 *
 * A step's grid has n_splits splits per (token, KV head).  With split_len
 * > 0 every token's split k covers keys [k * split_len, (k + 1) * split_len);
 * with split_len 0 (CUDA graphs: one fixed grid for every later context)
 * each token's split length is att_split_keys() of its own key count.
 * Splits past a token's keys exit; the merge reads the first
 * cdiv(n_keys, split length) splits' partials.
 */
#ifndef LLAMAD_ATT_SPLIT_H
#define LLAMAD_ATT_SPLIT_H

#include <stdint.h>

#ifdef __CUDACC__
#define ATT_HD __host__ __device__
#else
#define ATT_HD
#endif

/* Keys per split piece: with split_len 0 each token's split length is the
   larger of this and its keys over n_splits (rounded up to 16); an eager
   step has at most as many splits as its longest context has pieces. */
#define ATT_SPLIT_MIN 256u

/* Decode attention aims at this many thread blocks per SM: a batch with
   fewer (token, KV head) pairs splits its keys across blocks, so that
   enough K/V loads are in flight to approach the memory bandwidth. */
#define ATT_BLOCKS_PER_SM 8u

/* split_len for "no split": longer than any context. */
#define ATT_NO_SPLIT (1u << 30)

typedef struct {
    uint32_t split_len;     /* keys per split; 0: per token (att_split_keys) */
    uint32_t n_splits;      /* splits per token in the grid */
} att_split_t;

/* Keys per split for a token of n_keys keys (n_keys >= 1).  Always
   n_splits * result >= n_keys. */
ATT_HD static inline uint32_t att_split_keys(att_split_t s, uint32_t n_keys)
{
    if (s.split_len != 0)
        return s.split_len;
    uint32_t per = (n_keys + s.n_splits - 1) / s.n_splits;
    per = (per + 15u) & ~15u;
    return per > ATT_SPLIT_MIN ? per : ATT_SPLIT_MIN;
}

/* Splits per token that bring n_pairs (token, KV head) pairs to about
   n_sms * ATT_BLOCKS_PER_SM blocks; 1 when the pairs alone reach it.
   Always n_pairs * result < 2 * n_sms * ATT_BLOCKS_PER_SM (or result 1). */
static inline uint32_t att_fill_splits(uint64_t n_pairs, uint32_t n_sms)
{
    uint64_t want = (uint64_t)n_sms * ATT_BLOCKS_PER_SM;
    return n_pairs == 0 || n_pairs >= want ? 1u : (uint32_t)((want + n_pairs - 1) / n_pairs);
}

/*
 * The splits of a step of n_tokens decode-kernel tokens on n_sms SMs.
 * Eager (g_splits 0): one split length for the step, no more splits than
 * max_keys (its longest context) has ATT_SPLIT_MIN-key pieces.  CUDA
 * graphs (g_splits > 0, the most a fixed grid has): split_len 0, a count
 * that depends on n_tokens alone, so that a captured grid fits every later
 * step of that size.
 */
static inline att_split_t att_choose_splits(uint32_t n_tokens, uint32_t n_kv, uint32_t n_sms,
                                            uint32_t max_keys, uint32_t g_splits)
{
    att_split_t s = { ATT_NO_SPLIT, 1 };
    uint32_t fill = att_fill_splits((uint64_t)n_tokens * n_kv, n_sms);
    if (g_splits == 0) {
        uint32_t most = (max_keys + ATT_SPLIT_MIN - 1) / ATT_SPLIT_MIN;
        uint32_t n = fill < most ? fill : most;
        if (n > 1) {
            s.split_len = ((max_keys + n - 1) / n + 15u) & ~15u;
            s.n_splits = (max_keys + s.split_len - 1) / s.split_len;
        }
    } else {
        uint32_t n = fill < g_splits ? fill : g_splits;
        if (n > 1) {
            s.split_len = 0;
            s.n_splits = n;
        }
    }
    return s;
}

/*
 * Floats of the partials' workspace, [tokens, n_head, n_splits, hd + 2],
 * that every split att_choose_splits makes fits: (token, split) pairs
 * number fewer than 2 * n_sms * ATT_BLOCKS_PER_SM / n_kv, and at most
 * max_tokens tokens of cdiv(max_ctx, ATT_SPLIT_MIN) splits (graphs: at
 * most that many splits too).
 */
static inline uint64_t att_work_floats(uint32_t n_sms, uint32_t n_kv, uint32_t n_head, uint32_t head_dim,
                                       uint32_t max_tokens, uint32_t max_ctx)
{
    uint64_t pairs = 2ull * n_sms * ATT_BLOCKS_PER_SM / n_kv + 1;
    uint64_t most = (uint64_t)max_tokens * ((max_ctx + ATT_SPLIT_MIN - 1) / ATT_SPLIT_MIN);
    if (pairs > most)
        pairs = most;
    return pairs * n_head * (head_dim + 2);
}

#endif
