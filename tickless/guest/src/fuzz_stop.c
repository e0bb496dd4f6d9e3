/* The fuzzing guest's calls that stop it: each ends in a host GuestFault, a guest PANIC
 * from a ring-0 exception handler, a KVM exit the VMM cannot complete, DONE, or (runaway)
 * the host's watchdog. Which one is a function of the call's random stream only. */
#include "fuzz.h"

void fuzz_done(struct rng *r) {
    uint64_t cap = fuzz_results_slots - 1;
    uint64_t choices[] = {0, 1, cap, cap + 1, cap + 2, ~0ull, next(r), below(r, cap + 1)};
    hypercall(HYPERCALL_DONE, choices[below(r, COUNT(choices))], fuzz_arg(r));
}

/* A LOG buffer that is never fine: across the end of memory, outside it, around the top
 * of the address space, or longer than the console takes. */
void fuzz_log_bad(struct rng *r) {
    uint64_t gpa, len, k = 1 + below(r, 4095);
    switch (below(r, 5)) {
    case 0:
        gpa = fuzz_mem_bytes - k, len = k + 1 + below(r, 4096 - k);
        break;
    case 1:
        gpa = fuzz_mem_bytes + below(r, 1ull << 40), len = 1 + below(r, 4096);
        break;
    case 2:
        gpa = -k, len = k + below(r, 4096 - k + 1);
        break;
    case 3:
        gpa = below(r, fuzz_mem_bytes), len = 4097 + below(r, 1ull << 32);
        break;
    default:
        gpa = below(r, fuzz_mem_bytes), len = -1 - below(r, 4096);
    }
    hypercall(HYPERCALL_LOG, gpa, len);
}

void fuzz_hypercall_width(struct rng *r) {
    switch (below(r, 4)) {
    case 0:
        port_out(HYPERCALL_PORT, 1 + below(r, 2), (uint32_t)next(r));
        break;
    case 1:
        port_in(HYPERCALL_PORT, 1u << below(r, 3));
        break;
    default:
        port_string(HYPERCALL_PORT, 4, 0, RESULTS_GPA, 2 + below(r, 7));
    }
}

void fuzz_port(struct rng *r) {
    static const uint16_t ports[] = {0x600, 0x601, 0x602, 0x603, 0x5ff, 0xe8, 0xe9, 0xea,
                                     0x3f8, 0x80, 0x70, 0x71, 0x60, 0x64, 0x40, 0x43,
                                     0x61, 0x92, 0xcf8, 0xcf9, 0xcfc, 0x0, 0xffff, 0xfffe};
    uint16_t port = below(r, 4) ? (uint16_t)next(r) : ports[below(r, COUNT(ports))];
    unsigned width = 1u << below(r, 3);
    int in = (int)below(r, 2);
    if (below(r, 8) == 0)
        port_string(port, width, in, RESULTS_GPA, 1 + below(r, 16));
    else if (in)
        port_in(port, width);
    else
        port_out(port, width, (uint32_t)next(r));
}

/* Loads and stores outside guest memory (MMIO exits), or straddling its end. */
void fuzz_mmio(struct rng *r) {
    uint64_t addr;
    switch (below(r, 4)) {
    case 0:
        addr = fuzz_mem_bytes - 1 - below(r, 7);
        break;
    case 1:
        addr = GIB - 8;
        break;
    default:
        addr = fuzz_mem_bytes + below(r, GIB - fuzz_mem_bytes - 8);
    }
    uint64_t value = next(r), width = below(r, 5);
    int write = (int)below(r, 2);
    if (width == 4) { /* string copy from outside memory into the results buffer */
        uint64_t dst = RESULTS_GPA, count = 1 + below(r, 4);
        __asm__ volatile("rep movsq" : "+S"(addr), "+D"(dst), "+c"(count)::"memory");
    } else if (width == 0) {
        if (write)
            *(volatile uint8_t *)addr = (uint8_t)value;
        else
            (void)*(volatile uint8_t *)addr;
    } else if (width == 1) {
        if (write)
            *(volatile uint16_t *)addr = (uint16_t)value;
        else
            (void)*(volatile uint16_t *)addr;
    } else if (width == 2) {
        if (write)
            *(volatile uint32_t *)addr = (uint32_t)value;
        else
            (void)*(volatile uint32_t *)addr;
    } else if (write) {
        *(volatile uint64_t *)addr = value;
    } else {
        (void)*(volatile uint64_t *)addr;
    }
}

/* Exceptions raised in ring 3; each ends in the ring-0 handler's PANIC (or a KVM exit). */
void fuzz_exception(struct rng *r) {
    uint64_t addr = GIB + below(r, (1ull << 46) - GIB); /* canonical, beyond the 1 GiB map */
    uint64_t wild = noncanonical(r);
    uint32_t msr = (uint32_t)next(r);
    switch (below(r, 14)) {
    case 0:
        __asm__ volatile("ud2");
        break;
    case 1: /* #DE: divide by zero */
        __asm__ volatile("xorl %%ecx, %%ecx; divq %%rcx" ::: "rax", "rcx", "rdx");
        break;
    case 2: /* #DE: INT64_MIN / -1 overflows */
        __asm__ volatile("cqo; idivq %%rcx" ::"a"(1ull << 63), "c"(~0ull) : "rdx");
        break;
    case 3: /* #GP: a non-canonical load */
        (void)*(volatile uint64_t *)wild;
        break;
    case 4: /* #GP: privileged instructions */
        if (below(r, 2))
            __asm__ volatile("mov %%cr3, %%rax" ::: "rax");
        else
            __asm__ volatile("lidt (%0)" ::"r"(SHARED_GPA) : "memory");
        break;
    case 5: /* #GP: rdmsr, and wrmsr of anything but the TSC deadline */
        if (below(r, 2))
            __asm__ volatile("rdmsr" ::"c"(msr) : "rax", "rdx");
        else
            user_wrmsr(msr == MSR_TSC_DEADLINE ? msr + 1 : msr, next(r));
        break;
    case 6: /* #GP: a data segment loaded with the TSS's selector */
        __asm__ volatile("movw %0, %%ds" ::"r"((uint16_t)(TSS_SEL | 3)));
        break;
    case 7: /* #PF: beyond the mapped 1 GiB */
        (void)*(volatile uint64_t *)addr;
        break;
    case 8:
        *(volatile uint64_t *)addr = next(r);
        break;
    case 9: /* #SS: a push through a non-canonical stack pointer */
        __asm__ volatile("movq %0, %%rsp; pushq %%rax" ::"r"(wild) : "memory");
        break;
    case 10: /* #XM: 0/0 with every SSE exception unmasked (CR4.OSXMMEXCPT is set) */
        __asm__ volatile("ldmxcsr %0; xorps %%xmm0, %%xmm0; divss %%xmm0, %%xmm0" ::"m"(
            (uint32_t){0}));
        break;
    case 11: /* #DB: single-step trap after popf sets TF */
        __asm__ volatile("pushfq; orq $0x100, (%%rsp); popfq; nop" ::: "memory", "cc");
        break;
    case 12: /* #GP or #PF: jump to a non-canonical or unmapped address */
        __asm__ volatile("jmp *%0" ::"r"(below(r, 2) ? wild : addr));
        break;
    default: /* fetch instructions from outside guest memory */
        __asm__ volatile("jmp *%0" ::"r"(fuzz_mem_bytes + below(r, GIB - fuzz_mem_bytes)));
    }
}

/* hlt with a counter address the ring-0 #GP handler cannot read: MMIO, unmapped or
 * non-canonical (a ring-0 fault, the emulated path on this host). */
void fuzz_halt_bad(struct rng *r) {
    uint64_t addr;
    switch (below(r, 3)) {
    case 0:
        addr = fuzz_mem_bytes + below(r, GIB - fuzz_mem_bytes - 8);
        break;
    case 1:
        addr = GIB + below(r, 1ull << 40);
        break;
    default:
        addr = noncanonical(r);
    }
    halt_until_moved(addr, next(r));
}


/* A loop no call ends: only the host's watchdog can. In ring 0 with interrupts off: ring 3
 * cannot cli here (IOPL is not honoured), but all memory is the guest's, the IDT included,
 * so it points the #UD gate (an interrupt gate: IF cleared) at a loop and raises #UD. Or
 * in ring 3 with interrupts on, once nothing would interrupt it. Unless the run asks for
 * the harder case (then always in ring 0), the guest first quiets everything that would
 * move its counters: its timers, and the I/O load (which waits for shared.ready). */
static const uint8_t ring0_loop[] __attribute__((aligned(16))) = {0xfa, 0xeb, 0xfe}; /* cli; jmp . */

void fuzz_runaway(struct rng *r) {
    int armed = (fuzz_flags & FUZZ_FLAG_RUNAWAY_ARMED) != 0;
    if (!(fuzz_flags & FUZZ_FLAG_RUNAWAY))
        return;
    if (!armed) {
        hypercall(HYPERCALL_SET_CLOCKEVENT, 0, 0); /* cancels a periodic tick too */
        hypercall(HYPERCALL_SET_PRECISE, 0, 0);
        user_wrmsr(MSR_TSC_DEADLINE, 0);
        SHARED->ready = 0;
        if (below(r, 2))
            for (;;)
                __asm__ volatile("" ::: "memory");
    }
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } idtr;
    __asm__ volatile("sidt %0" : "=m"(idtr)); /* not privileged: UMIP is off */
    volatile uint16_t *gate = (volatile uint16_t *)(idtr.base + 6 * 16);
    uint64_t loop = (uint64_t)ring0_loop;
    gate[0] = (uint16_t)loop;
    gate[3] = (uint16_t)(loop >> 16);
    *(volatile uint32_t *)&gate[4] = (uint32_t)(loop >> 32);
    __asm__ volatile("ud2" ::: "memory");
}
