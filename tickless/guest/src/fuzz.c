/* The fuzzing guest (Scenario FUZZ): an untrusted guest that makes random calls.
 *
 * Call i is a function of (fuzz_seed, i) only: its random stream is seeded from the pair,
 * so a run is reproducible from its seed, and a new guest resumes at any index without
 * replaying the calls before it. Before each call the guest publishes its index and kind
 * in tickless_shared (fuzz_call, fuzz_action), which it never scribbles: when the guest
 * stops, the host knows which call stopped it and boots the next guest after it.
 *
 * Everything runs in ring 3 (native here), except fuzz_open_ports (ring 0, at boot) and
 * the runaway loop in ring 0 that fuzz_stop.c sets up through the IDT. */
#include "fuzz.h"

#define SHARED_FIELDS (sizeof(struct tickless_shared) / 8)
#define FUZZ_CALL_FIELD (__builtin_offsetof(struct tickless_shared, fuzz_call) / 8)
#define FUZZ_ACTION_FIELD (__builtin_offsetof(struct tickless_shared, fuzz_action) / 8)
#define TSS_BYTES 104
#define IO_BITMAP_BYTES 8192 /* one bit per port, 0: ring 3 may use it */

uint64_t fuzz_mem_bytes, fuzz_flags, fuzz_results_slots;

/* --- ring 0, at boot: a TSS whose I/O bitmap lets ring 3 reach every port ---------------
 * The host's TSS opens only the console and hypercall ports (it has no room for a full
 * bitmap below BOOT_GPA). The copy at FUZZ_TSS_GPA sits in memory nothing else uses, so
 * its 8 KiB bitmap is already zero: only the end marker is written (ring 0 is emulated). */
void fuzz_open_ports(void) {
    volatile uint64_t *old = (volatile uint64_t *)TSS_GPA, *tss = (volatile uint64_t *)FUZZ_TSS_GPA;
    for (int i = 0; i < TSS_BYTES / 8; i++)
        tss[i] = old[i];
    *(volatile uint16_t *)(FUZZ_TSS_GPA + 102) = TSS_BYTES;
    *(volatile uint8_t *)(FUZZ_TSS_GPA + TSS_BYTES + IO_BITMAP_BYTES) = 0xff;
    uint64_t base = FUZZ_TSS_GPA, limit = TSS_BYTES + IO_BITMAP_BYTES;
    volatile uint64_t *gdt = (volatile uint64_t *)GDT_GPA;
    gdt[TSS_SEL / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
                       (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    gdt[TSS_SEL / 8 + 1] = base >> 32;
    __asm__ volatile("ltr %w0" ::"r"((uint16_t)TSS_SEL) : "memory");
}

/* --- arguments ---------------------------------------------------------------------------- */

static const uint64_t BOUNDARY[] = {
    0, 1, 2, ~0ull, ~0ull - 1,
    MIN_DELTA_NS - 1, MIN_DELTA_NS, MIN_DELTA_NS + 1,
    MAX_DELTA_NS - 1, MAX_DELTA_NS, MAX_DELTA_NS + 1,
    MIN_PERIOD_NS - 1, MIN_PERIOD_NS, MIN_PERIOD_NS + 1,
    1ull << 63, (1ull << 63) - 1, (1ull << 63) + 1,
    1ull << 31, 1ull << 32, 0xffffffffull,
    SHARED_GPA, RESULTS_GPA, GIB,
};

/* Inside guest memory, straddling its end, just outside it, unmapped, or non-canonical. */
static uint64_t address(struct rng *r) {
    switch (below(r, 6)) {
    case 0:
        return below(r, fuzz_mem_bytes);
    case 1:
        return fuzz_mem_bytes - 1 - below(r, 4096);
    case 2:
        return fuzz_mem_bytes + below(r, GIB - fuzz_mem_bytes);
    case 3:
        return GIB + below(r, 1ull << 40);
    case 4:
        return noncanonical(r);
    default:
        return fuzz_mem_bytes;
    }
}

uint64_t fuzz_arg(struct rng *r) {
    switch (below(r, 8)) {
    case 4:
        return next(r);
    case 5:
        return below(r, 1u << 20);
    case 6:
        return address(r);
    case 7:
        return -below(r, 1u << 20);
    default:
        return BOUNDARY[below(r, COUNT(BOUNDARY))];
    }
}

/* Whether an absolute deadline is past or future depends on when the call runs (the guest
 * is between 10 us and an hour old); those deadlines are moved where the answer does not,
 * so the host's answers are a function of the seed. */
static uint64_t settled_deadline(uint64_t deadline) {
    int64_t d = (int64_t)deadline;
    if (d > 10000 && d < MAX_DELTA_NS)
        return 1 + deadline % 9999; /* past: -ETIME */
    if (d > MAX_DELTA_NS + 10000 && d <= 2 * MAX_DELTA_NS)
        return MAX_DELTA_NS; /* within the hour ahead: armed */
    return deadline;
}

/* --- the calls a guest survives ----------------------------------------------------------- */

static void hypercall_valid(struct rng *r) {
    static const uint64_t calls[] = {HYPERCALL_NOP, HYPERCALL_SET_CLOCKEVENT,
                                     HYPERCALL_SET_PERIODIC, HYPERCALL_SET_PRECISE,
                                     HYPERCALL_BLOCK};
    uint64_t nr = calls[below(r, COUNT(calls))];
    uint64_t a0 = fuzz_arg(r), a1 = fuzz_arg(r);
    if (nr == HYPERCALL_SET_PRECISE)
        a0 = settled_deadline(a0);
    if (nr == HYPERCALL_BLOCK) /* 0 would depend on what is pending, not on the seed */
        a0 = settled_deadline(a0 ? a0 : 1);
    if (below(r, 4) == 0)
        nr |= next(r) << 32; /* rax's upper half is not part of the call */
    hypercall(nr, a0, a1);
}

static void hypercall_unknown(struct rng *r) {
    static const uint64_t numbers[] = {HYPERCALL_BLOCK + 1, 8, 0x3f, 0x40, 0xff, 0x100,
                                       0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff};
    uint64_t nr = below(r, 2) ? numbers[below(r, COUNT(numbers))]
                              : HYPERCALL_BLOCK + 1 + below(r, 0xffffffffull - 8);
    hypercall(nr | (below(r, 4) ? 0 : next(r) << 32), fuzz_arg(r), fuzz_arg(r));
}

static void log_inside(struct rng *r) {
    static const uint64_t lengths[] = {0, 1, 64, 4096};
    uint64_t len = below(r, 2) ? lengths[below(r, COUNT(lengths))] : below(r, 4097);
    hypercall(HYPERCALL_LOG, below(r, fuzz_mem_bytes - len + 1), len);
}

static void scribble_shared(struct rng *r) {
    volatile uint64_t *field = (volatile uint64_t *)SHARED_GPA;
    volatile uint8_t *byte = (volatile uint8_t *)SHARED_GPA;
    uint64_t mode = below(r, 8), n = mode == 0 ? SHARED_FIELDS : 1 + below(r, 4);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t f = mode == 0 ? i : below(r, SHARED_FIELDS);
        if (f == FUZZ_CALL_FIELD || f == FUZZ_ACTION_FIELD)
            continue; /* the guest's progress: the host checks it, the guest keeps it */
        if (mode == 1)
            byte[f * 8 + below(r, 8)] = (uint8_t)next(r);
        else
            field[f] = mode == 0 ? next(r) : fuzz_arg(r);
    }
}

/* The PV deadline device: a deadline in its page (boundary or random values, one torn
 * 32-bit half, one soon on the clock, or none), then a kick: mostly the 32-bit out the
 * ioeventfd takes in the kernel, sometimes a width that exits to the VMM. */
static void pv_deadline(struct rng *r) {
    volatile uint64_t *deadline = &((volatile struct tickless_shared *)SHARED_GPA)->pv_deadline_ns;
    switch (below(r, 4)) {
    case 0: *deadline = fuzz_arg(r); break;
    case 1: ((volatile uint32_t *)deadline)[below(r, 2)] = (uint32_t)next(r); break;
    case 2:
        *deadline = ((volatile struct pvclock_vcpu_time_info *)PVCLOCK_GPA)->system_time +
                    below(r, 2000000);
        break;
    default: *deadline = 0;
    }
    port_out(PV_KICK_PORT, below(r, 4) ? 4 : 1u << below(r, 2), (uint32_t)next(r));
}

static void scribble_results(struct rng *r) {
    volatile uint64_t *slot = (volatile uint64_t *)RESULTS_GPA;
    uint64_t mode = below(r, 4);
    if (mode == 0) { /* rising timestamps: a buffer the host accepts */
        uint64_t t = next(r) >> 8, n = below(r, fuzz_results_slots + 1);
        for (uint64_t i = 0; i < n; i++)
            slot[i] = t += below(r, 1u << 20);
        return;
    }
    for (uint64_t i = 0, n = 1 + below(r, 16); i < n; i++)
        slot[below(r, fuzz_results_slots)] = mode == 1 ? next(r) : fuzz_arg(r);
}

static void scribble_pvclock(struct rng *r) {
    volatile uint8_t *page = (volatile uint8_t *)PVCLOCK_GPA;
    uint64_t span = below(r, 4) ? sizeof(struct pvclock_vcpu_time_info) : 4096;
    for (uint64_t i = 0, n = 1 + below(r, 16); i < n; i++)
        page[below(r, span)] = (uint8_t)next(r);
}

static void console(struct rng *r) {
    unsigned width = 1u << below(r, 3);
    if (below(r, 2)) {
        port_out(CONSOLE_PORT, width, (uint32_t)next(r));
        return;
    }
    uint64_t count = 1 + below(r, 16); /* KVM exits once per item here */
    port_string(CONSOLE_PORT, width, 0, below(r, fuzz_mem_bytes - count * width), count);
}

/* Wait for a short one-shot timer: the counter is read before arming, so an interrupt
 * that comes first makes the ring-0 handler return at once instead of sleeping forever. */
static void halt(struct rng *r) {
    uint64_t seen = SHARED->irq_count;
    if (hypercall(HYPERCALL_SET_CLOCKEVENT, MIN_DELTA_NS + below(r, 20000), 0) == 0)
        halt_until_moved((uint64_t)&SHARED->irq_count, seen);
}

static void pic(struct rng *r) {
    static const uint16_t ports[] = {0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1};
    uint16_t port = ports[below(r, COUNT(ports))];
    if (below(r, 2))
        port_out(port, 1, (uint32_t)next(r));
    else
        port_in(port, 1);
}

/* The zoo's i8254: a few accesses to its ports with random and boundary values, any width
 * (a wide one spills into the next ports): control words (latch, read-back, every mode,
 * BCD), counts (0, 1, 2: the tiny periodic ones the host clamps), reads, gate 2 at 0x61. */
static void pit(struct rng *r) {
    static const uint8_t controls[] = {0x30, 0x34, 0x36, 0x38, 0x3a, 0x32, 0x35, 0x00, 0x10,
                                       0x20, 0xb0, 0xb6, 0xc2, 0xce, 0xde, 0xee, 0xfe, 0xff};
    static const uint8_t counts[] = {0, 1, 2, 3, 0xff, 0x80, 0x99, 0xa9, 0x04};
    for (uint64_t n = 1 + below(r, 4); n; n--) {
        uint16_t port = below(r, 5) == 4 ? PIT_GATE_PORT : (uint16_t)(PIT_PORT + below(r, 4));
        unsigned width = below(r, 8) ? 1 : 1u << below(r, 3);
        uint32_t value = (uint32_t)next(r);
        if (port == PIT_PORT + 3 && below(r, 2))
            value = controls[below(r, COUNT(controls))];
        else if (port != PIT_GATE_PORT && below(r, 2))
            value = counts[below(r, COUNT(counts))];
        if (below(r, 3) == 0)
            port_in(port, width);
        else
            port_out(port, width, value);
    }
}

/* The CMOS RTC: a few accesses, index (with the NMI mask bit at random) then data, to its
 * registers or any, with the values that matter (divider reset 0x70, test modes 0x40,
 * 8192 Hz 0x23, rate 0, SET, every interrupt enable, don't-cares, bad BCD) or random
 * ones, and 1-, 2- and 4-byte accesses to either port. */
static void rtc(struct rng *r) {
    static const uint8_t regs[] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                                   0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x32, 0x7f};
    static const uint8_t values[] = {0x00, 0x70, 0x60, 0x40, 0x20, 0x23, 0x2f, 0x21, 0x80,
                                     0xf0, 0x7f, 0xc0, 0xff, 0x59, 0x99, 0x92, 0x12, 0x7a};
    for (uint64_t n = 1 + below(r, 8); n; n--) {
        uint8_t reg = below(r, 4) ? regs[below(r, COUNT(regs))] : (uint8_t)next(r);
        uint8_t value = below(r, 2) ? values[below(r, COUNT(values))] : (uint8_t)next(r);
        switch (below(r, 4)) {
        case 0: port_out(RTC_PORT, 1, reg); port_out(RTC_PORT + 1, 1, value); break;
        case 1: port_out(RTC_PORT, 1, reg); port_in(RTC_PORT + 1, 1); break;
        case 2: port_out(RTC_PORT + below(r, 2), 1u << below(r, 3), (uint32_t)next(r)); break;
        default: port_in(RTC_PORT + below(r, 2), 1u << below(r, 3));
        }
    }
}

/* The HPET (the fuzz guest has the timer zoo): a register, or anywhere in its 1 KiB, 4 or
 * 8 bytes wide (sometimes 1, 2 or misaligned), read or written with boundary values (enable
 * and legacy bits, periodic with a 10 ns period, 32-bit mode, routes offered and not, FSB),
 * a comparator just ahead of or behind the counter, or random values. Its interrupts reach
 * no vector: this guest routes no IOAPIC pin. */
static void hpet(struct rng *r) {
    static const uint16_t regs[] = {0x000, 0x004, 0x010, 0x014, 0x020, 0x0f0, 0x0f4, 0x100,
                                    0x104, 0x108, 0x10c, 0x110, 0x114, 0x120, 0x128, 0x130,
                                    0x140, 0x148, 0x150, 0x160, 0x168, 0x3f8};
    static const uint64_t values[] = {
        0, 1, 2, 3, ~0ull, 0xffffffffull, 1ull << 32, 1ull << 63,
        0x4 | 0x8 | 0x40,            /* interrupt, periodic, value set */
        0x4 | 0x100,                 /* interrupt, 32-bit mode */
        0x4 | 0x2,                   /* interrupt, level-triggered */
        0x4 | 20 << 9, 0x4 | 23 << 9, 0x4 | 5 << 9, 0x4 | 31 << 9, /* routes */
        0x4 | 0x4000,                /* FSB delivery (not offered) */
        0xfee00000ull << 32 | 0x30,  /* an FSB route: a valid MSI */
    };
    volatile uint64_t *counter = (volatile uint64_t *)(HPET_GPA + 0x0f0);
    uint64_t off = below(r, 4) ? regs[below(r, COUNT(regs))] : below(r, HPET_MMIO_BYTES);
    unsigned width = below(r, 8) ? (below(r, 2) ? 4 : 8) : 1u << below(r, 2);
    if (off + width > HPET_MMIO_BYTES)
        off = HPET_MMIO_BYTES - width;
    uint64_t value;
    switch (below(r, 4)) {
    case 0: value = *counter + below(r, 200000) - 100000; break; /* ahead or behind */
    case 1: value = fuzz_arg(r); break;
    default: value = values[below(r, COUNT(values))];
    }
    uint64_t addr = HPET_GPA + off;
    int write = below(r, 3) != 0;
    if (width == 1) {
        if (write) *(volatile uint8_t *)addr = (uint8_t)value; else (void)*(volatile uint8_t *)addr;
    } else if (width == 2) {
        if (write) *(volatile uint16_t *)addr = (uint16_t)value; else (void)*(volatile uint16_t *)addr;
    } else if (width == 4) {
        if (write) *(volatile uint32_t *)addr = (uint32_t)value; else (void)*(volatile uint32_t *)addr;
    } else {
        if (write) *(volatile uint64_t *)addr = value; else (void)*(volatile uint64_t *)addr;
    }
}

/* --- the mix: out of 100000, about 2.5 % of calls stop the guest --------------------------- */

static const struct {
    uint32_t action, weight;
} MIX[] = {
    {FUZZACTION_HYPERCALL, 37000},       {FUZZACTION_BAD_HYPERCALL, 10000},
    {FUZZACTION_LOG, 3000},              {FUZZACTION_SCRIBBLE_SHARED, 20000},
    {FUZZACTION_SCRIBBLE_RESULTS, 6000}, {FUZZACTION_SCRIBBLE_PVCLOCK, 1000},
    {FUZZACTION_CONSOLE, 8000},          {FUZZACTION_HALT, 3000},
    {FUZZACTION_TSC_DEADLINE, 2000},     {FUZZACTION_PIC, 1000},
    {FUZZACTION_DONE, 300},              {FUZZACTION_BAD_LOG, 300},
    {FUZZACTION_PANIC, 200},             {FUZZACTION_HYPERCALL_WIDTH, 200},
    {FUZZACTION_PORT, 500},              {FUZZACTION_MMIO, 400},
    {FUZZACTION_EXCEPTION, 800},         {FUZZACTION_BAD_HALT, 200},
    {FUZZACTION_RUNAWAY, 10},            {FUZZACTION_PV_DEADLINE, 3000},
    {FUZZACTION_HPET, 3000},
    {FUZZACTION_PIT, 2000},
    {FUZZACTION_RTC, 2000},
};

static uint64_t pick(struct rng *r) {
    uint64_t total = 0;
    for (unsigned i = 0; i < COUNT(MIX); i++)
        total += MIX[i].weight;
    uint64_t x = below(r, total);
    for (unsigned i = 0; i < COUNT(MIX); i++) {
        if (x < MIX[i].weight)
            return MIX[i].action;
        x -= MIX[i].weight;
    }
    return FUZZACTION_HYPERCALL;
}

static void act(uint64_t action, struct rng *r) {
    switch (action) {
    case FUZZACTION_HYPERCALL: hypercall_valid(r); break;
    case FUZZACTION_BAD_HYPERCALL: hypercall_unknown(r); break;
    case FUZZACTION_LOG: log_inside(r); break;
    case FUZZACTION_SCRIBBLE_SHARED: scribble_shared(r); break;
    case FUZZACTION_SCRIBBLE_RESULTS: scribble_results(r); break;
    case FUZZACTION_PV_DEADLINE: pv_deadline(r); break;
    case FUZZACTION_HPET: hpet(r); break;
    case FUZZACTION_SCRIBBLE_PVCLOCK: scribble_pvclock(r); break;
    case FUZZACTION_CONSOLE: console(r); break;
    case FUZZACTION_HALT: halt(r); break;
    case FUZZACTION_TSC_DEADLINE: user_wrmsr(MSR_TSC_DEADLINE, fuzz_arg(r)); break;
    case FUZZACTION_PIC: pic(r); break;
    case FUZZACTION_RTC: rtc(r); break;
    case FUZZACTION_DONE: fuzz_done(r); break;
    case FUZZACTION_BAD_LOG: fuzz_log_bad(r); break;
    case FUZZACTION_PANIC: hypercall(HYPERCALL_PANIC, fuzz_arg(r), fuzz_arg(r)); break;
    case FUZZACTION_HYPERCALL_WIDTH: fuzz_hypercall_width(r); break;
    case FUZZACTION_PORT: fuzz_port(r); break;
    case FUZZACTION_MMIO: fuzz_mmio(r); break;
    case FUZZACTION_EXCEPTION: fuzz_exception(r); break;
    case FUZZACTION_BAD_HALT: fuzz_halt_bad(r); break;
    case FUZZACTION_PIT: pit(r); break;
    default: fuzz_runaway(r);
    }
}

void fuzz_main(void) {
    uint64_t seed = mix64(BOOT->fuzz_seed), end = BOOT->fuzz_end_call, only = BOOT->fuzz_only;
    fuzz_mem_bytes = BOOT->memory_bytes;
    fuzz_flags = BOOT->fuzz_flags;
    fuzz_results_slots = BOOT->results_capacity;
    for (uint64_t i = BOOT->fuzz_first_call; i < end; i++) {
        struct rng r = {mix64(seed ^ i)};
        uint64_t action = pick(&r);
        if (only)
            action = only - 1;
        SHARED->fuzz_action = action;
        SHARED->fuzz_call = i;
        act(action, &r);
    }
    SHARED->fuzz_call = end;
    hypercall(HYPERCALL_DONE, 0, 0);
}
