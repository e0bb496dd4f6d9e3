/*
 * deadline_loop: the host side of tickless's absolute-deadline timers, outside the GIL.
 *
 * One thread serves every guest channel of the host (its cost is shared). A channel is one
 * guest timer with absolute deadlines on that guest's PV clock, woken early by an adaptive
 * advance (as KVM's lapic_timer_advance_ns); the guest spins the residual in ring 3. Two
 * kinds of channel share everything but where the deadline comes from:
 *
 *  - PAGE (the PV deadline device, --timer pv): the guest publishes its next deadline in
 *    its shared page (struct tickless_shared, pv_* fields) and kicks us through an
 *    ioeventfd only when that deadline is earlier than pv_host_armed_ns, the earliest
 *    deadline we promise to see in time. After each expiry we look at the page once more,
 *    just before a steady guest's next expiry is due (look_after), to pick up its next
 *    deadline without an exit.
 *  - CALL (the precise channel): the deadline arrives through dl_set_deadline (a hypercall
 *    the Python device validated).
 *  - IO (the I/O device's interrupts, devices/io_irq.py): not a timer but the load that
 *    competes with one. Its Poisson arrivals are generated here, in guest time, so that the
 *    hold-back before a precise deadline is decided where the arrivals are, without Python
 *    in between: see deadline_loop_io.h.
 *
 * The guest is untrusted: everything read from its page is clamped (a deadline further
 * than max_delta_ns is looked at again then; a margin is clamped to the advance limits),
 * counted, and never makes the loop wait on the guest or fire more than once per deadline.
 * Python threads call the dl_* functions (ctypes releases the GIL); they take the mutex the
 * loop holds while it touches channels, so after dl_remove returns the loop will not touch
 * that guest's memory again.
 */
#define _GNU_SOURCE
#include "tickless_abi.h" /* the guest's ABI (tickless/guest/abi.py): struct tickless_shared */
#undef EINVAL             /* ... whose errno values are the system's own */
#undef ENOSYS
#undef ETIME
#undef E2BIG

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define DL_MAX_CHANNELS 8192
#define DL_NONE UINT64_MAX
#define DL_SPIN_LIMIT_NS 4000 /* woke this little early: spin (in C, no GIL) instead */
#define DL_LOOK_GUARD_NS 3000 /* look this much before a steady guest's next expiry: within \
                                * DL_SPIN_LIMIT_NS, so the look and the expiry are one wake-up */
#define DL_INTERVALS 16        /* a steady guest's interval: the shortest of this many */

enum { DL_PAGE = 0, DL_CALL = 1, DL_IO = 2 };

struct dl_clock { /* the guest's PV clock, the host's own copy (never read from the guest) */
    uint64_t tsc_timestamp, system_time_ns;
    uint32_t mul;
    int32_t shift;
};

struct dl_advance { /* AdaptiveAdvance (tickless/timers/precise.py), the same arithmetic */
    int64_t advance_ns, target_margin_ns, min_ns, max_ns, grow, grow_shift, shrink_shift;
};

struct dl_stats { /* fired: interrupts the ioctl took; failed_injections: expiries it refused */
    uint64_t fired, looks, kicks, loop_wakeups, late_wakeups, margins, past_deadlines,
        far_deadlines, logged, advance_ns, failed_injections, inject_errno;
    uint64_t block_wakes; /* PAGE: expiries delivered by ending a BLOCK, not by interrupt */
};

struct dl_event { /* one expiry, for --explain: guest ns and host TSC */
    uint64_t deadline_ns, planned_wake_tsc, wake_tsc, injected_tsc;
};

struct dl_channel {
    int kind, vm_fd, gsi, kick_fd;
    int exact; /* deliver exact: wait out the advance here, inject at the deadline (Linux) */
    int block_fd;  /* PAGE: eventfd a vCPU thread blocked in dl_block waits on (-1: none) */
    int blocked;   /* PAGE: that thread waits for pending_ns: end the wait, inject nothing */
    struct kvm_msi msi;
    volatile struct tickless_shared *page; /* PAGE only: the guest's shared page */
    struct dl_clock clock;
    struct dl_advance adv;
    uint64_t max_delta_ns, look_delay_ns;
    uint64_t pending_ns;     /* armed deadline (0: none) */
    uint64_t last_fired_ns;  /* PAGE: a deadline equal to this has been delivered */
    uint64_t last_seen_ns;   /* PAGE: the page's deadline as last read (counts changes) */
    uint64_t look_ns;        /* PAGE: guest time of the look after an expiry (0: none) */
    uint64_t interval_ns[DL_INTERVALS]; /* PAGE: recent intervals between fired deadlines */
    unsigned interval_next;
    uint64_t margin_seq;     /* PAGE: last pv_margin_seq folded in */
    uint64_t wake_tsc, planned_wake_tsc;
    uint64_t planned_ns;     /* exact: the deadline planned_wake_tsc was computed for */
    struct dl_event *log;    /* optional, capacity log_capacity */
    uint64_t log_capacity;
    struct dl_stats stats;
    struct dl_io *io;        /* IO only */
};

struct dl_loop {
    pthread_t thread;
    pthread_mutex_t mutex;
    int epoll_fd, timer_fd, control_fd, running, started, fifo_priority, cpu;
    int sched_error, affinity_error; /* errno of settings the thread could not apply */
    int thread_id;                   /* the loop thread's TID (0 until it runs) */
    double tsc_per_ns;
    struct dl_channel *channels[DL_MAX_CHANNELS];
    /* channels[i]'s next wake-up, packed so that a scan of a thousand guests stays in cache:
     * 0 makes it run at the loop's next turn (a kick, new settings), DL_NONE never. */
    uint64_t due[DL_MAX_CHANNELS];
    int count; /* channels[0..count) may be in use */
    uint64_t loop_wakeups;
    uint64_t armed_tsc; /* what the timerfd is programmed for (DL_NONE: disarmed) */
    uint64_t slop_tsc;  /* a wake-up may come this late, so that nearby ones coalesce */
    uint64_t spin_until_tsc; /* a wake-up up to this TSC is spun to, not slept to (IO) */
};

static inline uint64_t rdtsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi)::"memory");
    return ((uint64_t)hi << 32) | lo;
}

static uint64_t guest_ns(const struct dl_clock *c, uint64_t tsc) {
    if (tsc <= c->tsc_timestamp || c->mul == 0) /* mul 0: a frozen guest's clock */
        return c->system_time_ns;
    uint64_t delta = tsc - c->tsc_timestamp;
    delta = c->shift < 0 ? delta >> -c->shift : delta << c->shift;
    return c->system_time_ns + (uint64_t)(((unsigned __int128)delta * c->mul) >> 32);
}

/* The first TSC value at which the guest clock reads at least ns: the inverse of the
 * scale (a few ticks off from truncation), then stepped to the exact tick. */
static uint64_t tsc_at(const struct dl_clock *c, uint64_t ns) {
    if (ns <= c->system_time_ns)
        return c->tsc_timestamp;
    if (c->mul == 0) /* frozen: a later reading never comes */
        return DL_NONE;
    unsigned __int128 scaled = ((unsigned __int128)(ns - c->system_time_ns) << 32) / c->mul;
    uint64_t delta = (uint64_t)scaled;
    delta = c->shift < 0 ? delta << -c->shift : delta >> c->shift;
    uint64_t tsc = c->tsc_timestamp + delta;
    while (guest_ns(c, tsc) < ns)
        tsc++;
    while (tsc > c->tsc_timestamp && guest_ns(c, tsc - 1) >= ns)
        tsc--;
    return tsc;
}

static void advance_update(struct dl_advance *a, int64_t margin_ns) {
    if (margin_ns > a->max_ns)
        margin_ns = a->max_ns;
    if (margin_ns < -a->max_ns)
        margin_ns = -a->max_ns;
    int64_t error = margin_ns - a->target_margin_ns;
    if (error < 0)
        a->advance_ns += (a->grow * -error) >> a->grow_shift;
    else
        a->advance_ns -= error >> a->shrink_shift;
    if (a->advance_ns < a->min_ns)
        a->advance_ns = a->min_ns;
    if (a->advance_ns > a->max_ns)
        a->advance_ns = a->max_ns;
}

/* Raise the guest's interrupt: 0, or the errno of the ioctl that refused it (a VM being
 * torn down, a bad descriptor). KVM_SIGNAL_MSI's 0 (the guest's APIC blocked it) is the
 * guest's doing, not a failure of ours. */
static int inject(struct dl_channel *c) {
    if (c->gsi < 0)
        return ioctl(c->vm_fd, KVM_SIGNAL_MSI, &c->msi) < 0 ? errno : 0;
    struct kvm_irq_level level = {.irq = (uint32_t)c->gsi, .level = 1};
    if (ioctl(c->vm_fd, KVM_IRQ_LINE, &level) < 0)
        return errno;
    level.level = 0;
    return ioctl(c->vm_fd, KVM_IRQ_LINE, &level) < 0 ? errno : 0;
}

/* When to look at the page after the expiry of deadline: if the guest keeps a steady
 * interval (the shortest of its last DL_INTERVALS seen: a late event lengthens the next
 * interval of a relative stream, never shortens it), just before its next expiry is due,
 * so the look
 * and that expiry are one wake-up and the guest's next deadline is rarely earlier than the
 * promise (look + advance); otherwise shortly after this deadline. Any other wake-up of
 * the loop reads the page too, so the look is only the latest time we read it. */
uint64_t dl_look_offset(const uint64_t *intervals_ns, int n, uint64_t advance_ns,
                        uint64_t look_delay_ns) {
    uint64_t est = UINT64_MAX;
    for (int i = 0; i < n; i++)
        if (intervals_ns[i] && intervals_ns[i] < est)
            est = intervals_ns[i]; /* 0: not seen yet; none at all: no estimate */
    if (est == UINT64_MAX)
        return look_delay_ns;
    uint64_t guard = est / 8 < DL_LOOK_GUARD_NS ? est / 8 : DL_LOOK_GUARD_NS;
    if (est > advance_ns + guard + look_delay_ns)
        return est - advance_ns - guard;
    return look_delay_ns;
}

static uint64_t look_after(struct dl_channel *c, uint64_t deadline) {
    if (c->last_fired_ns && deadline > c->last_fired_ns) {
        c->interval_ns[c->interval_next] = deadline - c->last_fired_ns;
        c->interval_next = (c->interval_next + 1) % DL_INTERVALS;
    }
    return dl_look_offset(c->interval_ns, DL_INTERVALS, (uint64_t)c->adv.advance_ns,
                          c->look_delay_ns);
}

/* woke_ns: when the loop woke for it (an exact channel injects later, at the deadline). */
static int wake_blocked(struct dl_channel *c) {
    uint64_t one = 1;
    c->blocked = 0;
    c->page->pv_block_wakes++; /* before the wake: the guest reads it once it runs */
    return write(c->block_fd, &one, sizeof one) == sizeof one ? 0 : errno;
}

static void fire(struct dl_channel *c, uint64_t now_tsc, uint64_t woke_ns) {
    uint64_t deadline = c->pending_ns;
    int blocked = c->blocked; /* PV idle: the vCPU resumes where it blocked, no interrupt */
    if (c->exact && !blocked) /* Linux checks its interrupt against it; the injection's */
        c->page->pv_fired_ns = deadline; /* syscall orders the store before the interrupt */
    int err = blocked ? wake_blocked(c) : inject(c);
    if (blocked && !err)
        c->stats.block_wakes++;
    if (c->log && c->stats.logged < c->log_capacity) /* every expiry, delivered or not */
        c->log[c->stats.logged++] = (struct dl_event){deadline, c->planned_wake_tsc, now_tsc,
                                                       rdtsc()};
    if (err) { /* not delivered: counted as failed, never as fired; the deadline is spent */
        c->stats.failed_injections++;
        c->stats.inject_errno = (uint64_t)err;
    } else {
        c->stats.fired++;
    }
    if (woke_ns >= deadline)
        c->stats.late_wakeups++;
    c->pending_ns = 0;
    c->look_ns = 0;
    if (c->kind == DL_PAGE)
        c->look_ns = deadline + look_after(c, deadline);
    c->last_fired_ns = deadline;
}

/* PAGE: what the guest published, validated; updates pending_ns. */
static void read_page(struct dl_channel *c, uint64_t now_ns) {
    volatile struct tickless_shared *p = c->page;
    uint64_t seq = p->pv_margin_seq;
    if (seq != c->margin_seq) {
        c->margin_seq = seq;
        advance_update(&c->adv, (int64_t)p->pv_margin_ns);
        c->stats.margins++;
        p->pv_advance_ns = (uint64_t)c->adv.advance_ns;
    }
    uint64_t deadline = p->pv_deadline_ns;
    if (deadline != c->last_seen_ns) {
        c->last_seen_ns = deadline;
        if (deadline && deadline < now_ns)
            c->stats.past_deadlines++;
        if (deadline > now_ns + c->max_delta_ns)
            c->stats.far_deadlines++;
    }
    c->pending_ns = 0;
    if (deadline == 0 || deadline == c->last_fired_ns)
        return;
    if (deadline > now_ns + c->max_delta_ns) { /* far: look again then, never sleep forever */
        if (!c->look_ns || c->look_ns > now_ns + c->max_delta_ns)
            c->look_ns = now_ns + c->max_delta_ns;
        return;
    }
    c->pending_ns = deadline;
}

#include "deadline_loop_io.h"

/* A guest that cannot spin to its deadline (Linux: its clock-event handler runs in ring 0,
 * emulated here, and an early interrupt would only be re-armed) gets the interrupt at the
 * deadline itself: we woke by the advance, and wait out the rest here, as KVM's
 * lapic_timer_advance does before it injects. The loop's own margin (how early it woke
 * for the deadline it planned for) tunes the advance, since the guest reports none. The
 * wait is bounded by the advance (max_ns), and a frozen clock (mul 0) is not waited for:
 * the deadline then fires at once, which is what a frozen guest's later time would do. */
static uint64_t wait_exact(struct dl_channel *c, uint64_t now_tsc, uint64_t *now_ns) {
    uint64_t deadline = c->pending_ns;
    if (c->planned_ns == deadline && c->planned_wake_tsc != DL_NONE &&
        now_tsc >= c->planned_wake_tsc) { /* our own wake-up for it: fold its margin */
        advance_update(&c->adv, (int64_t)(deadline - *now_ns));
        c->stats.margins++;
    }
    if (c->clock.mul == 0)
        return now_tsc;
    uint64_t until_tsc = tsc_at(&c->clock, deadline);
    while (now_tsc < until_tsc) {
        __asm__ volatile("pause");
        now_tsc = rdtsc();
    }
    *now_ns = guest_ns(&c->clock, now_tsc);
    return now_tsc;
}

/* One channel at host TSC now: fire what is due, then set wake_tsc and (PAGE) the promise
 * in pv_host_armed_ns. Dekker order with the guest: we publish the promise, fence, then
 * read its deadline; it writes the deadline, fences, then reads the promise. */
static void process(struct dl_loop *loop, struct dl_channel *c, uint64_t now_tsc) {
    if (c->kind == DL_IO) {
        io_process(loop, c, now_tsc);
        return;
    }
    uint64_t now_ns = guest_ns(&c->clock, now_tsc);
    for (int round = 0; round < 4; round++) {
        if (c->kind == DL_PAGE) {
            if (c->look_ns && now_ns >= c->look_ns) {
                c->look_ns = 0;
                c->stats.looks++;
            }
            read_page(c, now_ns);
        }
        if (c->pending_ns && now_ns + (uint64_t)c->adv.advance_ns >= c->pending_ns) {
            uint64_t woke_ns = now_ns;
            if (c->exact)
                now_tsc = wait_exact(c, now_tsc, &now_ns);
            fire(c, now_tsc, woke_ns);
        }
        uint64_t promise;
        c->planned_ns = c->pending_ns;
        if (c->pending_ns) {
            c->planned_wake_tsc = tsc_at(&c->clock, c->pending_ns - (uint64_t)c->adv.advance_ns);
            promise = c->pending_ns;
        } else if (c->look_ns) {
            c->planned_wake_tsc = tsc_at(&c->clock, c->look_ns);
            promise = c->look_ns + (uint64_t)c->adv.advance_ns;
        } else {
            c->planned_wake_tsc = DL_NONE;
            promise = 0;
        }
        c->wake_tsc = c->planned_wake_tsc;
        if (c->kind != DL_PAGE)
            return;
        c->page->pv_host_armed_ns = promise;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (c->page->pv_deadline_ns == c->last_seen_ns)
            return;
        /* the guest published while we decided: decide again (a storm is bounded) */
    }
}

/* Program the timerfd for wake_tsc; skipped when it already is (each reprogramming is a
 * host timer write, which costs an exit of its own on a nested host like this one). */
static void arm_timer(struct dl_loop *loop, uint64_t wake_tsc) {
    if (wake_tsc == loop->armed_tsc)
        return;
    loop->armed_tsc = wake_tsc;
    struct itimerspec spec = {0};
    if (wake_tsc != DL_NONE) {
        struct timespec mono;
        uint64_t tsc = rdtsc();
        clock_gettime(CLOCK_MONOTONIC, &mono);
        int64_t ahead_ns = wake_tsc > tsc ? (int64_t)((double)(wake_tsc - tsc) / loop->tsc_per_ns)
                                          : 0;
        int64_t at_ns = (int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec + ahead_ns;
        if (at_ns < 1)
            at_ns = 1;
        spec.it_value.tv_sec = at_ns / 1000000000;
        spec.it_value.tv_nsec = at_ns % 1000000000;
    }
    timerfd_settime(loop->timer_fd, TFD_TIMER_ABSTIME, &spec, NULL);
}

static void drain(int fd) {
    uint64_t value;
    while (read(fd, &value, sizeof value) == sizeof value)
        ;
}

static void *loop_main(void *arg) {
    struct dl_loop *loop = arg;
    if (loop->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(loop->cpu, &set);
        loop->affinity_error = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    if (loop->fifo_priority > 0) {
        struct sched_param param = {.sched_priority = loop->fifo_priority};
        loop->sched_error = pthread_setschedparam(pthread_self(), SCHED_FIFO, &param);
    }
    struct epoll_event events[64];
    pthread_mutex_lock(&loop->mutex);
    loop->thread_id = gettid();
    while (loop->running) {
        uint64_t next;
        for (;;) {
            uint64_t now = rdtsc();
            next = DL_NONE;
            for (int i = 0; i < loop->count; i++) { /* O(guests) compares; due ones work */
                uint64_t due = loop->due[i];
                if (due <= now) {
                    struct dl_channel *c = loop->channels[i];
                    process(loop, c, now);
                    due = loop->due[i] = c->wake_tsc;
                }
                if (due != DL_NONE && due + loop->slop_tsc < next)
                    next = due + loop->slop_tsc; /* may run up to slop late */
            }
            uint64_t spin_tsc = (uint64_t)(DL_SPIN_LIMIT_NS * loop->tsc_per_ns);
            if (next == DL_NONE || (next > rdtsc() + spin_tsc && next > loop->spin_until_tsc))
                break;
            pthread_mutex_unlock(&loop->mutex); /* let Python in while we spin */
            while (rdtsc() < next)
                __asm__ volatile("pause");
            pthread_mutex_lock(&loop->mutex);
        }
        arm_timer(loop, next);
        pthread_mutex_unlock(&loop->mutex);
        int n = epoll_wait(loop->epoll_fd, events, 64, -1);
        pthread_mutex_lock(&loop->mutex);
        loop->loop_wakeups++;
        for (int i = 0; i < n; i++) {
            int index = (int)events[i].data.u32;
            if (index == -1) { /* edge-triggered: no read (a system call) needed */
                loop->armed_tsc = DL_NONE; /* it fired: disarmed now */
                continue;
            }
            if (index == -2) {
                drain(loop->control_fd);
                continue;
            }
            struct dl_channel *c = index < loop->count ? loop->channels[index] : NULL;
            if (c && c->kick_fd >= 0) {
                drain(c->kick_fd);
                c->stats.kicks++;
                loop->due[index] = 0;
            }
        }
    }
    pthread_mutex_unlock(&loop->mutex);
    return NULL;
}

static void poke(struct dl_loop *loop) {
    uint64_t one = 1;
    ssize_t written = write(loop->control_fd, &one, sizeof one);
    (void)written; /* a full counter already wakes the loop */
}

/* --- the API Python calls (ctypes) ---------------------------------------------------- */

struct dl_loop *dl_create(double tsc_per_ns, int fifo_priority, int cpu, uint64_t slop_ns) {
    struct dl_loop *loop = calloc(1, sizeof *loop);
    if (!loop)
        return NULL;
    pthread_mutex_init(&loop->mutex, NULL);
    loop->tsc_per_ns = tsc_per_ns;
    loop->fifo_priority = fifo_priority;
    loop->cpu = cpu;
    loop->armed_tsc = DL_NONE;
    for (int i = 0; i < DL_MAX_CHANNELS; i++)
        loop->due[i] = DL_NONE;
    loop->slop_tsc = (uint64_t)((double)slop_ns * tsc_per_ns);
    loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    loop->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    loop->control_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    /* The timerfd edge-triggered: each expiry wakes us, and rearming resets its count. */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
    ev.data.u32 = (uint32_t)-1;
    int bad = loop->epoll_fd < 0 || loop->timer_fd < 0 || loop->control_fd < 0 ||
              epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, loop->timer_fd, &ev) < 0;
    ev.events = EPOLLIN;
    ev.data.u32 = (uint32_t)-2;
    if (!bad && epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, loop->control_fd, &ev) < 0)
        bad = 1;
    if (bad) {
        int saved = errno;
        close(loop->epoll_fd), close(loop->timer_fd), close(loop->control_fd);
        free(loop);
        errno = saved;
        return NULL;
    }
    return loop;
}

int dl_start(struct dl_loop *loop) {
    loop->running = 1;
    int err = pthread_create(&loop->thread, NULL, loop_main, loop);
    if (err) {
        loop->running = 0;
        return -err;
    }
    loop->started = 1;
    return 0;
}

void dl_destroy(struct dl_loop *loop) {
    pthread_mutex_lock(&loop->mutex);
    loop->running = 0;
    pthread_mutex_unlock(&loop->mutex);
    poke(loop);
    if (loop->started)
        pthread_join(loop->thread, NULL);
    for (int i = 0; i < loop->count; i++)
        if (loop->channels[i]) {
            free(loop->channels[i]->io);
            free(loop->channels[i]);
        }
    close(loop->epoll_fd), close(loop->timer_fd), close(loop->control_fd);
    free(loop);
}

struct dl_channel_config {
    int32_t kind, vm_fd, gsi, kick_fd;
    uint32_t msi_address_lo, msi_data;
    uint64_t page_address; /* PAGE: host address of the guest's struct tickless_shared */
    uint64_t tsc_timestamp, system_time_ns;
    uint32_t mul;
    int32_t shift;
    int64_t advance_ns, target_margin_ns, min_ns, max_ns, grow, grow_shift, shrink_shift;
    uint64_t max_delta_ns, look_delay_ns;
    uint64_t log_address, log_capacity;
    struct dl_io_config io; /* IO only */
    int32_t exact, block_fd; /* PAGE: deliver at the deadline itself (wait_exact); the
                              * eventfd dl_block waits on (-1: none) */
};

/* Returns the channel's id (>= 0) or -errno. */
int dl_add(struct dl_loop *loop, const struct dl_channel_config *cfg) {
    struct dl_channel *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->kind = cfg->kind, c->vm_fd = cfg->vm_fd, c->gsi = cfg->gsi, c->kick_fd = cfg->kick_fd;
    c->exact = cfg->exact != 0;
    c->block_fd = cfg->kind == DL_PAGE ? cfg->block_fd : -1;
    c->msi.address_lo = cfg->msi_address_lo, c->msi.data = cfg->msi_data;
    c->page = (volatile struct tickless_shared *)(uintptr_t)cfg->page_address;
    c->clock = (struct dl_clock){cfg->tsc_timestamp, cfg->system_time_ns, cfg->mul, cfg->shift};
    c->adv = (struct dl_advance){cfg->advance_ns, cfg->target_margin_ns, cfg->min_ns,
                                 cfg->max_ns,     cfg->grow,             cfg->grow_shift,
                                 cfg->shrink_shift};
    c->max_delta_ns = cfg->max_delta_ns, c->look_delay_ns = cfg->look_delay_ns;
    c->log = (struct dl_event *)(uintptr_t)cfg->log_address;
    c->log_capacity = cfg->log_address ? cfg->log_capacity : 0;
    c->wake_tsc = c->planned_wake_tsc = DL_NONE;
    if (c->kind == DL_IO && !(c->io = io_create(&cfg->io, loop->tsc_per_ns))) {
        free(c);
        return -EINVAL;
    }
    pthread_mutex_lock(&loop->mutex);
    int index = -1;
    for (int i = 0; i < loop->count; i++)
        if (!loop->channels[i]) {
            index = i;
            break;
        }
    if (index < 0) {
        if (loop->count == DL_MAX_CHANNELS) {
            pthread_mutex_unlock(&loop->mutex);
            free(c->io);
            free(c);
            return -ENOSPC;
        }
        index = loop->count++;
    }
    if (c->kind == DL_PAGE) {
        c->margin_seq = c->page->pv_margin_seq;
        c->last_seen_ns = c->last_fired_ns = c->page->pv_deadline_ns;
        c->page->pv_advance_ns = (uint64_t)c->adv.advance_ns;
        c->page->pv_host_armed_ns = 0;
    }
    if (c->kick_fd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN};
        ev.data.u32 = (uint32_t)index;
        if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, c->kick_fd, &ev) < 0) {
            int saved = errno;
            if (index == loop->count - 1)
                loop->count--;
            pthread_mutex_unlock(&loop->mutex);
            free(c->io);
            free(c);
            return -saved;
        }
    }
    loop->channels[index] = c;
    loop->due[index] = 0;
    pthread_mutex_unlock(&loop->mutex);
    poke(loop);
    return index;
}

static struct dl_channel *channel(struct dl_loop *loop, int id) {
    return id >= 0 && id < loop->count ? loop->channels[id] : NULL;
}

/* When this returns the loop no longer touches the channel or its guest's memory. */
int dl_remove(struct dl_loop *loop, int id) {
    pthread_mutex_lock(&loop->mutex);
    struct dl_channel *c = channel(loop, id);
    if (!c) {
        pthread_mutex_unlock(&loop->mutex);
        return -ENOENT;
    }
    if (c->kick_fd >= 0)
        epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, c->kick_fd, NULL);
    loop->channels[id] = NULL;
    loop->due[id] = DL_NONE;
    pthread_mutex_unlock(&loop->mutex);
    free(c->io);
    free(c);
    return 0;
}

/* PV idle (lguest's LHCALL_HALT, Xen's SCHEDOP_block): the calling vCPU thread waits
 * here, without the GIL, until the loop delivers the page's deadline by ending the wait
 * instead of injecting (the guest resumes after its BLOCK, no interrupt entry), or until
 * dl_unblock (a stop). Returns 0 when woken for the deadline, 1 by dl_unblock, -ETIME when
 * the deadline the guest names is not the page's pending one (already delivered, by
 * interrupt: the guest waits for that), -ENOENT for no such PAGE channel. */
int dl_block(struct dl_loop *loop, int id, uint64_t deadline_ns) {
    pthread_mutex_lock(&loop->mutex);
    struct dl_channel *c = channel(loop, id);
    if (!c || c->kind != DL_PAGE || c->block_fd < 0) {
        pthread_mutex_unlock(&loop->mutex);
        return -ENOENT;
    }
    if (!deadline_ns || c->page->pv_deadline_ns != deadline_ns ||
        deadline_ns == c->last_fired_ns) {
        pthread_mutex_unlock(&loop->mutex);
        return -ETIME;
    }
    int fd = c->block_fd;
    uint64_t value;
    while (read(fd, &value, sizeof value) == sizeof value) /* stale wake-ups: none owed now */
        ;
    c->blocked = 1;
    loop->due[id] = 0; /* the loop looks again (the deadline may be due already) */
    pthread_mutex_unlock(&loop->mutex);
    poke(loop);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&loop->mutex);
    int cancelled = c == channel(loop, id) && c->blocked; /* dl_unblock leaves it set */
    c = channel(loop, id);
    if (c)
        c->blocked = 0;
    while (read(fd, &value, sizeof value) == sizeof value)
        ;
    pthread_mutex_unlock(&loop->mutex);
    return cancelled ? 1 : 0;
}

/* End a dl_block wait at once (the guest is being stopped): the deadline stays pending and
 * is delivered by interrupt, if the guest ever runs again. */
int dl_unblock(struct dl_loop *loop, int id) {
    pthread_mutex_lock(&loop->mutex);
    struct dl_channel *c = channel(loop, id);
    if (c && c->block_fd >= 0) {
        uint64_t one = 1;
        ssize_t written = write(c->block_fd, &one, sizeof one);
        (void)written; /* a full counter already ends the wait */
    }
    pthread_mutex_unlock(&loop->mutex);
    return c ? 0 : -ENOENT;
}

/* CALL channels: a validated deadline (0 cancels); margin folded in when has_margin. */
int dl_set_deadline(struct dl_loop *loop, int id, uint64_t deadline_ns, int has_margin,
                    int64_t margin_ns) {
    pthread_mutex_lock(&loop->mutex);
    struct dl_channel *c = channel(loop, id);
    if (!c || c->kind != DL_CALL) {
        pthread_mutex_unlock(&loop->mutex);
        return -ENOENT;
    }
    if (has_margin) {
        advance_update(&c->adv, margin_ns);
        c->stats.margins++;
    }
    c->pending_ns = deadline_ns;
    loop->due[id] = 0;
    pthread_mutex_unlock(&loop->mutex);
    poke(loop);
    return 0;
}

/* Re-anchor the guest clock (dilation changes): the host's copy, not the guest's page. */
int dl_set_clock(struct dl_loop *loop, int id, uint64_t tsc_timestamp, uint64_t system_time_ns,
                 uint32_t mul, int32_t shift) {
    pthread_mutex_lock(&loop->mutex);
    struct dl_channel *c = channel(loop, id);
    int wake = 0;
    if (c) {
        c->clock = (struct dl_clock){tsc_timestamp, system_time_ns, mul, shift};
        /* Only a channel waiting for something needs its wake-up recomputed: a guest that
         * warps over BLOCK calls must not cost the loop a wake-up per warp. */
        wake = c->pending_ns || c->look_ns || (c->kind == DL_PAGE && c->page->pv_deadline_ns) ||
               c->kind == DL_IO;
        if (wake)
            loop->due[id] = 0;
    }
    pthread_mutex_unlock(&loop->mutex);
    if (wake)
        poke(loop);
    return c ? 0 : -ENOENT;
}

int dl_stats(struct dl_loop *loop, int id, struct dl_stats *out) {
    pthread_mutex_lock(&loop->mutex);
    struct dl_channel *c = channel(loop, id);
    if (c) {
        *out = c->stats;
        out->loop_wakeups = loop->loop_wakeups;
        out->advance_ns = (uint64_t)c->adv.advance_ns;
    }
    pthread_mutex_unlock(&loop->mutex);
    return c ? 0 : -ENOENT;
}

/* Host-wide totals: loop wake-ups, interrupts injected by live channels, thread CPU ns. */
void dl_totals(struct dl_loop *loop, uint64_t *wakeups, uint64_t *fired, uint64_t *cpu_ns) {
    pthread_mutex_lock(&loop->mutex);
    *wakeups = loop->loop_wakeups;
    *fired = 0;
    for (int i = 0; i < loop->count; i++)
        if (loop->channels[i])
            *fired += loop->channels[i]->stats.fired;
    *cpu_ns = 0;
    clockid_t clock;
    struct timespec ts;
    if (loop->started && pthread_getcpuclockid(loop->thread, &clock) == 0 &&
        clock_gettime(clock, &ts) == 0)
        *cpu_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    pthread_mutex_unlock(&loop->mutex);
}

/* Settings the thread could not apply: errno values (0: applied), once it has started. */
void dl_problems(struct dl_loop *loop, int *sched_error, int *affinity_error) {
    pthread_mutex_lock(&loop->mutex);
    *sched_error = loop->sched_error;
    *affinity_error = loop->affinity_error;
    pthread_mutex_unlock(&loop->mutex);
}

/* The loop thread's TID (0 until it runs): its scheduling is read back from the kernel. */
int dl_thread_id(struct dl_loop *loop) {
    pthread_mutex_lock(&loop->mutex);
    int tid = loop->thread_id;
    pthread_mutex_unlock(&loop->mutex);
    return tid;
}

/* The advance arithmetic alone, so a test can hold it against AdaptiveAdvance. */
int64_t dl_advance_step(int64_t advance_ns, int64_t target_margin_ns, int64_t min_ns,
                        int64_t max_ns, int64_t grow, int64_t grow_shift, int64_t shrink_shift,
                        int64_t margin_ns) {
    struct dl_advance a = {advance_ns, target_margin_ns, min_ns, max_ns,
                           grow,       grow_shift,       shrink_shift};
    advance_update(&a, margin_ns);
    return a.advance_ns;
}
