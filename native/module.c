/*
 * The addon module: sets up each Node environment's state (init), tears it down when the
 * environment goes away, and exports the calls of every part (spawn.c, pipe.c, pty.c,
 * peercred.c, cgroup.c, conn.c, hangup.c). The only file that knows all of them; none of
 * them knows it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <node_api.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <uv.h>

#include "addon.h"
#include "cgroup.h"
#include "conn.h"
#include "hangup.h"
#include "peercred.h"
#include "pipe.h"
#include "pty.h"
#include "spawn.h"

/*
 * The environment is going away (a worker terminated, or the process exits). An async
 * cleanup hook, because closing libuv handles is asynchronous: Node keeps the loop (and
 * this module) until addon_closed sees the last close callback — a plain cleanup hook
 * returned at once, Node unloaded the module, and the callbacks then ran on unmapped code.
 * What happens to the children is spawn_teardown's (spawn.c).
 */
static void cleanup(napi_async_cleanup_hook_handle handle, void *data) {
  addon_t *a = data;
  a->cleanup_handle = handle;
  a->closing++; /* this function's own hold, dropped at the end */
  spawn_teardown(a); /* first: no child is told of its exit after this */
  close_all_conns(a);
  close_all_readers(a);
  close_all_tty_writers(a);
  close_all_hangup_watches(a);
  addon_closed(a);
}

static void finalize(napi_env env, void *data, void *hint) {
  addon_t *a = data;
  (void)hint;
  napi_delete_reference(env, a->on_exit);
  napi_delete_reference(env, a->on_read);
  if (a->read_buffer_ref) napi_delete_reference(env, a->read_buffer_ref);
  a->read_buffer = NULL;
  if (a->usage_ref) napi_delete_reference(env, a->usage_ref);
  a->usage = NULL;
  napi_delete_reference(env, a->resource);
  napi_async_destroy(env, a->async);
  addon_release(a);
}

/*
 * Keeps this module mapped for the life of the process. Node unloads an addon with the
 * last environment that loaded it (a worker's), but a child of that worker may still be
 * running child_main, and the orphanage thread runs code of this module.
 */
static void pin_module_once(void) {
  Dl_info info;
  /* RTLD_NOLOAD: this very file, already loaded; RTLD_NODELETE: never unmap it. */
  if (dladdr((void *)pin_module_once, &info) && info.dli_fname) {
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  }
}

static void pin_module(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, pin_module_once);
}

/*
 * init(onExit: (pid, code, signal, execErrno) => void, onRead: (token, bytes | 0 | -errno) => void,
 *      usePidfd: boolean, isWorker: boolean) → 'pidfd' | 'sigchld'
 */
static napi_value js_init(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value args[4], resource, name, result;
  addon_t *a;
  bool want_pidfd = true, is_worker = false;
  napi_get_instance_data(env, (void **)&a);
  if (a) {
    napi_throw_error(env, NULL, "procsock_spawn: init called twice");
    return NULL;
  }
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "init: expected (onExit, onRead, usePidfd, isWorker)");
    return NULL;
  }
  if (argc >= 3) napi_get_value_bool(env, args[2], &want_pidfd);
  if (argc >= 4) napi_get_value_bool(env, args[3], &is_worker);
  a = calloc(1, sizeof *a);
  if (!a) {
    napi_throw_error(env, "ENOMEM", "procsock_spawn: out of memory");
    return NULL;
  }
  pin_module();
  a->env = env;
  a->is_worker = is_worker;
  a->owners = 2;
  napi_get_uv_event_loop(env, &a->loop);
  if (spawn_init(a, want_pidfd) != 0) {
    free(a);
    napi_throw_error(env, NULL, "procsock_spawn: cannot watch SIGCHLD (out of descriptors?)");
    return NULL;
  }
  napi_create_reference(env, args[0], 1, &a->on_exit);
  napi_create_reference(env, args[1], 1, &a->on_read);
  napi_create_object(env, &resource);
  napi_create_reference(env, resource, 1, &a->resource);
  napi_create_string_utf8(env, "procsock:spawn", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &a->async);
  napi_set_instance_data(env, a, finalize, NULL);
  napi_add_async_cleanup_hook(env, cleanup, a, NULL);
  napi_create_string_utf8(env, a->use_pidfd ? "pidfd" : "sigchld", NAPI_AUTO_LENGTH, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"init", NULL, js_init, NULL, NULL, NULL, napi_default, NULL},
      {"spawn", NULL, js_spawn, NULL, NULL, NULL, napi_default, NULL},
      {"closeFd", NULL, js_close_fd, NULL, NULL, NULL, napi_default, NULL},
      {"releaseFd", NULL, js_release_fd, NULL, NULL, NULL, napi_default, NULL},
      {"guard", NULL, js_guard, NULL, NULL, NULL, napi_default, NULL},
      {"unguard", NULL, js_unguard, NULL, NULL, NULL, napi_default, NULL},
      {"peerCredentials", NULL, js_peer_credentials, NULL, NULL, NULL, napi_default, NULL},
      {"readAvailable", NULL, js_read_available, NULL, NULL, NULL, napi_default, NULL},
      {"shutdownWrite", NULL, js_shutdown_write, NULL, NULL, NULL, napi_default, NULL},
      {"cgroupDelegated", NULL, js_cgroup_delegated, NULL, NULL, NULL, napi_default, NULL},
      {"setPipeSize", NULL, js_set_pipe_size, NULL, NULL, NULL, napi_default, NULL},
      {"setReadBuffer", NULL, js_set_read_buffer, NULL, NULL, NULL, napi_default, NULL},
      {"setUsageBuffer", NULL, js_set_usage_buffer, NULL, NULL, NULL, napi_default, NULL},
      {"pipeOpen", NULL, js_pipe_open, NULL, NULL, NULL, napi_default, NULL},
      {"pipeRead", NULL, js_pipe_read, NULL, NULL, NULL, napi_default, NULL},
      {"pipeClose", NULL, js_pipe_close, NULL, NULL, NULL, napi_default, NULL},
      {"pipeRef", NULL, js_pipe_ref, NULL, NULL, NULL, napi_default, NULL},
      {"childRef", NULL, js_child_ref, NULL, NULL, NULL, napi_default, NULL},
      {"ttyWriterOpen", NULL, js_tty_writer_open, NULL, NULL, NULL, napi_default, NULL},
      {"ttyWrite", NULL, js_tty_write, NULL, NULL, NULL, napi_default, NULL},
      {"ttyWaitWritable", NULL, js_tty_wait_writable, NULL, NULL, NULL, napi_default, NULL},
      {"ttyWriterClose", NULL, js_tty_writer_close, NULL, NULL, NULL, napi_default, NULL},
      {"ttyResize", NULL, js_tty_resize, NULL, NULL, NULL, napi_default, NULL},
      {"ttyEofChar", NULL, js_tty_eof_char, NULL, NULL, NULL, napi_default, NULL},
      {"ttyRef", NULL, js_tty_ref, NULL, NULL, NULL, napi_default, NULL},
      {"hangupWatch", NULL, js_hangup_watch, NULL, NULL, NULL, napi_default, NULL},
      {"hangupUnwatch", NULL, js_hangup_unwatch, NULL, NULL, NULL, napi_default, NULL},
      {"connInit", NULL, js_conn_init, NULL, NULL, NULL, napi_default, NULL},
      {"connListen", NULL, js_conn_listen, NULL, NULL, NULL, napi_default, NULL},
      {"connAccept", NULL, js_conn_accept, NULL, NULL, NULL, napi_default, NULL},
      {"connUnlisten", NULL, js_conn_unlisten, NULL, NULL, NULL, napi_default, NULL},
      {"connRelease", NULL, js_conn_release, NULL, NULL, NULL, napi_default, NULL},
      {"connStats", NULL, js_conn_stats, NULL, NULL, NULL, napi_default, NULL},
      {"connSpawn", NULL, js_conn_spawn, NULL, NULL, NULL, napi_default, NULL},
      {"connHandoff", NULL, js_conn_handoff, NULL, NULL, NULL, napi_default, NULL},
      {"connParse", NULL, js_conn_parse, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
