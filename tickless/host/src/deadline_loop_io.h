/*
 * deadline_loop_io.h: the IO channel of the deadline loop (included once, by
 * deadline_loop.c, after inject() and the clock helpers).
 *
 * The I/O load's device lives here rather than in a Python timer thread because its
 * arrivals and the precise channel must see each other without Python in between: the
 * decision "may an interrupt go in now, or would its handler still run when the precise
 * deadline comes?" is taken at the arrival, by the thread that also serves the deadline.
 *
 * - Arrivals: a Poisson process at 1/mean_gap_ns in guest time (xorshift64* + the inverse
 *   CDF), absolute, so a late wake-up delays interrupts but never thins them out; none
 *   before the guest runs its workload (shared.ready; counted not_ready).
 * - Coalescing: at most one interrupt in flight (injected, its handler not yet counted in
 *   shared.io_irq_count); arrivals meanwhile wait and go in together as one interrupt, as
 *   interrupt moderation does on a NIC. The device's status, shared.io_covered, says how
 *   many arrivals the interrupts so far covered; the handler copies it (io_seen).
 * - What an interrupt costs: the handler writes shared.io_done_tsc just before its EOI
 *   (and zeroes shared.ring3_back_tsc); ring 3 writes ring3_back_tsc when, after a gap in
 *   its clock reads (or a HLT), it runs at full speed again: the iret from emulated ring 0
 *   and the slow stretch after it cost tens of us more here. From the decision to inject
 *   to that return (to the handler's end when ring 3 shows none) is one sample, read
 *   without an exit. The estimate is a high quantile of the last IO_COST_SAMPLES samples
 *   (the IO_COST_RANK-th largest): a preempted handler now and then does not widen the
 *   window for long.
 * - Hold-back (the guest's precise channel): the guest hints its next precise deadline in
 *   shared.precise_deadline_ns. No interrupt goes in from deadline - (estimate + margin
 *   [+ the precise channel's advance when it will interrupt]) until the event was
 *   delivered (the hint moved on, at least release_after_ns and at most late_bound_ns
 *   past the deadline); held arrivals then go in at once, coalesced. The loop's own
 *   wake-up is late by tens of us on this host, so it wakes IO_EARLY_NS before a release
 *   and spins into it (loop->spin_until_tsc). The hint is the guest's (untrusted): an
 *   arrival held max_hold_ns goes in just after the next deadline, and never waits more
 *   than 2 * max_hold_ns.
 */
#include <math.h>

#define IO_COST_SAMPLES 64
#define IO_COST_RANK 2 /* the 2nd largest of 64: about the 97th percentile */
#define IO_EARLY_NS 60000 /* wake this much before a release, spin the rest */
#define IO_BACK_WAIT_NS 1000000 /* wait this long for ring 3's stamp after a handler */

struct dl_io_config {
    uint64_t mean_gap_ns;      /* 1e9 / the requested rate */
    uint64_t seed;
    int32_t link;              /* the guest's precise channel's id (-1: found by its vm_fd) */
    int32_t hold_mode;         /* 0: no hold-back, 1: a fixed window_ns, 2: cost-aware */
    int32_t to_ap;             /* 1: to vCPU 1, which first shows shared.ap_ready */
    int32_t unused;
    uint64_t window_ns;        /* hold_mode 1 */
    uint64_t margin_ns;        /* hold_mode 2: added to the estimate */
    uint64_t initial_cost_ns;  /* the estimate before the first sample */
    uint64_t max_cost_ns;      /* a sample is clamped to this (a preempted handler) */
    uint64_t max_hold_ns;
    uint64_t release_after_ns; /* after a deadline, held interrupts go in this much later */
    uint64_t late_bound_ns;    /* ... or once the guest shows the event, at most this late */
    uint64_t retry_ns;         /* one interrupt in flight: look again this much later */
    uint64_t lost_after_ns;    /* in flight without progress this long: counted lost */
    uint64_t log_address, log_capacity;
};

struct dl_io_event { /* one injected interrupt, for --explain (host TSC) */
    uint64_t inject_tsc, covers, done_tsc, held;
};

struct dl_io_stats {
    uint64_t arrivals, delivered, covered, held, forced, lost, not_ready, failed_injections,
        inject_errno, cost_samples, cost_sum_ns, cost_max_ns, estimate_ns, first_arrival_ns,
        last_ns, pending, logged, handled;
};

struct dl_io {
    struct dl_io_config cfg;
    uint64_t rng, next_arrival_ns;
    int started;
    uint64_t pending, pending_since_ns, pending_held; /* arrivals not covered yet */
    uint64_t force_deadline_ns; /* overdue: go in just after this deadline */
    uint64_t inject_tsc, handled, progress_ns;
    int sampling; /* the last handler ended: its cost is read once ring 3 shows its return */
    uint64_t sample_inject_tsc, sample_done_tsc;
    uint64_t cost_ns[IO_COST_SAMPLES]; /* the last samples (0: none yet) */
    unsigned cost_next;
    struct dl_io_event *log;
    struct dl_io_stats stats;
};

static struct dl_io *io_create(const struct dl_io_config *cfg, double tsc_per_ns) {
    (void)tsc_per_ns;
    if (cfg->mean_gap_ns == 0)
        return NULL;
    struct dl_io *io = calloc(1, sizeof *io);
    if (!io)
        return NULL;
    io->cfg = *cfg;
    io->rng = cfg->seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (!io->rng)
        io->rng = 1;
    io->log = (struct dl_io_event *)(uintptr_t)cfg->log_address;
    if (!io->log)
        io->cfg.log_capacity = 0;
    io->stats.estimate_ns = cfg->initial_cost_ns;
    return io;
}

static uint64_t io_gap_ns(struct dl_io *io) {
    io->rng ^= io->rng >> 12; /* xorshift64* */
    io->rng ^= io->rng << 25;
    io->rng ^= io->rng >> 27;
    uint64_t x = io->rng * 0x2545F4914F6CDD1Dull;
    double u = (double)((x >> 11) + 1) * (1.0 / 9007199254740992.0); /* (0, 1] */
    double gap = -log(u) * (double)io->cfg.mean_gap_ns;
    return gap < 1.0 ? 1 : gap > 1e15 ? (uint64_t)1e15 : (uint64_t)gap;
}

static void io_sample_cost(struct dl_io *io, const struct dl_clock *clock, uint64_t inject_tsc,
                           uint64_t end_tsc) {
    uint64_t cost = guest_ns(clock, end_tsc) - guest_ns(clock, inject_tsc);
    if (cost > io->cfg.max_cost_ns)
        cost = io->cfg.max_cost_ns;
    struct dl_io_stats *s = &io->stats;
    s->cost_samples++;
    s->cost_sum_ns += cost;
    if (cost > s->cost_max_ns)
        s->cost_max_ns = cost;
    io->cost_ns[io->cost_next] = cost;
    io->cost_next = (io->cost_next + 1) % IO_COST_SAMPLES;
    uint64_t top[IO_COST_RANK] = {0}; /* the largest samples, descending */
    for (int i = 0; i < IO_COST_SAMPLES; i++) {
        uint64_t v = io->cost_ns[i];
        for (int r = 0; r < IO_COST_RANK; r++)
            if (v > top[r]) {
                uint64_t t = top[r];
                top[r] = v;
                v = t;
            }
    }
    unsigned seen = s->cost_samples < IO_COST_SAMPLES ? (unsigned)s->cost_samples : IO_COST_SAMPLES;
    s->estimate_ns = seen >= IO_COST_RANK ? top[IO_COST_RANK - 1] : top[0];
    for (uint64_t i = s->logged; i > 0 && i + 4 > s->logged; i--) /* its row, near the end */
        if (io->log[i - 1].inject_tsc == inject_tsc)
            io->log[i - 1].done_tsc = end_tsc;
}

/* The last handler has ended (at done_tsc): its cost ends when ring 3 ran at full speed
 * again, which the guest stamps a little later (ring3_back_tsc, zeroed by the handler);
 * without a stamp for IO_BACK_WAIT_NS (ring 3 was not spinning), at the handler's end. */
static int io_try_sample(struct dl_io *io, volatile struct tickless_shared *p,
                         const struct dl_clock *clock, double tsc_per_ns, uint64_t now_tsc) {
    uint64_t done = io->sample_done_tsc, back = p->ring3_back_tsc;
    if (p->io_done_tsc != done || done <= io->sample_inject_tsc || done > now_tsc)
        return 0; /* a later handler ran, or nonsense: no sample */
    if (back > done && back <= now_tsc) {
        io_sample_cost(io, clock, io->sample_inject_tsc, back);
        return 0;
    }
    if ((double)(now_tsc - done) > IO_BACK_WAIT_NS * tsc_per_ns) {
        io_sample_cost(io, clock, io->sample_inject_tsc, done);
        return 0;
    }
    return 1; /* look again soon */
}

/* The same guest's precise channel (a CALL channel on its VM), or NULL. */
static struct dl_channel *io_precise(struct dl_loop *loop, struct dl_channel *c) {
    struct dl_io *io = c->io;
    int link = io->cfg.link;
    struct dl_channel *p = link >= 0 && link < loop->count ? loop->channels[link] : NULL;
    if (p && p->kind == DL_CALL && p->vm_fd == c->vm_fd)
        return p;
    for (int i = 0; i < loop->count; i++) {
        p = loop->channels[i];
        if (p && p->kind == DL_CALL && p->vm_fd == c->vm_fd) {
            io->cfg.link = i;
            return p;
        }
    }
    return NULL;
}

/* Guest time at which the pending arrivals may go in (now_ns: at once). */
static uint64_t io_release_at(struct dl_loop *loop, struct dl_channel *c, uint64_t now_ns) {
    struct dl_io *io = c->io;
    const struct dl_io_config *cfg = &io->cfg;
    if (cfg->hold_mode == 0)
        return now_ns;
    uint64_t hint = c->page->precise_deadline_ns;
    uint64_t deadline = io->force_deadline_ns ? io->force_deadline_ns : hint;
    if (io->force_deadline_ns && now_ns >= io->pending_since_ns + 2 * cfg->max_hold_ns)
        deadline = 0; /* waited long enough, whatever the guest says */
    if (deadline == 0)
        return now_ns;
    uint64_t release = deadline + cfg->release_after_ns;
    if (now_ns >= deadline) { /* the event is due: go in once the guest shows it */
        if (now_ns >= release && (hint != deadline || now_ns >= deadline + cfg->late_bound_ns))
            return now_ns;
        return now_ns + cfg->release_after_ns;
    }
    if (io->force_deadline_ns)
        return release;
    uint64_t window = cfg->window_ns;
    if (cfg->hold_mode == 2) {
        window = io->stats.estimate_ns + cfg->margin_ns;
        struct dl_channel *p = io_precise(loop, c);
        if (p && p->pending_ns == deadline) /* it will interrupt too */
            window += (uint64_t)p->adv.advance_ns;
    }
    if (deadline > now_ns + window) /* the window has not opened */
        return now_ns;
    if (now_ns - io->pending_since_ns >= cfg->max_hold_ns)
        io->force_deadline_ns = deadline; /* overdue: in right after this one */
    return release;
}

static void io_deliver(struct dl_channel *c, uint64_t now_ns) {
    struct dl_io *io = c->io;
    struct dl_io_stats *s = &io->stats;
    uint64_t covers = io->pending, decided_tsc = rdtsc(); /* the ioctl's time is the cost's */
    s->covered += covers;
    c->page->io_covered = s->covered; /* the device's status, before its interrupt */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    int err = inject(c);
    if (err) { /* not delivered: the arrivals stay pending (counted, never lost) */
        s->covered -= covers;
        c->page->io_covered = s->covered;
        s->failed_injections++;
        s->inject_errno = (uint64_t)err;
        return;
    }
    io->inject_tsc = decided_tsc;
    if (s->logged < io->cfg.log_capacity)
        io->log[s->logged++] = (struct dl_io_event){io->inject_tsc, covers, 0, io->pending_held};
    s->delivered++;
    if (io->force_deadline_ns)
        s->forced++;
    io->force_deadline_ns = 0;
    io->pending = io->pending_held = 0;
    io->progress_ns = now_ns;
}

static void io_process(struct dl_loop *loop, struct dl_channel *c, uint64_t now_tsc) {
    struct dl_io *io = c->io;
    struct dl_io_stats *s = &io->stats;
    volatile struct tickless_shared *p = c->page;
    c->wake_tsc = DL_NONE;
    if (c->clock.mul == 0) /* frozen: nothing arrives; dl_set_clock wakes us at the thaw */
        return;
    uint64_t now_ns = guest_ns(&c->clock, now_tsc);
    s->last_ns = now_ns;
    if (!io->started) {
        if (!p->ready || (io->cfg.to_ap && !p->ap_ready)) { /* no interrupts taken yet */
            c->wake_tsc = now_tsc + (uint64_t)(100000 * loop->tsc_per_ns);
            return;
        }
        io->started = 1;
        io->next_arrival_ns = now_ns + io_gap_ns(io);
    }
    while (io->next_arrival_ns <= now_ns) {
        if (!s->first_arrival_ns)
            s->first_arrival_ns = io->next_arrival_ns;
        s->arrivals++;
        if (!io->pending)
            io->pending_since_ns = io->next_arrival_ns;
        io->pending++;
        io->next_arrival_ns += io_gap_ns(io);
    }
    uint64_t handled = p->io_irq_count; /* the guest's: never more than we injected */
    if (handled > s->delivered)
        handled = s->delivered;
    if (handled > io->handled) {
        io->handled = handled;
        io->progress_ns = now_ns;
        if (handled == s->delivered) {
            io->sampling = 1;
            io->sample_inject_tsc = io->inject_tsc;
            io->sample_done_tsc = p->io_done_tsc;
        }
    }
    if (io->sampling)
        io->sampling = io_try_sample(io, p, &c->clock, loop->tsc_per_ns, now_tsc);
    s->handled = io->handled;
    if (s->lost > s->delivered - io->handled) /* counted lost, but the guest took them */
        s->lost = s->delivered - io->handled;
    uint64_t wake_ns = io->next_arrival_ns;
    if (io->pending) {
        uint64_t release = io_release_at(loop, c, now_ns);
        uint64_t in_flight = s->delivered - io->handled - s->lost;
        if (release > now_ns) {
            s->held += io->pending - io->pending_held;
            io->pending_held = io->pending;
            uint64_t at = release;
            if (release > now_ns + IO_EARLY_NS) {
                at = release - IO_EARLY_NS; /* the timerfd, then a spin into the release */
            } else {
                uint64_t release_tsc = tsc_at(&c->clock, release);
                if (release_tsc != DL_NONE && release_tsc > loop->spin_until_tsc)
                    loop->spin_until_tsc = release_tsc;
            }
            if (at < wake_ns)
                wake_ns = at;
        } else if (in_flight && now_ns - io->progress_ns < io->cfg.lost_after_ns) {
            /* coalesce: one in flight at a time. Look again after half the time it has been
             * in flight (at least retry_ns, at most 1 ms): polling every few us would keep
             * this real-time thread on its CPU, and a vCPU that shares it from taking it */
            uint64_t step = (now_ns - io->progress_ns) / 2;
            step = step < io->cfg.retry_ns ? io->cfg.retry_ns : step > 1000000 ? 1000000 : step;
            if (now_ns + step < wake_ns)
                wake_ns = now_ns + step;
        } else {
            s->lost += in_flight; /* no progress for long: stop waiting for them */
            io_deliver(c, now_ns);
            if (io->pending && now_ns + io->cfg.retry_ns < wake_ns) /* the ioctl failed */
                wake_ns = now_ns + io->cfg.retry_ns;
        }
    }
    if (io->sampling && now_ns + io->cfg.retry_ns < wake_ns)
        wake_ns = now_ns + io->cfg.retry_ns;
    s->pending = io->pending;
    c->wake_tsc = tsc_at(&c->clock, wake_ns);
}

/* IO channels: the device's counts (0) or -ENOENT. */
int dl_io_stats(struct dl_loop *loop, int id, struct dl_io_stats *out) {
    pthread_mutex_lock(&loop->mutex);
    struct dl_channel *c = id >= 0 && id < loop->count ? loop->channels[id] : NULL;
    if (c && c->io)
        *out = c->io->stats;
    pthread_mutex_unlock(&loop->mutex);
    return c && c->io ? 0 : -ENOENT;
}
