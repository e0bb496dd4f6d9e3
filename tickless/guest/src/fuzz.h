/* Shared by the fuzzing guest's two files: its random stream, arguments and port helpers.
 * fuzz.c holds the calls a guest survives, the mix and the loop; fuzz_stop.c the calls
 * that stop it. */
#pragma once
#include "guest.h"

#define GOLDEN 0x9e3779b97f4a7c15ull
#define GIB (1ull << 30) /* the host's page tables map the first 1 GiB */
#define NONCANONICAL_BIT (1ull << 63)
#define CANONICAL_TOP_BIT (1ull << 47)
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct rng {
    uint64_t state;
};

extern uint64_t fuzz_mem_bytes, fuzz_flags, fuzz_results_slots; /* from the boot block */

/* splitmix64: a counter-based generator, so seeding from (seed, index) is one mix. */
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t next(struct rng *r) {
    r->state += GOLDEN;
    return mix64(r->state);
}

static inline uint64_t below(struct rng *r, uint64_t n) {
    return next(r) % n;
}

static inline uint64_t noncanonical(struct rng *r) {
    return (next(r) | NONCANONICAL_BIT) & ~CANONICAL_TOP_BIT;
}

uint64_t fuzz_arg(struct rng *r); /* a boundary, random or address-like value */

/* --- port I/O --------------------------------------------------------------------------- */

static inline void port_out(uint16_t port, unsigned width, uint32_t value) {
    if (width == 1)
        __asm__ volatile("outb %b0, %w1" ::"a"(value), "Nd"(port) : "memory");
    else if (width == 2)
        __asm__ volatile("outw %w0, %w1" ::"a"(value), "Nd"(port) : "memory");
    else
        __asm__ volatile("outl %0, %w1" ::"a"(value), "Nd"(port) : "memory");
}

static inline void port_in(uint16_t port, unsigned width) {
    uint32_t value;
    if (width == 1)
        __asm__ volatile("inb %w1, %b0" : "=a"(value) : "Nd"(port) : "memory");
    else if (width == 2)
        __asm__ volatile("inw %w1, %w0" : "=a"(value) : "Nd"(port) : "memory");
    else
        __asm__ volatile("inl %w1, %0" : "=a"(value) : "Nd"(port) : "memory");
    (void)value;
}

/* rep outs / rep ins of count items from / into guest memory at addr. */
static inline void port_string(uint16_t port, unsigned width, int in, uint64_t addr, uint64_t count) {
    if (in) {
        if (width == 1)
            __asm__ volatile("rep insb" : "+D"(addr), "+c"(count) : "d"(port) : "memory");
        else if (width == 2)
            __asm__ volatile("rep insw" : "+D"(addr), "+c"(count) : "d"(port) : "memory");
        else
            __asm__ volatile("rep insl" : "+D"(addr), "+c"(count) : "d"(port) : "memory");
    } else {
        if (width == 1)
            __asm__ volatile("rep outsb" : "+S"(addr), "+c"(count) : "d"(port) : "memory");
        else if (width == 2)
            __asm__ volatile("rep outsw" : "+S"(addr), "+c"(count) : "d"(port) : "memory");
        else
            __asm__ volatile("rep outsl" : "+S"(addr), "+c"(count) : "d"(port) : "memory");
    }
}

/* Ring 3 may not hlt or wrmsr: both trap to the ring-0 #GP handler, which performs a hlt
 * (if *counter still equals seen) and a wrmsr to MSR_TSC_DEADLINE, and panics otherwise. */
static inline void halt_until_moved(uint64_t counter, uint64_t seen) {
    user_halt((volatile uint64_t *)counter, seen);
}

static inline void user_wrmsr(uint32_t msr, uint64_t value) {
    __asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)value), "d"((uint32_t)(value >> 32))
                     : "memory");
}


/* The calls that stop the guest (fuzz_stop.c). */
void fuzz_done(struct rng *r);
void fuzz_log_bad(struct rng *r);
void fuzz_hypercall_width(struct rng *r);
void fuzz_port(struct rng *r);
void fuzz_mmio(struct rng *r);
void fuzz_exception(struct rng *r);
void fuzz_halt_bad(struct rng *r);
void fuzz_runaway(struct rng *r);
