/* Ring-0 entry, interrupt and exception stubs of the tickless guest kernel.
 *
 * On this host ring-0 code is emulated (~0.6 us per instruction) while ring-3 code runs
 * natively, so every stub here is a handful of instructions and the work happens in ring 3.
 */
#include "tickless_abi.h"

    .section .text.entry, "ax"
    .global _start
_start:                              /* IMAGE_GPA: the boot vCPU's entry */
    jmp boot_entry
    .org AP_ENTRY_GPA - IMAGE_GPA
    jmp ap_start                     /* AP_ENTRY_GPA: the second vCPU's entry */
boot_entry:
    /* The host entered us in 64-bit mode: CS=KERNEL_CS, RSP=KERNEL_STACK_TOP, RDI=BOOT_GPA. */
    cld
    call kernel_main
    /* Drop to ring 3 with IOPL=3 (port I/O for hypercalls) and interrupts enabled. */
    pushq $USER_DS
    pushq $USER_STACK_TOP
    pushq $USER_RFLAGS
    pushq $USER_CS
    pushq $user_main
    iretq

    .text
/* One counter per interrupt source, incremented in the ISR; ring 3 waits on it.
 * With ``resume``, a fast path first for the idle HLTs in isr_gp (their wake-up, every one
 * of an idle fleet's): when the interrupt came at ``resume`` (the iretq after that hlt),
 * the interrupted code is ring 3 inside a call (user_halt, user_halt_at: rax, rcx and rdx
 * are the callee's to lose) and all the #GP handler has left to do is that iretq. So count,
 * EOI, and return to ring 3 on the #GP frame directly: 4 emulated instructions fewer a
 * wake-up. Our frame's saved RSP points at that frame (the CPU may have aligned the stack
 * to 16 bytes before pushing ours, so not a fixed offset). */
.macro COUNTING_ISR name, counter, resume
    .global \name
\name:
.ifnb \resume
    cmpq $\resume, (%rsp)
    jne 9f
    incq \counter
    movl $MSR_X2APIC_EOI, %ecx
    xorl %eax, %eax
    xorl %edx, %edx
    wrmsr
    movq 24(%rsp), %rsp
    iretq
9:
.endif
    pushq %rax
    pushq %rcx
    pushq %rdx
    incq \counter
    movl $MSR_X2APIC_EOI, %ecx
    xorl %eax, %eax
    xorl %edx, %edx
    wrmsr
    popq %rdx
    popq %rcx
    popq %rax
    iretq
.endm

COUNTING_ISR isr_pv_timer, SHARED_IRQ_COUNT, gp_hlt_resume
COUNTING_ISR isr_lapic_timer, SHARED_LAPIC_IRQ_COUNT, gp_hlt_at_resume
COUNTING_ISR isr_precise, SHARED_PRECISE_IRQ_COUNT
COUNTING_ISR isr_pit, SHARED_IRQ_COUNT           /* the zoo's i8254: GSI 0 via the IOAPIC */
COUNTING_ISR isr_rtc, SHARED_IRQ_COUNT  /* the CMOS RTC (IOAPIC pin 8, edge): ring 3 reads C */
COUNTING_ISR isr_hpet, SHARED_IRQ_COUNT  /* the HPET's comparator (--timer hpet) */

/* The message device: a message is in the ring. Also bumps irq_count, which a BLOCK waits
 * on, so one wait wakes for a message or the timer (user.c: msg_wait). */
    .global isr_msg
isr_msg:
    incq SHARED_MSG_IRQ_COUNT
    jmp isr_pv_timer

/* A device interrupt with a handler that stays busy for io_handler_tsc ticks: it cannot be
 * preempted (interrupt gate), so a timer interrupt arriving meanwhile waits, as in the
 * paper's heavy-I/O experiment. At its end it reads the device's status (how many arrivals
 * the interrupts so far covered: one interrupt may cover several) and tells the host when
 * it ended (io_done_tsc, before the count: the host reads the count first), so the host
 * learns what an interrupt costs this guest without an exit. Which vCPU took it: the
 * ring-0 stack it runs on (vCPU 1's is above vCPU 0's). */
    .global isr_io
isr_io:
    pushq %rax
    pushq %rcx
    pushq %rdx
    movq BOOT_PARAM_IO_HANDLER_TSC, %rcx
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    addq %rax, %rcx
1:  rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    cmpq %rcx, %rax
    jb 1b
    movq SHARED_IO_COVERED, %rcx
    movq %rcx, SHARED_IO_SEEN
    movq %rax, SHARED_IO_DONE_TSC
    movq $0, SHARED_RING3_BACK_TSC   /* ring 3 stamps its return (user.c: spin_to) */
    incq SHARED_IO_IRQ_COUNT
    cmpq $KERNEL_STACK_TOP, %rsp
    ja 2f
    incq SHARED_IO_IRQ_CPU0
    jmp 3f
2:  incq SHARED_IO_IRQ_CPU1
3:  movl $MSR_X2APIC_EOI, %ecx
    xorl %eax, %eax
    xorl %edx, %edx
    wrmsr
    popq %rdx
    popq %rcx
    popq %rax
    iretq

/* The second vCPU: wait for vCPU 0 to have built the IDT (its ring 3 has started), load
 * it, then run ap_main in ring 3. Under CPU load alone it runs with interrupts off; when it
 * takes the I/O load's interrupts (--io-cpu other) its local APIC goes to x2APIC mode, as
 * vCPU 0's did in kernel_main, and ring 3 runs with IF set. */
    .global ap_start
ap_start:
    pause
    cmpq $0, SHARED_READY
    je ap_start
    lidt idt_pointer
    cmpq $0, BOOT_PARAM_IO_CPU
    je 1f
    movl $MSR_APIC_BASE, %ecx
    rdmsr
    orl $(APIC_BASE_ENABLE | APIC_BASE_X2APIC_ENABLE), %eax
    wrmsr
    movl $MSR_X2APIC_SVR, %ecx
    movl $(APIC_SVR_ENABLE | SPURIOUS_VECTOR), %eax
    xorl %edx, %edx
    wrmsr
    pushq $USER_DS
    pushq $AP_USER_STACK_TOP
    pushq $(AP_USER_RFLAGS | RFLAGS_IF)
    jmp 2f
1:  pushq $USER_DS
    pushq $AP_USER_STACK_TOP
    pushq $AP_USER_RFLAGS
2:  pushq $USER_CS
    pushq $ap_main
    iretq

    .global isr_spurious
isr_spurious:
    iretq

/* Ring 3's one HLT: user_halt(counter, seen) (a call, so rax, rcx and rdx are the
 * caller's to lose, and the #GP handler's fast path below needs to save nothing). */
    .global user_halt
user_halt:
    movq %rdi, %rcx
    movq %rsi, %rdx
    .global user_hlt
user_hlt:
    hlt
    ret

/* user_halt_at(counter, seen, tsc): the same, with KVM's LAPIC timer armed for TSC tsc
 * (MSR_TSC_DEADLINE) in the same trap: --pv-idle lapic hands its deadline to the host
 * kernel's timer, which wakes the vCPU without a host thread. */
    .global user_halt_at
user_halt_at:
    movq %rdx, %rax
    shrq $32, %rdx
    .global user_hlt_at
user_hlt_at:
    hlt
    ret

/* #GP: ring 3 cannot execute HLT or WRMSR; this handler performs the two it is allowed.
 *  - user_hlt_at (the idle path, ring 0 emulated here: each instruction counts): arm the
 *    TSC deadline, then sleep only if the counter at %rdi still holds %rsi (closes the
 *    lost-wakeup race: sti;hlt is atomic); the interrupt returns to the iretq, straight
 *    back to ring 3.
 *  - user_hlt: the same without the arming (counter %rcx, seen %rdx).
 *  - any other hlt from ring 3, by the same rule (the slow path).
 *  - wrmsr to MSR_TSC_DEADLINE (arming KVM's LAPIC timer).
 * Anything else is fatal. Frame after our three pushes: rdx, rcx, rax, err, rip, cs, ...
 */
    .global isr_gp
isr_gp:                          /* the idle default (--pv-idle lapic) first */
    cmpq $user_hlt_at, 8(%rsp)   /* counter %rdi, seen %rsi, TSC deadline %edx:%eax */
    jne 2f
    movl $MSR_TSC_DEADLINE, %ecx
    wrmsr
    movq (%rdi), %rax
    addq $8, %rsp                /* the error code */
    incq (%rsp)                  /* resume after the hlt */
    cmpq %rsi, %rax
    jne gp_hlt_at_resume
    sti
    hlt
gp_hlt_at_resume:                /* isr_lapic_timer returns to ring 3 itself from here */
    iretq
2:  cmpq $user_hlt, 8(%rsp)      /* only ring 3 runs there: no CS check needed */
    jne gp_slow
    movq (%rcx), %rax
    addq $8, %rsp
    incq (%rsp)
    cmpq %rdx, %rax
    jne gp_hlt_resume
    sti
    hlt
gp_hlt_resume:                   /* isr_pv_timer returns to ring 3 itself from here */
    iretq
gp_slow:
    pushq %rax
    pushq %rcx
    pushq %rdx
    movq 32(%rsp), %rax          /* faulting rip */
    testb $3, 40(%rsp)           /* from ring 3 only */
    jz gp_fatal
    cmpb $0xF4, (%rax)
    jne gp_not_hlt
    incq 32(%rsp)                /* resume after the hlt */
    movq 8(%rsp), %rcx
    movq (%rcx), %rax
    cmpq (%rsp), %rax
    jne gp_done
    sti
    hlt
    cli
    jmp gp_done
gp_not_hlt:
    cmpw $0x300F, (%rax)         /* 0f 30 = wrmsr */
    jne gp_fatal
    cmpl $MSR_TSC_DEADLINE, 8(%rsp)
    jne gp_fatal
    addq $2, 32(%rsp)
    movl 8(%rsp), %ecx
    movq 16(%rsp), %rax
    movq (%rsp), %rdx
    wrmsr
gp_done:
    popq %rdx
    popq %rcx
    popq %rax
    addq $8, %rsp
    iretq
gp_fatal:
    movq $13, %rdi
    movq 32(%rsp), %rsi
    jmp panic_hypercall

/* Other exceptions: tell the host which vector and where, then stop. */
.macro EXC_NOERR vec
    .global exc_\vec
exc_\vec:
    movq $\vec, %rdi
    movq (%rsp), %rsi
    jmp panic_hypercall
.endm
.macro EXC_ERR vec
    .global exc_\vec
exc_\vec:
    movq $\vec, %rdi
    movq 8(%rsp), %rsi
    jmp panic_hypercall
.endm

EXC_NOERR 0
EXC_NOERR 1
EXC_NOERR 2
EXC_NOERR 3
EXC_NOERR 4
EXC_NOERR 5
EXC_NOERR 6
EXC_NOERR 7
EXC_ERR 8
EXC_NOERR 9
EXC_ERR 10
EXC_ERR 11
EXC_ERR 12
EXC_ERR 14
EXC_NOERR 16
EXC_ERR 17
EXC_NOERR 18
EXC_NOERR 19
EXC_NOERR 20

    .global isr_unexpected
isr_unexpected:
    movq $PANIC_UNEXPECTED_VECTOR, %rdi
    movq (%rsp), %rsi
    jmp panic_hypercall

panic_hypercall:
    movl $HYPERCALL_PANIC, %eax
    movw $HYPERCALL_PORT, %dx
    outl %eax, %dx
1:  cli
    hlt
    jmp 1b
