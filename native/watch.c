/*
 * Descriptors the addon owns and watches (watch.h): the allocation, the uv_poll, and the
 * close that frees them only once libuv has let go of the handle, counted for teardown.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "watch.h"

void *watched_new(napi_env env, addon_t *a, int fd, size_t size, const char *call) {
  char message[96];
  watched_t *w = calloc(1, size);
  if (!w) {
    snprintf(message, sizeof message, "%s: out of memory", call);
    napi_throw_error(env, "ENOMEM", message);
    return NULL;
  }
  if (uv_poll_init(a->loop, &w->poll, fd) != 0) {
    free(w);
    snprintf(message, sizeof message, "%s: cannot watch the descriptor", call);
    napi_throw_error(env, "EBADF", message);
    return NULL;
  }
  w->addon = a;
  w->fd = fd;
  return w;
}

static void free_watched(uv_handle_t *handle) {
  watched_t *w = (watched_t *)handle;
  addon_t *a = w->addon;
  free(w);
  addon_closed(a);
}

/*
 * The descriptor is closed at once, as libuv closes a stream's: uv_close has taken it out of
 * the epoll set and libuv never touches it again, so nothing of it outlives the JS close
 * (a channel that has closed holds no descriptor). The object waits for the close callback.
 */
void watched_close(watched_t *w) {
  addon_close(w->addon, (uv_handle_t *)&w->poll, free_watched);
  close(w->fd);
  w->fd = -1;
}
