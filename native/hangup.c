/*
 * A hang-up watch: while the daemon does not read a client's socket (its program's stdin is
 * full and the daemon's read-ahead too: back-pressure), it cannot see the client's end of
 * file, so a client that goes away would leave its program running. This watches a dup() of
 * the socket for the peer's close, without reading it and without touching Node's own watcher
 * of the descriptor (epoll keys a registration on the descriptor number, so the dup is a
 * registration of its own).
 *
 * What is a hang-up: as for sockexec, the client's end of file while its program runs — a
 * full close (both shutdown bits of ours set: POLLHUP) or a half-close (the peer shut down its
 * write side only: POLLRDHUP, which the kernel raises at once even with data still unread
 * before it). Seen here at once whatever stdin waits before it, so the rule does not depend
 * on when the program reads (or drops) that stdin: before, a half-close was judged when the
 * daemon got to it, a race with the program's exit. The dup is polled for UV_DISCONNECT
 * (EPOLLRDHUP; EPOLLHUP and EPOLLERR are reported whatever is asked) and never for data, so a
 * client that is merely unread costs no wake-ups. The callback checks with poll(2), calls JS once.
 *
 * hangupWatch(fd, onHangup: () => void) → handle; hangupUnwatch(handle): stops, closes the
 * dup (the handle is dead after it). JS unwatches before it closes the socket, since the
 * dup keeps the socket open (the client would not see the close until the dup's).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include "hangup.h"
#include "watch.h"

typedef struct hangup_watch {
  watched_t w; /* first (watch.h) */
  napi_ref on_hangup;
  struct hangup_watch *prev, *next;
} hangup_watch_t;

/* Whether the peer closed its end, fully or only its write side (or the socket failed). */
static int peer_gone(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLRDHUP, .revents = 0};
  int n;
  do n = poll(&p, 1, 0);
  while (n < 0 && errno == EINTR);
  return n == 1 && (p.revents & (POLLHUP | POLLERR | POLLRDHUP)) != 0;
}

static void on_event(uv_poll_t *handle, int status, int events) {
  hangup_watch_t *h = (hangup_watch_t *)handle;
  (void)events;
  if (status == 0 && !peer_gone(h->w.fd)) return; /* a spurious wake-up */
  uv_poll_stop(handle); /* once */
  addon_call(h->w.addon, h->on_hangup, 0, NULL);
}

static void close_watch(addon_t *a, hangup_watch_t *h) {
  LIST_REMOVE(a->hangups, h);
  napi_delete_reference(a->env, h->on_hangup);
  h->on_hangup = NULL;
  watched_close(&h->w);
}

void close_all_hangup_watches(addon_t *a) {
  while (a->hangups) close_watch(a, a->hangups);
}

napi_value js_hangup_watch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2], result;
  napi_valuetype type = napi_undefined;
  addon_t *a = NULL;
  int32_t fd = -1;
  int copy;
  hangup_watch_t *h;
  napi_get_instance_data(env, (void **)&a);
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (!a || argc < 2 || napi_get_value_int32(env, args[0], &fd) != napi_ok || fd < 0 ||
      napi_typeof(env, args[1], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, NULL, "hangupWatch: expected (fd, onHangup) after init");
    return NULL;
  }
  copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    napi_throw_error(env, errno == EBADF ? "EBADF" : "EMFILE",
                     "hangupWatch: cannot dup the descriptor");
    return NULL;
  }
  h = watched_new(env, a, copy, sizeof *h, "hangupWatch");
  if (!h) {
    close(copy);
    return NULL;
  }
  napi_create_reference(env, args[1], 1, &h->on_hangup);
  LIST_ADD(a->hangups, h);
  uv_unref((uv_handle_t *)&h->w.poll); /* the connection's other handles hold the loop */
  uv_poll_start(&h->w.poll, UV_DISCONNECT, on_event);
  napi_create_external(env, h, NULL, NULL, &result);
  return result;
}

napi_value js_hangup_unwatch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  addon_t *a = NULL;
  void *data = NULL;
  napi_get_instance_data(env, (void **)&a);
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  if (!a || argc < 1 || napi_get_value_external(env, arg, &data) != napi_ok || !data) {
    napi_throw_type_error(env, NULL, "hangupUnwatch: expected (handle)");
    return NULL;
  }
  close_watch(a, data);
  return NULL;
}
