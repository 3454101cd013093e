/*
 * engine_loop.c - the engine thread and the intake queue through which
 * requests come in (events go out through event.c; see engine.h for the
 * contract, engine_impl.h for who owns what).
 *
 * One iteration of the engine thread:
 *   1. take the intake queue (submissions and cancels, in order);
 *   2. plan a step (scheduler.h): decodes, prefill chunks, admissions,
 *      preemptions;
 *   3. run the forward pass on the step's ragged batch;
 *   4. commit (advance the sequences, publish full blocks for prefix
 *      caching), sample each sequence that reached its end, post events
 *      (when every row of the step is greedy and the backend can, the
 *      backend picks the tokens and only their ids come back);
 *   5. hand the step's events to the event queue in one go, notify the
 *      server once, and beat the heartbeat;
 *   6. feed the step's time to the step cost model, with which the
 *      scheduler keeps the next steps under max-step-time.
 * With no work it sleeps on the intake queue, waking once a second to
 * beat.
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_impl.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"

#define IDLE_BEAT_MS 1000

uint64_t engine_now_ns(void)
{
    return clock_now_ns();
}

/* ---------------------------------------------------------------- intake */

static void destroy_all(request_t **qs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        req_destroy(qs[i]);
}

int engine_submit(engine_t *e, const engine_request_t *r, uint64_t *id, char *err, size_t errlen)
{
    request_t *qs[ENGINE_MAX_CHOICES];
    *id = 0;
    uint32_t n = r->n_choices > 1 ? r->n_choices : 1;
    if (n > ENGINE_MAX_CHOICES)
        return err_set(err, errlen, ERR_RANGE, "n: %u choices (at most %d)", n, ENGINE_MAX_CHOICES);
    int rc = req_create_group(e, r, n, qs, err, errlen);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&e->in_mu);
    if (e->stopping || e->refuse) {
        pthread_mutex_unlock(&e->in_mu);
        destroy_all(qs, n);
        return err_set(err, errlen, ERR_STATE, "the engine is %s", e->refuse ? "failed" : "stopping");
    }
    if (e->n_queued + n > e->max_queue) {
        uint32_t queued = e->n_queued;
        pthread_mutex_unlock(&e->in_mu);
        destroy_all(qs, n);
        return err_set(err, errlen, ERR_FULL, "queue: %u requests are waiting (max-queue %u)", queued,
                       e->max_queue);
    }
    /* the lead of each group first: its siblings are parked on it at intake */
    for (uint32_t i = 0; i < n; i++) {
        request_t *q = qs[i];
        q->id = q->msg.id = ++e->next_id;
        q->msg.next = NULL;
        if (e->in_tail)
            e->in_tail->next = &q->msg;
        else
            e->in_head = &q->msg;
        e->in_tail = &q->msg;
    }
    e->n_queued += n;
    e->n_submitted += n;
    /* read before unlocking: once the engine thread holds the requests it
     * may finish and free them before this thread runs again */
    *id = qs[0]->id;
    pthread_cond_signal(&e->in_cv);
    pthread_mutex_unlock(&e->in_mu);
    return 0;
}

int engine_cancel(engine_t *e, uint64_t id)
{
    intake_msg_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return ERR_NOMEM;
    m->kind = MSG_CANCEL;
    m->id = id;
    pthread_mutex_lock(&e->in_mu);
    if (e->in_tail)
        e->in_tail->next = m;
    else
        e->in_head = m;
    e->in_tail = m;
    pthread_cond_signal(&e->in_cv);
    pthread_mutex_unlock(&e->in_mu);
    return 0;
}

static request_t *find_live(engine_t *e, uint64_t id)
{
    for (request_t *q = e->live_head; q != NULL; q = q->next)
        if (q->id == id)
            return q;
    return NULL;
}

/*
 * Take every queued message (waiting up to a beat when there is no work),
 * and apply them in order.  Returns 0, or 1 when the engine is stopping.
 */
static int take_intake(engine_t *e, int have_work)
{
    pthread_mutex_lock(&e->in_mu);
    e->n_queued -= e->n_dequeued;
    e->n_dequeued = 0;
    if (!have_work && e->in_head == NULL && !e->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += IDLE_BEAT_MS / 1000;
        pthread_cond_timedwait(&e->in_cv, &e->in_mu, &until);
    }
    if (e->stopping) { /* what is still queued is engine_destroy's to free */
        pthread_mutex_unlock(&e->in_mu);
        return 1;
    }
    intake_msg_t *m = e->in_head;
    e->in_head = e->in_tail = NULL;
    int refuse = e->refuse;
    pthread_mutex_unlock(&e->in_mu);
    while (m != NULL) {
        intake_msg_t *next = m->next;
        if (m->kind == MSG_SUBMIT) {
            request_t *q = (request_t *)m;
            q->prev = e->live_tail;
            q->next = NULL;
            if (e->live_tail)
                e->live_tail->next = q;
            else
                e->live_head = q;
            e->live_tail = q;
            if (refuse)
                req_finish(e, q, ENGINE_FINISH_ERROR, -1, -1, "the engine has failed");
            else if (q->fork_lead == NULL)  /* a sibling waits on its lead (req_fork) */
                sched_add(e->sched, &q->seq);
        } else {
            request_t *q = find_live(e, m->id);
            if (q != NULL)
                req_finish(e, q, ENGINE_FINISH_CANCELLED, -1, -1, NULL);
            free(m);
        }
        m = next;
    }
    return 0;
}

/* ---------------------------------------------------------------- the step */

static void fail_all(engine_t *e, int rc)
{
    char msg[ERR_MSG_MAX];
    const char *why = forward_last_error(e->fwd);
    snprintf(msg, sizeof msg, "the forward pass failed: %s%s%s", err_str(rc), *why ? ": " : "", why);
    log_error("engine: %s; failing every request", msg);
    pthread_mutex_lock(&e->in_mu);
    e->refuse = 1;
    pthread_mutex_unlock(&e->in_mu);
    atomic_store(&e->beat_failed, 1);
    while (e->live_head != NULL)
        req_finish(e, e->live_head, ENGINE_FINISH_ERROR, -1, -1, msg);
}

/*
 * The test fault hook: after fault_after working steps, either wedge (sleep
 * until engine_destroy, as a hung device call would) or fail as a sticky
 * device error would.  Returns 1 when the step must not run.
 */
static int fault_strikes(engine_t *e)
{
    if (e->fault == FAULT_NONE || ++e->fault_steps <= e->fault_after)
        return 0;
    if (e->fault == FAULT_FAIL) {
        log_error("engine: injected fault (LLAMAD_TEST_FAULT): failing the backend");
        fail_all(e, ERR_BACKEND);
        return 1;
    }
    log_error("engine: injected fault (LLAMAD_TEST_FAULT): the engine thread stalls");
    for (;;) {
        pthread_mutex_lock(&e->in_mu);
        int stop = e->stopping;
        pthread_mutex_unlock(&e->in_mu);
        if (stop)
            return 1;
        struct timespec ts = { 0, 100 * 1000000L };
        nanosleep(&ts, NULL);
    }
}

/*
 * Whether this request's next token is the plain argmax of its logits, as
 * the sampler would choose it (sampler.h step 5) with nothing before it
 * to apply (no logit_bias, no penalties, no stop tokens masked for
 * min_tokens) and no alternatives to report: then the backend may choose
 * it on the device.
 */
static int greedy_only(const request_t *q)
{
    const sampler_params_t *p = &q->sp;
    return (p->temperature == 0.0f || p->top_k == 1) && !q->use_pen && p->n_logit_bias == 0 &&
           p->n_logprobs == 0 && !req_constrained(q) && q->n_generated >= q->min_tokens;
}

/* Whether every logit row of the step is greedy_only (and the backend can take them);
   never with scoring rows, whose whole logits are wanted. */
static int step_is_greedy(engine_t *e, sched_seq_t *const *seqs, uint32_t n)
{
    if (!forward_has_argmax(e->fwd))
        return 0;
    for (uint32_t i = 0; i < n; i++)
        if (seqs[i]->step_n_score > 0 ||
            (seqs[i]->step_logit >= 0 && !greedy_only(seqs[i]->owner)))
            return 0;
    return 1;
}

/* Plan, run and sample one step.  Returns the number of sequences it served. */
static uint32_t step(engine_t *e)
{
    batch_t b;
    sched_seq_t *const *seqs;
    spec_propose(e);
    uint32_t n = sched_plan(e->sched, &b, &seqs);
    if (n == 0 || fault_strikes(e))
        return n;
    for (uint32_t i = 0; i < n; i++) {
        request_t *q = seqs[i]->owner;
        if (!q->dequeued && q->seq.started) {
            q->dequeued = 1;
            e->n_dequeued++;
        }
    }
    /* Greedy rows only: token ids cross back from the device, not [n_logits, n_vocab] floats. */
    const bk_argmax_t *am = NULL;
    int greedy = b.n_logits > 0 && step_is_greedy(e, seqs, n);
    if (!greedy)
        constraint_masks_begin(e, seqs, n);
    const int32_t *csrc, *cdst;
    uint32_t n_copies = sched_copies(e->sched, &csrc, &cdst);
    int rc = forward_kv_copy(e->fwd, csrc, cdst, n_copies);
    if (rc == 0)
        rc = greedy ? forward_step_argmax(e->fwd, &b, &am) : forward_step(e->fwd, &b, e->logits);
    if (!greedy)
        constraint_masks_end(e);
    if (rc != 0) {
        fail_all(e, rc);
        return n;
    }
    sched_commit(e->sched);
    /* seqs[] stays valid while requests finish: the plan is only rebuilt by sched_plan */
    for (uint32_t i = 0; i < n; i++) {
        sched_seq_t *s = seqs[i];
        if (s->step_n_score > 0) {
            if (req_on_scores(e, s->owner, e->logits + (uint64_t)s->step_score * e->n_vocab,
                              s->step_score_pos, s->step_n_score) != 0)
                continue; /* failed, and freed */
        }
        if (s->step_logit < 0)
            continue;
        request_t *q = s->owner;
        float *row = greedy ? NULL : e->logits + (uint64_t)s->step_logit * e->n_vocab;
        if (s->step_n_draft > 0) {
            spec_verify(e, s, greedy ? am : NULL);
            continue;
        }
        if (q->forks != NULL)   /* its prompt is computed: the siblings share it */
            req_fork(e, q, row, greedy ? &am[s->step_logit] : NULL);
        if (greedy) {
            /* the sampler's greedy result; token -1 is its ERR_RANGE (a NaN, or no finite logit) */
            const bk_argmax_t *g = &am[s->step_logit];
            sampler_result_t r = { .token = g->token, .logprob = g->logprob, .n_top = 0 };
            req_on_sample(e, s->owner, g->token < 0 ? ERR_RANGE : 0, &r);
        } else {
            req_on_logits(e, q, row);
        }
    }
    return n;
}

/*
 * Feed the step just timed to the cost model and plan the next steps with
 * the refitted model (step_cost.h): the scheduler then keeps each step
 * under max-step-time on this backend, model and machine.
 */
static void learn_step_cost(engine_t *e, uint64_t took_ns)
{
    sched_stats_t ss;
    sched_get_stats(e->sched, &ss);
    cost_fit_add(&e->step_cost, ss.last_tokens, ss.last_pairs, took_ns);
    sched_set_cost(e->sched, &e->step_cost.fit);
}

static void publish_stats(engine_t *e)
{
    sched_stats_t ss;
    kv_stats_t ks;
    engine_stats_t st;
    sched_get_stats(e->sched, &ss);
    kv_get_stats(e->kv, &ks);
    memset(&st, 0, sizeof st);
    st.running = ss.n_running;
    st.waiting = ss.n_waiting;
    st.blocks_total = ks.n_blocks;
    st.blocks_used = ks.n_used;
    st.blocks_free = ks.n_free;
    st.blocks_cached = ks.n_idle;
    memcpy(st.requests_finished, e->finished, sizeof st.requests_finished);
    st.prefix_cache_hits = ss.cache_hits;
    st.prefix_cache_tokens = ss.cached_tokens;
    st.prompt_tokens_computed = ss.prompt_tokens;
    st.tokens_computed = ss.tokens;
    st.tokens_generated = e->generated;
    st.preemptions = ss.preemptions;
    st.evictions = ks.evictions;
    st.kv_double_frees = ks.double_frees;
    st.steps = ss.steps;
    st.tokens_per_step = ss.steps ? (double)ss.tokens / ss.steps : 0.0;
    st.last_step_tokens = ss.last_tokens;
    st.last_step_seqs = ss.last_seqs;
    st.busy_seconds = e->busy_seconds;
    st.spec_draft_tokens = e->spec_drafted;
    st.spec_accepted_tokens = e->spec_accepted;
    pthread_mutex_lock(&e->st_mu);
    st.queued = e->snap.queued;
    st.requests_submitted = e->snap.requests_submitted;
    e->snap = st;
    pthread_mutex_unlock(&e->st_mu);
}

void *engine_main(void *arg)
{
    engine_t *e = arg;
    int have_work = 0;
    for (;;) {
        if (take_intake(e, have_work))
            break;
        /* busy from here, so that a step that never returns shows as a stall */
        atomic_store(&e->beat_busy, sched_waiting(e->sched) != NULL || sched_running(e->sched) != NULL);
        uint64_t t0 = engine_now_ns();
        uint32_t n = step(e);
        if (n > 0) {
            uint64_t took = engine_now_ns() - t0;
            e->busy_seconds += took * 1e-9;
            learn_step_cost(e, took);
        }
        if (event_post(e) && e->notify != NULL)
            e->notify(e->notify_ctx);
        have_work = sched_waiting(e->sched) != NULL || sched_running(e->sched) != NULL;
        publish_stats(e);
        atomic_store(&e->beat_busy, have_work);
        atomic_store(&e->beat_ns, engine_now_ns());
        atomic_fetch_add(&e->beat_iterations, 1);
    }
    return NULL;
}

void engine_health(const engine_t *e, engine_health_t *h)
{
    engine_t *m = (engine_t *)e; /* atomics are read-only here */
    h->iterations = atomic_load(&m->beat_iterations);
    h->last_beat_ns = atomic_load(&m->beat_ns);
    h->busy = atomic_load(&m->beat_busy);
    h->failed = atomic_load(&m->beat_failed);
}

void engine_get_stats(engine_t *e, engine_stats_t *st)
{
    pthread_mutex_lock(&e->in_mu);
    uint32_t queued = e->n_queued;
    uint64_t submitted = e->n_submitted;
    pthread_mutex_unlock(&e->in_mu);
    pthread_mutex_lock(&e->st_mu);
    e->snap.queued = queued;
    e->snap.requests_submitted = submitted;
    *st = e->snap;
    pthread_mutex_unlock(&e->st_mu);
}
