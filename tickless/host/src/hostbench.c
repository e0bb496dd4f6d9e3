/*
 * hostbench: the host-userspace baseline for timer precision, measured the way
 * Adamczyk & Chydzinski (PLoS ONE 2015) measure it: N timer events every d ns, the
 * measured interval is the time between consecutive wake-ups. Run on the host itself it
 * gives the floor that a KVM guest's timer can be compared against (like cyclictest).
 *
 * Methods (deadlines are absolute CLOCK_MONOTONIC times, slept to with TIMER_ABSTIME):
 *   relative  deadline_i = t_{i-1} + d   (the paper's method: mean interval = d + latency)
 *   absolute  deadline_i = t0 + i*d      (a fixed grid: latencies do not accumulate)
 *
 * Output: the N+1 timestamps t0..tN in ns, little-endian uint64, to --out or stdout.
 * Settings that cannot be applied (pinning, SCHED_FIFO, PM QoS, mlockall) are reported on
 * stderr, one line each, and the run continues: the numbers are still a valid baseline.
 * Exit status: 0 ok, 1 runtime failure, 2 bad arguments.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define USAGE                                                                      \
    "usage: hostbench --interval-ns N --count N --method relative|absolute "      \
    "[--fifo PRIO] [--cpu N] [--out PATH] [--no-dma-latency]"

#define MAX_COUNT 100000000LL /* 800 MB of timestamps: far beyond any sane run */

enum method { METHOD_NONE, METHOD_RELATIVE, METHOD_ABSOLUTE };

struct options {
    int64_t interval_ns;
    int64_t count;
    enum method method;
    int fifo_priority; /* 0: leave SCHED_OTHER */
    int cpu;           /* -1: do not pin */
    const char *out;   /* NULL: stdout */
    int hold_dma_latency;
};

/* Bad arguments: one line naming the problem and the usage, exit status 2. */
__attribute__((format(printf, 1, 2), noreturn)) static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("hostbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("; " USAGE "\n", stderr);
    va_end(ap);
    exit(2);
}

/* Parse a decimal integer in [lo, hi]; anything else is a usage error naming the option. */
static int64_t parse_int(const char *opt, const char *text, int64_t lo, int64_t hi)
{
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < lo || value > hi)
        usage_error("bad %s '%s' (want an integer in %" PRId64 "..%" PRId64 ")", opt, text, lo,
                    hi);
    return value;
}

static struct options parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"interval-ns", required_argument, NULL, 'i'},
        {"count", required_argument, NULL, 'n'},
        {"method", required_argument, NULL, 'm'},
        {"fifo", required_argument, NULL, 'f'},
        {"cpu", required_argument, NULL, 'c'},
        {"out", required_argument, NULL, 'o'},
        {"no-dma-latency", no_argument, NULL, 'D'},
        {NULL, 0, NULL, 0},
    };
    struct options o = {0, 0, METHOD_NONE, 0, -1, NULL, 1};
    int ch;
    opterr = 0; /* we print our own one-line message */
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'i': o.interval_ns = parse_int("--interval-ns", optarg, 1, INT64_MAX); break;
        case 'n': o.count = parse_int("--count", optarg, 1, MAX_COUNT); break;
        case 'f': o.fifo_priority = (int)parse_int("--fifo", optarg, 1, 99); break;
        case 'c': o.cpu = (int)parse_int("--cpu", optarg, 0, CPU_SETSIZE - 1); break;
        case 'o': o.out = optarg; break;
        case 'D': o.hold_dma_latency = 0; break;
        case 'm':
            if (strcmp(optarg, "relative") == 0)
                o.method = METHOD_RELATIVE;
            else if (strcmp(optarg, "absolute") == 0)
                o.method = METHOD_ABSOLUTE;
            else
                usage_error("bad --method '%s' (want relative or absolute)", optarg);
            break;
        default:
            usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
    if (o.interval_ns == 0)
        usage_error("--interval-ns is required");
    if (o.count == 0)
        usage_error("--count is required");
    if (o.method == METHOD_NONE)
        usage_error("--method is required");
    /* The last deadline, t0 + count*d, must fit in int64 ns with room for t0 itself. */
    if (o.interval_ns > (INT64_MAX / 2) / o.count)
        usage_error("--interval-ns times --count overflows 64-bit nanoseconds");
    return o;
}

/* Apply what can be applied; report one line per setting that could not be. */
static void apply_realtime(const struct options *o)
{
    if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0)
        fprintf(stderr, "hostbench: cannot mlockall (%s): page faults may add latency\n",
                strerror(errno));
    if (o->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(o->cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            fprintf(stderr, "hostbench: cannot pin to CPU %d (%s)\n", o->cpu, strerror(errno));
    }
    if (o->fifo_priority > 0) {
        struct sched_param param = {.sched_priority = o->fifo_priority};
        if (sched_setscheduler(0, SCHED_FIFO, &param) != 0)
            fprintf(stderr, "hostbench: no SCHED_FIFO %d (%s): run as root\n",
                    o->fifo_priority, strerror(errno));
    }
    if (o->hold_dma_latency) {
        /* PM QoS: keep CPUs out of deep idle states while this fd stays open (our lifetime). */
        int fd = open("/dev/cpu_dma_latency", O_WRONLY | O_CLOEXEC);
        int32_t zero = 0;
        if (fd < 0 || write(fd, &zero, sizeof zero) != (ssize_t)sizeof zero)
            fprintf(stderr, "hostbench: cannot hold /dev/cpu_dma_latency (%s)\n",
                    strerror(errno));
    }
}

static int64_t to_ns(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec;
}

static struct timespec from_ns(int64_t ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
    return ts;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return to_ns(&ts);
}

/* Sleep until an absolute CLOCK_MONOTONIC deadline; a signal only restarts the sleep. */
static void sleep_until(int64_t deadline_ns)
{
    struct timespec ts = from_ns(deadline_ns);
    int rc;
    while ((rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL)) == EINTR)
        ;
    if (rc != 0) {
        fprintf(stderr, "hostbench: clock_nanosleep failed (%s)\n", strerror(rc));
        exit(1);
    }
}

static void measure(const struct options *o, uint64_t *t)
{
    int64_t t0 = now_ns();
    int64_t prev = t0;
    t[0] = (uint64_t)t0;
    for (int64_t i = 1; i <= o->count; i++) {
        int64_t deadline = o->method == METHOD_RELATIVE ? prev + o->interval_ns
                                                        : t0 + i * o->interval_ns;
        sleep_until(deadline);
        prev = now_ns();
        t[i] = (uint64_t)prev;
    }
}

static int write_all(FILE *f, uint64_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        t[i] = htole64(t[i]);
    return fwrite(t, sizeof *t, n, f) == n && fflush(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct options o = parse_args(argc, argv);
    /* Open the output first so a bad path fails before a possibly long run. */
    FILE *out = o.out ? fopen(o.out, "wb") : stdout;
    if (out == NULL) {
        fprintf(stderr, "hostbench: cannot open %s (%s)\n", o.out, strerror(errno));
        return 1;
    }
    size_t n = (size_t)o.count + 1;
    uint64_t *t = malloc(n * sizeof *t);
    if (t == NULL) {
        fprintf(stderr, "hostbench: cannot allocate %zu timestamps\n", n);
        return 1;
    }
    apply_realtime(&o);
    memset(t, 0, n * sizeof *t); /* fault every page in now, not during the measurement */
    measure(&o, t);
    if (write_all(out, t, n) != 0 || (out != stdout && fclose(out) != 0)) {
        fprintf(stderr, "hostbench: cannot write timestamps (%s)\n", strerror(errno));
        return 1;
    }
    free(t);
    return 0;
}
