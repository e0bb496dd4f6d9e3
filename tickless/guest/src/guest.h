/* Shared declarations of the tickless guest kernel. */
#pragma once
#include "tickless_abi.h"

#define BOOT ((volatile struct tickless_boot *)BOOT_GPA)
#define SHARED ((volatile struct tickless_shared *)SHARED_GPA)
#define PVCLOCK ((volatile struct pvclock_vcpu_time_info *)PVCLOCK_GPA)

static inline int64_t hypercall(uint64_t nr, uint64_t a0, uint64_t a1) {
    uint64_t rax = nr;
    __asm__ volatile("outl %%eax, %%dx"
                     : "+a"(rax)
                     : "d"((uint16_t)HYPERCALL_PORT), "D"(a0), "S"(a1)
                     : "memory");
    return (int64_t)rax;
}

/* Port I/O (ring 3 may use the ports its TSS opens: the console, hypercalls, the zoo). */
static inline void outb(uint16_t port, uint8_t value) {
    __asm__ volatile("outb %0, %1" ::"a"(value), "Nd"(port) : "memory");
}

static inline uint8_t inb(uint16_t port) {
    uint8_t value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port) : "memory");
    return value;
}

static inline __attribute__((noreturn)) void panic(uint64_t code, uint64_t detail) {
    hypercall(HYPERCALL_PANIC, code, detail);
    for (;;)
        __asm__ volatile("pause");
}

/* entry.S: HLT from ring 3 (through the #GP handler's fast path) unless *counter != seen */
void user_halt(volatile uint64_t *counter, uint64_t seen);
/* the same with KVM's LAPIC timer armed for TSC deadline_tsc in that trap */
void user_halt_at(volatile uint64_t *counter, uint64_t seen, uint64_t deadline_tsc);
uint64_t clock_ns(void);                                  /* user.c: the PV clock */
uint64_t wait_irq(volatile uint64_t *counter, uint64_t seen); /* user.c: sleep until it moves */
void pingpong(void);                                      /* pingpong.c: ring 3 */

void fuzz_open_ports(void); /* fuzz.c: ring 0, at boot */
void fuzz_main(void);       /* fuzz.c: ring 3 */

void *memset(void *dst, int c, unsigned long n);
void *memcpy(void *dst, const void *src, unsigned long n);
