/* A descriptor the addon owns and watches with a uv_poll: output pipes (pipe.c), pty masters written to (pty.c). */
#ifndef PROCSOCK_WATCH_H
#define PROCSOCK_WATCH_H
#include "addon.h"

/* The first member of what is watched: the poll handle's address is the watcher's. */
typedef struct {
  uv_poll_t poll;
  addon_t *addon;
  int fd;
} watched_t;

/*
 * A zeroed `size`-byte object that starts with a watched_t on `fd` (made non-blocking by
 * libuv), or NULL with a JS error thrown (`call` names the addon call in it). The object
 * owns fd from then on: watched_close closes both.
 */
void *watched_new(napi_env env, addon_t *a, int fd, size_t size, const char *call);
/* Stops watching and closes the descriptor; frees the object once libuv is done with the handle. */
void watched_close(watched_t *w);
#endif
