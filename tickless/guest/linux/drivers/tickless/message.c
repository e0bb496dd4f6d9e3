// SPDX-License-Identifier: GPL-2.0
/*
 * The message device's Linux end point (tickless cosim, the host side is
 * tickless/devices/message.py): a send buffer and a receive ring in the host's window,
 * the MSG_SEND hypercall, and ISA IRQ LINUX_MSG_IRQ (the host routes MSG_VECTOR to that
 * IOAPIC pin, as it does the timer's) when messages arrived.
 *
 * Receiving: the host writes slot head % MSG_RING_SLOTS and then bumps head; we take the
 * slots from tail to head and give each back by bumping tail (the host trusts neither:
 * a tail that makes no sense counts as a full ring there). The interrupt only wakes
 * whoever waits (tickless_msg_wq): the messages are taken in process context.
 * Sending: the payload goes into the send buffer and MSG_SEND(dst, len) makes the host
 * copy it out and stamp it with our guest time; the buffer is ours again once the
 * hypercall returns, so one lock with interrupts off serialises senders.
 *
 * Inert unless the host gave this guest a network address (tickless_boot->msg_address).
 */
#define pr_fmt(fmt) "tickless: " fmt

#include <linux/init.h>
#include <linux/interrupt.h>
#include <linux/irq.h>
#include <linux/irqdesc.h>
#include <linux/minmax.h>
#include <linux/printk.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/wait.h>

#include "tickless.h"

static_assert(sizeof(struct tickless_msg_ring) <= TICKLESS_MSG_SLOTS_OFFSET);
static_assert(TICKLESS_WINDOW_MSG_RING_OFFSET + TICKLESS_MSG_SLOTS_OFFSET +
		      TICKLESS_MSG_RING_SLOTS * sizeof(struct tickless_msg_slot) <=
	      TICKLESS_LINUX_WINDOW_BYTES);
static_assert(TICKLESS_WINDOW_MSG_TX_OFFSET + TICKLESS_MSG_MAX_BYTES <=
	      TICKLESS_WINDOW_MSG_RING_OFFSET);

DECLARE_WAIT_QUEUE_HEAD(tickless_msg_wq);
bool tickless_msg_on;
static DEFINE_SPINLOCK(tx_lock);

static struct tickless_msg_slot *msg_slot(u64 i)
{
	return (void *)tickless_msg_ring + TICKLESS_MSG_SLOTS_OFFSET +
	       (i % TICKLESS_MSG_RING_SLOTS) * sizeof(struct tickless_msg_slot);
}

bool tickless_msg_pending(void)
{
	return READ_ONCE(tickless_msg_ring->head) != READ_ONCE(tickless_msg_ring->tail);
}

long tickless_msg_recv(u64 *src, void *buf, size_t room)
{
	u64 tail = READ_ONCE(tickless_msg_ring->tail);
	struct tickless_msg_slot *slot;
	u64 len;

	if (READ_ONCE(tickless_msg_ring->head) == tail)
		return -EAGAIN;
	virt_rmb(); /* the slot is read after the head that shows it */
	slot = msg_slot(tail);
	*src = READ_ONCE(slot->src);
	len = min_t(u64, READ_ONCE(slot->len), TICKLESS_MSG_MAX_BYTES);
	memcpy(buf, (const void *)slot->payload, min_t(u64, len, room));
	virt_mb(); /* ... and before it is given back */
	WRITE_ONCE(tickless_msg_ring->tail, tail + 1);
	tickless_count(msg_received);
	return len;
}

long tickless_msg_send(u64 dst, const void *buf, size_t len)
{
	unsigned long flags;
	long ret;

	if (!len || len > TICKLESS_MSG_MAX_BYTES)
		return -EINVAL;
	spin_lock_irqsave(&tx_lock, flags);
	memcpy(tickless_msg_tx, buf, len);
	ret = tickless_hypercall(TICKLESS_HYPERCALL_MSG_SEND, dst, len);
	spin_unlock_irqrestore(&tx_lock, flags);
	if (!ret)
		tickless_count(msg_sent);
	return ret;
}

static irqreturn_t tickless_msg_interrupt(int irq, void *dev_id)
{
	tickless_count(msg_irq_count);
	wake_up(&tickless_msg_wq);
	return IRQ_HANDLED;
}

/*
 * Acknowledge (the IOAPIC pin is edge triggered: the local APIC's EOI) and run the
 * handler, as the timer's flow does (clockevent.c): the generic edge flow would feed
 * each interrupt to the entropy pool, whose timer is one more wake-up of an idle guest.
 */
static void tickless_msg_flow(struct irq_desc *desc)
{
	struct irq_data *data = irq_desc_get_irq_data(desc);

	data->chip->irq_ack(data);
	tickless_msg_interrupt(irq_desc_get_irq(desc), NULL);
}

/* After the window (core_initcall); before the workloads (late_initcall_sync). */
static int __init tickless_msg_init(void)
{
	int ret;

	if (!tickless_boot || !READ_ONCE(tickless_boot->msg_address))
		return 0; /* not on a network */
	ret = request_irq(TICKLESS_LINUX_MSG_IRQ, tickless_msg_interrupt, 0, "tickless-msg",
			  NULL);
	if (ret) {
		pr_err("messages: cannot claim IRQ %d: %d\n", TICKLESS_LINUX_MSG_IRQ, ret);
		return ret;
	}
	irq_set_handler(TICKLESS_LINUX_MSG_IRQ, tickless_msg_flow);
	tickless_msg_on = true;
	pr_info("messages: address %llu, ring of %d slots, IRQ %d\n",
		READ_ONCE(tickless_boot->msg_address), TICKLESS_MSG_RING_SLOTS,
		TICKLESS_LINUX_MSG_IRQ);
	return 0;
}
device_initcall(tickless_msg_init);
