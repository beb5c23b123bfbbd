/*
 * Output pipes read by the addon: a uv_poll on the descriptor, what it holds read into the
 * one buffer all pipes share at each readable event, and a call to JS with the byte count.
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
#include "watch.h"

struct reader {
  watched_t w;    /* first (watch.h) */
  int32_t token;  /* how JS knows the reader */
  bool terminal;  /* a pty master: read until EAGAIN (see on_readable) */
  reader_t *prev, *next;
};

static void close_reader(reader_t *r) {
  LIST_REMOVE(r->w.addon->readers, r);
  watched_close(&r->w);
}

/*
 * One read(2), EINTR retried: bytes read, 0 at end of file, or -errno (-EAGAIN: none now).
 */
static ssize_t read_some(int fd, char *into, size_t room) {
  ssize_t n;
  do n = read(fd, into, room);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

/*
 * A readable pipe: what it holds now, in one call to JS. A pipe gives all it holds to one
 * read(2) (a short read means it is empty); a terminal's master gives at most its line
 * discipline's buffer (4 KiB) per read, so it is read until EAGAIN or the buffer is full —
 * one JS call per wake-up, not per 4 KiB. End of file (a master's EIO at the slave's last
 * close) or an error after some bytes is not lost: the descriptor stays readable and says
 * it again at the next wake-up, after JS has had the bytes.
 */
static void on_readable(uv_poll_t *handle, int status, int events) {
  reader_t *r = (reader_t *)handle;
  addon_t *a = r->w.addon;
  int32_t args[2];
  ssize_t n, got = 0;
  size_t room = a->read_buffer_size;
  (void)events;
  if (status < 0) {
    n = status; /* a libuv error is a negative errno */
  } else {
    for (;;) {
      n = read_some(r->w.fd, (char *)a->read_buffer + got, room - (size_t)got);
      if (n <= 0) break;
      got += n;
      if (!r->terminal || (size_t)got == room) break;
    }
    if (got > 0) n = got;
    else if (n == -EAGAIN) return;
  }
  args[0] = r->token;
  args[1] = (int32_t)n;
  /*
   * End of file or an error: nothing more will come, so the reader is closed here, before JS
   * hears of it — one call into the addon fewer per pipe, and the descriptor is gone by the
   * time the channel closes. JS must not use the handle once it is told 0 or -errno.
   */
  if (n <= 0) close_reader(r);
  addon_call(a, a->on_read, 2, args);
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
 * pipeOpen(fd: number, token: number, terminal?: boolean) → handle: takes the descriptor over
 * (made non-blocking by libuv) and starts reading it (pipeRead(handle, false) pauses);
 * `terminal`: it is a pty master, read until EAGAIN (on_readable). The descriptor is closed
 * by pipeClose, or here once a read says end of file or an error (JS is told 0 or -errno,
 * and the handle is dead from then on).
 */
napi_value js_pipe_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3], result;
  addon_t *a;
  int32_t fd = -1, token = 0;
  bool terminal = false;
  reader_t *r;
  napi_get_instance_data(env, (void **)&a);
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (!a || !a->read_buffer || argc < 2 || napi_get_value_int32(env, args[0], &fd) != napi_ok ||
      napi_get_value_int32(env, args[1], &token) != napi_ok || fd < 0 ||
      (argc > 2 && napi_get_value_bool(env, args[2], &terminal) != napi_ok)) {
    napi_throw_type_error(env, NULL,
                          "pipeOpen: expected (fd, token, terminal?) after setReadBuffer");
    return NULL;
  }
  r = watched_new(env, a, fd, sizeof *r, "pipeOpen");
  if (!r) return NULL;
  r->token = token;
  r->terminal = terminal;
  LIST_ADD(a->readers, r);
  uv_poll_start(&r->w.poll, UV_READABLE, on_readable);
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
  if (on) uv_poll_start(&r->w.poll, UV_READABLE, on_readable);
  else uv_poll_stop(&r->w.poll);
  return NULL;
}

/* pipeRef(handle, on: boolean): whether this pipe keeps the event loop alive (as a socket's ref()). */
napi_value js_pipe_ref(napi_env env, napi_callback_info info) {
  bool on = true;
  reader_t *r = reader_and_switch(env, info, "pipeRef: expected (handle, on)", &on);
  if (!r) return NULL;
  if (on) uv_ref((uv_handle_t *)&r->w.poll);
  else uv_unref((uv_handle_t *)&r->w.poll);
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
