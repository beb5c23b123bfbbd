/*
 * procsock_spawn: start a program without copying the Node process.
 *
 * Node's child_process forks: the kernel copies the page tables of the whole (large) Node
 * process, synchronously on the event loop. Here the child shares the parent's memory
 * (clone with CLONE_VM, as glibc's posix_spawn does) and runs a few system calls on a small
 * stack of its own before it execs, so a spawn costs about as much as in C.
 *
 * Unlike posix_spawn, the parent does not wait for the exec (no CLONE_VFORK): spawn()
 * returns as soon as the child exists, and the event loop goes on while the child sets
 * itself up and execs — under load that wait was half of the daemon's time. On an
 * architecture without the raw system calls below, the parent waits for the exec as
 * posix_spawn does. So does PTY mode: once spawn() returns, the terminal is the program's
 * controlling terminal, so what is typed at once (^C included) reaches the program's session.
 *
 * THE OWNERSHIP RULE. Between clone and exec the child runs in our address space while
 * JavaScript, libuv and other threads go on changing it. So the child reads nothing but
 * memory owned by its plan (the spawn_job below): copied in spawn(), written by nobody else
 * afterwards, freed only once the child is reaped (try_reap, or the orphanage when the
 * environment went away first) — never at exec, never at spawn's return. Concretely:
 *   - path candidates, argv, the /bin/sh fallback's argv and the string "/bin/sh" itself;
 *   - envp: the env option's copy, or without one a copy of `environ` made in spawn()
 *     (`environ` is reallocated by the next setenv: a process.env write after the spawn);
 *   - cwd, resource limits, uid/gid, flags, the descriptor numbers, the parent's pid;
 *   - the signal state: the default sigaction and the empty mask are on the child's stack;
 *   - the child's stack itself, and the plan's `error`, the one thing the child writes.
 * The child makes raw system calls only, so it never writes errno (the parent thread's: it
 * runs on that thread's TLS) nor calls into libc, and child_main has no stack protector (its
 * canary is read from that TLS, which dies with the thread — a terminated worker). Its code
 * lives in this module, which is therefore pinned (RTLD_NODELETE, see pin_module): Node
 * unloads an addon with the last environment that used it, and a child of a terminated
 * worker may not have exec'd yet. The child starts with every signal blocked and resets
 * every handler before unblocking, so no handler of the parent ever runs in it.
 * `environ` is copied only for the main thread (a worker's process.env is a copy of its
 * own, so a worker always passes its env; and a worker reading environ would race with the
 * main thread's setenv — AddressSanitizer caught exactly that). One case is outside the
 * rule's reach: a thread calling setenv at the very moment the main thread copies (a
 * worker created with env: SHARE_ENV) — no C library makes reading environ safe then.
 *
 * What the child gets, as libuv gives it: fresh pipes on 0, 1, 2 (and 3, the report pipe of
 * procsock's reaper, with FLAG_REPORT_PIPE) and no other descriptor; every signal
 * disposition reset to default (SIGPIPE included) and an empty signal mask; optionally its
 * own process group, working directory, resource limits, group and user, and a parent-death
 * signal (FLAG_DIE_WITH_PARENT: KILL when the thread that spawned it ends — JS asks for it
 * on the main thread only, see src/channel/spawn/native.ts); or, in PTY mode
 * (FLAG_TERMINAL), a session of its own whose controlling terminal is a new pseudo-terminal's
 * slave, on 0 and 1 (and 2 with FLAG_TERMINAL_STDERR; see pty.c); then argv[0] is looked up
 * in the PATH of the child's environment (execvpe semantics, including running a script
 * without #! through /bin/sh).
 *
 * An exec failure is reported with the exit: the child writes errno into its plan, then
 * exits; the reaper finds it there. A failure before the child exists (no descriptors for
 * the pipes, no memory for the plan or stack, clone refused) is spawn()'s return value.
 *
 * Exit is learnt without blocking: a pidfd watched by the event loop (Linux >= 5.3), or,
 * where pidfd_open is missing or fails, SIGCHLD through libuv. Either way only our own pids are
 * reaped (wait4(pid), never of -1), so child_process's children are left alone; what the
 * child cost (its rusage) is left in the buffer JS gave setUsageBuffer for onExit to read.
 *
 * Worker threads: each environment has its own state (addon_t). When one goes away, an
 * async cleanup hook closes its handles and Node waits for the last close callback; in a
 * worker, its live children (and the child_process children JS asked us to guard) go to
 * the orphanage (orphanage.c): TERM, KILL after their kill timeout, reaped. The main
 * thread's environment ends with the process: its children are left as they are.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "addon.h"
#include "orphanage.h"
#include "pty.h"
#include "spawn.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

#define FLAG_PROCESS_GROUP 1
#define FLAG_SET_UID 2
#define FLAG_SET_GID 4
/* A fourth pipe, the child's descriptor 3 (procsock's reaper reports on it: src/channel/contain.ts). */
#define FLAG_REPORT_PIPE 8
/* KILL the child when the thread that started it ends (PR_SET_PDEATHSIG), even by SIGKILL. */
#define FLAG_DIE_WITH_PARENT 16
/* PTY mode: a new session, the slave of a new pty as controlling terminal on 0 and 1… */
#define FLAG_TERMINAL 32
/* …and on 2 as well (else stderr stays a pipe). */
#define FLAG_TERMINAL_STDERR 64
/* …in raw mode from the start (pty.c). */
#define FLAG_TERMINAL_RAW 128

/* What spawn() could not do, in out[0] when it fails (JS names the system call). */
#define STAGE_MEMORY 1
#define STAGE_PIPE 2
#define STAGE_CLONE 3
#define STAGE_TERMINAL 4

#define CHILD_STACK_SIZE (64 * 1024)
#define MAX_CHILD_FDS 4

/*
 * System calls for the child: the result, or -errno — errno itself is never written (see
 * the top). Where there is no such wrapper here, the parent waits for the exec (VFORK).
 */
#if defined(__x86_64__)
#define CHILD_RUNS_ALONE 1
static inline long sys6(long n, long a, long b, long c, long d, long e, long f) {
  long ret;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}
#elif defined(__aarch64__)
#define CHILD_RUNS_ALONE 1
static inline long sys6(long n, long a, long b, long c, long d, long e, long f) {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  register long x4 __asm__("x4") = e;
  register long x5 __asm__("x5") = f;
  __asm__ volatile("svc 0"
                   : "+r"(x0)
                   : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                   : "memory");
  return x0;
}
#else
#define CHILD_RUNS_ALONE 0
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
  long ret = syscall(n, a, b, c, d, e, f);
  return ret < 0 ? -errno : ret;
}
#endif
#define sys(n, a, b, c, d) sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define MAX_RLIMITS 16

extern char **environ;

/* ---- per-environment state (addon.h) ------------------------------------------------ */

typedef struct spawn_job spawn_job;

struct child {
  uv_poll_t poll; /* first: the handle's address is the child's (when polled) */
  addon_t *addon;
  pid_t pid;
  int pidfd;
  int polled;     /* `poll` watches pidfd (else SIGCHLD tells of the exit); 2: the caller does */
  int unreferenced; /* childRef(pid, false): waiting for it does not keep the loop alive */
  int group;      /* leads its own process group */
  unsigned grace_ms; /* TERM to KILL, should its environment go away first */
  spawn_job *job; /* what the child may still be reading (until it execs): freed at reap */
  int stdin_fd;   /* stdin's write end while JS holds it as a bare number, else -1: closed at
                     the reap (or teardown) unless closeFd or releaseFd took it first */
  spawn_exit_cb on_exit; /* a native connection's child (conn.c): told here, not in JS */
  void *exit_ctx;
  child_t *prev, *next;
};

/* A child_process child of a worker, to stop if the worker goes away before its exit. */
struct guarded {
  pid_t pid;
  int pidfd;
  int group;
  unsigned grace_ms;
  guarded_t *prev, *next;
};

/* ---- the child, between clone and exec ---------------------------------------------- */

typedef struct {
  int resource;
  struct rlimit limit;
} rlimit_spec;

typedef struct {
  char *const *argv;
  char *const *envp;
  const char *cwd;
  int flags;
  uid_t uid;
  gid_t gid;
  rlimit_spec rlimits[MAX_RLIMITS];
  int rlimit_count;
  int fds[MAX_CHILD_FDS]; /* the child's ends: stdin (read), stdout, stderr, report (write) */
  int fd_count;        /* 3, or 4 with FLAG_REPORT_PIPE: they become 0..fd_count-1 */
  pid_t parent;        /* getpid() at the spawn: FLAG_DIE_WITH_PARENT's check that it still lives */
  char **candidates;   /* the paths to try, in PATH order */
  int candidate_count;
  char **script_argv;  /* shell, <slot>, argv[1..], NULL — for ENOEXEC: argv's own array, one
                          slot before it (the child fills <slot>, argv[0]'s, at the fallback) */
  char shell[sizeof "/bin/sh"]; /* a copy: the module's constants are not the plan's */
  volatile int error;  /* written by the child before it exits, read once it is reaped */
#ifdef PROCSOCK_TEST_HOOKS
  char hold[256];      /* tests only: a FIFO to read to its end before FLAG_DIE_WITH_PARENT's prctl */
#endif
} spawn_plan;

/* One spawn's memory: the plan, what it points into, and the child's stack. */
struct spawn_job {
  spawn_plan plan;
  char *argv_text, *env_text, *cwd;
  char **file_and_argv, **envp, **candidates; /* file_and_argv[0]: the file, then the shell */
  char *stack;
};

static void free_job(spawn_job *job) {
  if (!job) return;
  free(job->stack);
  free(job->candidates);
  free(job->file_and_argv);
  free(job->envp);
  free(job->argv_text);
  free(job->env_text);
  free(job->cwd);
  free(job);
}

static void free_job_memory(void *job) {
  free_job(job);
}

/* The canary of a stack protector would be read from the parent thread's TLS (see the top). */
#if defined(__has_attribute)
#if __has_attribute(no_stack_protector)
#define CHILD_CODE __attribute__((no_stack_protector))
#endif
#endif
#ifndef CHILD_CODE
#define CHILD_CODE
#endif

CHILD_CODE static int child_main(void *arg) {
  spawn_plan *plan = arg;
  int fds[MAX_CHILD_FDS];
  int i;
  int saw_eacces = 0;
  long r;
  long error = -ENOENT;
  /* The kernel's struct sigaction, all zero: SIG_DFL, no flags, empty mask. */
  unsigned long default_action[4] = {0, 0, 0, 0};
  unsigned long empty_mask = 0;

  /* The parent's handlers must never run here (they would run on shared memory). */
  for (i = 1; i < 32; i++) {
    if (i == SIGKILL || i == SIGSTOP) continue;
    sys(SYS_rt_sigaction, i, default_action, 0, sizeof empty_mask);
  }
  sys(SYS_rt_sigprocmask, SIG_SETMASK, &empty_mask, 0, sizeof empty_mask);

  /* A terminal's program leads a session (and so a process group) of its own. */
  if (plan->flags & FLAG_TERMINAL) {
    if ((r = sys(SYS_setsid, 0, 0, 0, 0)) < 0) goto fail;
  } else if ((plan->flags & FLAG_PROCESS_GROUP) && (r = sys(SYS_setpgid, 0, 0, 0, 0)) < 0) {
    goto fail;
  }

  /* Move our ends above the targets first, so no dup below overwrites one still to be used. */
  for (i = 0; i < plan->fd_count; i++) {
    fds[i] = plan->fds[i];
    if (fds[i] < plan->fd_count) {
      if ((r = sys(SYS_fcntl, fds[i], F_DUPFD_CLOEXEC, plan->fd_count, 0)) < 0) goto fail;
      fds[i] = (int)r;
    }
  }
  for (i = 0; i < plan->fd_count; i++) {
    if ((r = sys(SYS_dup3, fds[i], i, 0, 0)) < 0) goto fail;
  }
  /* Stdin is the slave: it becomes the session's controlling terminal (and its foreground group). */
  if ((plan->flags & FLAG_TERMINAL) && (r = sys(SYS_ioctl, 0, TIOCSCTTY, 0, 0)) < 0) goto fail;
  /* Inherit nothing but those, even descriptors someone opened without O_CLOEXEC. */
  sys(SYS_close_range, (unsigned)plan->fd_count, ~0U, 0U, 0);

  if (plan->cwd && (r = sys(SYS_chdir, plan->cwd, 0, 0, 0)) < 0) goto fail;
  for (i = 0; i < plan->rlimit_count; i++) {
#if CHILD_RUNS_ALONE /* 64-bit: struct rlimit is the kernel's rlimit64 */
    r = sys(SYS_prlimit64, 0, plan->rlimits[i].resource, &plan->rlimits[i].limit, 0);
#else
    r = setrlimit(plan->rlimits[i].resource, &plan->rlimits[i].limit) == 0 ? 0 : -errno;
#endif
    if (r < 0) goto fail;
  }
  /* Raw system calls: glibc's wrappers would try to change the parent's other threads too. */
  if (plan->flags & (FLAG_SET_UID | FLAG_SET_GID)) sys(SYS_setgroups, 0, 0, 0, 0);
  if ((plan->flags & FLAG_SET_GID) && (r = sys(SYS_setgid, plan->gid, 0, 0, 0)) < 0) goto fail;
  if ((plan->flags & FLAG_SET_UID) && (r = sys(SYS_setuid, plan->uid, 0, 0, 0)) < 0) goto fail;

  /*
   * Die with the parent thread: after setuid/setgid, which clear the setting. If the parent
   * died before this line, nobody would send it: then the parent is no longer ours (we were
   * re-parented), and the child ends here as if it had been KILLed.
   */
  if (plan->flags & FLAG_DIE_WITH_PARENT) {
#ifdef PROCSOCK_TEST_HOOKS
    /* Tests only (test/channel/parent-race.test.ts): the parent can be killed right here. */
    if (plan->hold[0]) {
      char byte;
      r = sys(SYS_openat, AT_FDCWD, (long)plan->hold, O_RDONLY | O_CLOEXEC, 0);
      while (r >= 0 && sys(SYS_read, r, (long)&byte, 1, 0) > 0) continue;
      if (r >= 0) sys(SYS_close, r, 0, 0, 0);
    }
#endif
    sys(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0);
    if (sys(SYS_getppid, 0, 0, 0, 0) != plan->parent) {
      sys(SYS_kill, sys(SYS_getpid, 0, 0, 0, 0), SIGKILL, 0, 0);
    }
  }

  for (i = 0; i < plan->candidate_count; i++) {
    r = sys(SYS_execve, plan->candidates[i], plan->argv, plan->envp, 0);
    if (r == -ENOEXEC) {
      plan->script_argv[1] = plan->candidates[i];
      sys(SYS_execve, plan->shell, plan->script_argv, plan->envp, 0);
      error = -ENOEXEC; /* as glibc: report the script, not the shell */
      break;
    }
    error = r;
    switch (-r) {
      case EACCES:
        saw_eacces = 1;
        /* fall through */
      case ENOENT:
      case ESTALE:
      case ENOTDIR:
      case ENODEV:
      case ETIMEDOUT:
        continue;
      default:
        i = plan->candidate_count;
        break;
    }
  }
  plan->error = saw_eacces && error != -ENOEXEC ? EACCES : (int)-error;
  sys(SYS_exit_group, 127, 0, 0, 0);
  return 127;

fail:
  plan->error = (int)-r;
  sys(SYS_exit_group, 127, 0, 0, 0);
  return 127;
}

/* ---- helpers --------------------------------------------------------------------------- */

/* Splits a string of NUL-separated parts into a NULL-terminated array pointing into it. */
static char **split_parts(char *text, size_t length, size_t count) {
  char **parts = malloc((count + 1) * sizeof(char *));
  size_t i = 0;
  char *p = text;
  if (!parts) return NULL;
  while (i < count && p <= text + length) {
    parts[i++] = p;
    p += strlen(p) + 1;
  }
  parts[i] = NULL;
  return parts;
}

static char *get_string(napi_env env, napi_value value, size_t *length) {
  size_t len = 0;
  char *text;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &len) != napi_ok) return NULL;
  text = malloc(len + 1);
  if (!text) return NULL;
  napi_get_value_string_utf8(env, value, text, len + 1, &len);
  if (length) *length = len;
  return text;
}

/*
 * This process's environment, copied into the job (text and array): `environ` and its
 * strings belong to the C library, which reallocates the array at the next setenv.
 */
static int copy_environ(spawn_job *job, char ***envp) {
  char *const *source = environ;
  size_t count = 0, bytes = 0, left, i;
  char *out;
  for (i = 0; source && source[i]; i++) {
    count++;
    bytes += strlen(source[i]) + 1;
  }
  job->env_text = malloc(bytes + 1);
  if (!job->env_text) return -1;
  out = job->env_text;
  left = bytes;
  /* Bounded by the first pass: never past the copy, whatever the array became meanwhile. */
  for (i = 0; i < count && source[i]; i++) {
    size_t length = strlen(source[i]) + 1;
    if (length > left) break;
    memcpy(out, source[i], length);
    out += length;
    left -= length;
  }
  *envp = split_parts(job->env_text, bytes - left, i);
  return *envp ? 0 : -1;
}

static const char *path_of(char *const *envp) {
  for (; *envp; envp++) {
    if (strncmp(*envp, "PATH=", 5) == 0) return *envp + 5;
  }
  return NULL;
}

/* The paths execvpe would try for `file`, built here because the child may not allocate. */
static char **exec_candidates(const char *file, char *const *envp, int *count) {
  const char *path;
  const char *p;
  size_t file_len = strlen(file);
  size_t total;
  int n = 1;
  char **list;
  char *out;

  if (strchr(file, '/')) {
    list = malloc(sizeof(char *) + file_len + 1);
    if (!list) return NULL;
    list[0] = (char *)(list + 1);
    memcpy(list[0], file, file_len + 1);
    *count = 1;
    return list;
  }
  path = path_of(envp);
  if (!path) path = "/bin:/usr/bin"; /* glibc's default (confstr _CS_PATH) */
  for (p = path; *p; p++) n += *p == ':';
  total = strlen(path) + (size_t)n * (file_len + 3);
  list = malloc((size_t)n * sizeof(char *) + total);
  if (!list) return NULL;
  out = (char *)(list + n);
  *count = 0;
  if (*file == '\0') return list; /* nothing to try: ENOENT */
  for (p = path;;) {
    const char *end = strchrnul(p, ':');
    list[(*count)++] = out;
    if (end == p) *out++ = '.'; /* an empty entry is the working directory */
    else {
      memcpy(out, p, (size_t)(end - p));
      out += end - p;
    }
    *out++ = '/';
    memcpy(out, file, file_len + 1);
    out += file_len + 1;
    if (*end == '\0') break;
    p = end + 1;
  }
  return list;
}

/* ---- exit notification ----------------------------------------------------------------- */

/* onExit(pid, code, signal, execErrno): execErrno when the child could not exec. */
static void call_on_exit(addon_t *a, pid_t pid, int status, int reaped, int exec_error) {
  int32_t args[4] = {pid, -1, 0, exec_error};
  if (reaped) {
    if (WIFEXITED(status)) args[1] = WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) args[2] = WTERMSIG(status);
  }
  addon_call(a, a->on_exit, 4, args);
}

static void free_child(uv_handle_t *handle) {
  child_t *c = (child_t *)handle;
  addon_t *a = c->addon;
  if (c->pidfd >= 0) close(c->pidfd);
  free(c);
  addon_closed(a);
}

/*
 * What wait4 said the child cost, for JS to read in onExit (setUsageBuffer): user and system
 * CPU in µs, then maxRSS in KiB (-1 when unknown: someone else reaped it). The peak RSS of a
 * CLONE_VM child is Node's own (exec folds the shared memory's peak into it): JS ignores it.
 */
static void store_usage(addon_t *a, const struct rusage *usage, int known) {
  if (!a->usage) return;
  a->usage[0] = known ? (double)usage->ru_utime.tv_sec * 1e6 + (double)usage->ru_utime.tv_usec : -1;
  a->usage[1] = known ? (double)usage->ru_stime.tv_sec * 1e6 + (double)usage->ru_stime.tv_usec : -1;
  a->usage[2] = known ? (double)usage->ru_maxrss : -1;
}

/* Reaps `c` if it has exited; returns 1 when it is gone (and `c` freed or being freed). */
static int try_reap(child_t *c) {
  addon_t *a = c->addon;
  int status = 0;
  struct rusage usage;
  pid_t r;
  do r = wait4(c->pid, &status, WNOHANG, &usage);
  while (r < 0 && errno == EINTR);
  if (r == 0) return 0;
  store_usage(a, &usage, r > 0);
  LIST_REMOVE(a->children, c);
  /* Nobody is left to read it: JS is told so by the exit, and calls no closeFd for it. */
  if (c->stdin_fd >= 0) close(c->stdin_fd);
  c->stdin_fd = -1;
  {
    pid_t pid = c->pid;
    spawn_exit_cb on_exit = c->on_exit;
    void *exit_ctx = c->exit_ctx;
    /* Reaped, the child can no longer read its plan. */
    int exec_error = r > 0 ? c->job->plan.error : 0;
    free_job(c->job);
    c->job = NULL;
    if (c->polled == 1) {
      addon_close(a, (uv_handle_t *)&c->poll, free_child);
      /* Out of the epoll set now (as watched_close's): closed at once, not a loop turn later. */
      close(c->pidfd);
      c->pidfd = -1;
    } else if (c->polled == 2) {
      close(c->pidfd);
      free(c);
    } else {
      if (!c->unreferenced && --a->sigchld_live == 0) uv_unref((uv_handle_t *)&a->sigchld);
      free(c);
    }
    /* r < 0 (ECHILD) means someone else reaped it: report an unknown status. */
    if (on_exit) on_exit(exit_ctx, status, r > 0, exec_error, r > 0 ? &usage : NULL);
    else call_on_exit(a, pid, status, r > 0, exec_error);
  }
  return 1;
}

int spawn_reap(child_t *child) {
  return try_reap(child);
}

static void on_pidfd_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  /* On an error libuv has stopped watching: look again, so the exit cannot be missed. */
  if (!try_reap((child_t *)handle) && status < 0) {
    uv_poll_start(handle, UV_READABLE, on_pidfd_readable);
  }
}

static void on_sigchld(uv_signal_t *handle, int signum) {
  addon_t *a = handle->data;
  child_t *c = a->children;
  (void)signum;
  while (c) {
    child_t *next = c->next;
    if (!c->polled) try_reap(c);
    c = next;
  }
}

/*
 * Started by the first child without a pidfd (not before: a SIGCHLD handler would cost every
 * pidfd-watched child a signal and a wake-up). That child may already have exited, its
 * SIGCHLD unseen: a SIGCHLD of our own makes the handler look once. The handle was
 * initialised by init (that may need descriptors; starting it needs none, so a spawn that
 * got no pidfd for want of descriptors can still learn of its exit).
 */
static void watch_sigchld(addon_t *a) {
  if (a->sigchld_started) return;
  uv_signal_start(&a->sigchld, on_sigchld, SIGCHLD);
  a->sigchld_started = 1;
  kill(getpid(), SIGCHLD);
}

/* ---- spawn ----------------------------------------------------------------------------- */

/*
 * PTY mode: the pairs of descriptors spawn() otherwise makes pipes of — the child's end, and
 * ours — are the slave and the master of one new pty, each end a descriptor of its own (the
 * same open file), so they are closed like pipes. Stderr stays a pipe unless
 * FLAG_TERMINAL_STDERR. A program run as another user (FLAG_SET_UID) owns its terminal, as
 * a login's does, so it can reopen it by name (/dev/tty opens it, /dev/pts/N too).
 * Returns 0, or -1 with errno (what was opened is in `pipes`).
 */
static int open_terminal(int pipes[][2], int flags, uid_t uid, int columns, int rows) {
  int master, slave;
  if (pty_open(columns, rows, (flags & FLAG_TERMINAL_RAW) != 0, &master, &slave) != 0) return -1;
  pipes[0][0] = slave;  /* the child reads stdin… */
  pipes[1][0] = master; /* …we read its output */
  if ((flags & FLAG_SET_UID) && fchown(slave, uid, (gid_t)-1) != 0) return -1;
  if ((pipes[0][1] = fcntl(master, F_DUPFD_CLOEXEC, 0)) < 0) return -1;
  if ((pipes[1][1] = fcntl(slave, F_DUPFD_CLOEXEC, 0)) < 0) return -1;
  if ((flags & FLAG_TERMINAL_STDERR) && (pipes[2][1] = fcntl(slave, F_DUPFD_CLOEXEC, 0)) < 0) {
    return -1;
  }
  return 0;
}

/*
 * spawn(fileAndArgv: string (file, then argv; NUL-separated), argc: number, env: string (NUL-separated) | null,
 *       envCount: number, cwd: string | null, flags: number, uid: number, gid: number,
 *       rlimits: number[] | null (resource, soft, hard triples; -1 = unlimited),
 *       out: Int32Array(5), killGraceMs: number, window: [columns, rows] | undefined)
 *   → errno: 0 when started (out = pid, stdin, stdout, stderr fds, and with FLAG_REPORT_PIPE the
 *     report's read end), else what failed before the child existed, with
 *     out[0] = STAGE_MEMORY | STAGE_PIPE | STAGE_CLONE | STAGE_TERMINAL.
 * FLAG_TERMINAL: stdin and stdout are a new pty's master, twice (two descriptors, one to
 * write and one to read), sized `window` (default 80 x 24); with FLAG_TERMINAL_STDERR there
 * is no stderr pipe (out[3] = -1).
 * env null: the child gets a copy of this process's environ, taken now (see the top).
 * killGraceMs: TERM to KILL, should this environment go away (a worker) before the child.
 * The stdin descriptor is the child's (closed at its reap, or at teardown) until closeFd or
 * releaseFd: JS calls neither once told of the exit.
 */
napi_value js_spawn(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value args[12], result;
  addon_t *a = NULL;
  uint32_t grace = 0;
  int32_t columns = 80, rows = 24;
  int32_t *out = NULL;
  size_t out_length = 0;
  napi_typedarray_type out_type = napi_int8_array;
  napi_valuetype type;
  int error;

  napi_get_instance_data(env, (void **)&a);
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (!a || argc < 11) {
    napi_throw_type_error(env, NULL, "spawn: expected 11 arguments, after init");
    return NULL;
  }
  napi_get_typedarray_info(env, args[9], &out_type, &out_length, (void **)&out, NULL, NULL);
  napi_get_value_uint32(env, args[10], &grace);
  if (argc >= 12 && napi_typeof(env, args[11], &type) == napi_ok && type == napi_object) {
    napi_value v;
    napi_get_element(env, args[11], 0, &v);
    napi_get_value_int32(env, v, &columns);
    napi_get_element(env, args[11], 1, &v);
    napi_get_value_int32(env, v, &rows);
  }
  if (!out || out_type != napi_int32_array) out_length = 0;
  error = spawn_packed(env, a, args, NULL, out, out_length, grace, columns, rows, NULL, NULL, NULL);
  if (error < 0) return NULL; /* thrown */
  napi_create_int32(env, error, &result);
  return result;
}

/*
 * spawn()'s work, for js_spawn and for the daemon's native connections (conn.c): `args` are
 * the nine packed leading arguments (PackedSpawn); or, without them, `text` says what to run
 * (file and argv, NUL-separated; this process's environment, nothing else changed). With
 * `on_exit`, the reaped child is told to it (with `ctx`) instead of JS's onExit, and stdin is
 * not held for JS (the caller owns it). Returns 0 (out = pid, fds), an errno (out[0] = the
 * stage), or -1 with a TypeError thrown.
 */
int spawn_packed(napi_env env, addon_t *a, napi_value *args, const spawn_text_t *text,
                 int32_t *out, size_t out_length, uint32_t grace, int32_t columns, int32_t rows,
                 spawn_exit_cb on_exit, void *ctx, spawn_watch_t *watch) {
  spawn_job *job = NULL;
  spawn_plan *plan;
  child_t *c = NULL;
  size_t argv_len = 0, env_len = 0;
  uint32_t arg_count = 0, env_count = 0;
  int32_t flags = 0, uid = -1, gid = -1;
  napi_valuetype type;
  int pipes[MAX_CHILD_FDS][2] = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};
  int error = 0, stage = STAGE_MEMORY, i, fd_count, shared_stdin = 0;
  pid_t pid = -1;
  sigset_t all, old;

  if (args) {
    napi_get_value_uint32(env, args[1], &arg_count);
    napi_get_value_uint32(env, args[3], &env_count);
    napi_get_value_int32(env, args[5], &flags);
    napi_get_value_int32(env, args[6], &uid);
    napi_get_value_int32(env, args[7], &gid);
  } else {
    arg_count = text->argc;
    flags = text->flags;
  }
  fd_count = (flags & FLAG_REPORT_PIPE) ? 4 : 3;
  if (!out || out_length < (size_t)fd_count + 1 || arg_count == 0) {
    napi_throw_type_error(env, NULL, "spawn: bad arguments");
    return -1;
  }
  job = calloc(1, sizeof *job);
  c = calloc(1, sizeof *c);
  if (!job || !c) {
    error = ENOMEM;
    goto done;
  }
  plan = &job->plan;

  /* Everything the child reads is copied into the job here (the ownership rule, at the top). */
  if (args) {
    job->argv_text = get_string(env, args[0], &argv_len);
  } else if ((job->argv_text = malloc(text->length + 1))) {
    memcpy(job->argv_text, text->file_and_argv, text->length);
    job->argv_text[text->length] = '\0';
    argv_len = text->length;
  }
  job->file_and_argv = job->argv_text ? split_parts(job->argv_text, argv_len, arg_count + 1) : NULL;
  if (!job->file_and_argv) error = ENOMEM;
  if (args) napi_typeof(env, args[2], &type);
  if (args && type == napi_string) {
    job->env_text = get_string(env, args[2], &env_len);
    job->envp = job->env_text ? split_parts(job->env_text, env_len, env_count) : NULL;
    if (!job->envp) error = ENOMEM;
  } else if (copy_environ(job, &job->envp) != 0) {
    error = ENOMEM;
  }
  if (args) napi_typeof(env, args[4], &type);
  if (args && type == napi_string && !(job->cwd = get_string(env, args[4], NULL))) error = ENOMEM;
  if (error) goto done;
  plan->argv = job->file_and_argv + 1;
  plan->envp = job->envp;
  plan->cwd = job->cwd;
  plan->flags = flags;
  plan->parent = getpid();
#ifdef PROCSOCK_TEST_HOOKS
  /* Read here, in the parent (the main thread: FLAG_DIE_WITH_PARENT is set for no other). */
  if ((flags & FLAG_DIE_WITH_PARENT) && getenv("PROCSOCK_TEST_HOLD_SPAWN")) {
    snprintf(plan->hold, sizeof plan->hold, "%s", getenv("PROCSOCK_TEST_HOLD_SPAWN"));
  }
#endif
  plan->uid = (uid_t)uid;
  plan->gid = (gid_t)gid;
  memcpy(plan->shell, "/bin/sh", sizeof plan->shell);

  if (args) napi_typeof(env, args[8], &type);
  if (args && type == napi_object) {
    uint32_t length = 0;
    napi_get_array_length(env, args[8], &length);
    for (i = 0; i + 2 < (int)length && plan->rlimit_count < MAX_RLIMITS; i += 3) {
      napi_value v;
      double resource = 0, soft = 0, hard = 0;
      napi_get_element(env, args[8], (uint32_t)i, &v);
      napi_get_value_double(env, v, &resource);
      napi_get_element(env, args[8], (uint32_t)i + 1, &v);
      napi_get_value_double(env, v, &soft);
      napi_get_element(env, args[8], (uint32_t)i + 2, &v);
      napi_get_value_double(env, v, &hard);
      plan->rlimits[plan->rlimit_count].resource = (int)resource;
      plan->rlimits[plan->rlimit_count].limit.rlim_cur = soft < 0 ? RLIM_INFINITY : (rlim_t)soft;
      plan->rlimits[plan->rlimit_count].limit.rlim_max = hard < 0 ? RLIM_INFINITY : (rlim_t)hard;
      plan->rlimit_count++;
    }
  }

  job->candidates = exec_candidates(job->file_and_argv[0], plan->envp, &plan->candidate_count);
  job->stack = malloc(CHILD_STACK_SIZE);
  if (!job->candidates || !job->stack) {
    error = ENOMEM;
    goto done;
  }
  /*
   * The script fallback's argv is argv's own array, from the slot before it: the file's, done
   * with now that the candidates are copied, becomes the shell, and argv[0]'s is the one the
   * child sets to the script's path — after which it only execs the shell or exits. A second
   * array of pointers would hold 8 more bytes per argument until the reap.
   */
  job->file_and_argv[0] = plan->shell;
  plan->candidates = job->candidates;
  plan->script_argv = job->file_and_argv;

  stage = STAGE_TERMINAL;
  if ((flags & FLAG_TERMINAL) && open_terminal(pipes, flags, (uid_t)uid, columns, rows) != 0) {
    error = errno;
    goto done;
  }
  stage = STAGE_PIPE;
  shared_stdin = !args && text->stdin_fd >= 0 && !(flags & FLAG_TERMINAL);
  for (i = 0; i < fd_count; i++) {
    if (i == 0 && shared_stdin) {
      plan->fds[0] = text->stdin_fd;
      continue;
    }
    /* (In PTY mode stdin, stdout and maybe stderr are the terminal's already.) */
    if (pipes[i][0] < 0 && pipes[i][1] < 0 && pipe2(pipes[i], O_CLOEXEC) != 0) {
      error = errno;
      goto done;
    }
    /* The child reads stdin and writes the others. */
    plan->fds[i] = i == 0 ? pipes[i][0] : pipes[i][1];
  }
  plan->fd_count = fd_count;

  /* The child starts with every signal blocked: no handler of ours may run in it. */
  stage = STAGE_CLONE;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid = clone(child_main, job->stack + CHILD_STACK_SIZE,
              CLONE_VM | (CHILD_RUNS_ALONE && !(flags & FLAG_TERMINAL) ? 0 : CLONE_VFORK) | SIGCHLD,
              plan);
  if (pid < 0) error = errno;
  else if ((flags & FLAG_PROCESS_GROUP) && !(flags & FLAG_TERMINAL)) {
    /* The child's own setpgid may not have run yet: without this a TERM to the group right after
     * the spawn (kill(-pid), a hang-up or shutdown) finds no group (ESRCH) and is lost. Both calls
     * make the same group; this one fails harmlessly (EACCES) once the child has exec'd. It is a
     * system call on the pid only: nothing of the plan is touched (the ownership rule). Not for a
     * terminal: its child's setsid() would fail once it leads a group. */
    int saved = errno;
    (void)setpgid(pid, pid);
    errno = saved;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  /* The child has its own copy of the descriptor table: ours of its ends can go now. */
  for (i = shared_stdin ? 1 : 0; i < fd_count; i++) {
    close(plan->fds[i]);
    pipes[i][i == 0 ? 0 : 1] = -1;
  }
  if (pid < 0) goto done;

  c->addon = a;
  c->pid = pid;
  c->group = (flags & FLAG_PROCESS_GROUP) != 0;
  c->grace_ms = grace;
  c->job = job; /* until it is reaped: the child may still be reading it */
  c->stdin_fd = on_exit ? -1 : pipes[0][1]; /* a native connection's caller owns its stdin */
  c->on_exit = on_exit;
  c->exit_ctx = ctx;
  job = NULL;
  c->pidfd = a->use_pidfd ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
  if (watch) watch->pidfd = -1;
  if (c->pidfd >= 0 && watch) {
    c->polled = 2;
    watch->pidfd = c->pidfd;
    watch->child = c;
  } else if (c->pidfd >= 0 && uv_poll_init(a->loop, &c->poll, c->pidfd) == 0) {
    c->polled = 1;
    uv_poll_start(&c->poll, UV_READABLE, on_pidfd_readable);
  } else {
    /* No pidfd (old kernel, or out of descriptors): learn of its exit from SIGCHLD. */
    if (c->pidfd >= 0) close(c->pidfd);
    c->pidfd = -1;
    watch_sigchld(a);
    if (a->sigchld_live++ == 0) uv_ref((uv_handle_t *)&a->sigchld);
  }
  LIST_ADD(a->children, c);
  c = NULL;
  out[0] = pid;
  out[1] = pipes[0][1];
  out[2] = pipes[1][0];
  out[3] = pipes[2][0];
  if (fd_count > 3) out[4] = pipes[3][0];
  pipes[0][1] = -1;
  for (i = 1; i < fd_count; i++) pipes[i][0] = -1; /* now owned by JS */

done:
  for (i = 0; i < MAX_CHILD_FDS; i++) {
    if (pipes[i][0] >= 0) close(pipes[i][0]);
    if (pipes[i][1] >= 0) close(pipes[i][1]);
  }
  free_job(job);
  free(c);
  if (error) out[0] = stage;
  return error;
}

/*
 * setUsageBuffer(usage: Float64Array(3)): where onExit finds the reaped child's usage
 * (store_usage). Kept referenced until the environment goes away.
 */
napi_value js_set_usage_buffer(napi_env env, napi_callback_info info) {
  size_t argc = 1, length = 0;
  napi_value arg;
  napi_typedarray_type type;
  void *data = NULL;
  addon_t *a = NULL;
  napi_get_instance_data(env, (void **)&a);
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  if (!a || argc < 1 ||
      napi_get_typedarray_info(env, arg, &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_float64_array || length < 3) {
    napi_throw_type_error(env, NULL, "setUsageBuffer: expected a Float64Array(3), after init");
    return NULL;
  }
  if (a->usage_ref) napi_delete_reference(env, a->usage_ref);
  napi_create_reference(env, arg, 1, &a->usage_ref);
  a->usage = data;
  return NULL;
}

/*
 * The descriptor a closeFd/releaseFd call names, no longer its child's; -1, with a TypeError
 * thrown (`usage`), when it names no stdin of a running child that JS still holds.
 */
static int take_held_fd(napi_env env, napi_callback_info info, const char *usage) {
  size_t argc = 1;
  napi_value arg;
  addon_t *a = NULL;
  int32_t fd = -1;
  child_t *c = NULL;
  napi_get_instance_data(env, (void **)&a);
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  if (a && argc >= 1 && napi_get_value_int32(env, arg, &fd) == napi_ok && fd >= 0) {
    for (c = a->children; c && c->stdin_fd != fd; c = c->next) continue;
  }
  if (!c) {
    napi_throw_type_error(env, NULL, usage);
    return -1;
  }
  c->stdin_fd = -1;
  return fd;
}

/* closeFd(fd): closes a descriptor spawn() handed out (stdin), without Node's fs bookkeeping. */
napi_value js_close_fd(napi_env env, napi_callback_info info) {
  int fd = take_held_fd(env, info, "closeFd: expected a descriptor from spawn");
  if (fd >= 0) close(fd);
  return NULL;
}

/* releaseFd(fd): JS takes a held descriptor over (a net.Socket will own and close it). */
napi_value js_release_fd(napi_env env, napi_callback_info info) {
  take_held_fd(env, info, "releaseFd: expected a descriptor from spawn");
  return NULL;
}

/*
 * guard(pid, processGroup: boolean, killGraceMs) → whether it is guarded: a child started
 * by someone else (child_process) in this worker, to be stopped and reaped like our own
 * should the worker go away before unguard(pid) (called at its exit). A pidfd, so a pid
 * recycled meanwhile is never signalled; without pidfd support nothing is guarded.
 */
napi_value js_guard(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3], result;
  addon_t *a = NULL;
  int32_t pid = 0;
  uint32_t grace = 0;
  bool group = false;
  guarded_t *g;
  int pidfd;
  napi_get_instance_data(env, (void **)&a);
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (!a || argc < 3 || napi_get_value_int32(env, args[0], &pid) != napi_ok || pid <= 0) {
    napi_throw_type_error(env, NULL, "guard: expected (pid, processGroup, killGraceMs)");
    return NULL;
  }
  napi_get_value_bool(env, args[1], &group);
  napi_get_value_uint32(env, args[2], &grace);
  pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  g = pidfd >= 0 ? calloc(1, sizeof *g) : NULL;
  if (g) {
    g->pid = pid;
    g->pidfd = pidfd;
    g->group = group;
    g->grace_ms = grace;
    LIST_ADD(a->guarded, g);
  } else if (pidfd >= 0) {
    close(pidfd);
  }
  napi_get_boolean(env, g != NULL, &result);
  return result;
}

/* unguard(pid): the child_process child has exited (Node reaped it). */
/*
 * childRef(pid, on: boolean): whether waiting for the exit of our child `pid` keeps the event
 * loop alive (as a ChildProcess's ref()/unref()). A child already reaped: nothing to do.
 */
napi_value js_child_ref(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  addon_t *a = NULL;
  int32_t pid = 0;
  bool on = true;
  child_t *c;
  napi_get_instance_data(env, (void **)&a);
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (!a || argc < 2 || napi_get_value_int32(env, args[0], &pid) != napi_ok ||
      napi_get_value_bool(env, args[1], &on) != napi_ok) {
    napi_throw_type_error(env, NULL, "childRef: expected (pid, on)");
    return NULL;
  }
  c = a->children;
  while (c && c->pid != pid) c = c->next;
  /* (A native connection's child: its connection holds the loop.) */
  if (!c || c->unreferenced == !on || c->polled == 2) return NULL;
  c->unreferenced = !on;
  if (c->polled) {
    if (on) uv_ref((uv_handle_t *)&c->poll);
    else uv_unref((uv_handle_t *)&c->poll);
  } else if (on) {
    if (a->sigchld_live++ == 0) uv_ref((uv_handle_t *)&a->sigchld);
  } else if (--a->sigchld_live == 0) {
    uv_unref((uv_handle_t *)&a->sigchld);
  }
  return NULL;
}

napi_value js_unguard(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  addon_t *a = NULL;
  int32_t pid = 0;
  guarded_t *g;
  napi_get_instance_data(env, (void **)&a);
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  if (!a || argc < 1 || napi_get_value_int32(env, arg, &pid) != napi_ok) {
    napi_throw_type_error(env, NULL, "unguard: expected (pid)");
    return NULL;
  }
  for (g = a->guarded; g; g = g->next) {
    if (g->pid != pid) continue;
    LIST_REMOVE(a->guarded, g);
    close(g->pidfd);
    free(g);
    break;
  }
  return NULL;
}

/* ---- setup and teardown (called by module.c) ------------------------------------------ */

int spawn_init(addon_t *a, int want_pidfd) {
  if (uv_signal_init(a->loop, &a->sigchld) != 0) return -1;
  a->sigchld.data = a;
  uv_unref((uv_handle_t *)&a->sigchld); /* referenced only while a child waits for it */
  a->use_pidfd = 0;
  if (want_pidfd) {
    int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (fd >= 0) {
      close(fd);
      a->use_pidfd = 1;
    }
  }
  return 0;
}

static void sigchld_closed(uv_handle_t *handle) {
  addon_closed(((uv_signal_t *)handle)->data);
}

/*
 * The environment is going away (module.c's cleanup hook runs this). In a worker, the
 * children still running are stopped as an aborted run stops them (TERM, KILL after their
 * kill timeout) and reaped by the orphanage, which also frees their plans; child_process
 * children of the worker that JS asked us to guard go there too, and any other child of the
 * worker's thread is reaped there when it exits. The main thread's environment ends with the
 * process: its children are left as they are, and the plans of those not yet exec'd are left
 * allocated.
 */
static int contains(const pid_t *list, size_t count, pid_t pid) {
  size_t i;
  for (i = 0; i < count; i++) {
    if (list[i] == pid) return 1;
  }
  return 0;
}

/*
 * The children this thread forked that nobody above adopted: a child_process child
 * started in the instant before JS could guard it (a worker is terminated at any point
 * of its JavaScript), or one the user's own code started and left. Nobody else will ever
 * reap them, so the orphanage does when they exit — without signalling them: they may not
 * be procsock's to stop. (/proc/thread-self/children: Linux >= 3.5 with CONFIG_PROC_CHILDREN.)
 */
static void adopt_thread_children(const pid_t *adopted, size_t count) {
  char buffer[4096];
  char *p, *end;
  ssize_t n;
  int fd = open("/proc/thread-self/children", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  n = read(fd, buffer, sizeof buffer - 1); /* (a longer list: the first 700-odd) */
  close(fd);
  if (n <= 0) return;
  buffer[n] = '\0';
  for (p = buffer;; p = end) {
    long pid = strtol(p, &end, 10);
    if (end == p) break;
    if (pid > 0 && !contains(adopted, count, (pid_t)pid)) {
      orphan_adopt((pid_t)pid, (int)syscall(SYS_pidfd_open, (pid_t)pid, 0), 0, 0, NULL, NULL);
    }
  }
}

void spawn_teardown(addon_t *a) {
  pid_t *adopted = NULL;
  size_t count = 0, capacity = 0;
  child_t *c;
  guarded_t *g;
  if (a->is_worker) {
    for (c = a->children; c; c = c->next) capacity++;
    for (g = a->guarded; g; g = g->next) capacity++;
    adopted = malloc((capacity + 1) * sizeof *adopted);
  }
  while ((c = a->children)) {
    LIST_REMOVE(a->children, c);
    if (c->stdin_fd >= 0) close(c->stdin_fd);
    c->stdin_fd = -1;
    if (a->is_worker) {
      orphan_adopt(c->pid, c->pidfd, ORPHAN_STOP | (c->group ? ORPHAN_GROUP : 0), c->grace_ms,
                   c->job, free_job_memory);
      c->pidfd = -1; /* the orphanage's now */
      c->job = NULL;
      if (adopted) adopted[count++] = c->pid;
    }
    if (c->polled == 1) {
      addon_close(a, (uv_handle_t *)&c->poll, free_child);
    } else {
      if (c->pidfd >= 0) close(c->pidfd);
      free(c);
    }
  }
  while ((g = a->guarded)) {
    LIST_REMOVE(a->guarded, g);
    if (a->is_worker) {
      orphan_adopt(g->pid, g->pidfd, ORPHAN_STOP | (g->group ? ORPHAN_GROUP : 0), g->grace_ms,
                   NULL, NULL);
      if (adopted) adopted[count++] = g->pid;
    } else {
      close(g->pidfd);
    }
    free(g);
  }
  if (adopted) adopt_thread_children(adopted, count);
  free(adopted);
  addon_close(a, (uv_handle_t *)&a->sigchld, sigchld_closed);
}
