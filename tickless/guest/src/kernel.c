/* Ring-0 setup of the tickless guest: IDT, x2APIC, LAPIC timer mode. Runs once at boot;
 * everything after it runs in ring 3 (see user.c). Ring 0 is emulated on this host, so
 * keep this short. */
#include "guest.h"

struct idt_gate {
    uint16_t offset_lo, selector;
    uint8_t ist, type_attr;
    uint16_t offset_mid;
    uint32_t offset_hi, zero;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));

extern char isr_pv_timer[], isr_lapic_timer[], isr_precise[], isr_io[], isr_spurious[];
extern char isr_pit[];
extern char isr_rtc[];
extern char isr_hpet[];
extern char isr_gp[], isr_msg[];
extern char isr_unexpected[];
extern char exc_0[], exc_1[], exc_2[], exc_3[], exc_4[], exc_5[], exc_6[], exc_7[], exc_8[],
    exc_9[], exc_10[], exc_11[], exc_12[], exc_14[], exc_16[], exc_17[], exc_18[], exc_19[],
    exc_20[];

static void set_gate(int vector, void *handler) {
    uint64_t addr = (uint64_t)handler;
    idt[vector] = (struct idt_gate){
        .offset_lo = (uint16_t)addr,
        .selector = KERNEL_CS,
        .ist = 0,
        .type_attr = 0x8E, /* present, DPL0, 64-bit interrupt gate */
        .offset_mid = (uint16_t)(addr >> 16),
        .offset_hi = (uint32_t)(addr >> 32),
        .zero = 0,
    };
}

static inline void wrmsr(uint32_t msr, uint64_t value) {
    __asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32)));
}

static inline uint64_t rdmsr(uint32_t msr) {
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

/* Route an IOAPIC pin to a vector: edge, active high, fixed, physical APIC 0, unmasked, as
 * firmware would. The zoo's ISA timers arrive this way (ISA IRQ n is GSI n). */
static void ioapic_route(uint32_t gsi, uint32_t vector) {
    volatile uint32_t *sel = (volatile uint32_t *)IOAPIC_GPA;
    volatile uint32_t *win = (volatile uint32_t *)(IOAPIC_GPA + IOAPIC_IOWIN_OFFSET);
    *sel = IOAPIC_REDIRECTION_BASE + 2 * gsi + 1;
    *win = 0; /* destination: APIC 0 */
    *sel = IOAPIC_REDIRECTION_BASE + 2 * gsi;
    *win = vector;
}

struct idt_ptr {
    uint16_t limit;
    uint64_t base;
} __attribute__((packed));

struct idt_ptr idt_pointer; /* also loaded by the second vCPU (entry.S: ap_start) */

static void load_idt(void *base, uint16_t limit) {
    idt_pointer = (struct idt_ptr){limit, (uint64_t)base};
    __asm__ volatile("lidt %0" ::"m"(idt_pointer));
}

void kernel_main(void) {
    void *exceptions[21] = {exc_0,  exc_1,  exc_2,  exc_3,  exc_4,  exc_5,  exc_6,
                            exc_7,  exc_8,  exc_9,  exc_10, exc_11, exc_12, isr_gp,
                            exc_14, isr_unexpected, exc_16, exc_17, exc_18, exc_19,
                            exc_20};
    if (BOOT->magic != BOOT_MAGIC || BOOT->abi_version != ABI_VERSION)
        panic(PANIC_BAD_ABI, BOOT->abi_version);
    if (BOOT->scenario == SCENARIO_TRIPLE_FAULT) {
        load_idt(idt, 0);
        __asm__ volatile("ud2"); /* #UD -> no gate -> #GP -> no gate -> #DF -> shutdown */
    }
    for (int v = 0; v < 256; v++)
        set_gate(v, v < 21 ? exceptions[v] : isr_unexpected);
    set_gate(TIMER_VECTOR, isr_pv_timer);
    set_gate(LAPIC_TIMER_VECTOR, isr_lapic_timer);
    set_gate(IO_VECTOR, isr_io);
    set_gate(PRECISE_VECTOR, isr_precise);
    set_gate(PIT_VECTOR, isr_pit);
    set_gate(MSG_VECTOR, isr_msg);
    set_gate(SPURIOUS_VECTOR, isr_spurious);
    set_gate(RTC_VECTOR, isr_rtc);
    set_gate(HPET_VECTOR, isr_hpet);
    load_idt(idt, sizeof(idt) - 1);

    wrmsr(MSR_APIC_BASE, rdmsr(MSR_APIC_BASE) | APIC_BASE_ENABLE | APIC_BASE_X2APIC_ENABLE);
    wrmsr(MSR_X2APIC_SVR, APIC_SVR_ENABLE | SPURIOUS_VECTOR);
    /* No PIC: the in-kernel one would deliver ISA IRQs as ExtINT on LINT0 (vector 8+). */
    wrmsr(MSR_X2APIC_LVT_LINT0, APIC_LVT_MASKED);
    if (BOOT->timer == TIMERPATH_LAPIC || BOOT->pv_idle == PV_IDLE_LAPIC)
        wrmsr(MSR_X2APIC_LVT_TIMER, LVT_TSC_DEADLINE_MODE | LAPIC_TIMER_VECTOR);
    if (BOOT->timer == TIMERPATH_PIT)
        ioapic_route(PIT_GSI, PIT_VECTOR);
    if (BOOT->timer == TIMERPATH_RTC || BOOT->scenario == SCENARIO_FUZZ)
        ioapic_route(RTC_GSI, RTC_VECTOR); /* the fuzzer's RTC interrupts arrive too */
    if (BOOT->timer == TIMERPATH_HPET) /* comparator 0's Tn_INT_ROUTE_CNF names this pin */
        ioapic_route(HPET_GSI, HPET_VECTOR);
    if (BOOT->scenario == SCENARIO_FUZZ)
        fuzz_open_ports();
    if (BOOT->scenario == SCENARIO_RUNAWAY_RING0)
        for (;;)
            __asm__ volatile("cli" ::: "memory");
    if (BOOT->scenario == SCENARIO_EXCEPTION) /* #DE in ring 0 (C would fold 1/0 away) */
        __asm__ volatile("xorl %%ecx, %%ecx; divl %%ecx" ::: "eax", "ecx", "edx");
}
