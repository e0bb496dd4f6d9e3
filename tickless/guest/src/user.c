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

uint64_t clock_ns(void) { /* also pingpong.c */
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
uint64_t wait_irq(volatile uint64_t *counter, uint64_t seen) {
    uint64_t now;
    while ((now = *counter) == seen) {
        if (BOOT->wait == WAIT_SPIN) {
            __asm__ volatile("pause");
        } else {
            user_halt(counter, seen);
            if (!SHARED->ring3_back_tsc) /* the first return since an I/O handler: its cost */
                SHARED->ring3_back_tsc = rdtsc_ordered();
        }
    }
    return now;
}

/* The lguest device: program the next event at guest time deadline_ns as a delta from
 * now (one exit each; the host converts at its own "now", later than ours). */
static void arm_lguest(uint64_t deadline_ns) {
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

/* The HPET (--timer hpet): comparator 0, routed to HPET_GSI in the IOAPIC, programmed by
 * MMIO from ring 3 (each access exits to the VMM, ~12 us). Register offsets and bits are
 * the IA-PC HPET 1.0a spec's. */
#define HPET_REG(offset) (*(volatile uint64_t *)(HPET_GPA + (offset)))
#define HPET_ID 0x000
#define HPET_CONFIG 0x010
#define HPET_COUNTER 0x0F0
#define HPET_T0_CONFIG 0x100
#define HPET_T0_COMPARATOR 0x108
#define HPET_ENABLE 1ull
#define HPET_TN_INT_ENB (1ull << 2)
#define HPET_TN_PERIODIC (1ull << 3)
#define HPET_TN_VAL_SET (1ull << 6)
#define HPET_TN_ROUTE_SHIFT 9
#define HPET_RETRY_TICKS 1000 /* a comparator written too late: at least this far next time */

static uint64_t hpet_period_fs; /* COUNTER_CLK_PERIOD, read from the capabilities */
static uint64_t hpet_first, hpet_period; /* periodic: the first match and the period, ticks */

/* The fewest counter ticks that last at least ns (ns below ~5 hours: no overflow). */
static uint64_t hpet_ticks(uint64_t ns) {
    return (ns * 1000000 + hpet_period_fs - 1) / hpet_period_fs;
}

static void hpet_setup(void) {
    hpet_period_fs = HPET_REG(HPET_ID) >> 32;
    HPET_REG(HPET_T0_CONFIG) = HPET_TN_INT_ENB | ((uint64_t)HPET_GSI << HPET_TN_ROUTE_SHIFT);
    HPET_REG(HPET_CONFIG) = HPET_ENABLE;
}

/* One-shot: the smallest comparator that cannot match before deadline. The counter read C
 * happened at or after `before` (a PV clock read), and the counter reaches C + 1 + n only
 * after n ticks more than that, so n = ticks(deadline - before) cannot fire early (the
 * bracket's width is late). Then the counter is read again: the device raises every match
 * the counter has passed before a read returns, so a comparator behind the counter with
 * no interrupt taken was written too late and never matches (64 bits): program again,
 * further ahead (Linux's set_next_event answers -ETIME and retries the same way). */
static void arm_hpet(uint64_t deadline, uint64_t seen) {
    uint64_t min_ticks = 1;
    for (;;) {
        uint64_t before = clock_ns();
        uint64_t count = HPET_REG(HPET_COUNTER);
        uint64_t ticks = 1 + (deadline > before ? hpet_ticks(deadline - before) : 0);
        uint64_t target = count + (ticks > min_ticks ? ticks : min_ticks);
        HPET_REG(HPET_T0_COMPARATOR) = target;
        uint64_t now = HPET_REG(HPET_COUNTER);
        if ((int64_t)(now - target) < 0 || SHARED->irq_count != seen)
            return;
        min_ticks = min_ticks < HPET_RETRY_TICKS ? HPET_RETRY_TICKS : 2 * min_ticks;
    }
}

/* Periodic, every d (a whole number of ticks): halted, comparator 0 gets its first match
 * one period on and the period (Linux's two writes: with Tn_VAL_SET, then without), then
 * the counter starts. Match k comes k periods after the start, which is after the clock
 * read before it: the grid the deadlines are on. Returns that read. */
static uint64_t hpet_start_periodic(uint64_t d) {
    hpet_period = hpet_ticks(d);
    HPET_REG(HPET_CONFIG) = 0;
    hpet_first = HPET_REG(HPET_COUNTER) + hpet_period;
    HPET_REG(HPET_T0_CONFIG) = HPET_TN_INT_ENB | HPET_TN_PERIODIC | HPET_TN_VAL_SET |
                               ((uint64_t)HPET_GSI << HPET_TN_ROUTE_SHIFT);
    HPET_REG(HPET_T0_COMPARATOR) = hpet_first;
    HPET_REG(HPET_T0_COMPARATOR) = hpet_period;
    uint64_t start = clock_ns();
    HPET_REG(HPET_CONFIG) = HPET_ENABLE;
    return start;
}

/* Periodic: the grid points matched so far, after an interrupt. The comparator reads the
 * next match, so the matches are (comparator - first) / period, at least one more than
 * before (the interrupt's own; the device raises it before its comparator moves on). A
 * late host skips periods (one interrupt for several) and a slow ring 3 takes several at
 * once: those events happened by this read, late, and are recorded so, never dropped. */
static uint64_t hpet_matches(uint64_t covered) {
    uint64_t k = (HPET_REG(HPET_T0_COMPARATOR) - hpet_first) / hpet_period;
    return k > covered ? k : covered + 1;
}

/* Spin on the PV clock, in ring 3, to deadline; returns the time reached and the longest
 * gap between two clock reads (a gap means something took the CPU away from us). */
/* Ring 3 lost the CPU (a long step between clock reads) and has not yet been seen back at
 * full speed: kept across waits, since a short wait may end inside the slow stretch. */
static int cpu_lost;

static uint64_t spin_to(uint64_t deadline, uint64_t *tsc, uint64_t *max_gap) {
    uint64_t t = clock_read(tsc), gap = 0;
    while (t < deadline) {
        uint64_t next = clock_read(tsc), step = next - t;
        if (step > gap)
            gap = step;
        /* Back at full speed after losing the CPU (an I/O handler zeroed ring3_back_tsc):
         * when, to the host, for what an interrupt really costs. */
        if (step > 1000)
            cpu_lost = 1;
        else if (cpu_lost && !SHARED->ring3_back_tsc)
            SHARED->ring3_back_tsc = *tsc, cpu_lost = 0;
        t = next;
    }
    *max_gap = gap;
    return t;
}

/* The first TSC at which the PV clock reads at least ns (the pvclock's scaling inverted;
 * divq: no libgcc). A frozen clock (mul 0) never gets there: UINT64_MAX. */
static uint64_t tsc_at_ns(uint64_t ns) {
    uint32_t version, mul;
    uint64_t tsc;
    do {
        version = PVCLOCK->version;
        __asm__ volatile("" ::: "memory");
        uint64_t base = PVCLOCK->system_time, delta = ns > base ? ns - base : 0;
        int8_t shift = PVCLOCK->tsc_shift;
        mul = PVCLOCK->tsc_to_system_mul;
        tsc = PVCLOCK->tsc_timestamp;
        if (mul && (delta >> 32) < mul) { /* else frozen, or beyond any TSC: never */
            uint64_t q, r, hi = delta >> 32, lo = delta << 32;
            __asm__("divq %4" : "=a"(q), "=d"(r) : "a"(lo), "d"(hi), "r"((uint64_t)mul));
            q += r != 0; /* round up: never before ns */
            tsc += shift < 0 ? q << -shift : q >> shift;
            tsc += shift > 0; /* the shift's truncation, rounded up too */
        } else {
            tsc = UINT64_MAX;
        }
        __asm__ volatile("" ::: "memory");
    } while ((version & 1) || version != PVCLOCK->version);
    return tsc;
}

/* --pv-idle lapic: halt with KVM's LAPIC timer armed for the deadline in the same trap
 * (the host kernel's hrtimer wakes the vCPU; no host thread and nothing in the page), until
 * the deadline is close enough to spin to. An interrupt before it (an old arming, a stop)
 * only arms and halts again. Returns the PV clock after the last wake-up. */
static uint64_t lapic_idle(uint64_t deadline, uint64_t spin_below) {
    uint64_t now = clock_ns();
    while (deadline > now && deadline - now > spin_below) {
        uint64_t seen = SHARED->lapic_irq_count;
        user_halt_at(&SHARED->lapic_irq_count, seen, tsc_at_ns(deadline));
        now = clock_ns();
    }
    return now;
}

/* The PV deadline device: publish the absolute deadline; exit (kick) only when it is
 * earlier than what the host promised to see in time; sleep until the host's early
 * interrupt, report how early it was, and spin the rest. Deadlines closer than the host's
 * advance or the spin threshold (about this host's wake-up chain) are spun to at once: an
 * interrupt could not arrive in time. *entry: the ring-3
 * wake-up time (0: spun without an interrupt). Returns the event time (>= deadline). */
static uint64_t pv_wait(uint64_t deadline, uint64_t *tsc, uint64_t *entry, uint64_t *gap) {
    uint64_t now = clock_ns();
    *entry = 0;
    uint64_t spin_below = SHARED->pv_advance_ns;
    if (spin_below < BOOT->spin_threshold_ns)
        spin_below = BOOT->spin_threshold_ns;
    if (BOOT->pv_idle == PV_IDLE_LAPIC && deadline > now && deadline - now > spin_below) {
        now = *entry = lapic_idle(deadline, spin_below);
        SHARED->pv_irq_events++;
    } else if (deadline > now && deadline - now > spin_below) {
        uint64_t seen = SHARED->irq_count;
        SHARED->pv_deadline_ns = deadline;
        __asm__ volatile("mfence" ::: "memory"); /* the host: promise, fence, deadline */
        uint64_t promise = SHARED->pv_host_armed_ns;
        if (promise == 0 || deadline < promise) {
            __asm__ volatile("outl %%eax, %%dx" ::"a"(0), "d"((uint16_t)PV_KICK_PORT) : "memory");
            SHARED->pv_kicks++;
        }
        /* PV idle: block in the host until the deadline; it resumes us after the out, no
         * interrupt entry, and counts the wake in pv_block_wakes. Otherwise (delivered by
         * interrupt already, a stop) the interrupt is waited for as without it. */
        uint64_t woken = SHARED->pv_block_wakes;
        if (BOOT->pv_idle == PV_IDLE_BLOCK)
            __asm__ volatile("outb %%al, %%dx" ::"a"(0), "d"((uint16_t)PV_BLOCK_PORT) : "memory");
        if (BOOT->pv_idle != PV_IDLE_BLOCK || SHARED->pv_block_wakes == woken)
            wait_irq(&SHARED->irq_count, seen);
        now = *entry = clock_ns();
        SHARED->pv_margin_ns = deadline - now; /* < 0: the interrupt came late */
        __asm__ volatile("" ::: "memory");     /* margin before its sequence number */
        SHARED->pv_margin_seq++;
        SHARED->pv_irq_events++;
    } else {
        SHARED->pv_spin_events++;
    }
    uint64_t t = spin_to(deadline, tsc, gap);
    SHARED->spin_ns += t - now;
    return t;
}

/* The PV device's policy on KVM's LAPIC timer (--advance auto), the control experiment:
 * arm the TSC deadline early by an adaptive advance (timers/precise.py AdaptiveAdvance,
 * with the numbers the host passes), sleep, spin the rest in ring 3. Deadlines nearer
 * than the advance or the spin threshold are spun to at once, as pv_wait does.
 * *arrival: the ring-3 wake-up (0: spun without an interrupt). */
static void lapic_advance_update(int64_t margin) {
    int64_t max = (int64_t)BOOT->advance_max_ns, min = (int64_t)BOOT->advance_min_ns;
    int64_t adv = (int64_t)SHARED->lapic_advance_ns;
    if (margin > max)
        margin = max; /* as AdaptiveAdvance.update clamps a margin */
    if (margin < -max)
        margin = -max;
    int64_t error = margin - (int64_t)BOOT->advance_target_ns;
    if (error < 0)
        adv += ((int64_t)BOOT->advance_grow * -error) >> BOOT->advance_grow_shift;
    else
        adv -= error >> BOOT->advance_shrink_shift;
    SHARED->lapic_advance_ns = (uint64_t)(adv < min ? min : adv > max ? max : adv);
}

static uint64_t lapic_advance_wait(uint64_t deadline, uint64_t deadline_tsc, uint64_t *tsc,
                                   uint64_t *arrival) {
    uint64_t now = clock_ns(), gap;
    uint64_t adv = SHARED->lapic_advance_ns, spin_below = adv;
    *arrival = 0;
    if (spin_below < BOOT->spin_threshold_ns)
        spin_below = BOOT->spin_threshold_ns;
    if (deadline > now && deadline - now > spin_below) {
        uint64_t seen = SHARED->lapic_irq_count;
        /* advance_max_ns (200 us) * the TSC ticks of an hour fits 64 bits (no libgcc) */
        uint64_t adv_tsc = adv * BOOT->interval_tsc / BOOT->interval_ns;
        arm_lapic(deadline_tsc - adv_tsc);
        wait_irq(&SHARED->lapic_irq_count, seen);
        now = *arrival = clock_ns();
        lapic_advance_update((int64_t)(deadline - now)); /* < 0: the interrupt came late */
        SHARED->lapic_irq_events++;
    } else {
        SHARED->lapic_spin_events++;
    }
    uint64_t t = spin_to(deadline, tsc, &gap);
    SHARED->spin_ns += t - now;
    return t;
}

/* An idle wait the host can see (--warp-idle): BLOCK until deadline, which arms a
 * one-shot and tells the host this vCPU waits for a timer, so a group whose every vCPU
 * blocks may warp its clock to the earliest deadline. Then spin the residual (none after
 * a warp: the clock reads the deadline). *arrival: the ring-3 wake-up (0: no sleep).
 * Returns the event time (>= deadline). */
static uint64_t block_wait(uint64_t deadline, uint64_t *tsc, uint64_t *arrival) {
    uint64_t seen = SHARED->irq_count, gap, now;
    SHARED->blocks++;
    *arrival = 0;
    if (hypercall(HYPERCALL_BLOCK, deadline, 0) == 0) {
        wait_irq(&SHARED->irq_count, seen);
        *arrival = clock_ns();
    }
    now = clock_ns();
    uint64_t t = spin_to(deadline, tsc, &gap);
    SHARED->spin_ns += t - now;
    __asm__ volatile("" ::: "memory");
    SHARED->block_wakes++; /* the host holds a warped clock until it sees this */
    return t;
}

/* The zoo's i8254 (devices/pit.py), programmed by out from ring 3. Its clock edge k is at
 * guest time ceil(k * 1e9 / PIT_HZ); a count N written at t is loaded at edge
 * pit_edges(t) + 1 and mode 0's OUT rises N edges later (devices/i8254.py). */
#define NS_PER_S 1000000000ull
#define PIT_CONTROL (PIT_PORT + 3)
#define PIT_CH0_LOHI_MODE0 0x30
#define PIT_CH0_LOHI_MODE2 0x34

/* Edges in (0, ns]; ceil: the first edge at or after ns (64-bit: no libgcc). */
static uint64_t pit_edges(uint64_t ns, int ceil) {
    uint64_t r = (ns % NS_PER_S) * PIT_HZ;
    return ns / NS_PER_S * PIT_HZ + r / NS_PER_S + (ceil && r % NS_PER_S);
}

static void pit_write_count(uint64_t n) { /* lobyte then hibyte: the load is at the second */
    outb(PIT_PORT, (uint8_t)n);
    outb(PIT_PORT, (uint8_t)(n >> 8)); /* 65536 is written as 0 */
}

/* Mode 0 one-shot: the smallest count whose OUT cannot rise before deadline, from the clock
 * read before the writes (the load is at least one edge after it). */
static void arm_pit(uint64_t deadline) {
    uint64_t first = pit_edges(clock_ns(), 0) + 1, need = pit_edges(deadline, 1);
    uint64_t n = need > first ? need - first : 1;
    if (n > PIT_MAX_COUNT)
        panic(PANIC_SET_CLOCKEVENT_FAILED, n); /* the host refuses such intervals */
    pit_write_count(n);
}

static volatile uint64_t *timer_counter(void) {
    if (BOOT->timer == TIMERPATH_LAPIC)
        return &SHARED->lapic_irq_count;
    if (BOOT->timer == TIMERPATH_PRECISE)
        return &SHARED->precise_irq_count;
    return &SHARED->irq_count;
}

/* The precise channel: publish the deadline (the host holds I/O interrupts back before
 * it); when it is far enough away, ask for an early interrupt and sleep; then spin on the
 * PV clock, in ring 3, to the exact deadline. *arrival: the ring-3 wake-up (0: spun to
 * without an interrupt); *gap: the longest gap between two clock reads from the previous
 * event (prev) to this one, the sleep excepted (something took the CPU away: an interrupt
 * or the host). Returns the event time (>= deadline). */
static uint64_t precise_wait(uint64_t deadline, uint64_t prev, uint64_t *tsc, uint64_t *arrival,
                             uint64_t *gap) {
    SHARED->precise_deadline_ns = deadline;
    uint64_t now = clock_ns();
    uint64_t before = now > prev ? now - prev : 0; /* the way here: a gap of its own */
    if (before > 1000)
        cpu_lost = 1;
    *arrival = 0;
    int by_irq = 0;
    if (deadline > now && deadline - now > BOOT->spin_threshold_ns) {
        uint64_t seen = SHARED->precise_irq_count;
        /* -ETIME: the deadline passed before the host saw it (this vCPU was preempted) */
        if (hypercall(HYPERCALL_SET_PRECISE, deadline, 0) == 0) {
            wait_irq(&SHARED->precise_irq_count, seen);
            now = *arrival = clock_ns();
            SHARED->precise_margin_ns = deadline - now; /* < 0: the interrupt came late */
            SHARED->precise_irq_events++;
            by_irq = 1;
        }
    }
    if (!by_irq) /* spun to (or already past) without an interrupt */
        SHARED->precise_spin_events++;
    uint64_t t = spin_to(deadline, tsc, gap);
    if (before > *gap)
        *gap = before;
    SHARED->spin_ns += t - now;
    SHARED->precise_deadline_ns = 0;
    return t;
}

/* The CMOS RTC (--timer rtc): register index out to RTC_PORT, data at RTC_PORT + 1. */
#define RTC_REG_A 0x0A
#define RTC_REG_B 0x0B
#define RTC_REG_C 0x0C
#define RTC_A_DIVIDER_RESET 0x70 /* DV = 111: the chain held in reset */
#define RTC_A_DIVIDER_RUN 0x20   /* DV = 010: the 32.768 kHz time base */
#define RTC_B_24H 0x02
#define RTC_B_PIE 0x40

static uint8_t rtc_read(uint8_t reg) {
    outb(RTC_PORT, reg);
    return inb(RTC_PORT + 1);
}

static void rtc_write(uint8_t reg, uint8_t value) {
    outb(RTC_PORT, reg);
    outb(RTC_PORT + 1, value);
}

/* The RTC's periodic interrupt, as an OS programs it: the divider held in reset with the
 * rate chosen, PIE on, then the release starts the chain, whose edges come every 2^-k s
 * from it (the first update half a second later). res[0] and arrival_at[0] are the PV
 * clock reads just before and after the releasing write: every edge k is at or after
 * res[0] + k * 2^-k s, the deadlines the host checks (results/spec.py rtc_deadlines_ns). Each interrupt is an event, recorded when ring 3 sees the
 * ISR's count move (no spin); reading register C then acknowledges it (IRQF clear), so the
 * chip can interrupt again. */
static void rtc_measure(void) {
    volatile uint64_t *res = (volatile uint64_t *)BOOT->results_gpa;
    volatile uint64_t *arrival_at = res + BOOT->results_capacity;
    uint8_t rs = (uint8_t)BOOT->rtc_rate_select;
    uint64_t t0, t1, seen;
    for (int tries = 0;; tries++) {
        rtc_write(RTC_REG_A, RTC_A_DIVIDER_RESET | rs); /* no edges until the release */
        rtc_read(RTC_REG_C); /* flags of the edges since power-on: PIE must not meet them */
        rtc_write(RTC_REG_B, RTC_B_24H | RTC_B_PIE);
        seen = SHARED->irq_count;
        outb(RTC_PORT, RTC_REG_A);
        t0 = clock_ns();
        outb(RTC_PORT + 1, RTC_A_DIVIDER_RUN | rs);
        t1 = clock_ns();
        /* A wide bracket (this vCPU was preempted around the write) loosens every
         * deadline: release again, as a driver re-reads a counter it read too slowly. */
        if (t1 - t0 <= RTC_RELEASE_BRACKET_NS || tries == RTC_RELEASE_TRIES)
            break;
        SHARED->rtc_rereleases++;
    }
    arrival_at[0] = t1; /* the bracket's end (the host reads its width) */
    res[0] = t0;
    for (uint64_t i = 1; i <= BOOT->count; i++) {
        seen = wait_irq(&SHARED->irq_count, seen);
        uint64_t t = clock_ns();
        res[i] = arrival_at[i] = t;
        rtc_read(RTC_REG_C);
        SHARED->events_recorded = i;
    }
    rtc_write(RTC_REG_B, RTC_B_24H);
    rtc_read(RTC_REG_C);
    hypercall(HYPERCALL_DONE, BOOT->count, 0);
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
    int pv = BOOT->timer == TIMERPATH_PV;
    int pit = BOOT->timer == TIMERPATH_PIT;
    int absolute = BOOT->method == METHOD_ABSOLUTE;
    int hpet = BOOT->timer == TIMERPATH_HPET;
    uint64_t hpet_covered = 0, hpet_after = 0; /* periodic HPET: grid points matched */
    /* Per event, when its interrupt reached ring 3, before any spin (0: spun to without
     * one); explain adds the longest clock gap seen while spinning. */
    volatile uint64_t *arrival_at = res + BOOT->results_capacity;
    volatile uint64_t *gap_at = BOOT->explain ? res + 2 * BOOT->results_capacity : 0;

    if (BOOT->timer == TIMERPATH_RTC) {
        rtc_measure();
        return;
    }
    if (periodic && !pit && !hpet && hypercall(HYPERCALL_SET_PERIODIC, BOOT->period_ns, 0) != 0)
        panic(PANIC_SET_PERIODIC_REFUSED, BOOT->period_ns);
    if (hpet)
        hpet_setup();
    if (BOOT->lapic_advance)
        SHARED->lapic_advance_ns = BOOT->advance_start_ns;
    while (BOOT->io_cpu && !SHARED->ap_ready) /* its I/O load begins when vCPU 1 takes it */
        __asm__ volatile("pause");
    if (pit) /* channel 0, lobyte/hibyte, binary; nothing counts until a count is written */
        outb(PIT_CONTROL, periodic ? PIT_CH0_LOHI_MODE2 : PIT_CH0_LOHI_MODE0);
    uint64_t seen = *counter, seen0 = seen;
    uint64_t tsc0, tsc;
    uint64_t t0 = clock_read(&tsc0), t = t0;
    tsc = tsc0;
    if (hpet && periodic) /* its deadlines are the HPET's grid from its start */
        t0 = t = hpet_start_periodic(d);
    res[0] = t0;
    /* PIT periodic (mode 2): N = d in clocks, rounded; interrupt i rises at edge load + i*N,
     * load > pit_edges(t0) (the host's deadlines: results/spec.py spec_deadlines_ns) */
    if (pit && periodic)
        pit_write_count((d * PIT_HZ + NS_PER_S / 2) / NS_PER_S);
    for (uint64_t i = 1; i <= n; i++) {
        uint64_t deadline = absolute ? t0 + i * d : t + d, arrival, gap = 0;
        uint64_t deadline_tsc = absolute ? tsc0 + i * d_tsc : tsc + d_tsc;
        if (pit && periodic) {
            /* Interrupt i is event i: the device raises at most one per edge L + k*N and
             * none before it, so the i-th cannot legally come before edge L + i*N (the
             * deadline the host checks). A tick the host dropped makes the rest late. */
            while (*counter - seen0 < i)
                wait_irq(counter, *counter);
            arrival = t = clock_read(&tsc);
        } else if (periodic && hpet) {
            /* Each grid point is an event, at the interrupt that covered it, early or not:
             * no clock check. */
            if (hpet_covered < i) {
                wait_irq(counter, seen);
                arrival = t = clock_read(&tsc);
                hpet_covered = hpet_matches(hpet_covered);
                hpet_after = clock_ns();
                seen = *counter; /* the matches counted above had their interrupts taken */
            } else {
                arrival = t = hpet_after; /* matched before the comparator was read */
            }
        } else if (periodic) {
            /* A ticking kernel: the timer runs at the first tick at or after its time. */
            while ((t = clock_ns()) < deadline)
                seen = wait_irq(counter, seen);
            arrival = t;
        } else if (BOOT->warp) {
            t = block_wait(deadline, &tsc, &arrival);
        } else if (precise) {
            t = precise_wait(deadline, t, &tsc, &arrival, &gap);
        } else if (pv) {
            t = pv_wait(deadline, &tsc, &arrival, &gap);
        } else if (lapic && BOOT->lapic_advance) {
            t = lapic_advance_wait(deadline, deadline_tsc, &tsc, &arrival);
        } else {
            if (lapic)
                arm_lapic(deadline_tsc);
            else if (pit)
                arm_pit(deadline);
            else if (hpet)
                arm_hpet(deadline, seen);
            else
                arm_lguest(deadline);
            seen = wait_irq(counter, seen);
            arrival = t = clock_read(&tsc); /* no spin: the event is the interrupt */
        }
        arrival_at[i] = arrival;
        if (gap_at)
            gap_at[i] = gap;
        res[i] = t;
        SHARED->events_recorded = i;
    }
    if (pit)
        outb(PIT_CONTROL, PIT_CH0_LOHI_MODE0); /* a control word stops the counter */
    else if (hpet)
        HPET_REG(HPET_CONFIG) = 0; /* halted: no more interrupts */
    else if (periodic)
        hypercall(HYPERCALL_SET_PERIODIC, 0, 0);
    hypercall(HYPERCALL_DONE, n, 0);
}

/* Wait for the next timer at deadline the way this guest is set up to; returns when the
 * interrupt reached ring 3, before any spin (0: reached by spinning alone). */
static uint64_t idle_wait(uint64_t deadline, int periodic, uint64_t *seen) {
    uint64_t tsc, entry, gap;
    if (periodic) {
        *seen = wait_irq(&SHARED->irq_count, *seen);
        return clock_ns();
    } else if (BOOT->warp) {
        block_wait(deadline, &tsc, &entry);
    } else if (BOOT->timer == TIMERPATH_PV) { /* publish, sleep, spin the residual */
        pv_wait(deadline, &tsc, &entry, &gap);
    } else {
        arm_lguest(deadline);
        *seen = wait_irq(&SHARED->irq_count, *seen);
        return clock_ns();
    }
    return entry;
}

/* A guest that lives by timers (CRON; IDLE is the same with two housekeeping timers):
 * each timer runs every period from its first deadline. Tickless: the device is programmed
 * for the next of them only. Periodic: every tick wakes the guest, which checks its timers,
 * as a HZ-driven kernel does. A timer that fell behind runs once per missed deadline, each
 * run recorded (while there is room) with its deadline, the time it ran and, for the runs
 * the wake-up was for, when the interrupt arrived: the host checks that none ran early, in
 * guest time, whatever dilation and warps did, and how early the interrupts came. */
static void cron(void) {
    volatile uint64_t *ran = (volatile uint64_t *)BOOT->results_gpa;
    uint64_t cap = BOOT->results_capacity, recorded = 0;
    volatile uint64_t *deadline_at = ran + cap, *timer_at = ran + 2 * cap;
    volatile uint64_t *woke_at = ran + 3 * cap;
    /* A group's guests count from one origin, so that their schedules interleave the
     * same way whenever each of them booted. */
    uint64_t start = clock_ns(), origin = BOOT->cron_origin_ns ? BOOT->cron_origin_ns : start;
    uint64_t end = origin + BOOT->duration_ns;
    uint64_t n = BOOT->cron_timers, next[CRON_MAX_TIMERS];
    for (uint64_t i = 0; i < n; i++)
        next[i] = origin + BOOT->cron_first_ns[i];
    int periodic = BOOT->mode == TICKMODE_PERIODIC;
    uint64_t seen = SHARED->irq_count;
    ran[0] = start;

    if (periodic && hypercall(HYPERCALL_SET_PERIODIC, BOOT->period_ns, 0) != 0)
        panic(PANIC_SET_PERIODIC_REFUSED, BOOT->period_ns);
    for (;;) {
        uint64_t soonest = end;
        for (uint64_t i = 0; i < n; i++)
            if (next[i] < soonest)
                soonest = next[i];
        uint64_t woke = idle_wait(soonest, periodic, &seen);
        SHARED->wakeups++;
        uint64_t now = clock_ns();
        if (now >= end)
            break;
        for (uint64_t i = 0; i < n; i++) {
            while (now >= next[i]) {
                if (recorded + 1 < cap) {
                    recorded++;
                    ran[recorded] = now;
                    deadline_at[recorded] = next[i];
                    timer_at[recorded] = i;
                    woke_at[recorded] = next[i] == soonest ? woke : 0; /* its interrupt */
                    SHARED->events_recorded = recorded;
                }
                next[i] += BOOT->cron_period_ns[i];
                SHARED->timer_callbacks++;
            }
        }
    }
    if (periodic)
        hypercall(HYPERCALL_SET_PERIODIC, 0, 0);
    hypercall(HYPERCALL_DONE, recorded, 0);
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
    case SCENARIO_CRON:
        cron();
        break;
    case SCENARIO_HYPERCALL_LOOP:
        hypercall_loop();
        break;
    case SCENARIO_PINGPONG:
        pingpong();
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

/* The second vCPU: under CPU load, busy in ring 3 (native speed); when it takes the I/O
 * load's interrupts (--io-cpu other) and has nothing else to do, idle in HLT between them. */
void ap_main(void) {
    if (BOOT->io_cpu)
        SHARED->ap_ready = 1; /* the host steers no interrupt here before this */
    if (BOOT->io_cpu && !BOOT->second_vcpu_busy) {
        volatile uint64_t *taken = &SHARED->io_irq_cpu1;
        uint64_t seen = *taken;
        for (;;) {
            while (*taken == seen)
                user_halt(taken, seen);
            seen = *taken;
        }
    }
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
