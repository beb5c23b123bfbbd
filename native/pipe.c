/*
 * Output pipes read by the addon: a uv_poll on the descriptor, one read(2) per readable
 * event into the one buffer all pipes share, and a call to JS with the byte count.
 *
 * A net.Socket per pipe costs tens of microseconds to create and destroy (a Duplex, two
 * stream states, a handle wrap); a program that prints a line and exits needs none of it.
 * One shared buffer is enough because JS consumes (or copies) a chunk before the callback
 * returns, and callbacks never overlap.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "pipe.h"

struct reader {
  uv_poll_t poll; /* first: the handle's address is the reader's */
  addon_t *addon;
  int fd;
  int32_t token;  /* how JS knows the reader */
  reader_t *prev, *next;
};

static void on_readable(uv_poll_t *handle, int status, int events) {
  reader_t *r = (reader_t *)handle;
  addon_t *a = r->addon;
  int32_t args[2];
  ssize_t n;
  (void)events;
  if (status < 0) {
    n = status; /* a libuv error is a negative errno */
  } else {
    do n = read(r->fd, a->read_buffer, a->read_buffer_size);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN) return;
      n = -errno;
    }
  }
  /* End of file or an error: nothing more will come; JS closes the reader. */
  if (n <= 0) uv_poll_stop(handle);
  args[0] = r->token;
  args[1] = (int32_t)n;
  addon_call(a, a->on_read, 2, args);
}

static void free_reader(uv_handle_t *handle) {
  reader_t *r = (reader_t *)handle;
  addon_t *a = r->addon;
  close(r->fd);
  free(r);
  addon_closed(a);
}

static void close_reader(reader_t *r) {
  LIST_REMOVE(r->addon->readers, r);
  addon_close(r->addon, (uv_handle_t *)&r->poll, free_reader);
}

void close_all_readers(addon_t *a) {
  while (a->readers) close_reader(a->readers);
}

static reader_t *reader_of(napi_env env, napi_value value) {
  void *data = NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok) return NULL;
  return data;
}

/* setReadBuffer(buffer: Uint8Array): the buffer output is read into (kept alive here). */
napi_value js_set_read_buffer(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  addon_t *a;
  napi_typedarray_type type;
  void *data = NULL;
  size_t length = 0;
  napi_get_instance_data(env, (void **)&a);
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  if (!a || argc < 1 ||
      napi_get_typedarray_info(env, arg, &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array || length == 0) {
    napi_throw_type_error(env, NULL, "setReadBuffer: expected a Uint8Array after init");
    return NULL;
  }
  if (a->read_buffer_ref) napi_delete_reference(env, a->read_buffer_ref);
  napi_create_reference(env, arg, 1, &a->read_buffer_ref);
  a->read_buffer = data;
  a->read_buffer_size = length;
  return NULL;
}

/*
 * pipeOpen(fd: number, token: number) → handle: takes the descriptor over (made
 * non-blocking by libuv; closed by pipeClose). Reading starts with pipeRead(handle, true).
 */
napi_value js_pipe_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2], result;
  addon_t *a;
  int32_t fd = -1, token = 0;
  reader_t *r;
  napi_get_instance_data(env, (void **)&a);
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (!a || !a->read_buffer || argc < 2 || napi_get_value_int32(env, args[0], &fd) != napi_ok ||
      napi_get_value_int32(env, args[1], &token) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "pipeOpen: expected (fd, token) after setReadBuffer");
    return NULL;
  }
  r = calloc(1, sizeof *r);
  if (!r) {
    napi_throw_error(env, "ENOMEM", "pipeOpen: out of memory");
    return NULL;
  }
  r->addon = a;
  r->fd = fd;
  r->token = token;
  if (uv_poll_init(a->loop, &r->poll, fd) != 0) { /* (it also makes fd non-blocking) */
    free(r);
    napi_throw_error(env, "EBADF", "pipeOpen: cannot watch the descriptor");
    return NULL;
  }
  LIST_ADD(a->readers, r);
  napi_create_external(env, r, NULL, NULL, &result);
  return result;
}

/* The (handle, on: boolean) of pipeRead and pipeRef; NULL, with a TypeError thrown, if bad. */
static reader_t *reader_and_switch(napi_env env, napi_callback_info info, const char *usage,
                                   bool *on) {
  size_t argc = 2;
  napi_value args[2];
  reader_t *r;
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 2 || !(r = reader_of(env, args[0])) ||
      napi_get_value_bool(env, args[1], on) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  return r;
}

/* pipeRead(handle, on: boolean): start or stop reading (pause / resume). */
napi_value js_pipe_read(napi_env env, napi_callback_info info) {
  bool on = false;
  reader_t *r = reader_and_switch(env, info, "pipeRead: expected (handle, on)", &on);
  if (!r) return NULL;
  if (on) uv_poll_start(&r->poll, UV_READABLE, on_readable);
  else uv_poll_stop(&r->poll);
  return NULL;
}

/* pipeRef(handle, on: boolean): whether this pipe keeps the event loop alive (as a socket's ref()). */
napi_value js_pipe_ref(napi_env env, napi_callback_info info) {
  bool on = true;
  reader_t *r = reader_and_switch(env, info, "pipeRef: expected (handle, on)", &on);
  if (!r) return NULL;
  if (on) uv_ref((uv_handle_t *)&r->poll);
  else uv_unref((uv_handle_t *)&r->poll);
  return NULL;
}

/* pipeClose(handle): stops reading and closes the descriptor; the handle is dead after it. */
napi_value js_pipe_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  reader_t *r;
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  if (argc < 1 || !(r = reader_of(env, arg))) {
    napi_throw_type_error(env, NULL, "pipeClose: expected (handle)");
    return NULL;
  }
  close_reader(r);
  return NULL;
}

/*
 * readAvailable(fd: number, into: Uint8Array) → bytes read (0 at end of file), or -errno
 * (-EAGAIN: nothing there now). One read(2) on a non-blocking descriptor: what is in a pipe
 * now, without waiting and without an exception per empty read.
 */
napi_value js_read_available(napi_env env, napi_callback_info info) {
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
napi_value js_set_pipe_size(napi_env env, napi_callback_info info) {
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
