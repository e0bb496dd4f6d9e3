// SPDX-License-Identifier: GPL-2.0
/*
 * Every clock the kernel has, read for the host (Boot.clock_sample_ns, the stock kernel):
 * the TSC through the kernel's own tsc_khz, the HPET's main counter, jiffies, ktime_get,
 * the CMOS RTC and ktime_get_real, each paired with the PV clock (the host's timeline, the
 * reference) read with it. The host turns the first and the latest sample into each
 * clock's rate against the timeline (clock_agreement_ppm). Jiffies and the RTC count in
 * ticks and seconds: each is paired with the timeline at its own edge, so its resolution
 * does not count.
 */
#define pr_fmt(fmt) "tickless: " fmt

#include <linux/bits.h>
#include <linux/delay.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/math64.h>
#include <linux/mc146818rtc.h>
#include <linux/rtc.h>
#include <linux/timekeeping.h>
#include <asm/hpet.h>
#include <asm/tsc.h>

#include "../../kernel/time/tick-internal.h"
#include "../../kernel/time/timekeeping.h"
#include "tickless.h"

#define RTC_EDGE_AHEAD_NS (20 * NSEC_PER_MSEC) /* wake this long before a predicted edge, */
#define RTC_EDGE_AHEAD_MAX_NS (500 * NSEC_PER_MSEC) /* or longer, up to this, if late */
#define RTC_EDGE_TOO_CLOSE_NS (2 * NSEC_PER_MSEC) /* nearer than this: wait for the next */
#define EDGE_TIMEOUT_NS (1500 * NSEC_PER_MSEC) /* an RTC second, with room */
#define RTC_EDGE_WIDE_NS (2 * NSEC_PER_MSEC) /* an edge caught in a wider window than this, */
#define RTC_EDGE_TRIES 3 /* is tried again at the next second, this many times at most */

/* The HPET's 32-bit counter wraps every 42.9 s at 100 MHz: samples come more often. */
static u64 hpet_ticks;
static u32 hpet_last;
static bool hpet_started;

/*
 * The counter beside the timeline at the middle of the read: an HPET read is an MMIO exit
 * to the host's Python, which a busy host can keep waiting for milliseconds (tens of them
 * in guest time when dilated); of HPET_TRIES reads the one that took least is kept.
 */
#define HPET_TRIES 3

static bool read_hpet(u64 *ns, u64 *at_ns)
{
	u64 before, after, shortest = U64_MAX;
	u32 now = 0, counter;
	int i;

	if (!IS_ENABLED(CONFIG_HPET_TIMER) || !is_hpet_enabled())
		return false;
	for (i = 0; i < HPET_TRIES; i++) {
		before = tickless_clock_ns();
		counter = hpet_readl(HPET_COUNTER);
		after = tickless_clock_ns();
		if (after - before < shortest) {
			shortest = after - before;
			now = counter;
			*at_ns = before + shortest / 2;
		}
	}
	hpet_ticks = hpet_started ? hpet_ticks + (u32)(now - hpet_last) : now;
	hpet_last = now;
	hpet_started = true;
	*ns = mul_u64_u32_div(hpet_ticks, hpet_readl(HPET_PERIOD), 1000000);
	return true;
}

static int rtc_seconds(void)
{
	unsigned long flags;
	int sec;

	spin_lock_irqsave(&rtc_lock, flags);
	sec = CMOS_READ(RTC_SECONDS);
	spin_unlock_irqrestore(&rtc_lock, flags);
	return sec;
}

/*
 * The RTC's next seconds edge: the timeline then, and the RTC's time (ns since 1970). The
 * edge is found by reading the seconds register back to back (two port exits a read: the
 * edge is known to a read's cost); a sleep between reads would cost a timer interrupt,
 * milliseconds of emulated ring 0 here. Once an edge has been seen, the next ones are
 * predicted from it (the RTC counts guest time), and the wait sleeps on an hrtimer until
 * shortly before one (a jiffies sleep can overshoot it, and then the poll lasts a second).
 */
static u64 rtc_edge_at_ns; /* the timeline at the last edge seen (0: none yet) */
static u64 rtc_ahead_ns = RTC_EDGE_AHEAD_NS;

static void sleep_until_near_an_edge(void)
{
	bool aimed = false; /* the last sleep aimed to wake within rtc_ahead_ns of an edge */

	while (rtc_edge_at_ns) {
		u64 now = tickless_clock_ns(), next = rtc_edge_at_ns, us;

		while (next <= now)
			next += NSEC_PER_SEC;
		if (next - now >= RTC_EDGE_TOO_CLOSE_NS && next - now <= rtc_ahead_ns)
			return; /* near enough: poll for it */
		if (aimed) /* woke too late for it (a dilated wake-up is long): aim earlier */
			rtc_ahead_ns = min_t(u64, 2 * rtc_ahead_ns, RTC_EDGE_AHEAD_MAX_NS);
		aimed = next - now > rtc_ahead_ns;
		us = (aimed ? next - now - rtc_ahead_ns : next - now) / NSEC_PER_USEC + 1;
		usleep_range(us, us + 100);
	}
}

/*
 * One edge: the timeline at its middle estimate, and how wide the window it fell in was
 * (the last read before it saw no change, the first after it did; each read is a port
 * exit, which a busy host can keep waiting for milliseconds). 0 if none came in time.
 */
static u64 catch_an_edge(u64 *at_ns)
{
	u64 give_up = ktime_get_ns() + EDGE_TIMEOUT_NS, before, last_before, width = 0;
	unsigned long flags;
	int first;

	sleep_until_near_an_edge();
	local_irq_save(flags); /* no handler between the edge and its reading */
	before = tickless_clock_ns();
	first = rtc_seconds();
	while (ktime_get_ns() <= give_up) {
		last_before = before;
		before = tickless_clock_ns();
		if (rtc_seconds() != first) {
			width = tickless_clock_ns() - last_before;
			*at_ns = rtc_edge_at_ns = last_before + width / 2;
			break;
		}
		cpu_relax();
	}
	local_irq_restore(flags);
	return width;
}

static u64 rtc_window_ns; /* the window the last sample's edge was caught in */

static bool read_rtc_at_edge(u64 *ns, u64 *at_ns)
{
	u64 narrowest = U64_MAX, at, width;
	struct rtc_time tm;
	int i;

	for (i = 0; i < RTC_EDGE_TRIES && narrowest > RTC_EDGE_WIDE_NS; i++) {
		width = catch_an_edge(&at);
		if (width && width < narrowest) {
			narrowest = width;
			*at_ns = at;
			if (mc146818_get_time(&tm, 1000))
				return false;
			*ns = (u64)rtc_tm_to_time64(&tm) * NSEC_PER_SEC;
		}
	}
	rtc_window_ns = narrowest;
	return narrowest != U64_MAX;
}

/*
 * Jiffies with the CLOCK_MONOTONIC time they were last brought to (tick_next_period is one
 * tick past it), moved onto the timeline through a monotonic reading beside a timeline one:
 * not the moment a poll saw jiffies change, which lags by the tick handler's run, and that
 * is milliseconds of emulated ring 0 here (tens of them in guest time when dilated).
 * The switch from a periodic tick to a one-shot one (tick_init_jiffy_update) moves jiffies
 * one tick against that time for good, so a sample after it starts the jiffies pairs over
 * (jiffies_mode). A periodic tick emulated on a one-shot device drops the ticks it misses
 * while its clocksource is not valid for high resolution: the rate shows those.
 */
static int jiffies_mode = -1; /* the tick's mode when the first jiffies pair was taken */

static bool read_jiffies(u64 *ns, u64 *at_ns)
{
	u64 jiffies, edge_ns, mono_ns, timeline_ns;
	unsigned long flags;
	unsigned int seq;

	local_irq_save(flags);
	do {
		seq = read_seqcount_begin(&jiffies_seq);
		jiffies = jiffies_64;
		edge_ns = ktime_to_ns(tick_next_period) - TICK_NSEC;
	} while (read_seqcount_retry(&jiffies_seq, seq));
	timeline_ns = tickless_clock_ns();
	mono_ns = ktime_get_ns();
	local_irq_restore(flags);
	if (mono_ns < edge_ns)
		return false;
	*ns = jiffies * (NSEC_PER_SEC / HZ);
	*at_ns = timeline_ns - (mono_ns - edge_ns);
	return true;
}

/*
 * The TSC counts from the first sample on, so that a new tsc_khz (Linux's refinement a
 * second after boot) scales only the cycles since then, not every cycle since the host
 * booted: the rate is the TSC's by the kernel's latest figure.
 */
static u64 tsc_base;

static void read_clocks(struct tickless_clock_sample *s)
{
	unsigned long flags;
	u64 valid = 0;

	if (read_rtc_at_edge(&s->rtc_ns, &s->rtc_at_ns))
		valid |= BIT(TICKLESS_CLOCK_RTC_BIT);
	if (read_jiffies(&s->jiffies_ns, &s->jiffies_at_ns))
		valid |= BIT(TICKLESS_CLOCK_JIFFIES_BIT);
	local_irq_save(flags); /* each read beside its timeline reading, nothing between */
	s->timeline_ns = tickless_clock_ns();
	if (!tsc_base)
		tsc_base = rdtsc_ordered();
	s->tsc_at_ns = tickless_clock_ns();
	s->tsc_ns = tsc_khz ? mul_u64_u32_div(rdtsc_ordered() - tsc_base, 1000000, tsc_khz) : 0;
	s->monotonic_at_ns = tickless_clock_ns();
	s->monotonic_ns = ktime_get_ns();
	s->realtime_at_ns = tickless_clock_ns();
	s->realtime_ns = ktime_get_real_ns();
	if (read_hpet(&s->hpet_ns, &s->hpet_at_ns))
		valid |= BIT(TICKLESS_CLOCK_HPET_BIT);
	local_irq_restore(flags);
	valid |= BIT(TICKLESS_CLOCK_MONOTONIC_BIT) | BIT(TICKLESS_CLOCK_REALTIME_BIT);
	if (tsc_khz)
		valid |= BIT(TICKLESS_CLOCK_TSC_BIT);
	s->valid = valid;
}

/*
 * The RTC's pair of a sample is kept only if its edge was caught in a window at most 2x the
 * narrowest seen: a busy host stretches some windows to tens of ms of guest time, and one
 * such pair would swamp the RTC's rate. The first sample's pair gives way to a much
 * narrower later one; the last keeps the latest narrow one. A clock the first sample could
 * not read takes its pair from the first that could, and jiffies start over when the tick
 * changes mode. Every other pair is the sample's own.
 */
static u64 rtc_best_window_ns = U64_MAX, rtc_first_window_ns = U64_MAX;

#define COPY_PAIR(to, from, name)				\
	do {							\
		(to)->name##_ns = (from)->name##_ns;		\
		(to)->name##_at_ns = (from)->name##_at_ns;	\
	} while (0)

static void copy_pair(struct tickless_clock_sample *to, const struct tickless_clock_sample *from,
		      int bit)
{
	switch (bit) {
	case TICKLESS_CLOCK_TSC_BIT: COPY_PAIR(to, from, tsc); break;
	case TICKLESS_CLOCK_HPET_BIT: COPY_PAIR(to, from, hpet); break;
	case TICKLESS_CLOCK_JIFFIES_BIT: COPY_PAIR(to, from, jiffies); break;
	case TICKLESS_CLOCK_MONOTONIC_BIT: COPY_PAIR(to, from, monotonic); break;
	case TICKLESS_CLOCK_RTC_BIT: COPY_PAIR(to, from, rtc); break;
	case TICKLESS_CLOCK_REALTIME_BIT: COPY_PAIR(to, from, realtime); break;
	default: return;
	}
	to->valid = (to->valid & ~BIT(bit)) | (from->valid & BIT(bit));
}

static void take_missing(struct tickless_clock_sample *first,
			 const struct tickless_clock_sample *sample)
{
	unsigned long missing = sample->valid & ~first->valid;
	int bit;

	for_each_set_bit(bit, &missing, BITS_PER_LONG)
		copy_pair(first, sample, bit);
}

void tickless_clocks_sample(void)
{
	struct tickless_linux_info *info = tickless_info;
	struct tickless_clock_sample sample = {};
	u64 n = READ_ONCE(info->clock_samples), window;
	bool narrow;

	read_clocks(&sample);
	window = sample.valid & BIT(TICKLESS_CLOCK_RTC_BIT) ? rtc_window_ns : U64_MAX;
	rtc_best_window_ns = min(rtc_best_window_ns, window);
	narrow = window != U64_MAX && window / 2 <= rtc_best_window_ns;
	if (!n) {
		info->clock_first = sample;
		rtc_first_window_ns = window;
	} else if (window != U64_MAX && window < rtc_first_window_ns / 4) {
		copy_pair(&info->clock_first, &sample, TICKLESS_CLOCK_RTC_BIT);
		rtc_first_window_ns = window;
	}
	if (n)
		take_missing(&info->clock_first, &sample);
	if (sample.valid & BIT(TICKLESS_CLOCK_JIFFIES_BIT) &&
	    tick_get_device(smp_processor_id())->mode != jiffies_mode) {
		copy_pair(&info->clock_first, &sample, TICKLESS_CLOCK_JIFFIES_BIT);
		jiffies_mode = tick_get_device(smp_processor_id())->mode;
	}
	if (n && !narrow)
		copy_pair(&sample, &info->clock_last, TICKLESS_CLOCK_RTC_BIT);
	info->clock_last = sample;
	virt_wmb(); /* the sample before its count: the host reads a complete one */
	WRITE_ONCE(info->clock_samples, n + 1);
	pr_info("clocks sampled (%llu) at %llu ns of guest time, RTC edge within %lld ns%s\n",
		n + 1, sample.timeline_ns, (s64)window, narrow ? "" : " (not used)");
}
