/*
 * engine.c - the engine facade: model + backend + forward pass + sampler
 * + KV block manager + scheduler, created and destroyed together; the
 * model facts the server needs; and the one-shot completion built on
 * the request API.  The engine thread itself is engine_loop.c.
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_impl.h"
#include "base/err.h"
#include "base/log.h"
#include "registry.h"

#define DEFAULT_KV_BYTES      (256ull << 20)
#define DEFAULT_BATCH_TOKENS  512
#define DEFAULT_MAX_SEQS      64
#define DEFAULT_MAX_QUEUE     256

/* ---------------------------------------------------------------- create, destroy */

static void free_msgs(intake_msg_t *m)
{
    while (m != NULL) {
        intake_msg_t *next = m->next;
        if (m->kind == MSG_SUBMIT)
            req_destroy((request_t *)m);
        else
            free(m);
        m = next;
    }
}

/* The last component of a path ("models/x.gguf" -> "x.gguf", "dir/m/" -> "m"); NULL when out of memory. */
static char *base_name(const char *path)
{
    size_t end = strlen(path);
    while (end > 1 && path[end - 1] == '/')
        end--;
    size_t start = end;
    while (start > 0 && path[start - 1] != '/')
        start--;
    return strndup(path + start, end - start);
}

/*
 * The chat template: "auto" (or NULL) recognises the model's own among
 * the built-in formats (none when it is not one of them), a built-in
 * name picks one, anything else is a template file.
 */
static int open_chat_template(engine_t *e, const char *want, char *err, size_t errlen)
{
    const char *jinja = tok_chat_template(e->model->tok);
    chat_kind_t kind;
    int rc;
    if (want == NULL || *want == '\0' || strcmp(want, "auto") == 0) {
        if ((kind = chat_template_detect(jinja)) == CHAT_UNKNOWN)
            return 0;
    } else if ((kind = chat_template_by_name(want)) == CHAT_UNKNOWN) {
        if ((rc = chat_template_from_file(&e->chat, want, err, errlen)) != 0)
            return rc;
        e->have_chat = 1;
        return 0;
    }
    if ((rc = chat_template_init(&e->chat, kind, jinja)) != 0)
        return err_set(err, errlen, rc, "chat-template: cannot set up %s: %s", chat_kind_name(kind),
                       err_str(rc));
    e->have_chat = 1;
    return 0;
}

/*
 * LLAMAD_TEST_FAULT=stall:N or fail:N: after N working steps the engine
 * thread wedges, or fails as a sticky device error would.  For the tests of
 * the daemon's health reporting (shared/THREATS.md R9); logged loudly.
 */
static void read_fault_hook(engine_t *e)
{
    const char *v = getenv("LLAMAD_TEST_FAULT");
    if (v == NULL || *v == '\0')
        return;
    int kind = strncmp(v, "stall:", 6) == 0 ? FAULT_STALL
             : strncmp(v, "fail:", 5) == 0   ? FAULT_FAIL : FAULT_NONE;
    const char *num = strchr(v, ':');
    char *end = NULL;
    unsigned long long n = kind != FAULT_NONE ? strtoull(num + 1, &end, 10) : 0;
    if (kind == FAULT_NONE || end == num + 1 || *end != '\0') {
        log_warn("LLAMAD_TEST_FAULT=%.40s not understood (stall:N or fail:N): ignored", v);
        return;
    }
    e->fault = kind;
    e->fault_after = n;
    log_warn("LLAMAD_TEST_FAULT: the engine will %s after %llu working steps",
             e->fault == FAULT_STALL ? "stall" : "fail", n);
}

/*
 * LLAMAD_TEST_EVENT_FAULTS=F:P: of every P token events the engine
 * allocates, the first F fail as an empty pool with malloc failing would.
 * For the tests that no text and no finish is lost then; logged loudly.
 */
static void read_event_fault_hook(engine_t *e)
{
    const char *v = getenv("LLAMAD_TEST_EVENT_FAULTS");
    if (v == NULL || *v == '\0')
        return;
    unsigned fail, period;
    char tail;
    if (sscanf(v, "%u:%u%c", &fail, &period, &tail) != 2 || period == 0 || fail > period) {
        log_warn("LLAMAD_TEST_EVENT_FAULTS=%.40s not understood (F:P, 0 <= F <= P, P > 0): ignored", v);
        return;
    }
    e->ev_fault_fail = fail;
    e->ev_fault_period = period;
    log_warn("LLAMAD_TEST_EVENT_FAULTS: %u of every %u token events will fail to allocate", fail, period);
}

int engine_create(engine_t **out, const engine_opts_t *o, char *err, size_t errlen)
{
    char desc[256];
    const char *chosen;
    *out = NULL;
    if (o->model_path == NULL)
        return err_set(err, errlen, ERR_INVALID, "model: no path given");
    const char *want = o->backend ? o->backend : "auto";
    int device = 0;
    registry_set_backend_dir(o->backend_dir);
    int rc = registry_pick_device(want, o->gpu_device, &chosen, &device, desc, sizeof desc, err, errlen);
    if (rc != 0)
        return rc;
    if (strcmp(chosen, "cuda") == 0)
        log_info("backend cuda (%s): device %d, %s", want, device, desc);
    else if (strcmp(want, "auto") == 0 && registry_has_cuda())
        log_warn("backend cpu (auto): CUDA is built in but not used: %s", desc);
    else
        log_info("backend cpu (%s)%s%s", want, registry_has_cuda() ? "" : ": ",
                 registry_has_cuda() ? "" : desc);

    engine_t *e = calloc(1, sizeof *e);
    if (e == NULL)
        return err_set(err, errlen, ERR_NOMEM, "out of memory");
    /* timed waits count on the monotonic clock, so that a clock step cannot stall them */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&e->in_mu, NULL);
    pthread_cond_init(&e->in_cv, &ca);
    pthread_mutex_init(&e->ev_mu, NULL);
    pthread_cond_init(&e->ev_cv, &ca);
    pthread_mutex_init(&e->st_mu, NULL);
    pthread_condattr_destroy(&ca);
    e->backend_name = chosen;
    read_fault_hook(e);
    read_event_fault_hook(e);
    e->max_tokens = o->max_batch_tokens ? o->max_batch_tokens : DEFAULT_BATCH_TOKENS;
    e->max_queue = o->max_queue ? o->max_queue : DEFAULT_MAX_QUEUE;
    if (o->spec_tokens > ENGINE_SPEC_MAX_TOKENS || o->spec_ngram > ENGINE_SPEC_MAX_TOKENS) {
        rc = err_set(err, errlen, ERR_RANGE, "spec-tokens %u, spec-ngram %u: at most %d each",
                     o->spec_tokens, o->spec_ngram, ENGINE_SPEC_MAX_TOKENS);
        goto fail;
    }
    e->speculative = o->speculative;
    e->spec_tokens = o->spec_tokens ? o->spec_tokens : 4;
    e->spec_ngram = o->spec_ngram ? o->spec_ngram : 3;
    e->notify = o->notify;
    e->notify_ctx = o->notify_ctx;
    if ((rc = model_create_flags(&e->model, o->model_path, o->chat_template,
                                 o->model_private ? MODEL_LOAD_PRIVATE : 0, err, errlen)) != 0 ||
        (rc = open_chat_template(e, o->chat_template, err, errlen)) != 0)
        goto fail;
    e->n_vocab = e->model->hp.n_vocab;
    backend_opts_t bo = {
        .n_threads = o->threads, .cpu_isa = o->cpu_isa, .cpu_precision = o->cpu_precision,
        .cpu_no_repack = o->cpu_no_repack,
        .kv_bytes = o->kv_bytes ? o->kv_bytes : DEFAULT_KV_BYTES,
        .gpu_memory_fraction = o->gpu_memory_fraction, .gpu_device = device,
        .block_tokens = BK_DEFAULT_BLOCK_TOKENS, .max_tokens = e->max_tokens,
        /* a sampling row per sequence, and the scoring rows (prompt logprobs) */
        .max_seqs = (o->max_seqs ? o->max_seqs : DEFAULT_MAX_SEQS) + SCHED_SCORE_ROWS,
        .cuda_graphs = o->cuda_graphs, .fp16_weights = o->fp16_weights,
        .native_weights = o->native_weights,
    };
    if ((rc = registry_create_backend(chosen, &e->backend, e->model, &bo, err, errlen)) != 0 ||
        (rc = forward_create(&e->fwd, e->model, e->backend, e->max_tokens, err, errlen)) != 0 ||
        (rc = sampler_create(&e->sampler, e->n_vocab, err, errlen)) != 0 ||
        (rc = constraint_setup(e, err, errlen)) != 0)
        goto fail;
    kv_opts_t ko = {
        .n_blocks = e->backend->n_kv_blocks, .block_tokens = e->backend->block_tokens,
        .prefix_cache = !o->no_prefix_cache, .seed = NULL,
    };
    if ((rc = kv_create(&e->kv, &ko, err, errlen)) != 0)
        goto fail;
    sched_opts_t so = {
        .max_tokens = e->max_tokens, .max_seqs = o->max_seqs ? o->max_seqs : DEFAULT_MAX_SEQS,
        .watermark = ko.n_blocks / 100, .max_step_ns = (uint64_t)o->max_step_ms * 1000000u,
    };
    if ((rc = sched_create(&e->sched, e->kv, &so, err, errlen)) != 0)
        goto fail;
    e->max_seqs = sched_max_seqs(e->sched);
    if ((rc = constraint_start(e, err, errlen)) != 0)
        goto fail;
    cost_fit_init(&e->step_cost);
    uint64_t pool = (uint64_t)ko.n_blocks * ko.block_tokens;
    e->n_ctx = e->model->hp.n_ctx_train < pool ? e->model->hp.n_ctx_train : (uint32_t)(pool < UINT32_MAX ? pool : UINT32_MAX);
    if (e->n_ctx < 2) {
        rc = err_set(err, errlen, ERR_INVALID, "kv-memory: the KV pool holds %llu tokens; a request needs 2",
                     (unsigned long long)pool);
        goto fail;
    }
    uint64_t n_logits;
    /* the step's rows (sampling, then scoring), then two for forks (engine_req.c: the
       prompt's row kept, and a copy) */
    if (__builtin_mul_overflow((uint64_t)e->max_seqs + SCHED_SCORE_ROWS + 2,
                               (uint64_t)e->n_vocab * sizeof(float), &n_logits) ||
        (e->logits = malloc(n_logits)) == NULL) {
        rc = err_set(err, errlen, ERR_NOMEM, "out of memory for the logits of %u sequences", e->max_seqs);
        goto fail;
    }
    e->model_name = base_name(o->model_path);
    for (uint32_t i = 0; i < 4 * e->max_seqs + 64; i++) {
        ev_node_t *n = malloc(sizeof *n);
        if (n == NULL || e->model_name == NULL) {
            free(n);
            rc = err_set(err, errlen, ERR_NOMEM, "out of memory");
            goto fail;
        }
        n->next = e->ev_free;
        e->ev_free = n;
    }
    atomic_store(&e->beat_ns, engine_now_ns());
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        rc = err_set(err, errlen, ERR_NOMEM, "cannot start the engine thread");
        goto fail;
    }
    pthread_setname_np(e->thread, "llamad-engine");
    e->thread_started = 1;
    *out = e;
    return 0;
fail:
    engine_destroy(e);
    return rc;
}

void engine_destroy(engine_t *e)
{
    if (e == NULL)
        return;
    if (e->thread_started) {
        pthread_mutex_lock(&e->in_mu);
        e->stopping = 1;
        pthread_cond_signal(&e->in_cv);
        pthread_mutex_unlock(&e->in_mu);
        pthread_join(e->thread, NULL);
    }
    constraint_stop(e);
    free_msgs(e->in_head);
    while (e->live_head != NULL) {
        request_t *q = e->live_head;
        e->live_head = q->next;
        sched_remove(e->sched, &q->seq);
        req_destroy(q);
    }
    event_free_list(e->ev_head);
    event_free_list(e->ev_free);
    event_free_list(e->out_head);
    sched_destroy(e->sched);
    kv_destroy(e->kv);
    sampler_destroy(e->sampler);
    constraint_teardown(e);
    forward_destroy(e->fwd);
    backend_destroy(e->backend);
    model_destroy(e->model);
    free(e->logits);
    free(e->model_name);
    if (e->have_chat)
        chat_template_close(&e->chat);
    pthread_mutex_destroy(&e->in_mu);
    pthread_cond_destroy(&e->in_cv);
    pthread_mutex_destroy(&e->ev_mu);
    pthread_cond_destroy(&e->ev_cv);
    pthread_mutex_destroy(&e->st_mu);
    free(e);
}

void engine_describe(const engine_t *e, char *buf, size_t len)
{
    const hparams_t *hp = &e->model->hp;
    snprintf(buf, len, "%s: %u layers, width %u, %u heads (%u KV), vocab %u, %.1f MiB of weights; "
             "backend %s%s%s%s; KV cache %u blocks of %u tokens (%u tokens); context %u; "
             "step budget %u tokens, %u sequences; queue %u",
             e->model->path, hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->n_vocab,
             e->model->weight_bytes / 1048576.0, e->backend_name,
             e->backend->detail[0] ? " (" : "", e->backend->detail, e->backend->detail[0] ? ")" : "",
             e->backend->n_kv_blocks,
             e->backend->block_tokens, e->backend->n_kv_blocks * e->backend->block_tokens, e->n_ctx,
             e->max_tokens, e->max_seqs, e->max_queue);
}

void engine_get_info(const engine_t *e, engine_info_t *info)
{
    info->model_path = e->model->path;
    info->model_name = e->model_name;
    info->backend = e->backend_name;
    info->n_vocab = e->n_vocab;
    info->n_ctx = e->n_ctx;
    info->n_ctx_train = e->model->hp.n_ctx_train;
    info->tok = e->model->tok;
    info->chat_template = tok_chat_template(e->model->tok);
    info->chat_kind = e->have_chat ? chat_kind_name(e->chat.kind) : NULL;
    info->kv_blocks = e->backend->n_kv_blocks;
    info->block_tokens = e->backend->block_tokens;
    info->max_batch_tokens = e->max_tokens;
    info->max_seqs = e->max_seqs;
    info->max_queue = e->max_queue;
}

int engine_has_cuda(void)
{
    return registry_has_cuda();
}

int engine_dump_model(const char *path, const char *chat_template, FILE *out,
                      char *err, size_t errlen)
{
    model_t *m;
    int rc = model_create(&m, path, chat_template, err, errlen);
    if (rc != 0)
        return rc;
    model_dump(m, out);
    model_destroy(m);
    return 0;
}

/* ---------------------------------------------------------------- one-shot completion */

int engine_generate(engine_t *e, const char *prompt, size_t len, const sampler_params_t *sp,
                    uint32_t n_predict, engine_text_cb cb, void *ctx, engine_gen_stats_t *stats,
                    char *err, size_t errlen)
{
    const tokenizer_t *tok = e->model->tok;
    tok_buf_t ids;
    engine_request_t rq;
    uint64_t id;
    memset(stats, 0, sizeof *stats);
    tok_buf_init(&ids);
    int rc = tok_encode(tok, prompt, len, tok_add_bos_default(tok), 1, &ids, err, errlen);
    if (rc == 0 && ids.n == 0)
        rc = err_set(err, errlen, ERR_INVALID, "prompt: empty, and the model adds no BOS token");
    if (rc != 0)
        goto out;
    engine_request_init(&rq);
    rq.tokens = ids.ids;
    rq.n_tokens = ids.n;
    rq.sampling = *sp;
    rq.keep_special = 1;
    if (ids.n < e->n_ctx && (uint64_t)ids.n + n_predict > e->n_ctx)
        n_predict = e->n_ctx - (uint32_t)ids.n;
    rq.max_tokens = n_predict;
    if (n_predict == 0 && ids.n < e->n_ctx) {
        stats->prompt_tokens = ids.n;
        stats->finish_reason = "length";
        goto out;
    }
    engine_event_t *ev = malloc(sizeof *ev);
    if (ev == NULL) {
        rc = err_set(err, errlen, ERR_NOMEM, "out of memory");
        goto out;
    }
    uint64_t t0 = engine_now_ns(), t1 = 0;
    if ((rc = engine_submit(e, &rq, &id, err, errlen)) != 0) {
        free(ev);
        goto out;
    }
    stats->prompt_tokens = ids.n;
    int cancelled = 0;
    for (;;) {
        if (!engine_poll(e, ev)) {
            engine_wait(e, -1);
            continue;
        }
        if (ev->id != id)
            continue;
        if (t1 == 0)
            t1 = engine_now_ns();
        if (ev->text_len > 0 && !cancelled && cb(ctx, ev->text, ev->text_len) != 0) {
            engine_cancel(e, id); /* its finish event follows */
            cancelled = 1;
        }
        if (ev->kind == ENGINE_EV_FINISH) {
            stats->generated_tokens = ev->completion_tokens;
            stats->finish_reason = engine_finish_name(ev->finish);
            if (ev->finish == ENGINE_FINISH_ERROR)
                rc = err_set(err, errlen, ERR_BACKEND, "%s", ev->message);
            break;
        }
    }
    free(ev);
    uint64_t t2 = engine_now_ns();
    stats->prefill_seconds = ((t1 ? t1 : t2) - t0) * 1e-9;
    stats->decode_seconds = (t2 - (t1 ? t1 : t2)) * 1e-9;
out:
    tok_buf_close(&ids);
    return rc;
}
