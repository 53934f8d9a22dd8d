/*
 * connect-baseline: the plain way to open many TCP connections, as a yardstick
 * for storm-load in bench-load.sh. THREADS threads each run a blocking
 * socket()+connect() loop over their share of COUNT connections (round-robin
 * over the ports, like storm-load), and hold them open until SIGINT/SIGTERM;
 * exiting closes them with FINs.
 *
 * usage: connect-baseline ADDR FIRST_PORT LAST_PORT COUNT THREADS
 *
 * Prints one line on stdout when every thread is done with its share:
 *   {"kind":"reached","t0":<wall s>,"t1":<wall s>,"established":N,"failed":N,"cpu_ns":N}
 * t0 is taken before the threads start, t1 when the last one finished, both
 * CLOCK_REALTIME, so the bench can line several clients up on one time axis;
 * cpu_ns is the process's CPU time then (CLOCK_PROCESS_CPUTIME_ID).
 * Failed connects are counted, not retried, as storm-load does.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in target;
static unsigned first_port, nports;
static unsigned long count, threads;
static atomic_ulong established, failed;

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *worker(void *arg)
{
    unsigned long k = (unsigned long)arg;
    struct sockaddr_in sa = target;
    for (unsigned long i = k; i < count; i += threads) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            atomic_fetch_add(&failed, 1);
            continue;
        }
        sa.sin_port = htons(first_port + i % nports);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            atomic_fetch_add(&established, 1);
        } else {
            atomic_fetch_add(&failed, 1);
            close(fd);
        }
        /* Held: the fd stays open until the process exits. */
    }
    return NULL;
}

static void on_signal(int sig) { (void)sig; }

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: connect-baseline ADDR FIRST_PORT LAST_PORT COUNT THREADS\n");
        return 2;
    }
    memset(&target, 0, sizeof target);
    target.sin_family = AF_INET;
    if (inet_pton(AF_INET, argv[1], &target.sin_addr) != 1) {
        fprintf(stderr, "connect-baseline: bad address %s\n", argv[1]);
        return 2;
    }
    first_port = strtoul(argv[2], NULL, 10);
    unsigned last_port = strtoul(argv[3], NULL, 10);
    count = strtoul(argv[4], NULL, 10);
    threads = strtoul(argv[5], NULL, 10);
    if (first_port == 0 || last_port < first_port || last_port > 65535 || threads == 0 ||
        threads > 1024) {
        fprintf(stderr, "connect-baseline: bad ports or thread count\n");
        return 2;
    }
    nports = last_port - first_port + 1;

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (count + 16 > rl.rlim_cur) {
        fprintf(stderr, "connect-baseline: %lu connections need more than the %lu fds allowed\n",
                count, (unsigned long)rl.rlim_cur);
        return 3;
    }

    /* A shell that backgrounds us leaves SIGINT ignored: install a handler,
     * then block the stop signals in every thread and wait for them here. */
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = on_signal;
    sigaction(SIGINT, &act, NULL);
    sigaction(SIGTERM, &act, NULL);
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    double t0 = wall();
    pthread_t *tid = calloc(threads, sizeof *tid);
    for (unsigned long k = 0; k < threads; k++) {
        if (pthread_create(&tid[k], NULL, worker, (void *)k) != 0) {
            fprintf(stderr, "connect-baseline: pthread_create failed\n");
            return 1;
        }
    }
    for (unsigned long k = 0; k < threads; k++)
        pthread_join(tid[k], NULL);
    double t1 = wall();
    /* CPU time of every thread, exited ones included, in ns: the same
     * sum_exec_runtime the bench reads from /proc/PID/schedstat for storm-load. */
    struct timespec cpu;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    printf("{\"kind\":\"reached\",\"t0\":%.6f,\"t1\":%.6f,\"established\":%lu,\"failed\":%lu,"
           "\"cpu_ns\":%lld}\n",
           t0, t1, atomic_load(&established), atomic_load(&failed),
           (long long)cpu.tv_sec * 1000000000LL + cpu.tv_nsec);
    fflush(stdout);

    int sig;
    sigwait(&stop, &sig);
    return 0;
}
