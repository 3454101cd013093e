/*
 * model_synth.c - random-weight models for backend tests and benchmarks.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/model/model.h"
#include "tests/support/model_synth.h"

/* splitmix64: a small, good, seedable generator. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float uniform(uint64_t *s) /* [-1, 1) */
{
    return (float)((next_u64(s) >> 40) * (1.0 / (1u << 23)) - 1.0);
}

static void put_f16(uint8_t *p, float f)
{
    uint16_t h = f32_to_f16(f);
    memcpy(p, &h, 2);
}

/* Fill n elements' worth of blocks of `t` at dst with random valid data. */
static void fill(qtype_t t, uint8_t *dst, uint64_t n, float scale, uint64_t *rng)
{
    const qtype_info_t *qi = qtype_info(t);
    uint64_t nb = n / qi->block_elems;
    for (uint64_t b = 0; b < nb; b++) {
        uint8_t *p = dst + b * qi->block_bytes;
        if (t == QT_F32) {
            float v = scale * 1.7f * uniform(rng);
            memcpy(p, &v, 4);
            continue;
        }
        if (t == QT_F16 || t == QT_BF16) {
            float v = scale * 1.7f * uniform(rng);
            uint16_t h = t == QT_F16 ? f32_to_f16(v) : f32_to_bf16(v);
            memcpy(p, &h, 2);
            continue;
        }
        for (uint32_t i = 0; i < qi->block_bytes; i += 8) {
            uint64_t r = next_u64(rng);
            memcpy(p + i, &r, qi->block_bytes - i < 8 ? qi->block_bytes - i : 8);
        }
        switch (t) {
        case QT_Q8_0: put_f16(p, scale / 70.0f); break;
        case QT_Q4_0: put_f16(p, scale / 4.5f); break;
        case QT_Q4_1: put_f16(p, scale / 4.5f); put_f16(p + 2, -scale * 1.7f); break;
        case QT_Q4_K:
        case QT_Q5_K: put_f16(p, scale / 300.0f); put_f16(p + 2, scale / 300.0f); break;
        case QT_Q6_K: put_f16(p + 208, scale / 1500.0f); break;
        default: break;
        }
    }
}

int model_create_synthetic(model_t **out, const hparams_t *hp_in, qtype_t wtype, int host_data,
                           uint64_t seed, char *err, size_t errlen)
{
    *out = NULL;
    const qtype_info_t *qi = qtype_info(wtype);
    if (qi == NULL)
        return err_set(err, errlen, ERR_UNSUPPORTED, "synthetic model: unknown type %d", (int)wtype);
    model_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return err_set(err, errlen, ERR_NOMEM, "out of memory");
    m->hp = *hp_in;
    hparams_t *hp = &m->hp;
    if (hp->rope_dim == 0)
        hp->rope_dim = hp->head_dim;
    if (hp->n_ctx_train == 0)
        hp->n_ctx_train = 4096;
    hp->bos_id = hp->eos_id = hp->pad_id = -1;
    m->src = MODEL_SRC_GGUF;
    m->path = strdup("(synthetic)");
    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (m->path == NULL || m->layers == NULL) {
        model_destroy(m);
        return err_set(err, errlen, ERR_NOMEM, "out of memory");
    }

    uint64_t d = hp->n_embd, q = (uint64_t)hp->n_head * hp->head_dim;
    uint64_t kv = (uint64_t)hp->n_head_kv * hp->head_dim, ff = hp->n_ff;
    if (d % qi->block_elems || q % qi->block_elems || ff % qi->block_elems) {
        model_destroy(m);
        return err_set(err, errlen, ERR_INVALID, "synthetic model: sizes are not multiples of %s's block of %u",
                       qi->name, qi->block_elems);
    }

    /* Lay out every weight, then (maybe) allocate one buffer for all of them. */
    weight_t *all[4 + 9 * 1024];
    size_t n_all = 0;
#define ADD(w, nm, ty_, in, out_)                                      \
    do {                                                               \
        snprintf((w)->name, sizeof (w)->name, "%s", nm);               \
        (w)->type = (ty_);                                             \
        (w)->n_in = (in);                                              \
        (w)->n_out = (out_);                                           \
        qtype_nbytes((ty_), (uint64_t)(in) * (out_), &(w)->nbytes);    \
        all[n_all++] = (w);                                            \
    } while (0)
    char nm[96];
    ADD(&m->tok_embd, "token_embd.weight", wtype, d, hp->n_vocab);
    ADD(&m->output_norm, "output_norm.weight", QT_F32, d, 1);
    if (!hp->tied_embeddings)
        ADD(&m->output, "output.weight", wtype, d, hp->n_vocab);
    for (uint32_t l = 0; l < hp->n_layer && n_all + 9 < sizeof all / sizeof all[0]; l++) {
        layer_weights_t *w = &m->layers[l];
        snprintf(nm, sizeof nm, "blk.%u.attn_norm.weight", l); ADD(&w->attn_norm, nm, QT_F32, d, 1);
        snprintf(nm, sizeof nm, "blk.%u.attn_q.weight", l); ADD(&w->wq, nm, wtype, d, q);
        snprintf(nm, sizeof nm, "blk.%u.attn_k.weight", l); ADD(&w->wk, nm, wtype, d, kv);
        snprintf(nm, sizeof nm, "blk.%u.attn_v.weight", l); ADD(&w->wv, nm, wtype, d, kv);
        snprintf(nm, sizeof nm, "blk.%u.attn_output.weight", l); ADD(&w->wo, nm, wtype, q, d);
        snprintf(nm, sizeof nm, "blk.%u.ffn_norm.weight", l); ADD(&w->ffn_norm, nm, QT_F32, d, 1);
        snprintf(nm, sizeof nm, "blk.%u.ffn_gate.weight", l); ADD(&w->w_gate, nm, wtype, d, ff);
        snprintf(nm, sizeof nm, "blk.%u.ffn_up.weight", l); ADD(&w->w_up, nm, wtype, d, ff);
        snprintf(nm, sizeof nm, "blk.%u.ffn_down.weight", l); ADD(&w->w_down, nm, wtype, ff, d);
    }
#undef ADD
    for (size_t i = 0; i < n_all; i++)
        m->weight_bytes += all[i]->nbytes;
    if (host_data) {
        uint8_t *buf = malloc(m->weight_bytes);
        if (buf == NULL) {
            model_destroy(m);
            return err_set(err, errlen, ERR_NOMEM, "synthetic model: no memory for %llu bytes",
                           (unsigned long long)m->weight_bytes);
        }
        m->file = buf; /* freed by model_destroy as MODEL_SRC_SYNTH */
        uint64_t rng = seed, off = 0;
        for (size_t i = 0; i < n_all; i++) {
            weight_t *w = all[i];
            w->data = buf + off;
            if (w->n_out == 1) {
                float *g = (float *)(buf + off);
                for (uint64_t k = 0; k < w->n_in; k++)
                    g[k] = 1.0f + 0.2f * uniform(&rng);
            } else {
                /* Embedding rows large enough that the first norm has work to do. */
                float scale = w == &m->tok_embd ? 0.5f : 0.02f;
                fill(w->type, buf + off, w->n_in * w->n_out, scale, &rng);
            }
            off += w->nbytes;
        }
    }
    m->src = MODEL_SRC_SYNTH;
    if (hp->tied_embeddings)
        m->output = m->tok_embd;
    *out = m;
    return 0;
}
