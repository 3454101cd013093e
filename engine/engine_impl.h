/*
 * engine_impl.h - the engine's internals, shared by engine.c (create,
 * destroy, model facts), engine_loop.c (the thread, the intake queue, the
 * step), engine_req.c (a request from submission to its finish event) and
 * event.c (the event pool and queue).  Not for the server.  Calls go one
 * way: engine_loop.c -> engine_req.c -> event.c.
 *
 * Which thread touches what:
 *   immutable after engine_create   model, backend, limits, notify;
 *   in_mu                           the intake queue, n_queued, counters of submits;
 *   ev_mu                           the event queue and its free nodes;
 *   st_mu                           the statistics snapshot;
 *   atomics                         the heartbeat (engine_health);
 *   engine thread only              everything else: the scheduler, the KV
 *                                   block manager, the sampler, the live requests.
 */
#ifndef LLAMAD_ENGINE_IMPL_H
#define LLAMAD_ENGINE_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "backend.h"
#include "engine.h"
#include "forward.h"
#include "engine/sched/kvcache.h"
#include "engine/model/model.h"
#include "sampler.h"
#include "engine/sched/scheduler.h"
#include "engine/text/chat.h"
#include "engine/text/stop.h"
#include "engine/text/tokenizer.h"
#include "engine/grammar/grammar.h"

/* Compiled constraints kept for reuse (engine_constraint_compile). */
#define ENGINE_CONSTRAINT_CACHE 64

typedef struct {
    uint8_t key[32];            /* SHA-256 of the kind byte and the source */
    grammar_t *g;               /* NULL: a free slot */
    uint64_t used;              /* tick of the last use */
} constraint_slot_t;

/* The room a request keeps for held-back plus newly decoded text. */
#define ENGINE_HELD_CAP 4096

typedef enum { MSG_SUBMIT = 1, MSG_CANCEL = 2 } msg_kind_t;

/* One entry of the intake queue: a request (embedded in it) or a cancel. */
typedef struct intake_msg {
    struct intake_msg *next;
    msg_kind_t kind;
    uint64_t id;
} intake_msg_t;

typedef struct ev_node {
    struct ev_node *next;
    engine_event_t ev;
} ev_node_t;

typedef struct request {
    intake_msg_t msg;           /* MSG_SUBMIT; first member: the queue links through it */
    uint64_t id;
    void *cookie;               /* engine_request_t.cookie, copied into every event */
    sched_seq_t seq;            /* tokens, KV block table, scheduling state */
    sampler_params_t sp;        /* sp.logit_bias points at bias */
    sampler_bias_t *bias;       /* [sp.n_logit_bias] the request's own copy */
    sampler_seq_t pen;          /* penalty state; only when a penalty is on */
    int use_pen;
    stop_set_t stop;
    int32_t stop_tokens[ENGINE_MAX_STOP_TOKENS];
    uint32_t n_stop_tokens;
    int ignore_eos;
    int include_stop_str;       /* the matched stop string is part of the text */
    uint32_t min_tokens;        /* no stop before this many tokens (<= max_tokens) */
    uint32_t max_tokens;        /* resolved at submit: prompt + max_tokens <= n_ctx */
    uint32_t n_generated;
    tok_decoder_t dec;
    tok_text_t held;            /* decoded text not yet sent; capacity ENGINE_HELD_CAP */
    size_t unsent;              /* of it, the first bytes already released, whose token
                                   event could not be allocated: they go with the next event */
    ev_node_t *fin;             /* the finish event, reserved at submission; ownership
                                   passes to the event queue when the request finishes */
    uint8_t salt[ENGINE_MAX_SALT];
    gmatch_t *gm;               /* the constraint's parser state, or NULL */
    uint32_t *mask;             /* [gvocab_mask_words] the tokens allowed next */
    int mask_ready;             /* mask holds the allowed tokens of the next step */
    int dequeued;               /* no longer counted in n_queued */
    struct request *prev, *next;/* the engine's live requests */
} request_t;

enum { FAULT_NONE, FAULT_STALL, FAULT_FAIL };

struct engine {
    /* ---- immutable after engine_create */
    model_t *model;
    backend_t *backend;
    forward_t *fwd;
    sampler_t *sampler;
    kv_cache_t *kv;
    sched_t *sched;
    cost_fit_t step_cost;       /* the step cost model, learned from timed steps */
    const char *backend_name;
    char *model_name;
    uint32_t n_vocab, n_ctx;
    uint32_t max_tokens, max_seqs, max_queue;
    engine_notify_cb notify;
    void *notify_ctx;
    float *logits;              /* [max_seqs, n_vocab] the step's logit rows */
    chat_template_t chat;       /* when have_chat */
    int have_chat;
    pthread_t thread;
    int thread_started;

    gvocab_t *gvocab;           /* the vocabulary's byte trie, for constraints */

    /* ---- compiled constraints (gc_mu) */
    pthread_mutex_t gc_mu;
    int gc_mu_ready;
    constraint_slot_t gc[ENGINE_CONSTRAINT_CACHE];
    uint64_t gc_tick, gc_hits, gc_misses;

    /* ---- the mask worker (mk_mu; constraint.c) */
    pthread_mutex_t mk_mu;
    pthread_cond_t mk_cv, mk_done_cv;
    pthread_t mk_thread;
    int mk_started, mk_stop;
    request_t **mk_rows;        /* [max_seqs] the rows handed over */
    uint32_t mk_n;              /* rows to do; 0 = idle */
    int mk_busy;                /* engine thread only: rows are out */

    /* ---- intake queue (in_mu) */
    pthread_mutex_t in_mu;
    pthread_cond_t in_cv;
    intake_msg_t *in_head, *in_tail;
    uint32_t n_queued;          /* submitted and not yet admitted nor finished */
    uint64_t next_id;
    uint64_t n_submitted;
    int stopping;
    int refuse;                 /* the engine failed: submit says ERR_STATE */

    /* ---- event queue (ev_mu) */
    pthread_mutex_t ev_mu;
    pthread_cond_t ev_cv;
    ev_node_t *ev_head, *ev_tail;
    ev_node_t *ev_free;

    /* ---- statistics snapshot (st_mu) */
    pthread_mutex_t st_mu;
    engine_stats_t snap;

    /* ---- heartbeat */
    _Atomic uint64_t beat_iterations;
    _Atomic uint64_t beat_ns;
    _Atomic int beat_busy;
    _Atomic int beat_failed;

    /* ---- test fault hook (LLAMAD_TEST_FAULT), engine thread only after create */
    int fault;                  /* FAULT_NONE, FAULT_STALL or FAULT_FAIL */
    uint64_t fault_after;       /* working steps before it strikes */
    uint64_t fault_steps;

    /* ---- test hook (LLAMAD_TEST_EVENT_FAULTS=F:P): of every P token events, the first F
       cannot be allocated, as when the pool is empty and malloc fails; engine thread only */
    uint32_t ev_fault_fail, ev_fault_period;
    uint64_t ev_fault_count;

    /* ---- engine thread only */
    request_t *live_head, *live_tail;
    ev_node_t *out_head, *out_tail; /* events of this iteration, posted at its end */
    uint32_t n_dequeued;        /* to subtract from n_queued at the next intake */
    uint64_t finished[ENGINE_N_FINISH];
    uint64_t generated;
    double busy_seconds;
};

/* ---- engine_loop.c */

/* The engine thread's body (arg: the engine_t). */
void *engine_main(void *arg);

/* ---- constraint.c */

/* At engine_create: the vocabulary's trie and the cache's lock. */
int constraint_setup(engine_t *e, char *err, size_t errlen);
/* At engine_destroy (after every request is gone). */
void constraint_teardown(engine_t *e);
/* Start and stop the thread that computes masks during the forward pass. */
int constraint_start(engine_t *e, char *err, size_t errlen);
void constraint_stop(engine_t *e);
/* Before the forward pass: hand the step's constrained rows to the mask thread. */
void constraint_masks_begin(engine_t *e, sched_seq_t *const *seqs, uint32_t n);
/* After it: wait until their masks are ready. */
void constraint_masks_end(engine_t *e);
/* A request's parser state and mask for constraint g (NULL: none). */
int constraint_req_init(engine_t *e, request_t *q, grammar_t *g, char *err, size_t errlen);
void constraint_req_close(request_t *q);
/* Compute q's mask of allowed next tokens: 0, ERR_STATE when no token is allowed, or an error. */
int constraint_mask(engine_t *e, request_t *q);
/* Set the logits of the tokens q's mask forbids to -inf. */
void constraint_apply(engine_t *e, const request_t *q, float *logits);

/* ---- event.c */

/* A node from the pool (or malloc'd when it is empty); NULL when out of memory.  Any thread. */
ev_node_t *event_reserve(engine_t *e);

/* Free a list of nodes linked through next. */
void event_free_list(ev_node_t *n);

/*
 * Engine thread: make the reserved node n a blank event (id and kind set,
 * text empty) in this iteration's batch; ownership of n passes to the
 * batch.  Never fails.
 */
engine_event_t *event_use(engine_t *e, ev_node_t *n, uint64_t id, engine_ev_kind_t kind);

/* Engine thread: event_reserve + event_use; NULL when out of memory (or
 * when the LLAMAD_TEST_EVENT_FAULTS hook says so). */
engine_event_t *event_new(engine_t *e, uint64_t id, engine_ev_kind_t kind);

/* Engine thread: hand this iteration's events to the queue at once; returns whether there were any. */
int event_post(engine_t *e);

/* ---- engine_req.c */

/* Check and copy a submission into a new request (any thread). */
int req_create(engine_t *e, const engine_request_t *r, request_t **out, char *err, size_t errlen);
void req_destroy(request_t *q);

/*
 * The request's next token was sampled from `logits` (its row, [n_vocab],
 * processed in place): post its token event and, if it ends here, finish
 * it.  Engine thread.
 */
void req_on_logits(engine_t *e, request_t *q, float *logits);

/*
 * The request's next token was chosen elsewhere (rc 0, *r; the device's
 * greedy choice) or could not be (rc < 0, as sampler_sample's): the rest
 * of req_on_logits.  Engine thread.
 */
void req_on_sample(engine_t *e, request_t *q, int rc, const sampler_result_t *r);

/* Post the finish event, take the request out of the scheduler and free it. */
void req_finish(engine_t *e, request_t *q, engine_finish_t why, int32_t stop_token,
                int32_t stop_string, const char *message);

#endif
