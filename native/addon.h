/*
 * State the addon keeps per Node environment, and the plumbing every part of it shares.
 * The parts (spawn.c, pipe.c, peercred.c) depend on this, and spawn.c on the orphanage;
 * none calls back into a part that calls it. module.c, the top, sets the state up, tears it
 * down and exports every part's calls.
 */
#ifndef PROCSOCK_ADDON_H
#define PROCSOCK_ADDON_H
#include <node_api.h>
#include <uv.h>

typedef struct child child_t;
typedef struct reader reader_t;
typedef struct guarded guarded_t;
typedef struct tty_writer tty_writer_t;
typedef struct hangup_watch hangup_watch_t;

typedef struct {
  napi_env env;
  uv_loop_t *loop;
  napi_ref on_exit;          /* JS function (pid, code, signal) */
  napi_ref on_read;          /* JS function (token, bytes read | 0 at EOF | -errno) */
  napi_ref resource;         /* async resource object for the callbacks */
  napi_async_context async;
  int use_pidfd;
  uv_signal_t sigchld;       /* initialised by init, started when a child has no pidfd */
  int sigchld_started;
  child_t *children;         /* live (unreaped) children, a doubly linked list */
  int sigchld_live;          /* how many of them wait for SIGCHLD (no pidfd) */
  reader_t *readers;         /* open output pipes, a doubly linked list */
  tty_writer_t *writers;     /* open pty masters written to (pty.c), a doubly linked list */
  hangup_watch_t *hangups;   /* client sockets watched for a hang-up (hangup.c), a doubly linked list */
  struct hub *conns;         /* the daemon's native connections (conn.c), once connInit ran */
  napi_ref usage_ref;        /* Float64Array(3) the exit callback finds the child's rusage in */
  double *usage;
  napi_ref read_buffer_ref;  /* the one buffer every output pipe is read into */
  char *read_buffer;
  size_t read_buffer_size;
  int is_worker;             /* a worker thread's environment (not the main thread's) */
  guarded_t *guarded;        /* child_process children to stop if the worker goes away */
  /* Teardown (see cleanup in spawn.c): handles whose uv_close callback has not run yet. */
  unsigned closing;
  napi_async_cleanup_hook_handle cleanup_handle; /* set once the environment goes away */
  int owners;                /* 2: the environment and its teardown; freed at 0 */
} addon_t;

/* Intrusive doubly linked lists (children, readers): `item` has `prev` and `next` members. */
#define LIST_ADD(head, item)          \
  do {                                \
    (item)->prev = NULL;              \
    (item)->next = (head);            \
    if (head) (head)->prev = (item);  \
    (head) = (item);                  \
  } while (0)
#define LIST_REMOVE(head, item)                              \
  do {                                                       \
    if ((item)->prev) (item)->prev->next = (item)->next;     \
    else (head) = (item)->next;                              \
    if ((item)->next) (item)->next->prev = (item)->prev;     \
  } while (0)

/* ---- plumbing every part uses (addon.c) ---- */

/* Every uv_close of the addon goes through here, so teardown knows when the last one is done. */
void addon_close(addon_t *a, uv_handle_t *handle, uv_close_cb done);
/* Called by each close callback, after it has freed its handle. */
void addon_closed(addon_t *a);
/* Drops one of the state's two owners (the environment, its teardown); frees it at none. */
void addon_release(addon_t *a);

/* Calls `fn` (a reference) with int32 arguments, as an async callback of the addon. */
void addon_call(addon_t *a, napi_ref fn, int argc, const int32_t *args);
#endif
