/*
 * The orphanage: children whose Node environment went away (a worker thread terminated)
 * while they still ran. Nobody in JavaScript can stop or reap them any more, so one thread
 * of the addon does what an aborted run does: TERM at once, KILL after the run's kill
 * timeout if it still lives, then reap it — and only then free the memory its plan lives
 * in (the child may not have exec'd yet: see the ownership rule in spawn.c).
 *
 * Process-wide, shared by every environment: the module is pinned (RTLD_NODELETE, in
 * module.c) so that this thread's code stays mapped after the last environment that loaded
 * the addon has unloaded it. The thread is started by the first orphan, runs with every
 * signal blocked, and only ever waits for the pids it was given (never waitpid(-1)).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "orphanage.h"

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* Without a pidfd to poll, how often an orphan is looked at. */
#define POLL_INTERVAL_MS 10

typedef struct orphan {
  pid_t pid;
  int pidfd;            /* -1: none (old kernel); signals and waits then go by pid */
  int group;            /* the child leads a process group of its own: signal the group */
  int stop;             /* TERM, then KILL at kill_at; else only reap it when it exits */
  int killed;
  int64_t kill_at;      /* CLOCK_MONOTONIC ms */
  void *memory;         /* what the child may read until it execs (NULL: not our spawn) */
  void (*free_memory)(void *);
  struct orphan *next;
} orphan_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static orphan_t *orphans;
static int wake[2] = {-1, -1}; /* a byte written here makes the thread look at the list again */
static int started;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Through the pidfd when there is one: it cannot reach a recycled pid. */
static void send_signal(orphan_t *o, int signal) {
  if (o->group) {
    /* The leader is not reaped yet (we reap it), so its group id is still its own. */
    kill(-o->pid, signal);
  } else if (o->pidfd >= 0) {
    syscall(SYS_pidfd_send_signal, o->pidfd, signal, NULL, 0);
  } else {
    kill(o->pid, signal);
  }
}

/* 1 when the orphan is gone: reaped now, or by someone else before (ECHILD). */
static int reap(orphan_t *o) {
  int r;
  if (o->pidfd >= 0) {
    siginfo_t info;
    info.si_pid = 0;
    do r = waitid((idtype_t)P_PIDFD, (id_t)o->pidfd, &info, WEXITED | WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r < 0 && errno == EINVAL) { /* P_PIDFD unknown (Linux < 5.4): by pid */
      close(o->pidfd);
      o->pidfd = -1;
      return reap(o);
    }
    return r < 0 || info.si_pid != 0;
  }
  do r = waitpid(o->pid, NULL, WNOHANG);
  while (r < 0 && errno == EINTR);
  return r != 0;
}

static void release(orphan_t *o) {
  if (o->free_memory) o->free_memory(o->memory);
  if (o->pidfd >= 0) close(o->pidfd);
  free(o);
}

static void *orphanage_main(void *unused) {
  struct pollfd *fds = NULL;
  size_t capacity = 0;
  (void)unused;
  for (;;) {
    size_t n = 1, count = 0;
    int timeout = -1;
    int64_t now = now_ms();
    orphan_t **link, *gone = NULL;

    pthread_mutex_lock(&lock);
    for (orphan_t *o = orphans; o; o = o->next) count++;
    if (count + 1 > capacity) {
      struct pollfd *bigger = realloc(fds, (count + 1) * sizeof *fds);
      if (bigger) {
        fds = bigger;
        capacity = count + 1;
      }
    }
    link = &orphans;
    while (*link) {
      orphan_t *o = *link;
      if (reap(o)) {
        *link = o->next;
        o->next = gone;
        gone = o;
        continue;
      }
      if (o->stop && !o->killed && now >= o->kill_at) {
        send_signal(o, SIGKILL);
        o->killed = 1;
      }
      if (o->stop && !o->killed) {
        int64_t wait = o->kill_at - now;
        if (timeout < 0 || wait < timeout) timeout = (int)wait;
      }
      if (o->pidfd >= 0 && n < capacity) {
        fds[n].fd = o->pidfd;
        fds[n].events = POLLIN;
        n++;
      } else if (timeout < 0 || timeout > POLL_INTERVAL_MS) {
        timeout = POLL_INTERVAL_MS;
      }
      link = &o->next;
    }
    pthread_mutex_unlock(&lock);
    while (gone) {
      orphan_t *next = gone->next;
      release(gone);
      gone = next;
    }

    if (!fds) { /* out of memory: look again later */
      struct timespec pause = {0, POLL_INTERVAL_MS * 1000000L};
      nanosleep(&pause, NULL);
      continue;
    }
    fds[0].fd = wake[0];
    fds[0].events = POLLIN;
    if (poll(fds, n, timeout) > 0 && (fds[0].revents & POLLIN)) {
      char drain[64];
      while (read(wake[0], drain, sizeof drain) > 0) {
      }
    }
  }
  return NULL;
}

static int start_thread(void) {
  pthread_t thread;
  pthread_attr_t attr;
  sigset_t all, old;
  int r;
  if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  /* Every signal blocked: no handler of Node's or libuv's runs on this thread. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  r = pthread_create(&thread, &attr, orphanage_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (r != 0) {
    close(wake[0]);
    close(wake[1]);
    wake[0] = wake[1] = -1;
    return -1;
  }
  return 0;
}

/* No thread to wait out the grace (out of memory or threads): KILL now and wait here. */
static void stop_now(orphan_t *o) {
  if (!o->stop) { /* not ours to stop: leave it (a zombie later) rather than block on it */
    return;
  }
  send_signal(o, SIGKILL);
  if (o->pidfd >= 0) {
    siginfo_t info;
    while (waitid((idtype_t)P_PIDFD, (id_t)o->pidfd, &info, WEXITED) < 0 && errno == EINTR) {
    }
  } else {
    while (waitpid(o->pid, NULL, 0) < 0 && errno == EINTR) {
    }
  }
}

void orphan_adopt(pid_t pid, int pidfd, int flags, unsigned grace_ms, void *memory,
                  void (*free_memory)(void *)) {
  orphan_t local = {0};
  orphan_t *o = calloc(1, sizeof *o);
  char byte = 1;
  int ok = 0;
  if (!o) o = &local;
  o->pid = pid;
  o->pidfd = pidfd;
  o->group = (flags & ORPHAN_GROUP) != 0;
  o->stop = (flags & ORPHAN_STOP) != 0;
  o->memory = memory;
  o->free_memory = free_memory;
  o->kill_at = now_ms() + grace_ms;
  if (o->stop) send_signal(o, SIGTERM);
  if (o != &local) {
    pthread_mutex_lock(&lock);
    if (!started && start_thread() == 0) started = 1;
    if (started) {
      o->next = orphans;
      orphans = o;
      ok = 1;
    }
    pthread_mutex_unlock(&lock);
  }
  if (!ok) {
    stop_now(o);
    o->next = NULL;
    if (o->free_memory) o->free_memory(o->memory);
    if (o->pidfd >= 0) close(o->pidfd);
    if (o != &local) free(o);
    return;
  }
  if (write(wake[1], &byte, 1) < 0) {
    /* full: the thread has a wake-up pending anyway */
  }
}
