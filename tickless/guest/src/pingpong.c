/* The message device's end point in the small guest (Scenario.PINGPONG): ring 3, as the
 * rest of the workload; the host side is tickless/devices/message.py, the network and its
 * coordinator tickless/cosim/. */
#include "guest.h"

#define MSG_RING ((volatile struct tickless_msg_ring *)MSG_RING_GPA)
#define PING 1
#define PONG 2

static volatile uint64_t *msg_payload(uint64_t i, uint64_t *src, uint64_t *len) {
    volatile struct tickless_msg_slot *slot =
        (volatile struct tickless_msg_slot *)(MSG_RING_GPA + MSG_SLOTS_OFFSET +
                                               (i % MSG_RING_SLOTS) * sizeof(*slot));
    *src = slot->src;
    *len = slot->len;
    return (volatile uint64_t *)slot->payload;
}

/* Send {kind, seq, try} to dst (the host stamps it with our guest time). */
static void msg_send(uint64_t dst, uint64_t kind, uint64_t seq, uint64_t try) {
    volatile uint64_t *tx = (volatile uint64_t *)MSG_TX_GPA;
    tx[0] = kind;
    tx[1] = seq;
    tx[2] = try;
    if (hypercall(HYPERCALL_MSG_SEND, dst, 3 * sizeof(uint64_t)) == 0)
        SHARED->msg_sent++;
}

/* Sleep through BLOCK until a message is in the ring or the clock reads deadline. The
 * message ISR bumps irq_count too; it is read before the ring, so none is missed. */
static void msg_wait(uint64_t deadline) {
    uint64_t seen = SHARED->irq_count;
    __asm__ volatile("" ::: "memory");
    if (MSG_RING->head != MSG_RING->tail)
        return;
    SHARED->blocks++;
    if (hypercall(HYPERCALL_BLOCK, deadline, 0) == 0)
        wait_irq(&SHARED->irq_count, seen);
    __asm__ volatile("" ::: "memory");
    SHARED->block_wakes++;
}

/* Take every message in the ring; answer pings (as the answering end), and return whether
 * the pong for seq's try came (a pong for an earlier try came late: not this round trip). */
static int msg_drain(uint64_t seq, uint64_t try) {
    int answered = 0;
    while (MSG_RING->head != MSG_RING->tail) {
        uint64_t tail = MSG_RING->tail, src, len;
        volatile uint64_t *m = msg_payload(tail, &src, &len);
        if (len == 3 * sizeof(uint64_t)) {
            if (m[0] == PING)
                msg_send(src, PONG, m[1], m[2]);
            else if (m[0] == PONG && m[1] == seq && m[2] == try)
                answered = 1;
        }
        __asm__ volatile("" ::: "memory"); /* the slot is read before it is given back */
        MSG_RING->tail = tail + 1;
        SHARED->msg_received++;
    }
    return answered;
}

/* Ping msg_peer count times, each after the last one's pong; a ping unanswered for
 * msg_retry_ns is sent again. Records when each pong came and when its ping last left.
 * Without a peer: answer pings until the host stops us. */
void pingpong(void) {
    volatile uint64_t *answered_at = (volatile uint64_t *)BOOT->results_gpa;
    volatile uint64_t *sent_at = answered_at + BOOT->results_capacity;
    uint64_t peer = BOOT->msg_peer, retry = BOOT->msg_retry_ns;
    answered_at[0] = clock_ns();
    if (!peer)
        for (;;) {
            msg_wait(clock_ns() + MAX_DELTA_NS / 2);
            msg_drain(0, 0);
        }
    for (uint64_t i = 1; i <= BOOT->count; i++) {
        uint64_t tries = 0, sent = clock_ns();
        msg_send(peer, PING, i, tries);
        for (;;) {
            msg_wait(retry ? sent + retry : sent + MAX_DELTA_NS / 2);
            if (msg_drain(i, tries))
                break;
            if (retry && clock_ns() >= sent + retry) {
                sent = clock_ns();
                msg_send(peer, PING, i, ++tries);
                SHARED->msg_retries++;
            }
        }
        answered_at[i] = clock_ns();
        sent_at[i] = sent;
        SHARED->events_recorded = i;
    }
    hypercall(HYPERCALL_DONE, BOOT->count, 0);
}
