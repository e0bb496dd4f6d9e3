/* Ring-3 part of the tickless guest: clock reads, hypercalls and the workloads.
 *
 * Ring 3 runs natively on this host (rdtsc ~10 ns) while ring 0 is emulated, so the hot
 * loops, clock reads and waiting live here. HLT and WRMSR(TSC_DEADLINE) trap to the
 * ring-0 #GP handler, which performs them (see entry.S). */
#include "guest.h"

static inline uint64_t rdtsc_ordered(void) {
    uint32_t lo, hi;
    __asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi)::"memory");
    return ((uint64_t)hi << 32) | lo;
}

/* The PV clock source: nanoseconds from the host-filled pvclock page, retried while
 * the host is updating it (odd version) or it changed under us. */
static uint64_t clock_read(uint64_t *tsc_out) {
    uint32_t version;
    uint64_t ns, tsc;
    do {
        version = PVCLOCK->version;
        __asm__ volatile("" ::: "memory");
        tsc = rdtsc_ordered();
        uint64_t delta = tsc - PVCLOCK->tsc_timestamp;
        int8_t shift = PVCLOCK->tsc_shift;
        delta = shift < 0 ? delta >> -shift : delta << shift;
        ns = PVCLOCK->system_time +
             (uint64_t)(((unsigned __int128)delta * PVCLOCK->tsc_to_system_mul) >> 32);
        __asm__ volatile("" ::: "memory");
    } while ((version & 1) || version != PVCLOCK->version);
    *tsc_out = tsc;
    return ns;
}

static uint64_t clock_ns(void) {
    uint64_t tsc;
    return clock_read(&tsc);
}

static void log_str(const char *s) {
    unsigned long n = 0;
    while (s[n])
        n++;
    hypercall(HYPERCALL_LOG, (uint64_t)s, n);
}

/* Sleep (or spin) until *counter moves away from seen; returns its new value. */
static uint64_t wait_irq(volatile uint64_t *counter, uint64_t seen) {
    uint64_t now;
    while ((now = *counter) == seen) {
        if (BOOT->wait == WAIT_SPIN)
            __asm__ volatile("pause");
        else
            __asm__ volatile("hlt" ::"c"(counter), "d"(seen) : "memory");
    }
    return now;
}

/* Program the next timer event at guest time deadline_ns (tsc_deadline for the LAPIC). */
static void arm_pv(uint64_t deadline_ns) {
    for (;;) {
        int64_t delta = (int64_t)(deadline_ns - clock_ns());
        if (delta < MIN_DELTA_NS)
            delta = MIN_DELTA_NS; /* as clockevents_program_min_delta() does */
        int64_t ret = hypercall(HYPERCALL_SET_CLOCKEVENT, (uint64_t)delta, 0);
        if (ret == 0)
            return;
        if (ret != -ETIME)
            panic(PANIC_SET_CLOCKEVENT_FAILED, (uint64_t)-ret);
    }
}

static void arm_lapic(uint64_t tsc_deadline) {
    __asm__ volatile("wrmsr" ::"c"(MSR_TSC_DEADLINE), "a"((uint32_t)tsc_deadline),
                     "d"((uint32_t)(tsc_deadline >> 32)));
}

static volatile uint64_t *timer_counter(void) {
    if (BOOT->timer == TIMERPATH_LAPIC)
        return &SHARED->lapic_irq_count;
    if (BOOT->timer == TIMERPATH_PRECISE)
        return &SHARED->precise_irq_count;
    return &SHARED->irq_count;
}

/* The precise channel: publish the deadline (the host holds other interrupts back before
 * it); when it is far enough away, ask for an early interrupt and sleep; then spin on the
 * PV clock, in ring 3, to the exact deadline. Returns the event time (>= deadline). */
static uint64_t precise_wait(uint64_t deadline, uint64_t *tsc) {
    SHARED->precise_deadline_ns = deadline;
    uint64_t now = clock_ns();
    if (deadline > now && deadline - now > BOOT->spin_threshold_ns) {
        uint64_t seen = SHARED->precise_irq_count;
        if (hypercall(HYPERCALL_SET_PRECISE, deadline, 0) == 0) {
            wait_irq(&SHARED->precise_irq_count, seen);
            now = clock_ns();
            SHARED->precise_margin_ns = deadline - now; /* < 0: the interrupt came late */
            SHARED->precise_irq_events++;
        }
    } else {
        SHARED->precise_spin_events++;
    }
    uint64_t t;
    while ((t = clock_read(tsc)) < deadline)
        ;
    SHARED->spin_ns += t - now;
    SHARED->precise_deadline_ns = 0;
    return t;
}

/* The paper's workload: N events every d; record each event's time.
 * relative: each event arms the next one d after itself (mean = d + delivery latency);
 * absolute: deadlines on the grid t0 + i*d (cyclictest's default). */
static void measure(void) {
    volatile uint64_t *res = (volatile uint64_t *)BOOT->results_gpa;
    volatile uint64_t *counter = timer_counter();
    uint64_t d = BOOT->interval_ns, n = BOOT->count, d_tsc = BOOT->interval_tsc;
    int periodic = BOOT->mode == TICKMODE_PERIODIC;
    int lapic = BOOT->timer == TIMERPATH_LAPIC;
    int precise = BOOT->timer == TIMERPATH_PRECISE;
    int absolute = BOOT->method == METHOD_ABSOLUTE;

    if (periodic && hypercall(HYPERCALL_SET_PERIODIC, BOOT->period_ns, 0) != 0)
        panic(PANIC_SET_PERIODIC_REFUSED, BOOT->period_ns);
    uint64_t seen = *counter;
    uint64_t tsc0, tsc;
    uint64_t t0 = clock_read(&tsc0), t = t0;
    tsc = tsc0;
    res[0] = t0;
    for (uint64_t i = 1; i <= n; i++) {
        uint64_t deadline = absolute ? t0 + i * d : t + d;
        if (periodic) {
            /* A ticking kernel: the timer runs at the first tick at or after its time. */
            while ((t = clock_ns()) < deadline)
                seen = wait_irq(counter, seen);
        } else if (precise) {
            t = precise_wait(deadline, &tsc);
        } else {
            if (lapic)
                arm_lapic(absolute ? tsc0 + i * d_tsc : tsc + d_tsc);
            else
                arm_pv(deadline);
            seen = wait_irq(counter, seen);
            t = clock_read(&tsc);
        }
        res[i] = t;
        SHARED->events_recorded = i;
    }
    if (periodic)
        hypercall(HYPERCALL_SET_PERIODIC, 0, 0);
    hypercall(HYPERCALL_DONE, n, 0);
}

/* An idle guest with a realistic sparse timer load of its own: two housekeeping timers.
 * Tickless: the device is programmed for the next of them only. Periodic: every tick
 * wakes the guest, which checks its timers, as a HZ-driven kernel does. */
static void idle(void) {
    uint64_t start = clock_ns(), end = start + BOOT->duration_ns;
    uint64_t period_a = BOOT->housekeeping_a_ns, period_b = BOOT->housekeeping_b_ns;
    uint64_t next_a = start + period_a, next_b = start + period_b;
    int periodic = BOOT->mode == TICKMODE_PERIODIC;
    uint64_t seen = SHARED->irq_count;

    if (periodic && hypercall(HYPERCALL_SET_PERIODIC, BOOT->period_ns, 0) != 0)
        panic(PANIC_SET_PERIODIC_REFUSED, BOOT->period_ns);
    for (;;) {
        if (!periodic) {
            uint64_t next = next_a < next_b ? next_a : next_b;
            arm_pv(next < end ? next : end);
        }
        seen = wait_irq(&SHARED->irq_count, seen);
        SHARED->wakeups++;
        uint64_t now = clock_ns();
        if (now >= end)
            break;
        while (now >= next_a) {
            next_a += period_a;
            SHARED->timer_callbacks++;
        }
        while (now >= next_b) {
            next_b += period_b;
            SHARED->timer_callbacks++;
        }
    }
    if (periodic)
        hypercall(HYPERCALL_SET_PERIODIC, 0, 0);
    hypercall(HYPERCALL_DONE, 0, 0);
}

static void hypercall_loop(void) {
    uint64_t n = BOOT->count;
    volatile uint64_t *res = (volatile uint64_t *)BOOT->results_gpa;
    res[0] = clock_ns();
    for (uint64_t i = 1; i <= n; i++) {
        hypercall(HYPERCALL_NOP, 0, 0);
        res[i] = clock_ns();
        SHARED->events_recorded = i;
    }
    hypercall(HYPERCALL_DONE, n, 0);
}

void user_main(void) {
    SHARED->ready = 1;
    switch (BOOT->scenario) {
    case SCENARIO_MEASURE:
        measure();
        break;
    case SCENARIO_IDLE:
        idle();
        break;
    case SCENARIO_HYPERCALL_LOOP:
        hypercall_loop();
        break;
    case SCENARIO_BAD_DELTA: {
        /* Insist on a delta below the minimum, ignoring -ETIME. */
        int64_t first = hypercall(HYPERCALL_SET_CLOCKEVENT, MIN_DELTA_NS / 2, 0);
        ((volatile int64_t *)BOOT->results_gpa)[0] = first;
        for (;;)
            hypercall(HYPERCALL_SET_CLOCKEVENT, MIN_DELTA_NS / 2, 0);
    }
    case SCENARIO_FLOOD:
        for (;;)
            hypercall(HYPERCALL_NOP, 0, 0);
    case SCENARIO_WILD_WRITE:
        *(volatile uint64_t *)(BOOT->memory_bytes + (64ull << 20)) = 0xdead;
        break;
    case SCENARIO_BAD_LOG:
        hypercall(HYPERCALL_LOG, BOOT->memory_bytes - 16, 4096);
        break;
    case SCENARIO_FUZZ:
        fuzz_main();
        break;
    case SCENARIO_RUNAWAY_RING3:
        for (;;)
            __asm__ volatile("" ::: "memory");
    default:
        log_str("tickless guest: unknown scenario");
    }
    for (;;)
        hypercall(HYPERCALL_DONE, 0, 0);
}

/* The second vCPU under CPU load: busy in ring 3 (native speed), interrupts off. */
void ap_main(void) {
    volatile uint64_t *counter = (volatile uint64_t *)AP_SHARED_GPA;
    for (;;) {
        for (int i = 0; i < 1 << 20; i++)
            __asm__ volatile("");
        (*counter)++;
    }
}

void *memset(void *dst, int c, unsigned long n) {
    unsigned char *p = dst;
    while (n--)
        *p++ = (unsigned char)c;
    return dst;
}

void *memcpy(void *dst, const void *src, unsigned long n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}
