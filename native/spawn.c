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
 * itself up and execs — under load that wait was half of the daemon's time. Sharing memory
 * with a parent that keeps running is safe because the child touches only its own stack
 * and a plan nobody else writes (both freed when it is reaped), blocks every signal until
 * it has reset their handlers, and makes raw system calls that never write errno (the
 * parent thread's, as the child runs on its thread-local storage). On an architecture
 * without those raw calls here, the parent waits for the exec as posix_spawn does.
 *
 * What the child gets, as libuv gives it: fresh pipes on 0, 1, 2 and no other descriptor;
 * every signal disposition reset to default (SIGPIPE included) and an empty signal mask;
 * optionally its own process group, working directory, resource limits, group and user;
 * then argv[0] is looked up in the PATH of the child's environment (execvpe semantics,
 * including running a script without #! through /bin/sh).
 *
 * An exec failure is reported with the exit: the child writes errno into the plan it shares
 * with the parent, then exits; the reaper finds it there.
 *
 * Exit is learnt without blocking: a pidfd watched by the event loop (Linux >= 5.3), or,
 * where pidfd_open is missing or fails, SIGCHLD through libuv. Either way only our own pids are
 * reaped (waitpid(pid), never waitpid(-1)), so child_process's children are left alone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "addon.h"
#include "peercred.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

#define FLAG_PROCESS_GROUP 1
#define FLAG_SET_UID 2
#define FLAG_SET_GID 4

#define CHILD_STACK_SIZE (64 * 1024)

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
  uv_poll_t poll; /* first: the handle's address is the child's */
  addon_t *addon;
  pid_t pid;
  int pidfd;
  spawn_job *job; /* what the child may still be reading (until it execs): freed at reap */
  child_t *prev, *next;
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
  int fds[3];          /* the child's ends: stdin (read), stdout, stderr (write) */
  char **candidates;   /* the paths to try, in PATH order */
  int candidate_count;
  char **script_argv;  /* /bin/sh, <slot>, argv[1..], NULL — for ENOEXEC */
  volatile int error;  /* written by the child before it exits, read once it is reaped */
} spawn_plan;

/* One spawn's memory: the plan, what it points into, and the child's stack. */
struct spawn_job {
  spawn_plan plan;
  char *argv_text, *env_text, *cwd;
  char **file_and_argv, **envp, **candidates, **script_argv;
  char *stack;
};

static void free_job(spawn_job *job) {
  if (!job) return;
  free(job->stack);
  free(job->script_argv);
  free(job->candidates);
  free(job->file_and_argv);
  free(job->envp);
  free(job->argv_text);
  free(job->env_text);
  free(job->cwd);
  free(job);
}

static int child_main(void *arg) {
  spawn_plan *plan = arg;
  int fds[3];
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

  if ((plan->flags & FLAG_PROCESS_GROUP) && (r = sys(SYS_setpgid, 0, 0, 0, 0)) < 0) goto fail;

  /* Move our ends above 2 first, so no dup below overwrites one still to be used. */
  for (i = 0; i < 3; i++) {
    fds[i] = plan->fds[i];
    if (fds[i] < 3) {
      if ((r = sys(SYS_fcntl, fds[i], F_DUPFD_CLOEXEC, 3, 0)) < 0) goto fail;
      fds[i] = (int)r;
    }
  }
  for (i = 0; i < 3; i++) {
    if ((r = sys(SYS_dup3, fds[i], i, 0, 0)) < 0) goto fail;
  }
  /* Inherit nothing but 0, 1, 2, even descriptors someone opened without O_CLOEXEC. */
  sys(SYS_close_range, 3U, ~0U, 0U, 0);

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

  for (i = 0; i < plan->candidate_count; i++) {
    r = sys(SYS_execve, plan->candidates[i], plan->argv, plan->envp, 0);
    if (r == -ENOEXEC) {
      plan->script_argv[1] = plan->candidates[i];
      sys(SYS_execve, "/bin/sh", plan->script_argv, plan->envp, 0);
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

void addon_call(addon_t *a, napi_ref fn_ref, int argc, const int32_t *values) {
  napi_env env = a->env;
  napi_handle_scope scope;
  napi_value fn, recv, args[4], result;
  int i;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_get_reference_value(env, fn_ref, &fn);
  napi_get_reference_value(env, a->resource, &recv);
  for (i = 0; i < argc && i < 4; i++) napi_create_int32(env, values[i], &args[i]);
  if (napi_make_callback(env, a->async, recv, fn, (size_t)i, args, &result) == napi_pending_exception) {
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_fatal_exception(env, error);
  }
  napi_close_handle_scope(env, scope);
}

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
  if (c->pidfd >= 0) close(c->pidfd);
  free(c);
}

/* Reaps `c` if it has exited; returns 1 when it is gone (and `c` freed or being freed). */
static int try_reap(child_t *c) {
  addon_t *a = c->addon;
  int status = 0;
  pid_t r;
  do r = waitpid(c->pid, &status, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0) return 0;
  LIST_REMOVE(a->children, c);
  {
    pid_t pid = c->pid;
    /* Reaped, the child can no longer read its plan. */
    int exec_error = r > 0 ? c->job->plan.error : 0;
    free_job(c->job);
    c->job = NULL;
    if (c->pidfd >= 0) {
      uv_close((uv_handle_t *)&c->poll, free_child);
    } else {
      if (--a->sigchld_live == 0) uv_unref((uv_handle_t *)&a->sigchld);
      free(c);
    }
    /* r < 0 (ECHILD) means someone else reaped it: report an unknown status. */
    call_on_exit(a, pid, status, r > 0, exec_error);
  }
  return 1;
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
    if (c->pidfd < 0) try_reap(c);
    c = next;
  }
}

/*
 * Started by the first child without a pidfd (not before: a SIGCHLD handler would cost every
 * pidfd-watched child a signal and a wake-up). That child may already have exited, its
 * SIGCHLD unseen: a SIGCHLD of our own makes the handler look once.
 */
static void watch_sigchld(addon_t *a) {
  if (a->sigchld_started) return;
  uv_signal_init(a->loop, &a->sigchld);
  a->sigchld.data = a;
  uv_signal_start(&a->sigchld, on_sigchld, SIGCHLD);
  uv_unref((uv_handle_t *)&a->sigchld);
  a->sigchld_started = 1;
  kill(getpid(), SIGCHLD);
}

/* ---- spawn ----------------------------------------------------------------------------- */

/*
 * spawn(fileAndArgv: string (file, then argv; NUL-separated), argc: number, env: string (NUL-separated) | null,
 *       envCount: number, cwd: string | null, flags: number, uid: number, gid: number,
 *       rlimits: number[] | null (resource, soft, hard triples; -1 = unlimited),
 *       out: Int32Array(4)) → errno (0: started; out = pid, stdin, stdout, stderr fds)
 */
static napi_value js_spawn(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value args[10], result;
  addon_t *a;
  spawn_job *job = NULL;
  spawn_plan *plan;
  child_t *c = NULL;
  size_t argv_len = 0, env_len = 0;
  uint32_t arg_count = 0, env_count = 0;
  int32_t flags = 0, uid = -1, gid = -1;
  int32_t *out = NULL;
  size_t out_length = 0;
  napi_typedarray_type out_type;
  napi_valuetype type;
  int pipes[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};
  int error = 0, i;
  pid_t pid = -1;
  sigset_t all, old;

  napi_get_instance_data(env, (void **)&a);
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 10) {
    napi_throw_type_error(env, NULL, "spawn: expected 10 arguments");
    return NULL;
  }
  napi_get_value_uint32(env, args[1], &arg_count);
  napi_get_value_uint32(env, args[3], &env_count);
  napi_get_value_int32(env, args[5], &flags);
  napi_get_value_int32(env, args[6], &uid);
  napi_get_value_int32(env, args[7], &gid);
  napi_get_typedarray_info(env, args[9], &out_type, &out_length, (void **)&out, NULL, NULL);
  if (!out || out_type != napi_int32_array || out_length < 4 || arg_count == 0) {
    napi_throw_type_error(env, NULL, "spawn: bad arguments");
    return NULL;
  }
  job = calloc(1, sizeof *job);
  c = calloc(1, sizeof *c);
  if (!job || !c) {
    error = ENOMEM;
    goto done;
  }
  plan = &job->plan;

  /* args[0] holds the file to execute, then argv */
  job->argv_text = get_string(env, args[0], &argv_len);
  job->file_and_argv = job->argv_text ? split_parts(job->argv_text, argv_len, arg_count + 1) : NULL;
  if (!job->file_and_argv) error = ENOMEM;
  napi_typeof(env, args[2], &type);
  if (type == napi_string) {
    job->env_text = get_string(env, args[2], &env_len);
    job->envp = job->env_text ? split_parts(job->env_text, env_len, env_count) : NULL;
    if (!job->envp) error = ENOMEM;
  }
  napi_typeof(env, args[4], &type);
  if (type == napi_string && !(job->cwd = get_string(env, args[4], NULL))) error = ENOMEM;
  if (error) goto done;
  plan->argv = job->file_and_argv + 1;
  plan->envp = job->envp ? job->envp : environ;
  plan->cwd = job->cwd;
  plan->flags = flags;
  plan->uid = (uid_t)uid;
  plan->gid = (gid_t)gid;

  napi_typeof(env, args[8], &type);
  if (type == napi_object) {
    uint32_t length = 0;
    napi_get_array_length(env, args[8], &length);
    for (i = 0; i + 2 < (int)length && plan->rlimit_count < MAX_RLIMITS; i += 3) {
      napi_value v;
      double resource, soft, hard;
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
  job->script_argv = malloc((arg_count + 2) * sizeof(char *));
  job->stack = malloc(CHILD_STACK_SIZE);
  if (!job->candidates || !job->script_argv || !job->stack) {
    error = ENOMEM;
    goto done;
  }
  job->script_argv[0] = "/bin/sh";
  job->script_argv[1] = NULL;
  memcpy(job->script_argv + 2, plan->argv + 1, arg_count * sizeof(char *)); /* argv[1..], NULL */
  plan->candidates = job->candidates;
  plan->script_argv = job->script_argv;

  for (i = 0; i < 3; i++) {
    if (pipe2(pipes[i], O_CLOEXEC) != 0) {
      error = errno;
      goto done;
    }
  }
  plan->fds[0] = pipes[0][0]; /* the child reads stdin */
  plan->fds[1] = pipes[1][1];
  plan->fds[2] = pipes[2][1];

  /* The child starts with every signal blocked: no handler of ours may run in it. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid = clone(child_main, job->stack + CHILD_STACK_SIZE,
              CLONE_VM | (CHILD_RUNS_ALONE ? 0 : CLONE_VFORK) | SIGCHLD, plan);
  if (pid < 0) error = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  /* The child has its own copy of the descriptor table: ours of its ends can go now. */
  close(pipes[0][0]);
  close(pipes[1][1]);
  close(pipes[2][1]);
  pipes[0][0] = pipes[1][1] = pipes[2][1] = -1;
  if (pid < 0) goto done;

  c->addon = a;
  c->pid = pid;
  c->job = job; /* until it is reaped: the child may still be reading it */
  job = NULL;
  c->pidfd = a->use_pidfd ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
  if (c->pidfd >= 0 && uv_poll_init(a->loop, &c->poll, c->pidfd) == 0) {
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
  pipes[0][1] = pipes[1][0] = pipes[2][0] = -1; /* now owned by JS */

done:
  for (i = 0; i < 3; i++) {
    if (pipes[i][0] >= 0) close(pipes[i][0]);
    if (pipes[i][1] >= 0) close(pipes[i][1]);
  }
  free_job(job);
  free(c);
  napi_create_int32(env, error, &result);
  return result;
}

/*
 * readAvailable(fd: number, into: Uint8Array) → bytes read (0 at end of file), or -errno
 * (-EAGAIN: nothing there now). One read(2) on a non-blocking descriptor: what is in a pipe
 * now, without waiting and without an exception per empty read.
 */
static napi_value js_read_available(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2], result;
  int32_t fd = -1;
  void *data = NULL;
  size_t length = 0;
  napi_typedarray_type type;
  ssize_t n;
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 2 || napi_get_value_int32(env, args[0], &fd) != napi_ok ||
      napi_get_typedarray_info(env, args[1], &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "readAvailable: expected (fd, Uint8Array)");
    return NULL;
  }
  do n = read(fd, data, length);
  while (n < 0 && errno == EINTR);
  napi_create_int32(env, n < 0 ? -errno : (int32_t)n, &result);
  return result;
}

/*
 * setPipeSize(fd: number, bytes: number) → the new capacity, or -errno. Best effort for the
 * caller: beyond the user's pipe quota or pipe-max-size the pipe keeps its size.
 */
static napi_value js_set_pipe_size(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2], result;
  int32_t fd = -1, bytes = 0;
  int r;
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 2 || napi_get_value_int32(env, args[0], &fd) != napi_ok ||
      napi_get_value_int32(env, args[1], &bytes) != napi_ok) {
    napi_throw_type_error(env, NULL, "setPipeSize: expected (fd, bytes)");
    return NULL;
  }
  r = fcntl(fd, F_SETPIPE_SZ, bytes);
  napi_create_int32(env, r < 0 ? -errno : r, &result);
  return result;
}

/* ---- module ---------------------------------------------------------------------------- */

static void cleanup(void *data) {
  addon_t *a = data;
  child_t *c = a->children;
  /* The environment is going away: stop watching; the children are left to their fate. */
  while (c) {
    child_t *next = c->next;
    LIST_REMOVE(a->children, c);
    if (c->pidfd >= 0) uv_close((uv_handle_t *)&c->poll, free_child);
    else free(c);
    c = next;
  }
  if (a->sigchld_started) uv_close((uv_handle_t *)&a->sigchld, NULL);
  close_all_readers(a);
}

static void finalize(napi_env env, void *data, void *hint) {
  addon_t *a = data;
  (void)hint;
  napi_delete_reference(env, a->on_exit);
  napi_delete_reference(env, a->on_read);
  if (a->read_buffer_ref) napi_delete_reference(env, a->read_buffer_ref);
  napi_delete_reference(env, a->resource);
  napi_async_destroy(env, a->async);
  /* the sigchld handle may still be closing: leak `a` rather than free it under libuv */
}

/*
 * init(onExit: (pid, code, signal) => void, onRead: (token, bytes | 0 | -errno) => void,
 *      usePidfd: boolean) → 'pidfd' | 'sigchld'
 */
static napi_value js_init(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3], resource, name, result;
  addon_t *a;
  bool want_pidfd = true;
  napi_get_instance_data(env, (void **)&a);
  if (a) {
    napi_throw_error(env, NULL, "procsock_spawn: init called twice");
    return NULL;
  }
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "init: expected (onExit, onRead, usePidfd)");
    return NULL;
  }
  if (argc >= 3) napi_get_value_bool(env, args[2], &want_pidfd);
  a = calloc(1, sizeof *a);
  a->env = env;
  napi_get_uv_event_loop(env, &a->loop);
  napi_create_reference(env, args[0], 1, &a->on_exit);
  napi_create_reference(env, args[1], 1, &a->on_read);
  napi_create_object(env, &resource);
  napi_create_reference(env, resource, 1, &a->resource);
  napi_create_string_utf8(env, "procsock:spawn", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &a->async);

  a->use_pidfd = 0;
  if (want_pidfd) {
    int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (fd >= 0) {
      close(fd);
      a->use_pidfd = 1;
    }
  }
  napi_set_instance_data(env, a, finalize, NULL);
  napi_add_env_cleanup_hook(env, cleanup, a);
  napi_create_string_utf8(env, a->use_pidfd ? "pidfd" : "sigchld", NAPI_AUTO_LENGTH, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"init", NULL, js_init, NULL, NULL, NULL, napi_default, NULL},
      {"spawn", NULL, js_spawn, NULL, NULL, NULL, napi_default, NULL},
      {"peerCredentials", NULL, js_peer_credentials, NULL, NULL, NULL, napi_default, NULL},
      {"readAvailable", NULL, js_read_available, NULL, NULL, NULL, napi_default, NULL},
      {"setPipeSize", NULL, js_set_pipe_size, NULL, NULL, NULL, napi_default, NULL},
      {"setReadBuffer", NULL, js_set_read_buffer, NULL, NULL, NULL, napi_default, NULL},
      {"pipeOpen", NULL, js_pipe_open, NULL, NULL, NULL, napi_default, NULL},
      {"pipeRead", NULL, js_pipe_read, NULL, NULL, NULL, napi_default, NULL},
      {"pipeClose", NULL, js_pipe_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
