/*
 * backend_cpu.c - the CPU backend: the reference every other backend is
 * tested against, and the one that serves where there is no GPU.
 *
 * Weights are read in place from the mapped model file (cpu_matmul runs
 * on the stored quantised blocks), but for the matrices that the `fast`
 * kernels of the AVX2, AVX-VNNI and AVX512 levels read in tiles of
 * sixteen rows: those are packed into that order at start (pack.c), the
 * same bytes, and their mapped pages dropped.  The small norm vectors are converted to
 * float32 at start.  Activations are float32, and so is the KV cache
 * (IEEE halves under `fast`).  Every operation computes each output
 * element with a fixed sequence of operations that depends on neither the
 * batch nor the thread count, so a sequence's logits are bit-for-bit the
 * same however it is batched or chunked.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backend.h"
#include "attention.h"
#include "base/err.h"
#include "base/log.h"
#include "cpus.h"
#include "matmul.h"
#include "pack.h"
#include "pool.h"
#include "vexp.h"

#define MAX_BUFS 32

typedef struct {
    const model_t *m;
    pool_t *pool;
    uint32_t max_tokens;
    uint32_t n_blocks, B;
    unsigned char *kv;      /* [n_layer, 2, n_blocks, n_head_kv, B, head_dim] of kv_esz bytes */
    uint64_t kv_layer_stride, kv_block_stride; /* in elements */
    uint32_t kv_esz;        /* 4: floats; 2: IEEE halves (cpu-precision fast) */
    float *norms;           /* [2 * n_layer + 1, n_embd]: attn, ffn per layer, then output */
    double *inv_freq;       /* [rope_dim / 2] */
    float *rope_cos;        /* [max_tokens, rope_dim / 2] */
    float *rope_sin;        /* [max_tokens, rope_dim / 2] */
    int32_t *tok_seq;       /* [max_tokens] sequence index of each token */
    float *logit_x;         /* [max_tokens, n_embd] */
    uint32_t *attn_tile_first;  /* [max_tokens + 1] cpu_attention's per-sequence tile index */
    float *attn_scratch;    /* [threads, cpu_attn_scratch_floats] */
    const batch_t *batch;
    cpu_packed_t pk;        /* the packed matrices (pack.h) */
    void *bufs[MAX_BUFS];
    uint32_t n_bufs;
} cpu_t;

/* ---------------------------------------------------------------- helpers */

/* Layer l's packed copy of its role matrix (cpu_pack_weights), or NULL. */
static const void *layer_packed(const cpu_t *c, uint32_t l, w_role_t r)
{
    return c->pk.slot != NULL ? c->pk.slot[(uint64_t)l * W_COUNT + r] : NULL;
}

/* y = x / sqrt(mean(x^2) + eps) * g over one row of n. */
static void rmsnorm_row(const float *x, const float *g, float *y, uint32_t n, float eps)
{
    double ss = 0.0;
    for (uint32_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (uint32_t i = 0; i < n; i++)
        y[i] = x[i] * scale * g[i];
}

/* ---------------------------------------------------------------- operations */

static bk_buf_t op_buf_alloc(void *vctx, uint32_t rows, uint32_t cols, bk_buf_role_t role)
{
    (void)role;     /* every CPU buffer is float32, read and written in place */
    cpu_t *c = vctx;
    if (c->n_bufs == MAX_BUFS)
        return NULL;
    float *p = aligned_alloc(64, ((uint64_t)rows * cols * sizeof(float) + 63) & ~(uint64_t)63);
    if (p != NULL)
        c->bufs[c->n_bufs++] = p;
    return p;
}

static int op_set_batch(void *vctx, const batch_t *b)
{
    cpu_t *c = vctx;
    const hparams_t *hp = &c->m->hp;
    uint32_t half = hp->rope_dim / 2;
    if (b->n_tokens > c->max_tokens)
        return ERR_INVALID;
    c->batch = b;
    for (uint32_t s = 0; s < b->n_seqs; s++)
        for (uint32_t i = 0; i < b->seqs[s].n_new; i++)
            c->tok_seq[b->seqs[s].first + i] = (int32_t)s;
    for (uint32_t t = 0; t < b->n_tokens; t++) {
        for (uint32_t i = 0; i < half; i++) {
            double a = b->pos[t] * c->inv_freq[i];
            c->rope_cos[(uint64_t)t * half + i] = (float)cos(a);
            c->rope_sin[(uint64_t)t * half + i] = (float)sin(a);
        }
    }
    return 0;
}

static int op_embed(void *vctx, bk_buf_t vx)
{
    cpu_t *c = vctx;
    const weight_t *e = &c->m->tok_embd;
    float *x = vx;
    for (uint32_t t = 0; t < c->batch->n_tokens; t++) {
        int rc = cpu_embed_row(e->type, e->data, (uint32_t)e->n_in, (uint32_t)c->batch->tokens[t],
                               x + (uint64_t)t * e->n_in);
        if (rc != 0)
            return rc;
    }
    return 0;
}

typedef struct {
    cpu_t *c;
    float *x, *y;
    const float *add, *g;
} norm_job_t;

/* Tokens a norm task takes: their sums of squares run side by side. */
#define NORM_ROWS 8

/*
 * Tokens [NORM_ROWS * task, ...) of the batch: x += add (when given), then
 * y = rmsnorm(x) * g, each row as rmsnorm_row gives it.  A row's sum of
 * squares is one chain of double adds in element order (its bits), an
 * add's latency an element; a task of NORM_ROWS rows interleaves their
 * chains so that the core runs them at once (a shorter last task,
 * rmsnorm_row a row at a time).
 */
static void norm_task(void *vjob, uint32_t task, uint32_t thread)
{
    (void)thread;
    norm_job_t *j = vjob;
    const hparams_t *hp = &j->c->m->hp;
    uint32_t d = hp->n_embd, t0 = task * NORM_ROWS, n = j->c->batch->n_tokens - t0;
    n = n < NORM_ROWS ? n : NORM_ROWS;
    if (j->add != NULL)
        for (uint64_t i = (uint64_t)t0 * d; i < (uint64_t)(t0 + n) * d; i++)
            j->x[i] += j->add[i];
    if (n < NORM_ROWS) {
        for (uint32_t t = t0; t < t0 + n; t++)
            rmsnorm_row(j->x + (uint64_t)t * d, j->g, j->y + (uint64_t)t * d, d, hp->rms_eps);
        return;
    }
    const float *xr[NORM_ROWS];
    double ss[NORM_ROWS];
    for (uint32_t r = 0; r < NORM_ROWS; r++) {
        xr[r] = j->x + (uint64_t)(t0 + r) * d;
        ss[r] = 0.0;
    }
    for (uint32_t i = 0; i < d; i++)
#pragma GCC unroll 8
        for (uint32_t r = 0; r < NORM_ROWS; r++)
            ss[r] += (double)xr[r][i] * xr[r][i];
    for (uint32_t r = 0; r < NORM_ROWS; r++) {
        float scale = (float)(1.0 / sqrt(ss[r] / d + hp->rms_eps));
        float *y = j->y + (uint64_t)(t0 + r) * d;
        for (uint32_t i = 0; i < d; i++)
            y[i] = xr[r][i] * scale * j->g[i];
    }
}

static int op_add_rmsnorm(void *vctx, bk_buf_t vx, bk_buf_t vadd, uint32_t layer, w_role_t norm,
                          bk_buf_t vy)
{
    cpu_t *c = vctx;
    uint32_t d = c->m->hp.n_embd;
    norm_job_t j = { c, vx, vy, vadd, c->norms + (uint64_t)(2 * layer + (norm == W_FFN_NORM)) * d };
    pool_run(c->pool, norm_task, &j, (c->batch->n_tokens + NORM_ROWS - 1) / NORM_ROWS);
    return 0;
}

static int op_matmul(void *vctx, uint32_t layer, w_role_t role, bk_buf_t x, bk_buf_t y)
{
    cpu_t *c = vctx;
    const weight_t *w = cpu_layer_weight(c->m, layer, role);
    cpu_mm_out_t mo = { w->type, w->data, (uint32_t)w->n_out, y, layer_packed(c, layer, role) };
    return cpu_matmul_multi(c->pool, &mo, 1, (uint32_t)w->n_in, x, c->batch->n_tokens);
}

/* The matrices of roles[0 .. n) of one layer, read from x, into ys: one pool run. */
static int matmul_roles(cpu_t *c, uint32_t layer, const w_role_t *roles, float *const *ys, uint32_t n,
                        const float *x)
{
    cpu_mm_out_t m[CPU_MM_MULTI_MAX];
    uint64_t n_in = cpu_layer_weight(c->m, layer, roles[0])->n_in;
    for (uint32_t i = 0; i < n; i++) {
        const weight_t *w = cpu_layer_weight(c->m, layer, roles[i]);
        if (w->n_in != n_in)
            return ERR_INVALID;
        m[i] = (cpu_mm_out_t){ w->type, w->data, (uint32_t)w->n_out, ys[i],
                               layer_packed(c, layer, roles[i]) };
    }
    return cpu_matmul_multi(c->pool, m, n, (uint32_t)n_in, x, c->batch->n_tokens);
}

static int op_matmul_qkv(void *vctx, uint32_t layer, bk_buf_t x, bk_buf_t q, bk_buf_t k, bk_buf_t v)
{
    static const w_role_t roles[3] = { W_Q, W_K, W_V };
    float *const ys[3] = { q, k, v };
    return matmul_roles(vctx, layer, roles, ys, 3, x);
}

static int op_matmul_gate_up(void *vctx, uint32_t layer, bk_buf_t x, bk_buf_t gate, bk_buf_t up)
{
    static const w_role_t roles[2] = { W_GATE, W_UP };
    float *const ys[2] = { gate, up };
    return matmul_roles(vctx, layer, roles, ys, 2, x);
}

static int op_buf_write(void *vctx, bk_buf_t buf, const float *host, uint32_t rows, uint32_t cols)
{
    (void)vctx;
    memcpy(buf, host, (size_t)rows * cols * sizeof(float));
    return 0;
}

static int op_buf_read(void *vctx, bk_buf_t buf, float *host, uint32_t rows, uint32_t cols)
{
    (void)vctx;
    memcpy(host, buf, (size_t)rows * cols * sizeof(float));
    return 0;
}

/* Rotate one head's vector in place by the token's angles. */
static void rope_head(float *v, const float *cs, const float *sn, uint32_t rope_dim,
                      rope_layout_t layout)
{
    uint32_t half = rope_dim / 2;
    for (uint32_t i = 0; i < half; i++) {
        uint32_t a = layout == ROPE_LAYOUT_INTERLEAVED ? 2 * i : i;
        uint32_t b = layout == ROPE_LAYOUT_INTERLEAVED ? 2 * i + 1 : i + half;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs[i] - x1 * sn[i];
        v[b] = x0 * sn[i] + x1 * cs[i];
    }
}

static void *kv_slot(const cpu_t *c, uint32_t layer, int which, int32_t block, uint32_t kvh,
                     uint32_t slot)
{
    const hparams_t *hp = &c->m->hp;
    return c->kv + c->kv_esz * ((uint64_t)layer * c->kv_layer_stride +
                                (uint64_t)which * (c->kv_layer_stride / 2) + (uint64_t)block * c->kv_block_stride +
                                ((uint64_t)kvh * c->B + slot) * hp->head_dim);
}

/* One head's hd keys or values into its slot, as the slots hold them. */
static void kv_put(const cpu_t *c, void *slot, const float *src, uint32_t hd)
{
    if (c->kv_esz == sizeof(float))
        memcpy(slot, src, hd * sizeof(float));
    else
        cpu_kv_put_f16(slot, src, hd);
}

typedef struct {
    cpu_t *c;
    uint32_t layer;
    float *q, *k;
    const float *v;
} rope_job_t;

/* One token: rotate its query and key heads, then write its keys and
   values into its KV slot. */
static void rope_task(void *vjob, uint32_t t, uint32_t thread)
{
    (void)thread;
    rope_job_t *j = vjob;
    cpu_t *c = j->c;
    const hparams_t *hp = &c->m->hp;
    const batch_t *b = c->batch;
    uint32_t hd = hp->head_dim, half = hp->rope_dim / 2;
    uint64_t qrow = (uint64_t)hp->n_head * hd, kvrow = (uint64_t)hp->n_head_kv * hd;
    const float *cs = c->rope_cos + (uint64_t)t * half, *sn = c->rope_sin + (uint64_t)t * half;
    for (uint32_t h = 0; h < hp->n_head; h++)
        rope_head(j->q + t * qrow + (uint64_t)h * hd, cs, sn, hp->rope_dim, hp->rope_layout);
    const batch_seq_t *s = &b->seqs[c->tok_seq[t]];
    uint32_t pos = (uint32_t)b->pos[t];
    int32_t block = s->block_table[pos / c->B];
    for (uint32_t h = 0; h < hp->n_head_kv; h++) {
        float *kh = j->k + t * kvrow + (uint64_t)h * hd;
        rope_head(kh, cs, sn, hp->rope_dim, hp->rope_layout);
        kv_put(c, kv_slot(c, j->layer, 0, block, h, pos % c->B), kh, hd);
        kv_put(c, kv_slot(c, j->layer, 1, block, h, pos % c->B), j->v + t * kvrow + (uint64_t)h * hd, hd);
    }
}

/* Tokens write distinct KV slots (batch_check: positions of one sequence
   are distinct, and sequences own their blocks), so tasks never race. */
static int op_rope_kv_write(void *vctx, uint32_t layer, bk_buf_t vq, bk_buf_t vk, bk_buf_t vv)
{
    cpu_t *c = vctx;
    rope_job_t j = { c, layer, vq, vk, vv };
    pool_run(c->pool, rope_task, &j, c->batch->n_tokens);
    return 0;
}

static int op_attention(void *vctx, uint32_t layer, bk_buf_t q, bk_buf_t out)
{
    cpu_t *c = vctx;
    const hparams_t *hp = &c->m->hp;
    cpu_attn_t a = { hp->head_dim, hp->n_head, hp->n_head_kv, c->B, kv_slot(c, layer, 0, 0, 0, 0),
                     kv_slot(c, layer, 1, 0, 0, 0), c->batch, q, out, c->kv_esz == sizeof(uint16_t) };
    return cpu_attention(c->pool, &a, c->attn_tile_first, c->attn_scratch);
}

#define SWIGLU_CHUNK 4096

typedef struct {
    float *g;
    const float *u;
    uint64_t n;
} swiglu_job_t;

/* SwiGLU by vexp.h's vexp_silu_mul, built plain and for AVX2 (the same bits). */
static void swiglu_plain(float *g, const float *u, uint64_t n)
{
    vexp_silu_mul(g, u, n);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2"))) static void swiglu_avx2(float *g, const float *u, uint64_t n)
{
    vexp_silu_mul(g, u, n);
}
#else
#define swiglu_avx2 swiglu_plain
#endif

/* gate = silu(gate) * up over one chunk of SWIGLU_CHUNK elements. */
static void swiglu_task(void *vjob, uint32_t task, uint32_t thread)
{
    (void)thread;
    swiglu_job_t *j = vjob;
    uint64_t i0 = (uint64_t)task * SWIGLU_CHUNK, i1 = i0 + SWIGLU_CHUNK < j->n ? i0 + SWIGLU_CHUNK : j->n;
    if (cpu_matmul_isa() >= CPU_ISA_AVX2)
        swiglu_avx2(j->g + i0, j->u + i0, i1 - i0);
    else
        swiglu_plain(j->g + i0, j->u + i0, i1 - i0);
}

static int op_swiglu(void *vctx, bk_buf_t vgate, bk_buf_t vup)
{
    cpu_t *c = vctx;
    swiglu_job_t j = { vgate, vup, (uint64_t)c->batch->n_tokens * c->m->hp.n_ff };
    uint64_t n_tasks = (j.n + SWIGLU_CHUNK - 1) / SWIGLU_CHUNK;
    if (n_tasks > UINT32_MAX)
        return ERR_RANGE;
    pool_run(c->pool, swiglu_task, &j, (uint32_t)n_tasks);
    return 0;
}

static int op_logits(void *vctx, bk_buf_t vx, bk_buf_t vadd, float *out)
{
    cpu_t *c = vctx;
    const model_t *m = c->m;
    const batch_t *b = c->batch;
    uint32_t d = m->hp.n_embd;
    float *x = vx;
    const float *add = vadd;
    const float *g = c->norms + (uint64_t)2 * m->hp.n_layer * d;
    for (uint32_t i = 0; i < b->n_logits; i++) {
        float *xr = x + (uint64_t)b->logit_rows[i] * d;
        if (add != NULL)
            for (uint32_t k = 0; k < d; k++)
                xr[k] += add[(uint64_t)b->logit_rows[i] * d + k];
        rmsnorm_row(xr, g, c->logit_x + (uint64_t)i * d, d, m->hp.rms_eps);
    }
    if (b->n_logits == 0)
        return 0;
    cpu_mm_out_t mo = { m->output.type, m->output.data, (uint32_t)m->output.n_out, out,
                        c->pk.slot != NULL ? c->pk.slot[(uint64_t)m->hp.n_layer * W_COUNT] : NULL };
    return cpu_matmul_multi(c->pool, &mo, 1, (uint32_t)m->output.n_in, c->logit_x, b->n_logits);
}

static const char *op_last_error(void *vctx)
{
    (void)vctx;
    return "";
}

static void op_destroy(void *vctx)
{
    cpu_t *c = vctx;
    if (c == NULL)
        return;
    for (uint32_t i = 0; i < c->n_bufs; i++)
        free(c->bufs[i]);
    pool_destroy(c->pool);
    free(c->kv);
    free(c->norms);
    free(c->inv_freq);
    free(c->rope_cos);
    free(c->rope_sin);
    free(c->tok_seq);
    free(c->logit_x);
    free(c->attn_tile_first);
    free(c->attn_scratch);
    cpu_packed_free(&c->pk);
    free(c);
}

/* Every layer's K and V rows of block src[i] into block dst[i]. */
static int op_kv_copy(void *vctx, const int32_t *src, const int32_t *dst, uint32_t n)
{
    cpu_t *c = vctx;
    for (uint32_t i = 0; i < n; i++) {
        if (src[i] < 0 || (uint32_t)src[i] >= c->n_blocks || dst[i] < 0 || (uint32_t)dst[i] >= c->n_blocks)
            return ERR_INVALID;
        for (uint32_t l = 0; l < c->m->hp.n_layer; l++)
            for (int which = 0; which < 2; which++)
                memcpy(kv_slot(c, l, which, dst[i], 0, 0), kv_slot(c, l, which, src[i], 0, 0),
                       c->kv_block_stride * c->kv_esz);
    }
    return 0;
}

static const backend_ops_t cpu_ops = {
    .name = "cpu",
    .destroy = op_destroy,
    .buf_alloc = op_buf_alloc,
    .set_batch = op_set_batch,
    .embed = op_embed,
    .add_rmsnorm = op_add_rmsnorm,
    .matmul = op_matmul,
    .matmul_qkv = op_matmul_qkv,
    .matmul_gate_up = op_matmul_gate_up,
    .buf_write = op_buf_write,
    .buf_read = op_buf_read,
    .rope_kv_write = op_rope_kv_write,
    .attention = op_attention,
    .swiglu = op_swiglu,
    .logits = op_logits,
    .last_error = op_last_error,
    .kv_copy = op_kv_copy,
};

/* ---------------------------------------------------------------- create */

static int norm_to_f32(const weight_t *w, float *dst)
{
    return quant_dequant(w->type, w->data, dst, (size_t)w->n_in);
}

int cpu_backend_create(backend_t **out, const model_t *m, const backend_opts_t *o,
                       char *err, size_t errlen)
{
    const hparams_t *hp = &m->hp;
    *out = NULL;
    int rc = cpu_matmul_setup(o->cpu_isa, o->cpu_precision, err, errlen);
    if (rc != 0)
        return rc;
    if (hp->head_dim > CPU_ATTN_MAX_HEAD_DIM || hp->head_dim % 8 != 0)
        return err_set(err, errlen, ERR_UNSUPPORTED, "cpu backend: head_dim %u is not supported "
                       "(a multiple of 8 up to %d)", hp->head_dim, CPU_ATTN_MAX_HEAD_DIM);
    if (hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv != 0)
        return err_set(err, errlen, ERR_UNSUPPORTED, "cpu backend: %u heads do not share %u key/value "
                       "heads evenly", hp->n_head, hp->n_head_kv);
    if (o->max_tokens == 0)
        return err_set(err, errlen, ERR_INVALID, "cpu backend: max_tokens is 0; a step holds at least one token");
    uint32_t B = o->block_tokens ? o->block_tokens : BK_DEFAULT_BLOCK_TOKENS;
    if (B > 64)
        return err_set(err, errlen, ERR_INVALID, "block size %u is above 64", B);
    /* fast keeps K and V as halves: half the bytes a step reads, twice
       the blocks in kv-memory (attention.h) */
    uint32_t kv_esz = cpu_matmul_precision() == CPU_PREC_FAST ? sizeof(uint16_t) : sizeof(float);
    uint64_t block_bytes = (uint64_t)hp->n_layer * 2 * hp->n_head_kv * B * hp->head_dim * kv_esz;
    uint64_t n_blocks = o->kv_bytes / block_bytes;
    if (n_blocks == 0 || n_blocks > INT32_MAX)
        return err_set(err, errlen, ERR_INVALID,
                       "kv-memory: %llu bytes holds no KV block (one block of %u tokens takes %llu bytes)",
                       (unsigned long long)o->kv_bytes, B, (unsigned long long)block_bytes);

    cpu_t *c = calloc(1, sizeof *c);
    backend_t *b = calloc(1, sizeof *b);
    if (c == NULL || b == NULL)
        goto nomem;
    c->m = m;
    c->B = B;
    c->n_blocks = (uint32_t)n_blocks;
    c->max_tokens = o->max_tokens;
    c->kv_esz = kv_esz;
    c->kv_block_stride = (uint64_t)hp->n_head_kv * B * hp->head_dim;
    c->kv_layer_stride = 2 * n_blocks * c->kv_block_stride;
    char why[512];
    int usable = cpus_usable(why, sizeof why), threads = o->n_threads > 0 ? o->n_threads : usable;
    if (o->n_threads <= 0)
        log_info("cpu backend: %d thread%s, for %s", threads, threads == 1 ? "" : "s", why);
    else if (o->n_threads > usable)
        log_warn("cpu backend: threads = %d is more than this process may use (%s): its threads take turns "
                 "on the CPUs, and a step waits for the last of them", o->n_threads, why);
    if (pool_create(&c->pool, threads) != 0)
        goto nomem;
    uint32_t half = hp->rope_dim / 2;
    c->kv = calloc(n_blocks, block_bytes);
    c->norms = malloc(((uint64_t)2 * hp->n_layer + 1) * hp->n_embd * sizeof(float));
    c->inv_freq = malloc(half * sizeof(double));
    c->rope_cos = malloc((uint64_t)o->max_tokens * half * sizeof(float));
    c->rope_sin = malloc((uint64_t)o->max_tokens * half * sizeof(float));
    c->tok_seq = malloc((uint64_t)o->max_tokens * sizeof(int32_t));
    c->logit_x = malloc((uint64_t)o->max_tokens * hp->n_embd * sizeof(float));
    c->attn_tile_first = malloc(((uint64_t)o->max_tokens + 1) * sizeof(uint32_t));
    size_t scratch = cpu_attn_scratch_floats(hp->n_head, hp->n_head_kv, hp->head_dim) * sizeof(float);
    c->attn_scratch = aligned_alloc(64, ((uint64_t)threads * scratch + 63) & ~(uint64_t)63);
    if (!c->kv || !c->norms || !c->inv_freq || !c->rope_cos || !c->rope_sin || !c->tok_seq || !c->logit_x ||
        !c->attn_tile_first || !c->attn_scratch)
        goto nomem;
    if (cpu_matmul_precision() == CPU_PREC_FAST) {
        /* the quantised activations of the widest product a step can ask
           for, so that no step allocates (cpu_matmul) */
        uint32_t widest = hp->n_embd > hp->n_ff ? hp->n_embd : hp->n_ff;
        if (hp->n_head * hp->head_dim > widest)
            widest = hp->n_head * hp->head_dim;
        if (pool_scratch(c->pool, cpu_matmul_scratch_bytes(widest, o->max_tokens)) == NULL)
            goto nomem;
    }
    cpu_huge_pages(c->kv, n_blocks * block_bytes);
    /* Commit the pool now: resident memory is weights + KV pool from the
       start (what MemoryMax must allow), not a figure that creeps up as
       blocks are first used.  A volatile store per page, because a
       compiler may drop a memset of calloc'd memory. */
    for (uint64_t off = 0; off < n_blocks * block_bytes; off += 4096)
        ((volatile char *)c->kv)[off] = 0;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        if (norm_to_f32(&m->layers[l].attn_norm, c->norms + (uint64_t)(2 * l) * hp->n_embd) ||
            norm_to_f32(&m->layers[l].ffn_norm, c->norms + (uint64_t)(2 * l + 1) * hp->n_embd))
            goto unsupported;
    }
    if (norm_to_f32(&m->output_norm, c->norms + (uint64_t)2 * hp->n_layer * hp->n_embd))
        goto unsupported;
    int prc = o->cpu_no_repack ? 0 : cpu_pack_weights(&c->pk, m, c->pool);
    if (prc != 0) {
        op_destroy(c);
        free(b);
        return prc == ERR_NOMEM ? err_set(err, errlen, ERR_NOMEM, "cpu backend: out of memory for the packed weights")
                                : err_set(err, errlen, prc, "cpu backend: a matrix would not pack (cpu-repack = no "
                                                            "runs without the packed copy)");
    }
    for (uint32_t i = 0; i < half; i++) {
        c->inv_freq[i] = pow((double)hp->rope_theta, -2.0 * i / hp->rope_dim);
        if (m->rope_freq_factors != NULL)
            c->inv_freq[i] /= m->rope_freq_factors[i];
    }
    b->ops = &cpu_ops;
    b->ctx = c;
    b->n_kv_blocks = c->n_blocks;
    b->block_tokens = B;
    int at = snprintf(b->detail, sizeof b->detail, "cpu-isa %s, cpu-precision %s, K/V %s, %d thread%s",
                      cpu_isa_name(cpu_matmul_isa()), cpu_matmul_precision() == CPU_PREC_FAST ? "fast" : "exact",
                      kv_esz == sizeof(float) ? "f32" : "f16", threads, threads == 1 ? "" : "s");
    if (c->pk.n > 0 && at > 0 && (size_t)at < sizeof b->detail) /* under 90 bytes in all */
        snprintf(b->detail + at, sizeof b->detail - (size_t)at, ", %u matrices packed", c->pk.n);
    *out = b;
    return 0;

unsupported:
    op_destroy(c);
    free(b);
    return err_set(err, errlen, ERR_UNSUPPORTED, "cpu backend: a norm weight has an unsupported type");
nomem:
    op_destroy(c);
    free(b);
    return err_set(err, errlen, ERR_NOMEM, "cpu backend: out of memory (KV cache %llu bytes)",
                   (unsigned long long)(n_blocks * block_bytes));
}
