/*
 * The system-call floor for fslock's benchmarks: the same operations done
 * with raw system calls and nothing else. Compiled by bench/run.js with the
 * system compiler.
 *
 *   floor uncontended <path> <iterations> <flock|ofd|flock+ofd[+verify]> <ex|sh>
 *       open, lock, unlock, close in a loop; prints per-iteration latencies.
 *       +verify adds fslock's identity check after locking: fstat of the
 *       descriptor and stat of the path.
 *   floor kept <path> <iterations> <prim> <ex|sh>
 *       the same on a descriptor opened once (fslock's keepOpen): lock,
 *       (+verify: stat of the path only, the descriptor's identity is known),
 *       unlock.
 *   floor handoff <path> <rounds> <flock|ofd|flock+ofd>
 *       a parent holds the lock, a forked child blocks on it; the parent
 *       releases; prints the time from release to the child holding it.
 *
 * Output: one line of JSON, {"samples_ns":[...]}.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static int ofd(int fd, short type, int wait) {
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  return fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
}

static int do_lock(int fd, const char *prim, int exclusive, int wait) {
  int use_flock = strstr(prim, "flock") != NULL;
  int use_ofd = strstr(prim, "ofd") != NULL;
  if (use_flock && flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB)) != 0) return -1;
  if (use_ofd && ofd(fd, exclusive ? F_WRLCK : F_RDLCK, wait) != 0) return -1;
  return 0;
}

/* fslock's identity check: the locked file is still the one at the path */
static void verify(int fd, const char *path, const char *prim, int kept) {
  struct stat a, b;
  if (!strstr(prim, "verify")) return;
  if (!kept && fstat(fd, &a) != 0) die("fstat");
  if (stat(path, &b) != 0) die("stat");
}

static void do_unlock(int fd, const char *prim) {
  if (strstr(prim, "ofd")) ofd(fd, F_UNLCK, 0);
  if (strstr(prim, "flock")) flock(fd, LOCK_UN);
}

static void print_samples(uint64_t *s, long n) {
  printf("{\"samples_ns\":[");
  for (long i = 0; i < n; i++) printf(i ? ",%llu" : "%llu", (unsigned long long)s[i]);
  printf("]}\n");
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: floor uncontended|handoff <path> <n> <prim> [ex|sh]\n");
    return 2;
  }
  const char *mode = argv[1], *path = argv[2], *prim = argv[4];
  long n = atol(argv[3]);
  uint64_t *samples = calloc((size_t)n, sizeof *samples);
  if (!samples) die("calloc");

  if (strcmp(mode, "uncontended") == 0) {
    int exclusive = argc < 6 || strcmp(argv[5], "sh") != 0;
    for (long i = 0; i < n; i++) {
      uint64_t t0 = now_ns();
      int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
      if (fd < 0) die("open");
      if (do_lock(fd, prim, exclusive, 0) != 0) die("lock");
      verify(fd, path, prim, 0);
      do_unlock(fd, prim);
      close(fd);
      samples[i] = now_ns() - t0;
    }
    print_samples(samples, n);
    return 0;
  }

  if (strcmp(mode, "kept") == 0) {
    int exclusive = argc < 6 || strcmp(argv[5], "sh") != 0;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) die("open");
    for (long i = 0; i < n; i++) {
      uint64_t t0 = now_ns();
      if (do_lock(fd, prim, exclusive, 0) != 0) die("lock");
      verify(fd, path, prim, 1);
      do_unlock(fd, prim);
      samples[i] = now_ns() - t0;
    }
    close(fd);
    print_samples(samples, n);
    return 0;
  }

  if (strcmp(mode, "handoff") == 0) {
    /* shared memory: the release time, written by the parent */
    volatile uint64_t *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) die("mmap");
    int ready[2], done[2];
    for (long i = 0; i < n; i++) {
      if (pipe(ready) || pipe(done)) die("pipe");
      int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
      if (fd < 0) die("open");
      if (do_lock(fd, prim, 1, 0) != 0) die("lock");
      pid_t pid = fork();
      if (pid < 0) die("fork");
      if (pid == 0) {
        int cfd = open(path, O_RDWR | O_CLOEXEC);
        if (cfd < 0) die("open");
        char c = 'r';
        if (write(ready[1], &c, 1) != 1) die("write");
        if (do_lock(cfd, prim, 1, 1) != 0) die("lock wait");
        uint64_t got = now_ns();
        uint64_t delta = got - shared[0];
        if (write(done[1], &delta, sizeof delta) != sizeof delta) die("write");
        _exit(0);
      }
      char c;
      if (read(ready[0], &c, 1) != 1) die("read");
      usleep(2000); /* let the child block in the kernel */
      shared[0] = now_ns();
      do_unlock(fd, prim);
      uint64_t delta;
      if (read(done[0], &delta, sizeof delta) != sizeof delta) die("read");
      samples[i] = delta;
      waitpid(pid, NULL, 0);
      close(fd);
      close(ready[0]); close(ready[1]); close(done[0]); close(done[1]);
    }
    print_samples(samples, n);
    return 0;
  }
  fprintf(stderr, "unknown mode %s\n", mode);
  return 2;
}
