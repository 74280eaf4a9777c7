/*
 * fsync-delay.so: an LD_PRELOAD shim that delays fsync and fdatasync, as strace's
 * `-e inject=fsync,fdatasync:delay_exit=US` does, for scripts/fsync-stall's INJECT=preload.
 *
 * Why not strace: a process under strace cannot be attached to by gdb or perf, so the
 * stalled member's threads cannot be inspected while it misbehaves, and strace stops the
 * process at syscalls it does not delay, which costs it CPU a slow disk would not.
 *
 * The delay, in microseconds, is read from the file named by $FSYNC_DELAY_FILE at every
 * call (a missing or empty file means no delay), so a script can stall a running member
 * and release it without restarting it. Works for programs that call libc's fsync and
 * fdatasync (Bramble, through Rust's std); Go programs such as etcd make raw system calls
 * and are not affected.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long delay_us(void) {
    const char *path = getenv("FSYNC_DELAY_FILE");
    if (path == NULL) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[32];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    return strtol(buf, NULL, 10);
}

static void stall(void) {
    long us = delay_us();
    if (us <= 0) return;
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int rc = real(fd);
    stall();
    return rc;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int rc = real(fd);
    stall();
    return rc;
}
