/* Starting, watching and reaping children (spawn.c). */
#ifndef PROCSOCK_SPAWN_H
#define PROCSOCK_SPAWN_H
#include "addon.h"

/* Prepares `a` for spawning (the SIGCHLD handle, pidfd support): 0, or -1 (no descriptors). */
int spawn_init(addon_t *a, int want_pidfd);
/* The environment is going away: children to the orphanage (in a worker), handles closed. */
void spawn_teardown(addon_t *a);

/* A native connection's child was reaped (usage NULL: someone else reaped it; status unknown). */
struct rusage;
typedef void (*spawn_exit_cb)(void *ctx, int status, int reaped, int exec_error,
                              const struct rusage *usage);
/* What to run, without JS arguments: file and argv, NUL-separated (argc of them after the file). */
typedef struct {
  const char *file_and_argv;
  size_t length;
  uint32_t argc;
  int32_t flags;
  int stdin_fd; /* >= 0: the child's stdin, as it is (the caller keeps it; out[1] is -1); else a pipe */
} spawn_text_t;
/*
 * With `watch` (a native connection, on_exit set), the caller watches the child's pidfd in an
 * epoll set of its own instead of a uv_poll here: watch->pidfd (-1: none, SIGCHLD tells of
 * the exit as without), and watch->child to call spawn_reap with once it is readable.
 */
typedef struct {
  int pidfd;
  child_t *child;
} spawn_watch_t;
int spawn_packed(napi_env env, addon_t *a, napi_value *args, const spawn_text_t *text,
                 int32_t *out, size_t out_length, uint32_t grace, int32_t columns, int32_t rows,
                 spawn_exit_cb on_exit, void *ctx, spawn_watch_t *watch);
/*
 * The pidfd spawn_packed gave the caller is readable: reaps the child (on_exit is called, and
 * the child and its pidfd are freed before that) and returns 1, or 0 if it has not exited.
 */
int spawn_reap(child_t *child);

napi_value js_spawn(napi_env env, napi_callback_info info);
napi_value js_set_usage_buffer(napi_env env, napi_callback_info info);
napi_value js_close_fd(napi_env env, napi_callback_info info);
napi_value js_release_fd(napi_env env, napi_callback_info info);
napi_value js_guard(napi_env env, napi_callback_info info);
napi_value js_unguard(napi_env env, napi_callback_info info);
napi_value js_child_ref(napi_env env, napi_callback_info info);
#endif
