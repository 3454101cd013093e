/*
 * bench_cuda - the CUDA backend on a random-weight LLaMA-2-7B-shaped model
 * made on the device (no download), next to the device's own limits
 * measured in the same run:
 *
 *   bench-cuda [--layers N] [--kv-heads N] [--graphs on|off|both]
 *              [--weights bf16|fp16|native] [--type Q4_0|Q4_1|Q8_0|Q4_K|Q5_K|Q6_K]
 *              [--profile yes]
 *
 * --weights is gpu-weight-type (default bf16): bf16 and fp16 are the
 * backend's 16-bit format for the weights and the GEMM inputs, the weights
 * made on the device; native makes the weights on the host as random valid
 * GGUF blocks of --type (default Q4_0) and keeps the layer weights of a
 * type with a native kernel packed on the device.
 * Reports decode tokens/s at batch 1, 8, 32 and 128 (context 512) with
 * CUDA graphs off and on, each with the logits copied back and with only
 * the greedy token ids (logits_argmax; with graphs on, the backend's
 * captured/replayed/failed graph counters beside each row, and "(eager:
 * graphs not used)" where its steps replayed no graph), prefill tokens/s of a 2048-token
 * prompt, and decode attention's share of bandwidth at a long context;
 * each as a fraction of its limit
 * (batch-1 decode: the weight bytes a step reads, packed or 16-bit, the
 * token embedding left out, over the read bandwidth, with the copy
 * bandwidth beside it;
 * prefill: 2 x parameters FLOPs per token over the bf16 GEMM rate, which
 * is also fp16's on A100 and H100 tensor cores).
 * Times are medians of several runs, host clock around synchronised steps.
 * --profile yes adds, last, the device time of each kind of operation
 * (backend_ops_t.profile, CUDA graphs off) in the prefill, in batch-1
 * decode and in the long-context decode, with the rate each reaches: what
 * holds each measure back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "bench/bench.h"
#include "engine/backend.h"
#include "base/err.h"
#include "engine/forward.h"
#include "engine/model/model.h"
#include "engine/registry.h"
#include "tests/support/model_synth.h"

void cuda_measure_limits(double *bw_gbs, double *read_gbs, double *tflops, char *desc, size_t desclen);
int qmv_has_kernel(uint32_t type);
void cuda_sync(void);

#define MAXT 2048
#define MAXSEQ 128
#define CTX 512

static int32_t *tables;     /* [n_kv_blocks]: block i is i; sequence s uses [s * stride, (s + 1) * stride) */
static uint32_t stride, n_blocks;

/* Give each of n_seq sequences an equal share of the blocks; 0 when a share is under `tokens`. */
static int set_stride(uint32_t n_seq, uint32_t tokens)
{
    stride = n_blocks / n_seq;
    return stride * 16 >= tokens;
}
static int32_t toks[MAXT], pos[MAXT], rows[MAXT];
static batch_seq_t seqs[MAXSEQ];
static float *logits;

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench-cuda: %s: %s\n", what, err);
    exit(1);
}

/* Prefill sequences [0, n_seq) to `len` tokens, several sequences per step. */
static double prefill_all(forward_t *f, uint32_t n_seq, uint32_t len)
{
    double t0 = bench_now();
    uint32_t s = 0, done = 0; /* sequence s has `done` tokens */
    while (s < n_seq) {
        uint32_t n = 0, ns = 0;
        while (s < n_seq && n < MAXT) {
            uint32_t c = len - done < MAXT - n ? len - done : MAXT - n;
            seqs[ns] = (batch_seq_t){ tables + (size_t)s * stride, (done + c - 1) / 16 + 1, n, c };
            for (uint32_t i = 0; i < c; i++, n++) {
                toks[n] = (int32_t)((s * 7919u + (done + i) * 104729u) % 32000u);
                pos[n] = (int32_t)(done + i);
            }
            rows[ns] = (int32_t)n - 1;
            ns++;
            done += c;
            if (done == len) {
                s++;
                done = 0;
            }
        }
        batch_t b = { n, toks, pos, ns, seqs, ns, rows };
        if (forward_step(f, &b, logits) != 0)
            die("prefill", "forward_step failed");
    }
    cuda_sync();
    return bench_now() - t0;
}

/* One decode step for sequences [0, n_seq) at position p; with `greedy`, only token ids come back. */
static double decode_step(forward_t *f, uint32_t n_seq, uint32_t p, int greedy)
{
    for (uint32_t s = 0; s < n_seq; s++) {
        toks[s] = (int32_t)((s * 31u + p) % 32000u);
        pos[s] = (int32_t)p;
        rows[s] = (int32_t)s;
        seqs[s] = (batch_seq_t){ tables + (size_t)s * stride, p / 16 + 1, s, 1 };
    }
    batch_t b = { n_seq, toks, pos, n_seq, seqs, n_seq, rows };
    const bk_argmax_t *am;
    double t0 = bench_now();
    if ((greedy ? forward_step_argmax(f, &b, &am) : forward_step(f, &b, logits)) != 0)
        die("decode", "forward_step failed");
    return bench_now() - t0;
}

/* [kind] per step: the device ms of each kind of operation, and its share of the step */
static void prof_column(const bk_profile_t *p, uint32_t steps, double out_ms[BK_OP_COUNT])
{
    for (int k = 0; k < BK_OP_COUNT; k++)
        out_ms[k] = p->ms[k] / steps;
}

/*
 * The profile table: for each kind, ms per step in the prefill (2048 tokens),
 * batch-1 decode (context 512) and batch-16 decode (context 2048); then the
 * rates the big ones reach.
 */
static void profile_run(const model_t *m, int fp16, int native, double bw, double tf)
{
    char err[ERR_MSG_MAX];
    const hparams_t *hp = &m->hp;
    backend_opts_t o = { .block_tokens = 16, .max_tokens = MAXT, .gpu_memory_fraction = 0.9,
                         .cuda_graphs = -1, .device_argmax = 1, .fp16_weights = fp16,
                         .native_weights = native, .profile = 1 };
    backend_t *b;
    forward_t *f;
    if (registry_create_backend("cuda", &b, m, &o, err, sizeof err) != 0)
        die("backend (profile)", err);
    if (forward_create(&f, m, b, MAXT, err, sizeof err) != 0)
        die("forward (profile)", err);
    if (b->ops->profile == NULL)
        die("profile", "the backend has no profile");
    n_blocks = b->n_kv_blocks;
    free(tables);
    tables = malloc((size_t)n_blocks * sizeof(int32_t));
    for (uint32_t i = 0; i < n_blocks; i++)
        tables[i] = (int32_t)i;
    bk_profile_t p;
    double col[3][BK_OP_COUNT], total[3] = { 0, 0, 0 };
    memset(col, 0, sizeof col);
    int have[3] = { 0, 0, 0 };

    /* prefill: one warm-up, then 3 prompts */
    if (set_stride(1, 2048)) {
        prefill_all(f, 1, 2048);
        b->ops->profile(b->ctx, &p);
        for (int r = 0; r < 3; r++)
            prefill_all(f, 1, 2048);
        b->ops->profile(b->ctx, &p);
        prof_column(&p, 3, col[0]);
        have[0] = 1;
    }
    /* batch-1 decode at context 512: 10 steps after 2 */
    if (set_stride(1, CTX + 32)) {
        prefill_all(f, 1, CTX - 16);
        decode_step(f, 1, CTX - 16, 1);
        decode_step(f, 1, CTX - 15, 1);
        b->ops->profile(b->ctx, &p);
        for (uint32_t r = 0; r < 10; r++)
            decode_step(f, 1, CTX - 14 + r, 1);
        b->ops->profile(b->ctx, &p);
        prof_column(&p, 10, col[1]);
        have[1] = 1;
    }
    /* batch-16 decode at context 2048: 6 steps after 2 */
    uint32_t LS = 16, LC = 2048;
    if (set_stride(LS, LC + 16)) {
        prefill_all(f, LS, LC);
        decode_step(f, LS, LC, 0);
        decode_step(f, LS, LC + 1, 0);
        b->ops->profile(b->ctx, &p);
        for (uint32_t r = 0; r < 6; r++)
            decode_step(f, LS, LC + 2 + r, 0);
        b->ops->profile(b->ctx, &p);
        prof_column(&p, 6, col[2]);
        have[2] = 1;
    }
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < BK_OP_COUNT; k++)
            total[c] += col[c][k];

    printf("\n== device time per step by operation (CUDA graphs off; ms, share of the step)\n");
    printf("%-10s %22s %22s %22s\n", "operation", "prefill 2048", "decode b1 ctx 512", "decode b16 ctx 2048");
    for (int k = 0; k <= BK_OP_COUNT; k++) {
        printf("%-10s", k < BK_OP_COUNT ? bk_op_name(k) : "total");
        for (int c = 0; c < 3; c++) {
            char cell[40];
            double v = k < BK_OP_COUNT ? col[c][k] : total[c];
            if (!have[c])
                snprintf(cell, sizeof cell, "-");
            else
                snprintf(cell, sizeof cell, "%.3f (%4.1f%%)", v, total[c] > 0 ? 100 * v / total[c] : 0.0);
            printf(" %22s", cell);
        }
        printf("\n");
    }

    /* the rates: GEMMs in the prefill against the GEMM rate; weights and KV against the bandwidth */
    double d = hp->n_embd, hd = hp->head_dim, ff = hp->n_ff, L = hp->n_layer, T = 2048;
    double qkv_w = d * (hp->n_head + 2.0 * hp->n_head_kv) * hd, o_w = hp->n_head * hd * d;
    double flop[BK_OP_COUNT] = { 0 };
    flop[BK_OP_QKV] = 2 * T * qkv_w * L;
    flop[BK_OP_O] = 2 * T * o_w * L;
    flop[BK_OP_GATE_UP] = 2 * T * 2 * ff * d * L;
    flop[BK_OP_DOWN] = 2 * T * ff * d * L;
    /* causal attention: QK^T and PV over T(T+1)/2 pairs, every query head */
    flop[BK_OP_ATTENTION] = 2 * 2 * (T * (T + 1) / 2) * hp->n_head * hd * L;
    if (have[0]) {
        printf("prefill rates:");
        for (int k = 0; k < BK_OP_COUNT; k++)
            if (flop[k] > 0 && col[0][k] > 0)
                printf(" %s %.0f TFLOP/s (%.0f%%);", bk_op_name(k), flop[k] / (col[0][k] * 1e-3) / 1e12,
                       100 * flop[k] / (col[0][k] * 1e-3) / (tf * 1e12));
        printf(" GEMM rate %.0f TFLOP/s\n", tf);
    }
    /* bytes per weight: 16-bit, or the packed type's (every layer matrix has one type here) */
    const weight_t *w0 = &m->layers[0].wq;
    double wb = native && qmv_has_kernel(w0->type) ? (double)w0->nbytes / ((double)w0->n_in * w0->n_out) : 2.0;
    double bytes[BK_OP_COUNT] = { 0 };
    bytes[BK_OP_QKV] = qkv_w * wb * L;
    bytes[BK_OP_O] = o_w * wb * L;
    bytes[BK_OP_GATE_UP] = 2 * ff * d * wb * L;
    bytes[BK_OP_DOWN] = ff * d * wb * L;
    if (have[1]) {
        printf("decode b1 rates (weight bytes / time):");
        for (int k = 0; k < BK_OP_COUNT; k++)
            if (bytes[k] > 0 && col[1][k] > 0)
                printf(" %s %.0f GB/s (%.0f%%);", bk_op_name(k), bytes[k] / (col[1][k] * 1e-3) / 1e9,
                       100 * bytes[k] / (col[1][k] * 1e-3) / (bw * 1e9));
        printf(" read bandwidth %.0f GB/s\n", bw);
    }
    if (have[2] && col[2][BK_OP_ATTENTION] > 0) {
        double kv = (double)LS * (LC + 4) * L * 2.0 * hp->n_head_kv * hd * 2;
        printf("decode b16 ctx 2048: attention reads %.1f GB of KV at %.0f GB/s (%.0f%% of the read bandwidth)\n",
               kv / 1e9, kv / (col[2][BK_OP_ATTENTION] * 1e-3) / 1e9,
               100 * kv / (col[2][BK_OP_ATTENTION] * 1e-3) / (bw * 1e9));
    }
    forward_destroy(f);
    backend_destroy(b);
}

/* The model's parameters, and the bytes of weights a decode step reads:
   each layer matrix packed (native mode, a type with a kernel) or 16-bit,
   the norms as f32, and the output matrix (16-bit: only layer weights are
   packed); the token embedding is read one row per token and left out. */
static void count_weights(const model_t *m, int native, uint64_t *params, double *step_bytes)
{
    const uint64_t d = m->tok_embd.n_in;
    *params = m->tok_embd.n_in * m->tok_embd.n_out + d;
    *step_bytes = 4.0 * d;
    if (!m->hp.tied_embeddings) {
        *params += m->output.n_in * m->output.n_out;
        *step_bytes += 2.0 * m->output.n_in * m->output.n_out;
    }
    for (uint32_t l = 0; l < m->hp.n_layer; l++) {
        const layer_weights_t *w = &m->layers[l];
        const weight_t *mats[] = { &w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up, &w->w_down };
        for (size_t k = 0; k < sizeof mats / sizeof mats[0]; k++) {
            uint64_t n = mats[k]->n_in * mats[k]->n_out;
            *params += n;
            *step_bytes += native && qmv_has_kernel(mats[k]->type) ? (double)mats[k]->nbytes : 2.0 * n;
        }
        *params += 2 * d;
        *step_bytes += 4.0 * 2 * d;
    }
}

static const uint32_t batches[] = { 1, 8, 32, 128 };
#define NB (sizeof batches / sizeof batches[0])

int main(int argc, char **argv)
{
    char err[ERR_MSG_MAX], desc[256];
    uint32_t layers = 32, kv_heads = 32;
    int only = 0; /* 0 both, -1 graphs off only, 1 graphs on only */
    int fp16 = 0, native = 0, profile = 0;
    qtype_t qt = QT_Q4_0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--layers")) layers = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--kv-heads")) kv_heads = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--graphs")) only = !strcmp(argv[i + 1], "on") ? 1 : !strcmp(argv[i + 1], "off") ? -1 : 0;
        else if (!strcmp(argv[i], "--profile")) profile = !strcmp(argv[i + 1], "yes");
        else if (!strcmp(argv[i], "--weights")) {
            if (strcmp(argv[i + 1], "bf16") != 0 && strcmp(argv[i + 1], "fp16") != 0 &&
                strcmp(argv[i + 1], "native") != 0)
                die("--weights", "expected bf16, fp16 or native");
            fp16 = !strcmp(argv[i + 1], "fp16");
            native = !strcmp(argv[i + 1], "native");
        } else if (!strcmp(argv[i], "--type")) {
            static const qtype_t types[] = { QT_Q4_0, QT_Q4_1, QT_Q8_0, QT_Q4_K, QT_Q5_K, QT_Q6_K };
            size_t k = 0;
            while (k < sizeof types / sizeof types[0] && strcasecmp(qtype_info(types[k])->name, argv[i + 1]) != 0)
                k++;
            if (k == sizeof types / sizeof types[0])
                die("--type", "expected Q4_0, Q4_1, Q8_0, Q4_K, Q5_K or Q6_K");
            qt = types[k];
        } else
            die(argv[i], "unknown option (see the comment at the top of bench/bench_cuda.c)");
    }
    if (argc % 2 == 0)
        die(argv[argc - 1], "an option without its value");
    char wname[32];
    snprintf(wname, sizeof wname, "%s%s", native ? "native " : fp16 ? "fp16" : "bf16",
             native ? qtype_info(qt)->name : "");
    const char *chosen;
    if (!registry_has_cuda() || registry_pick("cuda", &chosen, desc, sizeof desc, err, sizeof err) != 0) {
        printf("bench-cuda: skipped: no CUDA device (%s)\n", desc);
        return 0;
    }
    double bw, rbw, tf;
    cuda_measure_limits(&bw, &rbw, &tf, desc, sizeof desc);
    printf("device: %s\n", desc);
    printf("limits: copy bandwidth %.0f GB/s (read + write), read bandwidth %.0f GB/s, bf16 GEMM %.0f TFLOP/s "
           "(8192^3)\n", bw, rbw, tf);
    if (rbw <= 0)
        die("limits", "the read bandwidth probe failed");

    hparams_t hp;
    memset(&hp, 0, sizeof hp);
    hp.n_vocab = 32000; hp.n_embd = 4096; hp.n_layer = layers; hp.n_head = 32; hp.n_head_kv = kv_heads;
    hp.head_dim = 128; hp.rope_dim = 128; hp.n_ff = 11008; hp.n_ctx_train = 4096;
    hp.rms_eps = 1e-5f; hp.rope_theta = 10000.0f;
    model_t *m;
    double t_model = bench_now();
    if (model_create_synthetic(&m, &hp, native ? qt : QT_BF16, native, 1, err, sizeof err) != 0)
        die("model", err);
    uint64_t params;
    double wbytes;
    count_weights(m, native, &params, &wbytes);
    if (native)
        printf("host weights: %s, %.1f GB, made in %.1f s\n", qtype_info(qt)->name, m->weight_bytes / 1e9,
               bench_now() - t_model);
    logits = malloc((size_t)MAXT * hp.n_vocab * sizeof(float));
    /* [graphs off, on][batch][logits, greedy ids]: seconds per step */
    double dec[2][NB][2];
    int unused[NB][2];      /* graphs on, yet the row's steps replayed no graph */
    memset(dec, 0, sizeof dec);
    memset(unused, 0, sizeof unused);
    int first = 1;

    for (int g = 0; g < 2; g++) {
        if ((only < 0 && g == 1) || (only > 0 && g == 0))
            continue;
        backend_opts_t o = { .block_tokens = 16, .max_tokens = MAXT, .gpu_memory_fraction = 0.9,
                             .cuda_graphs = g ? 1 : -1, .device_argmax = 1, .fp16_weights = fp16,
                             .native_weights = native };
        backend_t *b;
        forward_t *f;
        double t0 = bench_now();
        if (registry_create_backend("cuda", &b, m, &o, err, sizeof err) != 0)
            die("backend", err);
        if (forward_create(&f, m, b, MAXT, err, sizeof err) != 0)
            die("forward", err);
        printf("\n== CUDA graphs %s, weights %s\n", g ? "on" : "off", wname);
        printf("model: LLaMA-2-7B shape, %u layers, %u KV heads, %.2f B parameters, %.2f GB read per decode step "
               "as %s; set up in %.1f s; %u KV blocks\n", layers, kv_heads, params / 1e9, wbytes / 1e9, wname,
               bench_now() - t0, b->n_kv_blocks);
        n_blocks = b->n_kv_blocks;
        free(tables);
        tables = malloc((size_t)n_blocks * sizeof(int32_t));
        for (uint32_t i = 0; i < n_blocks; i++)
            tables[i] = (int32_t)i;

        printf("\n%-34s %12s %14s %s\n", "measure", "tokens/s", "fraction", "of limit");
        if (first) {
            /* prefill: one 2048-token prompt, median of 5 (never a graph: not a decode step) */
            double tp[5];
            if (!set_stride(1, 2048))
                die("kv", "not enough KV blocks for a 2048-token prompt");
            for (int r = 0; r < 5; r++)
                tp[r] = prefill_all(f, 1, 2048);
            double t_pre = bench_median(tp, 5);
            double pre_tps = 2048 / t_pre;
            double pre_frac = 2.0 * params * pre_tps / (tf * 1e12);
            printf("%-34s %12.0f %13.1f%% %s\n", "prefill, 2048-token prompt", pre_tps, 100 * pre_frac,
                   "bf16 GEMM rate (2 x params FLOP/token)");
            first = 0;
        }

        for (size_t k = 0; k < NB; k++) {
            uint32_t B = batches[k];
            if (!set_stride(B, CTX + 32)) {
                printf("decode, batch %u: skipped (not enough KV blocks)\n", B);
                continue;
            }
            prefill_all(f, B, CTX - 16);
            /* 12 steps each way (the first two of a graph size run it directly, then capture it) */
            for (int greedy = 0; greedy < 2; greedy++) {
                double ts[12];
                bk_graph_stats_t before = bk_graph_stats(b);
                for (int r = 0; r < 12; r++)
                    ts[r] = decode_step(f, B, CTX - 16 + (uint32_t)(12 * greedy + r), greedy);
                double t = bench_median(ts + 2, 10);
                char name[64], used[96] = "";
                if (g) {
                    /* graphs on: the counters beside the row; a row whose steps replayed no graph was eager */
                    bk_graph_stats_t after = bk_graph_stats(b);
                    snprintf(used, sizeof used, " [graphs: %llu captured, %llu replayed, %llu failed]%s",
                             (unsigned long long)after.captured, (unsigned long long)after.replayed,
                             (unsigned long long)after.failed,
                             after.replayed > before.replayed ? "" : " (eager: graphs not used)");
                    unused[k][greedy] = after.replayed == before.replayed;
                }
                dec[g][k][greedy] = t;
                snprintf(name, sizeof name, "decode, batch %u, context 512%s", B, greedy ? ", ids" : "");
                if (B == 1)
                    printf("%-34s %12.0f %13.1f%% %s (%.1f%% of copy; %.2f ms/step)%s\n", name, B / t,
                           100 * (wbytes / t) / (rbw * 1e9), "read bandwidth (weight bytes/step)",
                           100 * (wbytes / t) / (bw * 1e9), t * 1e3, used);
                else
                    printf("%-34s %12.0f %14s (%.2f ms/step)%s\n", name, B / t, "", t * 1e3, used);
            }
        }

        /* decode at a long context: 16 sequences of 2048 tokens; the step's KV
           bytes and weight bytes over the copy bandwidth */
        uint32_t LS = 16, LC = 2048;
        if (set_stride(LS, LC + 16)) {
            prefill_all(f, LS, LC);
            double ts[8];
            for (int r = 0; r < 8; r++)
                ts[r] = decode_step(f, LS, LC + (uint32_t)r, 0);
            double t = bench_median(ts + 2, 6);
            double kv_bytes = (double)LS * (LC + 4) * layers * 2.0 * kv_heads * 128 * 2;
            printf("%-34s %12.0f %13.1f%% %s (%.2f ms/step, %.1f GB KV)\n", "decode, batch 16, context 2048", LS / t,
                   100 * ((kv_bytes + wbytes) / t) / (rbw * 1e9), "read bandwidth (KV + weight bytes/step)",
                   t * 1e3, kv_bytes / 1e9);
        }
        forward_destroy(f);
        backend_destroy(b);
    }

    /* the comparison, last: decode tokens/s (ms/step) */
    printf("\ndecode tokens/s (ms/step), weights %s\n", wname);
    printf("%-8s %20s %20s %20s %20s\n", "batch", "eager, logits", "eager, ids", "graphs, logits", "graphs, ids");
    for (size_t k = 0; k < NB; k++) {
        printf("%-8u", batches[k]);
        for (int g = 0; g < 2; g++)
            for (int greedy = 0; greedy < 2; greedy++) {
                double t = dec[g][k][greedy];
                char cell[32];
                if (t > 0)      /* "eager": graphs on, yet the row's steps replayed no graph */
                    snprintf(cell, sizeof cell, "%s%.0f (%.2f ms)", g == 1 && unused[k][greedy] ? "eager " : "",
                             batches[k] / t, t * 1e3);
                else
                    snprintf(cell, sizeof cell, "-");
                printf(" %20s", cell);
            }
        printf("\n");
    }
    if (profile)
        profile_run(m, fp16, native, rbw, tf);
    free(tables);
    free(logits);
    model_destroy(m);
    return 0;
}
