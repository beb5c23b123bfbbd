/*
 * The daemon's plain-protocol connections, served in native code: the listening socket is
 * accepted from in batches, and each client's request is read and decoded here, its program
 * spawned (spawn_packed), its stdin relayed, its output framed and written with one writev
 * per chunk, the exit pair written and the socket shut down — all on one epoll set of the
 * addon's own, watched by one uv_poll. JavaScript (src/server/native-connections.ts) is told
 * only what it must decide or record: the accepted descriptors (its slots and queue), the
 * complete argv (the policy's plan: connSpawn, or connHandoff), an exec failure's message,
 * and the end (the audit record, the slot freed).
 *
 * Conservative by design: until the program is spawned every byte read is kept, and anything
 * this parser does not fully understand — the extension's opening, any malformed or
 * over-limit request, a NUL in an argument — is handed back to JavaScript (connHandoff: the
 * descriptor and the bytes so far), whose Connection then serves it exactly as it serves any
 * client. After the spawn the rules are the JS Connection's and LocalChannel's, restated
 * here: the deadline and the kill timeout, a hang-up (EOF or an error while the program
 * runs), the exit grace for pipes a descendant holds, the process group, the drop of a
 * client that does not take its reply, shutdown.
 *
 *   reading ──argv──► deciding ──connSpawn──► running ──exit──► replying ──EOF──► closed
 *      │                  └──connHandoff──► (a JS Connection)      │
 *      └── EOF, deadline, shutdown ──► closed     hang-up, violation, drop ──► abandoned
 *
 * Lifetimes: a connection is freed only after its socket is closed and its child reaped with
 * its pipes closed; its timer's close callback frees it, after the current epoll batch. Every
 * descriptor is removed from the epoll set before it is closed: a cloned child that has not
 * exec'd yet holds a copy of our descriptors, and epoll would otherwise keep reporting the
 * closed one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conn.h"
#include "spawn.h"

#define ARG_OVERHEAD 24 /* what an argument costs besides its bytes: src/protocol/argv-collector.ts */
#define MAX_ARGC_DIGITS 10
#define READ_SIZE 65536 /* client bytes, per read */
/*
 * Output is read into one buffer of the hub's this long; a read that fills a default pipe
 * enlarges that pipe to it (as NativeOutput does): bulk output then takes 16 times fewer reads.
 */
#define PIPE_READ_SIZE (1024 * 1024)
#define PIPE_FILLED 65536
#define MAX_PIPE_DRAIN (1024 * 1024) /* read at the grace's end, per pipe (MAX_PIPE_SIZE in JS) */
#define MAX_EVENTS 64
#define ACCEPT_BATCH 64
#define ACCEPT_RETRY_MS 50

/* onEvent(kind, id, extra, listenerId) */
enum { EV_REQUEST = 2, EV_EXEC_ERROR = 3, EV_CLOSED = 4, EV_DRAINED = 5 };
enum { S_READING, S_DECIDING, S_RUNNING, S_REPLYING, S_ABANDONED, S_CLOSED };
enum { W_SOCKET, W_STDOUT, W_STDERR, W_STDIN, W_PIDFD, W_REPORT };
enum { P_ARGC, P_ARGV, P_STDIN, P_DONE };
/* The record's reason and error codes: src/server/native-connections.ts names them. */
enum { R_NONE, R_EXIT, R_SIGNAL, R_DEADLINE, R_HANGUP, R_SHUTDOWN, R_PROTOCOL, R_SPAWN_FAILURE };
enum {
  E_NONE,
  E_REQUEST_DEADLINE,
  E_REQUEST_TIMEOUT,
  E_CLIENT_EOF,
  E_SOCKET_ERROR,
  E_PROTOCOL,
  E_DROP,
  E_REPLY_DEADLINE,
  E_INTERNAL
};
enum {
  REC_PID,
  REC_CODE,
  REC_SIGNAL,
  REC_REASON,
  REC_ERROR,
  REC_BYTES_IN,
  REC_BYTES_OUT,
  REC_USER,
  REC_SYSTEM,
  REC_WALL,
  REC_PEER_PID,
  REC_PEER_UID,
  REC_PEER_GID,
  REC_ERRNO,
  REC_ELAPSED, /* ms since the accept (EV_REQUEST) */
  REC_FIELDS
};

/* ---- netstrings, incrementally (the rules of src/protocol/netstring.ts) ----------------- */

enum { NS_LENGTH, NS_PAYLOAD, NS_COMMA };
enum { BAD_NONE, BAD_FORM, BAD_LIMIT };

typedef struct {
  int state;
  int digits;
  uint64_t length, remaining, max;
} netstring_t;

/* The comma after a payload: the netstring is complete (1), or malformed (0). */
static int ns_comma(netstring_t *ns, char byte) {
  if (byte != ',') return 0;
  ns->state = NS_LENGTH;
  ns->length = 0;
  ns->digits = 0;
  return 1;
}

/*
 * Consumes from p[0..n) up to one payload piece: returns the bytes used; *piece (maybe empty)
 * and *last (the netstring ended: its comma checked) say what was found, *bad a violation.
 * As the JS decoder, a final piece is given only once its comma is checked.
 */
static size_t ns_feed(netstring_t *ns, const char *p, size_t n, const char **piece,
                      size_t *piece_len, int *last, int *bad) {
  size_t i = 0;
  *piece = NULL;
  *piece_len = 0;
  *last = 0;
  *bad = BAD_NONE;
  while (i < n) {
    if (ns->state == NS_LENGTH) {
      unsigned char b = (unsigned char)p[i++];
      if (b >= '0' && b <= '9') {
        if (ns->digits > 0 && ns->length == 0) {
          *bad = BAD_FORM;
          return i;
        }
        ns->length = ns->length * 10 + (uint64_t)(b - '0');
        ns->digits++;
        if (ns->length > ns->max) {
          *bad = BAD_LIMIT;
          return i;
        }
      } else if (b == ':' && ns->digits > 0) {
        ns->remaining = ns->length;
        ns->state = ns->remaining == 0 ? NS_COMMA : NS_PAYLOAD;
      } else {
        *bad = BAD_FORM;
        return i;
      }
    } else if (ns->state == NS_PAYLOAD) {
      size_t take = ns->remaining < n - i ? (size_t)ns->remaining : n - i;
      *piece = p + i;
      *piece_len = take;
      i += take;
      ns->remaining -= take;
      if (ns->remaining > 0) return i;
      if (i < n) {
        if (!ns_comma(ns, p[i++])) {
          *piece = NULL;
          *piece_len = 0;
          *bad = BAD_FORM;
          return i;
        }
        *last = 1;
        return i;
      }
      ns->state = NS_COMMA;
      return i;
    } else {
      if (!ns_comma(ns, p[i++])) {
        *bad = BAD_FORM;
        return i;
      }
      *piece = p + i;
      *last = 1;
      return i;
    }
  }
  return i;
}

/* ---- the request (argc, argv): decoded, or found to be JavaScript's to serve ------------ */

typedef struct {
  uint64_t max_args, max_arg_length, max_arg_bytes, max_data_length;
} limits_t;

typedef struct {
  netstring_t ns;
  int phase;
  char argc_text[MAX_ARGC_DIGITS + 1];
  size_t argc_len;
  uint64_t argc, seen, charged;
  char *args; /* the arguments so far, NUL-separated */
  size_t args_len, args_cap;
} request_t;

enum { REQ_MORE, REQ_COMPLETE, REQ_HANDOFF };

static void request_init(request_t *r, const limits_t *limits) {
  memset(r, 0, sizeof *r);
  r->phase = P_ARGC;
  r->ns.max = MAX_ARGC_DIGITS;
  (void)limits;
}

/*
 * Appends p[0..n) to a growable buffer (*data, *len used of *cap) whose bytes before *off are
 * consumed already (off: NULL when nothing is): those are dropped first when the room runs
 * out, then it doubles from `initial`. 0, or -1 when out of memory (the buffer unchanged).
 */
static int bytes_append(char **data, size_t *len, size_t *cap, size_t *off, const char *p,
                        size_t n, size_t initial) {
  if (*len + n > *cap && off && *off > 0) {
    memmove(*data, *data + *off, *len - *off);
    *len -= *off;
    *off = 0;
  }
  if (*len + n > *cap) {
    size_t bigger_cap = *cap ? *cap : initial;
    char *bigger;
    while (bigger_cap < *len + n) bigger_cap *= 2;
    bigger = realloc(*data, bigger_cap);
    if (!bigger) return -1;
    *data = bigger;
    *cap = bigger_cap;
  }
  memcpy(*data + *len, p, n);
  *len += n;
  return 0;
}

static int args_append(request_t *r, const char *p, size_t n) {
  return bytes_append(&r->args, &r->args_len, &r->args_cap, NULL, p, n, 256);
}

/*
 * Feeds request bytes; *used says how many were consumed. REQ_COMPLETE: every argument is
 * in r->args (what follows is stdin). REQ_HANDOFF: JavaScript must serve this client (an
 * extension opening, a violation, a limit, a NUL in an argument, out of memory).
 */
static int request_feed(request_t *r, const limits_t *limits, const char *p, size_t n,
                        size_t *used) {
  size_t i = 0;
  while (i < n) {
    const char *piece;
    size_t piece_len;
    int last, bad;
    i += ns_feed(&r->ns, p + i, n - i, &piece, &piece_len, &last, &bad);
    if (bad) {
      *used = i;
      return REQ_HANDOFF;
    }
    if (r->phase == P_ARGC) {
      if (piece_len > 0) {
        if (r->argc_len + piece_len > MAX_ARGC_DIGITS) return REQ_HANDOFF;
        memcpy(r->argc_text + r->argc_len, piece, piece_len);
        r->argc_len += piece_len;
      }
      if (!last) continue;
      {
        size_t k;
        uint64_t argc = 0;
        if (r->argc_len == 0 || r->argc_text[0] == '0') return REQ_HANDOFF;
        for (k = 0; k < r->argc_len; k++) {
          char d = r->argc_text[k];
          if (d < '0' || d > '9') return REQ_HANDOFF; /* the extension's opening, or bad */
          argc = argc * 10 + (uint64_t)(d - '0');
        }
        if (argc > limits->max_args) return REQ_HANDOFF;
        r->argc = argc;
        r->phase = P_ARGV;
        r->ns.max = limits->max_arg_length;
      }
    } else {
      r->charged += piece_len + (last ? ARG_OVERHEAD : 0);
      if (r->charged > limits->max_arg_bytes) return REQ_HANDOFF;
      if (piece_len > 0 && memchr(piece, '\0', piece_len)) return REQ_HANDOFF;
      if (piece_len > 0 && args_append(r, piece, piece_len) != 0) {
        return REQ_HANDOFF;
      }
      if (!last) continue;
      if (++r->seen == r->argc) {
        *used = i;
        r->phase = P_STDIN;
        r->ns.max = limits->max_data_length;
        return REQ_COMPLETE;
      }
      if (args_append(r, "", 1) != 0) return REQ_HANDOFF;
    }
  }
  *used = i;
  return REQ_MORE;
}

/* ---- state ---------------------------------------------------------------------------- */

typedef struct conn conn_t;
typedef struct hub hub_t;
typedef struct listener listener_t;

typedef struct {
  conn_t *c;
  int fd;
  int kind;
  uint32_t mask; /* what epoll reports it for now; 0: nothing (not in the set, or disarmed) */
  /*
   * EPOLLONESHOT (the output pipes, the pidfd): its event disarms it, and a disarmed
   * descriptor is closed without an EPOLL_CTL_DEL. That is safe where a plain one is not (a
   * cloned child that has not exec'd yet holds a copy, and epoll would go on reporting the
   * closed descriptor): a disarmed entry reports nothing, and goes when the last copy does.
   * Their last event is usually the only one (the EOF, the exit): one epoll_ctl each, not two.
   */
  int oneshot;
  int in_set;
} watch_t;

struct conn {
  uv_timer_t timer; /* first: its close callback frees the connection */
  hub_t *hub;
  /* The close callbacks use this, not hub->addon: at teardown the hub's poll is closed last and
   * libuv runs close callbacks newest first, so hub_closed() has freed the hub before them. */
  addon_t *addon;
  listener_t *listener; /* its slot's; NULL once released */
  int32_t id, listener_id;
  int state;
  int finished;
  int js; /* JavaScript knows this connection (it was asked to decide): told of its end */
  int handed_off;
  uint64_t accepted_at;
  watch_t sock, out[2], in;
  watch_t pidw; /* the child's pidfd (spawn.c's: closed when it reaps), while unreaped */
  child_t *child;
  int stdin_nonblocking;
  /*
   * Contained (the program runs under procsock_reaper, which is our child): the reaper's
   * report on its descriptor 3 — `pid=N` first, then how the program ended — read to its end.
   */
  const char *reaper;
  watch_t report;
  char report_text[512];
  size_t report_len;
  pid_t program_pid;
  limits_t limits;
  request_t req;
  /* client bytes: everything until the spawn (for a handoff), then what is not parsed yet */
  char *buf;
  size_t buf_len, buf_off, buf_cap;
  /* stdin */
  int piece_seen, stdin_pending, stdin_end_pending;
  size_t pending_off, pending_len;
  /* reply bytes the socket has not taken yet */
  char *outq;
  size_t outq_len, outq_off, outq_cap;
  int shut_pending, shut_done, client_eof;
  int drop_on_full; /* stopping (deadline, shutdown): t_drop counts while the socket is full */
  /* the program */
  int spawned, reaped, child_done, exec_failed, process_group, grace_over;
  int enlarged[2];
  int direct; /* the policy is sockexec's: argv runs as it is, without asking JS (connServe) */
  pid_t pid;
  int status, status_known;
  double user_us, system_us, wall_ms;
  uint64_t spawned_at;
  uint32_t kill_timeout, exit_grace;
  /* timers (absolute uv_now ms; 0: not set) */
  uint64_t t_deadline, t_request, t_kill, t_grace, t_drop;
  int stop_reason, reason, error, socket_errno;
  double bytes_in, bytes_out;
  double peer[3];
  conn_t *prev, *next;
};

/*
 * A listening socket and its clients' slots: at most max_conns served at once (natively, or
 * handed off to JavaScript: a handed-off client keeps its slot until connRelease), further
 * clients accepted and held unread in a queue of at most `backlog`, beyond that closed at once
 * (Server's rules). Freed once unlistened, its handles closed and none of its connections left.
 */
struct listener {
  uv_poll_t poll; /* first */
  uv_timer_t retry;
  hub_t *hub;
  addon_t *addon; /* for listener_closed(): the hub may be freed by then (see conn_t) */
  int fd;
  int32_t id;
  int closing;  /* unlistened */
  int handles;  /* close callbacks still to come, once unlistened */
  int detached; /* no longer in the hub's list (teardown) */
  /* what each connection is served with (connAccept) */
  double timeout_ms, request_timeout_ms;
  uint32_t kill_timeout, exit_grace;
  limits_t limits;
  int want_peer, direct, process_group, want_events;
  char *reaper; /* contained: procsock_reaper's path (src/channel/contain.ts); else NULL */
  /* the slots */
  uint32_t max_conns, backlog;
  uint32_t active; /* slots in use: connections served here, and handed-off ones */
  uint32_t native; /* of them, served here (conn_t alive) */
  int *queue;      /* accepted, waiting for a slot: a ring of `backlog` */
  uint32_t q_head, q_len;
  struct listener *prev, *next;
};

typedef struct group_kill {
  uv_timer_t timer; /* first */
  hub_t *hub;
  addon_t *addon; /* for group_kill_closed(): the hub may be freed by then (see conn_t) */
  pid_t pgid;
  struct group_kill *prev, *next;
} group_kill_t;

struct hub {
  uv_poll_t poll; /* on epfd */
  addon_t *addon;
  int epfd;
  char *rbuf;
  napi_ref on_event;
  napi_ref record_ref;
  double *record;
  char *signal_names[65];
  conn_t *conns;
  size_t conn_count; /* the hub's poll holds the loop while there are any */
  listener_t *listeners;
  group_kill_t *group_kills;
  int tearing; /* the environment is going away: JavaScript is not called */
  int32_t last_id; /* connection ids */
};

static hub_t *hub_of(napi_env env) {
  addon_t *a = NULL;
  napi_get_instance_data(env, (void **)&a);
  return a ? a->conns : NULL;
}

/* onEvent(kind, id, extra) as an async callback; its result in *result when asked. */
static void hub_call(hub_t *h, int kind, int32_t id, int32_t listener, napi_value extra,
                     char *result, size_t result_size) {
  addon_t *a = h->addon;
  napi_env env = a->env;
  napi_handle_scope scope;
  napi_value fn, recv, args[4], ret;
  /* empty unless the callback returns a string: not when it throws or no scope opens */
  if (result && result_size > 0) result[0] = '\0';
  if (h->tearing || napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_get_reference_value(env, h->on_event, &fn);
  napi_get_reference_value(env, a->resource, &recv);
  napi_create_int32(env, kind, &args[0]);
  napi_create_int32(env, id, &args[1]);
  if (extra) args[2] = extra;
  else napi_get_undefined(env, &args[2]);
  napi_create_int32(env, listener, &args[3]);
  if (napi_make_callback(env, a->async, recv, fn, 4, args, &ret) == napi_pending_exception) {
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_fatal_exception(env, error);
  } else if (result && result_size > 0) {
    size_t length = 0;
    napi_get_value_string_utf8(env, ret, result, result_size, &length);
  }
  napi_close_handle_scope(env, scope);
}

/* ---- epoll interest -------------------------------------------------------------------- */

static void watch_set(hub_t *h, watch_t *w, uint32_t mask) {
  struct epoll_event ev;
  if (w->fd < 0 || mask == w->mask) return;
  ev.events = mask ? mask | (w->oneshot ? EPOLLONESHOT : 0) : 0;
  ev.data.ptr = w;
  if (mask == 0) {
    /*
     * Out of the set, one-shot or not: a MOD to no events is not a disarm — the kernel adds
     * EPOLLHUP | EPOLLERR to every MOD, level-triggered — so a paused output pipe would
     * report its writer's exit alone (read as the end, its data lost) and, closed without a
     * DEL while a cloned child holds a copy, report into a freed watch. Only a one-shot's
     * own event disarms it (see watch_t).
     */
    epoll_ctl(h->epfd, EPOLL_CTL_DEL, w->fd, &ev);
    w->in_set = 0;
  } else if (epoll_ctl(h->epfd, w->in_set ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, w->fd, &ev) != 0) {
    return;
  } else {
    w->in_set = 1;
  }
  w->mask = mask;
}

/* Out of the set (if it could still report anything) and forgotten; not closed. */
static void watch_forget(hub_t *h, watch_t *w) {
  struct epoll_event ev = {0};
  if (w->fd < 0) return;
  if (w->mask) epoll_ctl(h->epfd, EPOLL_CTL_DEL, w->fd, &ev);
  w->fd = -1;
  w->mask = 0;
  w->in_set = 0;
}

static void watch_close(hub_t *h, watch_t *w) {
  int fd = w->fd;
  if (fd < 0) return;
  watch_forget(h, w);
  close(fd);
}

static int pipes_open(conn_t *c) {
  return c->out[0].fd >= 0 || c->out[1].fd >= 0 || c->report.fd >= 0;
}

/* What each descriptor is watched for, from the state: called after every event. */
static void update(conn_t *c) {
  hub_t *h = c->hub;
  uint32_t sock = 0;
  int i;
  if (c->state == S_READING || (c->state == S_RUNNING && !c->stdin_pending) ||
      (c->state == S_REPLYING && !c->client_eof)) {
    sock |= EPOLLIN;
  } else if (c->state == S_RUNNING) {
    /*
     * stdin waits for the program (not read: back-pressure), so the client's end of file would
     * go unseen. Registered for EPOLLRDHUP (EPOLLHUP is reported whatever is asked): a Unix
     * socket raises it at once when the client closed its end, fully or only its write side,
     * even with stdin unread before it — a hang-up while the program runs, as when reading
     * (sockexec's rule), whenever the program reads that stdin. See dispatch.
     */
    sock |= EPOLLRDHUP;
  }
  if (c->outq_len > c->outq_off) sock |= EPOLLOUT;
  watch_set(h, &c->sock, sock);
  for (i = 0; i < 2; i++) {
    watch_set(h, &c->out[i], c->outq_len > c->outq_off ? 0 : EPOLLIN);
  }
  watch_set(h, &c->in, c->stdin_pending ? EPOLLOUT : 0);
  watch_set(h, &c->pidw, EPOLLIN);
  watch_set(h, &c->report, EPOLLIN);
}

/* ---- timers ---------------------------------------------------------------------------- */

static void on_timer(uv_timer_t *timer);

static void rearm(conn_t *c) {
  uint64_t next = 0, now;
  uint64_t all[5] = {c->t_deadline, c->t_request, c->t_kill, c->t_grace, c->t_drop};
  int i;
  if (c->finished) return;
  for (i = 0; i < 5; i++) {
    if (all[i] && (!next || all[i] < next)) next = all[i];
  }
  if (!next) {
    uv_timer_stop(&c->timer);
    return;
  }
  now = uv_now(c->hub->addon->loop);
  uv_timer_start(&c->timer, on_timer, next > now ? next - now : 0, 0);
}

static uint64_t after_ms(conn_t *c, uint64_t ms) {
  return uv_now(c->hub->addon->loop) + ms + (ms == 0);
}

/* ---- the program ----------------------------------------------------------------------- */

/*
 * Signals the process group `pgid` our child led. Once that leader is reaped its pid may be
 * reused, and a new process with it may lead a group of the same id: a process of that pid
 * alive now is such a newcomer, and its group is not signalled. (What remains is a newcomer
 * that made the group and exited since; the kill timeout is the window for all of it.)
 */
static void kill_group(pid_t pgid, int sig, int leader_reaped) {
  if (leader_reaped && (kill(pgid, 0) == 0 || errno == EPERM)) return;
  kill(-pgid, sig);
}

/* The reaper's "KILL the whole tree now" (native/reaper.c). */
#define SIG_KILL_TREE 40

static void signal_child(conn_t *c, int sig) {
  if (!c->spawned || c->pid <= 0) return;
  if (c->reaper) {
    /*
     * As LocalChannel.#deliver: every signal goes to the reaper, a TERM meaning "TERM the
     * whole tree, the program too" (native/reaper.c). Never to the program's pid ourselves:
     * the reaper reaps the program as soon as it exits and lives on for its tree (the exit
     * grace, then the kill timeout), so by then that pid may be a newcomer's.
     */
    if (c->reaped) return;
    kill(c->pid, sig == SIGKILL ? SIG_KILL_TREE : sig);
    return;
  }
  if (c->process_group) kill_group(c->pid, sig, c->reaped);
  else if (!c->reaped) kill(c->pid, sig);
}

static void terminate(conn_t *c) {
  if (!c->spawned || c->child_done || c->t_kill || c->grace_over) return;
  signal_child(c, SIGTERM);
  c->t_kill = after_ms(c, c->kill_timeout);
}

static void on_group_kill(uv_timer_t *timer);

static void group_kill_closed(uv_handle_t *handle) {
  group_kill_t *g = (group_kill_t *)handle;
  addon_t *a = g->addon;
  free(g);
  addon_closed(a);
}

static void on_group_kill(uv_timer_t *timer) {
  group_kill_t *g = (group_kill_t *)timer;
  kill_group(g->pgid, SIGKILL, 1);
  LIST_REMOVE(g->hub->group_kills, g);
  addon_close(g->hub->addon, (uv_handle_t *)&g->timer, group_kill_closed);
}

/* TERM to the group whose leader is gone, KILL after the kill timeout (not holding the loop). */
static void stop_group(conn_t *c) {
  group_kill_t *g;
  /*
   * The leader is reaped (long ago, maybe: this comes after the exit grace), so as in
   * kill_group a process that has its pid now is a newcomer, maybe leading a group of that id,
   * and the group is left alone (a pid is not reused while a group of that id has members:
   * the old group is empty then).
   */
  if (kill(c->pid, 0) == 0 || errno == EPERM) return;
  if (kill(-c->pid, SIGTERM) != 0) return;
  g = calloc(1, sizeof *g);
  if (!g) return;
  g->hub = c->hub;
  g->addon = c->hub->addon;
  g->pgid = c->pid;
  uv_timer_init(c->hub->addon->loop, &g->timer);
  uv_unref((uv_handle_t *)&g->timer);
  uv_timer_start(&g->timer, on_group_kill, c->kill_timeout, 0);
  LIST_ADD(c->hub->group_kills, g);
}

static void set_nonblocking(int fd) {
  fcntl(fd, F_SETFL, O_NONBLOCK); /* (a pipe end has no other status flag worth keeping) */
}

/* ---- the reply --------------------------------------------------------------------------- */

static void close_socket(conn_t *c) {
  watch_close(c->hub, &c->sock);
  c->outq_len = c->outq_off = 0;
}

static void abandon(conn_t *c, int error);

/* The client's socket failed while we wrote or read it. */
static void socket_failed(conn_t *c, int err) {
  c->socket_errno = err;
  if (c->state == S_RUNNING) {
    if (!c->stop_reason) c->stop_reason = R_HANGUP;
    abandon(c, E_SOCKET_ERROR);
  } else if (c->state == S_REPLYING) {
    close_socket(c);
  } else { /* before the request was complete: just closed */
    close_socket(c);
    c->state = S_CLOSED;
  }
}

/*
 * During a stop (deadline, shutdown) a client is dropped after 2 x the kill timeout only while
 * its socket is full (a reply queued it does not take), the clock cleared when it drains: a
 * client that reads is never dropped on the way, however late the KILL is reaped (a stopped
 * or starved reaper), so its exit pair is not lost (as Connection on the JS path).
 */
static void stop_drop_update(conn_t *c) {
  if (!c->drop_on_full || c->shut_done || c->finished) return;
  if (c->sock.fd >= 0 && c->outq_len > c->outq_off) {
    if (!c->t_drop) c->t_drop = after_ms(c, 2 * (uint64_t)c->kill_timeout);
  } else {
    c->t_drop = 0;
  }
}

static int outq_append(conn_t *c, const char *p, size_t n) {
  if (c->outq_off > 0 && c->outq_off == c->outq_len) c->outq_off = c->outq_len = 0;
  return bytes_append(&c->outq, &c->outq_len, &c->outq_cap, &c->outq_off, p, n, 4096);
}

/* Writes the parts in order, now as far as the socket takes them, the rest queued. */
static void send_parts(conn_t *c, struct iovec *iov, int count) {
  ssize_t n = 0;
  int i;
  if (c->sock.fd < 0) return;
  if (c->outq_len == c->outq_off) {
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)count;
    do n = sendmsg(c->sock.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        socket_failed(c, errno);
        return;
      }
      n = 0;
    }
  }
  for (i = 0; i < count; i++) {
    size_t len = iov[i].iov_len;
    if ((size_t)n >= len) {
      n -= (ssize_t)len;
      continue;
    }
    if (outq_append(c, (const char *)iov[i].iov_base + n, len - (size_t)n) != 0) {
      abandon(c, E_INTERNAL);
      return;
    }
    n = 0;
  }
  stop_drop_update(c);
}

static const char STDOUT_PREFIX[] = "6:stdout,";
static const char STDERR_PREFIX[] = "6:stderr,";

static void send_output(conn_t *c, int type, const char *data, size_t n) {
  char header[32];
  struct iovec iov[3];
  int length = snprintf(header, sizeof header, "%s%zu:", type ? STDERR_PREFIX : STDOUT_PREFIX, n);
  iov[0].iov_base = header;
  iov[0].iov_len = (size_t)length;
  iov[1].iov_base = (void *)data;
  iov[1].iov_len = n;
  iov[2].iov_base = (void *)",";
  iov[2].iov_len = 1;
  send_parts(c, iov, 3);
}

/* The end of stream, once every reply byte is in the kernel; the drop timer starts then. */
static void maybe_shut(conn_t *c) {
  if (!c->shut_pending || c->shut_done || c->sock.fd < 0 || c->outq_len > c->outq_off) return;
  shutdown(c->sock.fd, SHUT_WR);
  c->shut_done = 1;
  if (!c->t_drop) c->t_drop = after_ms(c, c->kill_timeout);
  if (c->client_eof) close_socket(c);
}

static void write_exit(conn_t *c, int termsig, int code) {
  char text[64];
  struct iovec iov;
  int length;
  const char *name = termsig > 0 && termsig < 65 ? c->hub->signal_names[termsig] : NULL;
  if (termsig > 0 && name) {
    length = snprintf(text, sizeof text, "7:termsig,%zu:%s,", strlen(name), name);
  } else {
    char digits[16];
    int d = snprintf(digits, sizeof digits, "%d", termsig > 0 ? 0 : code);
    length = snprintf(text, sizeof text, "8:exitcode,%d:%s,", d, digits);
  }
  iov.iov_base = text;
  iov.iov_len = (size_t)length;
  send_parts(c, &iov, 1);
  c->shut_pending = 1;
  maybe_shut(c);
}

/* The program is done (reaped, pipes closed): the exit pair, if the client still waits. */
static void reply_exit(conn_t *c) {
  int termsig = 0, code = 0;
  if (c->state != S_RUNNING) return;
  c->state = S_REPLYING;
  if (c->exec_failed) {
    char message[8192];
    napi_env env = c->hub->addon->env;
    napi_handle_scope scope;
    napi_value program = NULL;
    if (c->hub->record) c->hub->record[REC_ERRNO] = c->exec_failed;
    napi_open_handle_scope(env, &scope);
    /* argv[0]: the arguments up to the first NUL */
    napi_create_buffer_copy(env, c->req.args ? strnlen(c->req.args, c->req.args_len) : 0,
                            c->req.args ? c->req.args : "", NULL, &program);
    hub_call(c->hub, EV_EXEC_ERROR, c->id, c->listener_id, program, message, sizeof message);
    napi_close_handle_scope(env, scope);
    if (message[0]) {
      size_t n = strnlen(message, sizeof message);
      send_output(c, 1, message, n);
      c->bytes_out += (double)n;
    }
    code = c->exec_failed == ENOENT ? 127 : 126;
    c->status_known = 1;
    c->status = code << 8;
    c->reason = c->stop_reason ? c->stop_reason : R_SPAWN_FAILURE;
  } else {
    if (c->status_known && WIFSIGNALED(c->status)) termsig = WTERMSIG(c->status);
    else if (c->status_known && WIFEXITED(c->status)) code = WEXITSTATUS(c->status);
    if (termsig > 0 && !c->hub->signal_names[termsig < 65 ? termsig : 0]) termsig = 0;
    c->reason = c->stop_reason ? c->stop_reason : termsig > 0 ? R_SIGNAL : R_EXIT;
  }
  write_exit(c, termsig, code);
}

static void maybe_done(conn_t *c);
static void take_report(conn_t *c);

static void maybe_child_done(conn_t *c) {
  if (!c->spawned || c->child_done || !c->reaped || pipes_open(c)) return;
  c->child_done = 1;
  c->t_kill = c->t_grace = 0;
  if (c->reaper && !c->exec_failed) take_report(c);
  /* (Contained, the reaper has ended the whole tree already.) */
  if (c->process_group && !c->exec_failed && !c->reaper) stop_group(c);
  reply_exit(c);
}

static void relay(conn_t *c, int i, const char *data, size_t n) {
  if (c->state != S_RUNNING) return; /* abandoned, or the exit was written: dropped */
  c->bytes_out += (double)n;
  send_output(c, i, data, n);
}

/* Reads what the reaper has reported (up to the buffer); closes the pipe at its end. */
static void read_report(conn_t *c) {
  for (;;) {
    ssize_t n;
    if (c->report_len >= sizeof c->report_text - 1) { /* more than a report: the rest dropped */
      n = read(c->report.fd, c->hub->rbuf, PIPE_READ_SIZE);
    } else {
      n = read(c->report.fd, c->report_text + c->report_len, sizeof c->report_text - 1 - c->report_len);
      if (n > 0) c->report_len += (size_t)n;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) break;
  }
  c->report_text[c->report_len] = '\0';
  watch_close(c->hub, &c->report);
}

/* `key=` in the reaper's report, as a number: 1, or 0 when it is not there. */
static int report_field(const conn_t *c, const char *key, long *value) {
  size_t k = strlen(key);
  const char *p = c->report_text;
  while ((p = strstr(p, key))) {
    if ((p == c->report_text || p[-1] == ' ' || p[-1] == '\n') && p[k] == '=') {
      char *end;
      long v = strtol(p + k + 1, &end, 10);
      if (end != p + k + 1) {
        *value = v;
        return 1;
      }
    }
    p += k;
  }
  return 0;
}

/*
 * The reaper's report replaces what its own exit says (LocalChannel's #takeReport): the
 * program's status, or that it could not be executed. A report without a status (the reaper
 * was killed) leaves the reaper's own.
 */
static void take_report(conn_t *c) {
  long status = 0, exec_error = 0;
  if (!report_field(c, "status", &status)) return;
  if (report_field(c, "execerr", &exec_error) && exec_error > 0) {
    c->exec_failed = (int)exec_error;
    return;
  }
  c->status = (int)status;
  c->status_known = 1;
}

/*
 * After the grace (the exit grace, or the kill timeout), a reaped program's pipes are closed
 * even if a descendant holds them, what they hold delivered first; a paused reply keeps them
 * until the socket drains (LocalChannel's #closePipesAfterGrace).
 */
static void close_pipes_after_grace(conn_t *c) {
  int i;
  if (!c->grace_over || !c->reaped || !pipes_open(c)) return;
  if (c->outq_len > c->outq_off && c->state != S_ABANDONED) return;
  for (i = 0; i < 2; i++) {
    size_t taken = 0;
    if (c->out[i].fd >= 0) set_nonblocking(c->out[i].fd); /* a descendant may hold it open */
    while (c->out[i].fd >= 0 && taken < MAX_PIPE_DRAIN) {
      ssize_t n = read(c->out[i].fd, c->hub->rbuf, PIPE_READ_SIZE);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      taken += (size_t)n;
      relay(c, i, c->hub->rbuf, (size_t)n);
      if (c->outq_len > c->outq_off && c->state != S_ABANDONED) return;
    }
  }
  watch_close(c->hub, &c->out[0]);
  watch_close(c->hub, &c->out[1]);
  if (c->report.fd >= 0) {
    set_nonblocking(c->report.fd);
    read_report(c);
    watch_close(c->hub, &c->report); /* (a report that does not end: what came is all) */
  }
  maybe_child_done(c);
}

static void close_stdin(conn_t *c) {
  watch_close(c->hub, &c->in);
  c->stdin_pending = 0;
  c->stdin_end_pending = 0;
}

/* Drops the client; a running program gets TERM, KILL after the kill timeout (#abandon). */
static void abandon(conn_t *c, int error) {
  if (c->state != S_REPLYING && !c->error) c->error = error;
  close_socket(c);
  if (c->spawned && !c->child_done) {
    c->state = S_ABANDONED;
    close_stdin(c);
    terminate(c);
    close_pipes_after_grace(c);
  } else {
    c->state = S_CLOSED;
  }
}

/* ---- stdin ------------------------------------------------------------------------------- */

/* Writes what is pending of a stdin piece; 1 when all of it went. */
static int flush_stdin(conn_t *c) {
  while (c->pending_len > 0) {
    ssize_t n;
    if (c->in.fd < 0) {
      c->pending_len = 0;
      break;
    }
    if (!c->stdin_nonblocking) {
      c->stdin_nonblocking = 1;
      set_nonblocking(c->in.fd);
    }
    n = write(c->in.fd, c->buf + c->pending_off, c->pending_len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (n < 0) { /* EPIPE: the program closed its stdin; the rest is dropped, as sockexec does */
      close_stdin(c);
      c->pending_len = 0;
      break;
    }
    c->pending_off += (size_t)n;
    c->pending_len -= (size_t)n;
  }
  c->stdin_pending = 0;
  if (c->stdin_end_pending) close_stdin(c);
  return 1;
}

/* Parses the client bytes held as stdin netstrings, writing each piece to the program. */
static void process_stdin(conn_t *c) {
  while (c->buf_off < c->buf_len && c->state == S_RUNNING && !c->stdin_pending) {
    const char *piece;
    size_t piece_len;
    int last, bad;
    if (c->req.phase == P_DONE) {
      c->buf_off = c->buf_len; /* after the terminator, anything is ignored */
      break;
    }
    c->buf_off += ns_feed(&c->req.ns, c->buf + c->buf_off, c->buf_len - c->buf_off, &piece,
                          &piece_len, &last, &bad);
    if (bad) {
      if (!c->stop_reason) c->stop_reason = R_PROTOCOL;
      abandon(c, E_PROTOCOL);
      return;
    }
    if (piece_len > 0) {
      c->piece_seen = 1;
      c->bytes_in += (double)piece_len;
      if (c->in.fd >= 0) {
        c->pending_off = (size_t)(piece - c->buf);
        c->pending_len = piece_len;
        if (!flush_stdin(c)) c->stdin_pending = 1;
      }
    }
    if (last) {
      if (!c->piece_seen) {
        c->req.phase = P_DONE;
        if (c->stdin_pending) c->stdin_end_pending = 1;
        else close_stdin(c);
      }
      c->piece_seen = 0;
    }
  }
  if (c->buf_off == c->buf_len && !c->stdin_pending) c->buf_off = c->buf_len = 0;
}

/* ---- events ------------------------------------------------------------------------------ */

static void on_child_exit(void *ctx, int status, int reaped, int exec_error,
                          const struct rusage *usage);


/* The program started (out: pid, stdin, stdout, stderr): relay from now on. */
static void started(conn_t *c, const int32_t *out, int group, const spawn_watch_t *watch) {
  c->spawned = 1;
  c->pidw.fd = watch->pidfd; /* (-1: spawn.c learns of the exit from SIGCHLD) */
  c->child = watch->child;
  c->pid = out[0];
  c->process_group = group;
  c->spawned_at = uv_now(c->hub->addon->loop);
  c->in.fd = out[1];
  c->out[0].fd = out[2];
  c->out[1].fd = out[3];
  if (c->reaper) {
    c->report.fd = out[4];
    set_nonblocking(out[4]); /* read to EAGAIN (read_report): a line now, the rest at the end */
  }
  /*
   * Not made non-blocking here (three fcntl per connection): an output pipe is read once per
   * event that says it holds data, and made non-blocking only to be drained at the grace's
   * end; stdin only before its first write.
   */
  c->state = S_RUNNING;
  update(c);
}

#define FLAG_PROCESS_GROUP 1  /* native/spawn.c's */
#define FLAG_REPORT_PIPE 8
#define FLAG_DIE_WITH_PARENT 16

/*
 * A sockexec policy: argv runs as it is (the file is argv[0], looked up in PATH; this
 * process's environment), as the JS path would run it, without a call into JS. 0 when it
 * started; else the errno (then JS decides, as for any request).
 */
static int spawn_direct(conn_t *c) {
  request_t *r = &c->req;
  size_t program = strnlen(r->args, r->args_len);
  int32_t out[5] = {0};
  spawn_text_t text;
  spawn_watch_t watch = {-1, NULL};
  char prefix[160];
  int prefix_len = 0, prefix_args = 0;
  char *file_and_argv;
  int error, no_stdin, eof_ends[2] = {-1, -1};
  if (c->reaper) {
    /*
     * reaperArgv's: the reaper's file, then `procsock_reaper PARENT EXIT_GRACE KILL_TIMEOUT
     * GROUP FILE`, then argv (the program is the file, looked up in PATH by the reaper).
     */
    prefix_len = snprintf(prefix, sizeof prefix, "procsock_reaper%c%ld%c%u%c%u%c%c%c", 0,
                          (long)getpid(), 0, c->exit_grace, 0, c->kill_timeout, 0,
                          c->process_group ? '1' : '0', 0);
    prefix_args = 5;
  }
  file_and_argv = malloc((c->reaper ? strlen(c->reaper) : program) + 1 + (size_t)prefix_len +
                         program + 1 + r->args_len);
  if (!file_and_argv) return ENOMEM;
  text.length = 0;
  if (c->reaper) {
    size_t n = strlen(c->reaper) + 1;
    memcpy(file_and_argv, c->reaper, n); /* the file */
    memcpy(file_and_argv + n, prefix, (size_t)prefix_len);
    memcpy(file_and_argv + n + prefix_len, r->args, program); /* the reaper's FILE */
    file_and_argv[n + prefix_len + program] = '\0';
    text.length = n + (size_t)prefix_len + program + 1;
  } else {
    memcpy(file_and_argv, r->args, program); /* the file */
    file_and_argv[program] = '\0';
    text.length = program + 1;
  }
  memcpy(file_and_argv + text.length, r->args, r->args_len);
  text.length += r->args_len;
  text.file_and_argv = file_and_argv;
  text.argc = (uint32_t)r->argc + (c->reaper ? (uint32_t)prefix_args + 1 : 0);
  /* Contained, the program leads the group (the reaper makes it); the reaper stays in ours. */
  text.flags = FLAG_DIE_WITH_PARENT |
               (c->reaper ? FLAG_REPORT_PIPE : c->process_group ? FLAG_PROCESS_GROUP : 0);
  /* The request's stdin is over already (an empty netstring comes first): no pipe for it. */
  no_stdin = c->buf_len - c->buf_off >= 3 && memcmp(c->buf + c->buf_off, "0:,", 3) == 0;
  /*
   * Then its stdin is a pipe of its own whose write end is closed at once: end of file, and a
   * pipe as on the JS path (`test -p /dev/stdin`). Never one pipe shared by runs: a pipe is
   * reopenable for writing through /proc/self/fd/0, so a program could write into every later
   * run's stdin, or hold a writer open that keeps them all from seeing end of file.
   */
  if (no_stdin) {
    if (pipe2(eof_ends, O_CLOEXEC) != 0) {
      error = errno;
      free(file_and_argv);
      return error;
    }
    close(eof_ends[1]);
  }
  text.stdin_fd = eof_ends[0];
  error = spawn_packed(c->hub->addon->env, c->hub->addon, NULL, &text, out, 5, c->kill_timeout,
                       80, 24, on_child_exit, c, &watch);
  if (eof_ends[0] >= 0) close(eof_ends[0]); /* (the child has its copy) */
  free(file_and_argv);
  if (error == 0 && no_stdin) {
    c->buf_off += 3;
    r->phase = P_DONE; /* (what follows is ignored, as after any stdin's end) */
  }
  if (error == 0) started(c, out, c->process_group, &watch);
  return error;
}

static void decide(conn_t *c, int complete) {
  hub_t *h = c->hub;
  napi_env env = h->addon->env;
  napi_handle_scope scope;
  napi_value extra = NULL;
  c->t_request = 0;
  c->state = S_DECIDING;
  c->js = 1;
  if (h->record) h->record[REC_ELAPSED] = (double)(uv_now(h->addon->loop) - c->accepted_at);
  napi_open_handle_scope(env, &scope);
  if (complete) napi_create_buffer_copy(env, c->req.args_len, c->req.args ? c->req.args : "", NULL, &extra);
  hub_call(h, EV_REQUEST, c->id, c->listener_id, extra, NULL, 0);
  napi_close_handle_scope(env, scope);
  /* JS called connSpawn (running) or connHandoff (finished); anything else is a bug of ours. */
  if (c->state == S_DECIDING) abandon(c, E_INTERNAL);
}

static void on_socket_readable(conn_t *c) {
  ssize_t n;
  if (c->state == S_READING) {
    if (c->buf_cap - c->buf_len < READ_SIZE) {
      char *bigger = realloc(c->buf, c->buf_cap + READ_SIZE);
      if (!bigger) {
        abandon(c, E_INTERNAL);
        return;
      }
      c->buf = bigger;
      c->buf_cap += READ_SIZE;
    }
  }
  if (c->state == S_RUNNING && c->buf_len > 0) return; /* still being written to stdin */
  if (c->state == S_REPLYING) c->buf_len = c->buf_off = 0; /* what was left is dropped */
  do n = read(c->sock.fd, c->buf + c->buf_len, c->buf_cap - c->buf_len);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n < 0) {
    socket_failed(c, errno);
    return;
  }
  if (n == 0) {
    if (c->state == S_RUNNING) {
      if (!c->stop_reason) c->stop_reason = R_HANGUP;
      abandon(c, E_CLIENT_EOF);
    } else if (c->state == S_REPLYING) {
      c->client_eof = 1;
      if (c->shut_done) close_socket(c);
    } else {
      close_socket(c); /* before (or in the middle of) a request: just closed */
      c->state = S_CLOSED;
    }
    return;
  }
  if (c->state == S_REPLYING) return; /* late stdin: dropped */
  c->buf_len += (size_t)n;
  if (c->state == S_READING) {
    size_t used = 0;
    int r = request_feed(&c->req, &c->limits, c->buf + c->buf_off, c->buf_len - c->buf_off, &used);
    c->buf_off += used;
    if (r == REQ_MORE) return;
    c->t_request = 0;
    /* (An empty program name is refused, in JS's words.) */
    if (r != REQ_COMPLETE || !c->direct || c->req.args_len == 0 || c->req.args[0] == '\0' ||
        spawn_direct(c) != 0) {
      decide(c, r == REQ_COMPLETE);
    }
    if (c->state != S_RUNNING) return;
  }
  process_stdin(c);
}

static void on_socket_writable(conn_t *c) {
  while (c->outq_off < c->outq_len) {
    ssize_t n = send(c->sock.fd, c->outq + c->outq_off, c->outq_len - c->outq_off,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0) {
      socket_failed(c, errno);
      return;
    }
    c->outq_off += (size_t)n;
  }
  c->outq_off = c->outq_len = 0;
  stop_drop_update(c);
  maybe_shut(c);
  close_pipes_after_grace(c);
}

static void on_pipe_readable(conn_t *c, int i, uint32_t events) {
  ssize_t n = 0;
  /* The writers are gone and nothing is left (a pipe says EPOLLHUP without EPOLLIN): no read. */
  if (events & EPOLLIN) {
    do n = read(c->out[i].fd, c->hub->rbuf, PIPE_READ_SIZE);
    while (n < 0 && errno == EINTR);
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n >= PIPE_FILLED && !c->enlarged[i]) {
    c->enlarged[i] = 1;
    fcntl(c->out[i].fd, F_SETPIPE_SZ, PIPE_READ_SIZE); /* best effort (the user's pipe quota) */
  }
  if (n > 0) {
    relay(c, i, c->hub->rbuf, (size_t)n);
    return;
  }
  watch_close(c->hub, &c->out[i]); /* end of file, or an error: nothing more comes */
  maybe_child_done(c);
}

static void on_stdin_writable(conn_t *c) {
  if (!flush_stdin(c)) return;
  process_stdin(c);
}

/* The child was reaped (spawn.c). */
static void on_child_exit(void *ctx, int status, int reaped, int exec_error,
                          const struct rusage *usage) {
  conn_t *c = ctx;
  /* spawn.c has closed the pidfd (its event had disarmed it, or it never was in the set). */
  c->pidw.fd = -1;
  c->pidw.mask = 0;
  c->pidw.in_set = 0;
  c->child = NULL;
  c->reaped = 1;
  c->status = status;
  c->status_known = reaped;
  c->wall_ms = (double)(uv_now(c->hub->addon->loop) - c->spawned_at);
  if (usage) {
    c->user_us = (double)usage->ru_utime.tv_sec * 1e6 + (double)usage->ru_utime.tv_usec;
    c->system_us = (double)usage->ru_stime.tv_sec * 1e6 + (double)usage->ru_stime.tv_usec;
  }
  /* Nobody reads stdin any more (as NativeChild.exited): the rest of it is dropped. */
  close_stdin(c);
  if (exec_error > 0) {
    /* It never ran: nothing to wait for, no pipe to keep (LocalChannel's #failExec). */
    c->exec_failed = exec_error;
    c->t_kill = 0;
    watch_close(c->hub, &c->out[0]);
    watch_close(c->hub, &c->out[1]);
    watch_close(c->hub, &c->report);
  } else if (pipes_open(c)) {
    if (c->exit_grace == 0) c->grace_over = 1;
    else if (!c->t_grace && !c->grace_over) c->t_grace = after_ms(c, c->exit_grace);
  }
  close_pipes_after_grace(c);
  maybe_child_done(c);
  if (c->state == S_RUNNING || c->state == S_REPLYING) process_stdin(c);
  update(c);
  rearm(c);
  maybe_done(c);
}

static void on_timer(uv_timer_t *timer) {
  conn_t *c = (conn_t *)timer;
  uint64_t now = uv_now(c->hub->addon->loop);
  if (c->t_request && c->t_request <= now) {
    c->t_request = 0;
    if (c->state == S_READING) abandon(c, E_REQUEST_TIMEOUT);
  }
  if (c->t_deadline && c->t_deadline <= now) {
    c->t_deadline = 0;
    if (c->state == S_READING) {
      abandon(c, E_REQUEST_DEADLINE);
    } else if (c->state == S_RUNNING) {
      if (!c->stop_reason) c->stop_reason = R_DEADLINE;
      terminate(c);
      c->drop_on_full = 1;
      stop_drop_update(c);
    } else if (c->state == S_REPLYING) {
      abandon(c, E_REPLY_DEADLINE);
    }
  }
  if (c->t_kill && c->t_kill <= now) {
    c->t_kill = 0;
    c->grace_over = 1;
    signal_child(c, SIGKILL);
    close_pipes_after_grace(c);
  }
  if (c->t_grace && c->t_grace <= now) {
    c->t_grace = 0;
    c->grace_over = 1;
    close_pipes_after_grace(c);
  }
  if (c->t_drop && c->t_drop <= now) {
    c->t_drop = 0;
    if (c->state != S_CLOSED && c->state != S_ABANDONED) abandon(c, E_DROP);
  }
  if (c->finished) return;
  update(c);
  rearm(c);
  maybe_done(c);
}

static void conn_free(uv_handle_t *handle) {
  conn_t *c = (conn_t *)handle;
  addon_t *a = c->addon;
  free(c->req.args);
  free(c->buf);
  free(c->outq);
  free(c);
  addon_closed(a);
}

static void slot_freed(listener_t *l);
static void listener_left(listener_t *l);

/*
 * Unlinks and frees `c` (after this loop turn: its timer's close callback). Its slot is
 * freed too, unless it was handed off (the JS Connection holds it until connRelease).
 */
static listener_t *conn_unlink(conn_t *c) {
  listener_t *l = c->listener;
  c->finished = 1;
  c->listener = NULL;
  LIST_REMOVE(c->hub->conns, c);
  if (--c->hub->conn_count == 0) uv_unref((uv_handle_t *)&c->hub->poll);
  addon_close(c->hub->addon, (uv_handle_t *)&c->timer, conn_free);
  return l;
}

/* Its listener's share of an unlinked connection's end (the next client served, or the drain). */
static void conn_left(listener_t *l, int handed_off) {
  l->native--;
  if (!handed_off) slot_freed(l);
  listener_left(l);
}

static void conn_release(conn_t *c) {
  int handed_off = c->handed_off;
  conn_left(conn_unlink(c), handed_off);
}

/* Done once the socket is closed and the program (if any) reaped with its pipes closed. */
static void maybe_done(conn_t *c) {
  double *r = c->hub->record;
  if (c->finished || c->sock.fd >= 0) return;
  if (c->spawned && !c->child_done) return;
  c->state = S_CLOSED;
  close_stdin(c);
  if (r && c->js) {
    int known = c->spawned && c->reaped && c->status_known;
    r[REC_PID] = c->spawned ? c->pid : -1;
    r[REC_CODE] = -1;
    r[REC_SIGNAL] = 0;
    if (known && WIFSIGNALED(c->status)) r[REC_SIGNAL] = WTERMSIG(c->status);
    else if (known && WIFEXITED(c->status)) r[REC_CODE] = WEXITSTATUS(c->status);
    else if (c->spawned && c->reaped) r[REC_CODE] = 0;
    r[REC_REASON] = c->reason ? c->reason : c->stop_reason;
    r[REC_ERROR] = c->error;
    r[REC_BYTES_IN] = c->bytes_in;
    r[REC_BYTES_OUT] = c->bytes_out;
    r[REC_USER] = c->spawned && c->reaped && !c->exec_failed && c->status_known ? c->user_us : -1;
    r[REC_SYSTEM] = c->spawned && c->reaped && !c->exec_failed && c->status_known ? c->system_us : -1;
    r[REC_WALL] = c->spawned && c->reaped && !c->exec_failed ? c->wall_ms : -1;
    r[REC_PEER_PID] = c->peer[0];
    r[REC_PEER_UID] = c->peer[1];
    r[REC_PEER_GID] = c->peer[2];
    r[REC_ERRNO] = c->socket_errno;
  }
  {
    /* JS records the end before its Server may learn (EV_DRAINED) that the last one ended. */
    listener_t *l = conn_unlink(c);
    if (c->js) hub_call(c->hub, EV_CLOSED, c->id, c->listener_id, NULL, NULL, 0);
    conn_left(l, 0);
  }
}

static void dispatch(watch_t *w, uint32_t events) {
  conn_t *c = w->c;
  if (c->finished) return;
  switch (w->kind) {
    case W_SOCKET:
      if (c->state == S_REPLYING && c->shut_done && (events & EPOLLHUP)) {
        /* Both directions are shut (ours, then the client's close): nothing to read for. */
        c->client_eof = 1;
        close_socket(c);
        break;
      }
      if ((events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) && !(w->mask & EPOLLIN) &&
          c->state == S_RUNNING) {
        /* The client hung up while its stdin was not read (see update). */
        if (!c->stop_reason) c->stop_reason = R_HANGUP;
        abandon(c, E_CLIENT_EOF);
        break;
      }
      if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && (w->mask & EPOLLIN)) on_socket_readable(c);
      if (w->fd >= 0 && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && c->outq_len > c->outq_off) {
        on_socket_writable(c);
      }
      break;
    case W_STDOUT:
    case W_STDERR:
      w->mask = 0; /* its event disarmed it (one-shot) */
      on_pipe_readable(c, w->kind == W_STDOUT ? 0 : 1, events);
      break;
    case W_REPORT:
      w->mask = 0;
      read_report(c);
      if (!c->program_pid) {
        long pid = 0;
        if (report_field(c, "pid", &pid) && pid > 0) c->program_pid = (pid_t)pid;
      }
      if (c->report.fd < 0) maybe_child_done(c);
      break;
    case W_PIDFD:
      w->mask = 0;
      spawn_reap(c->child); /* (when it has not exited after all, update() re-arms it) */
      break;
    case W_STDIN:
      on_stdin_writable(c);
      break;
  }
  if (c->finished) return;
  update(c);
  rearm(c);
  maybe_done(c);
}

static void on_hub(uv_poll_t *handle, int status, int events) {
  hub_t *h = handle->data;
  struct epoll_event ev[MAX_EVENTS];
  int n, i;
  (void)status;
  (void)events;
  do n = epoll_wait(h->epfd, ev, MAX_EVENTS, 0);
  while (n < 0 && errno == EINTR);
  for (i = 0; i < n; i++) {
    watch_t *w = ev[i].data.ptr;
    if (w->fd >= 0) dispatch(w, ev[i].events);
  }
}

/* ---- accepting --------------------------------------------------------------------------- */

static void on_listen_readable(uv_poll_t *handle, int status, int events);

static void on_accept_retry(uv_timer_t *timer) {
  listener_t *l = timer->data;
  if (!l->closing) uv_poll_start(&l->poll, UV_READABLE, on_listen_readable);
}

static void conn_start(listener_t *l, int fd);

/* Serves the client now, queues it for a slot, or closes it (all slots and the queue full). */
static void place(listener_t *l, int fd) {
  if (l->active < l->max_conns) {
    conn_start(l, fd);
  } else if (l->q_len < l->backlog) {
    l->queue[(l->q_head + l->q_len++) % l->backlog] = fd;
  } else {
    close(fd);
  }
}

/* A slot is free: the next queued client is served in it. */
static void slot_freed(listener_t *l) {
  l->active--;
  while (!l->closing && l->q_len > 0 && l->active < l->max_conns) {
    int fd = l->queue[l->q_head];
    l->q_head = (l->q_head + 1) % l->backlog;
    l->q_len--;
    conn_start(l, fd);
  }
}

static void listener_free(listener_t *l) {
  if (!l->detached) LIST_REMOVE(l->hub->listeners, l);
  free(l->reaper);
  free(l->queue);
  free(l);
}

/* A connection of `l` has ended: an unlistened listener's last one tells JS, and frees it. */
static void listener_left(listener_t *l) {
  if (!l->closing || l->native > 0) return;
  if (l->want_events) {
    l->want_events = 0; /* once */
    hub_call(l->hub, EV_DRAINED, 0, l->id, NULL, NULL, 0);
  }
  if (l->handles == 0) listener_free(l); /* its handles are closed already */
}

static void on_listen_readable(uv_poll_t *handle, int status, int events) {
  listener_t *l = (listener_t *)handle;
  int count = 0;
  (void)status;
  (void)events;
  while (count < ACCEPT_BATCH && !l->closing) {
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      count++;
      place(l, fd);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      /* Out of descriptors: wait a little rather than spin on a readable socket. */
      uv_poll_stop(&l->poll);
      uv_timer_start(&l->retry, on_accept_retry, ACCEPT_RETRY_MS, 0);
    }
    break;
  }
}

/* ---- JS calls ---------------------------------------------------------------------------- */

static void hub_closed(uv_handle_t *handle) {
  hub_t *h = handle->data;
  addon_t *a = h->addon;
  close(h->epfd);
  free(h->rbuf);
  free(h);
  addon_closed(a);
}

/*
 * connInit(onEvent: (kind, id, extra) => string | undefined, record: Float64Array(REC_FIELDS),
 *          signalNames: string[] (index: signal number; '' for none)) — once per environment.
 */
napi_value js_conn_init(napi_env env, napi_callback_info info) {
  size_t argc = 3, length = 0;
  napi_value args[3];
  addon_t *a = NULL;
  hub_t *h;
  napi_typedarray_type type;
  void *data = NULL;
  uint32_t names = 0, i;
  napi_get_instance_data(env, (void **)&a);
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (!a || argc < 3 ||
      napi_get_typedarray_info(env, args[1], &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_float64_array || length < REC_FIELDS ||
      napi_get_array_length(env, args[2], &names) != napi_ok) {
    napi_throw_type_error(env, NULL, "connInit: expected (onEvent, Float64Array, names) after init");
    return NULL;
  }
  if (a->conns) {
    napi_throw_error(env, NULL, "connInit: called twice");
    return NULL;
  }
  h = calloc(1, sizeof *h);
  if (!h || !(h->rbuf = malloc(PIPE_READ_SIZE))) {
    free(h);
    napi_throw_error(env, "ENOMEM", "connInit: out of memory");
    return NULL;
  }
  h->addon = a;
  h->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (h->epfd < 0 || uv_poll_init(a->loop, &h->poll, h->epfd) != 0) {
    if (h->epfd >= 0) close(h->epfd);
    free(h->rbuf);
    free(h);
    napi_throw_error(env, "EMFILE", "connInit: cannot create an epoll set");
    return NULL;
  }
  h->poll.data = h;
  uv_unref((uv_handle_t *)&h->poll); /* the listeners and connections hold the loop */
  uv_poll_start(&h->poll, UV_READABLE, on_hub);
  napi_create_reference(env, args[0], 1, &h->on_event);
  napi_create_reference(env, args[1], 1, &h->record_ref);
  h->record = data;
  for (i = 1; i < names && i < 65; i++) {
    napi_value v;
    size_t len = 0;
    char name[32];
    napi_get_element(env, args[2], i, &v);
    if (napi_get_value_string_utf8(env, v, name, sizeof name, &len) == napi_ok && len > 0) {
      h->signal_names[i] = strdup(name);
    }
  }
  a->conns = h;
  return NULL;
}

/* connListen(path, backlog) → a listening socket's descriptor, or -errno (the caller sets the umask). */
napi_value js_conn_listen(napi_env env, napi_callback_info info) {
  size_t argc = 2, length = 0;
  napi_value args[2], result;
  struct sockaddr_un address;
  int32_t backlog = 0;
  int fd, error = 0;
  /* One byte more than sun_path: a path of exactly 107 bytes (and its NUL) fits; 108 does not. */
  char path[sizeof address.sun_path + 1];
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  memset(&address, 0, sizeof address);
  address.sun_family = AF_UNIX;
  if (argc < 2 || napi_get_value_string_utf8(env, args[0], path, sizeof path, &length) != napi_ok ||
      napi_get_value_int32(env, args[1], &backlog) != napi_ok) {
    napi_throw_type_error(env, NULL, "connListen: expected (path, backlog)");
    return NULL;
  }
  if (length >= sizeof address.sun_path) {
    napi_create_int32(env, -ENAMETOOLONG, &result);
    return result;
  }
  memcpy(address.sun_path, path, length + 1);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) error = errno;
  else if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(fd, backlog) != 0) {
    error = errno;
    close(fd);
  }
  napi_create_int32(env, error ? -error : fd, &result);
  return result;
}

static void listener_closed(uv_handle_t *handle) {
  listener_t *l = handle->data;
  addon_t *a = l->addon;
  if (--l->handles == 0 && l->native == 0) listener_free(l);
  addon_closed(a);
}

static listener_t *listener_of(hub_t *h, napi_env env, napi_value value) {
  int32_t id = 0;
  listener_t *l;
  if (!h || napi_get_value_int32(env, value, &id) != napi_ok) return NULL;
  for (l = h->listeners; l; l = l->next) {
    if (l->id == id && !l->closing) return l;
  }
  return NULL;
}

/*
 * connAccept(fd, id, options: number[13]): accepts on the listening `fd` (owned from now on),
 * serving each client with options = [timeoutMs, requestTimeoutMs, killTimeoutMs, maxArgs,
 * maxArgLength, maxArgBytes, maxDataLength, wantPeer, direct, processGroup, exitGraceMs,
 * maxConnections, backlog]. `direct`: the policy is sockexec's and nothing needs the argv in
 * JS (no audit log) — argv is then run as it is, JS not asked.
 */
#define ACCEPT_OPTIONS 13
napi_value js_conn_accept(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value args[4];
  napi_valuetype reaper_type = napi_undefined;
  char reaper[4096] = "";
  size_t reaper_len = 0;
  hub_t *h = hub_of(env);
  int32_t fd = -1, id = 0;
  double o[ACCEPT_OPTIONS] = {0};
  uint32_t length = 0, i;
  listener_t *l;
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (!h || argc < 3 || napi_get_value_int32(env, args[0], &fd) != napi_ok || fd < 0 ||
      napi_get_value_int32(env, args[1], &id) != napi_ok ||
      napi_get_array_length(env, args[2], &length) != napi_ok || length < ACCEPT_OPTIONS) {
    napi_throw_type_error(env, NULL, "connAccept: expected (fd, id, options[13], reaper?) after connInit");
    return NULL;
  }
  if (argc >= 4) napi_typeof(env, args[3], &reaper_type);
  if (reaper_type == napi_string &&
      (napi_get_value_string_utf8(env, args[3], reaper, sizeof reaper, &reaper_len) != napi_ok ||
       reaper_len == 0 || reaper_len >= sizeof reaper - 1)) {
    napi_throw_type_error(env, NULL, "connAccept: the reaper's path is too long");
    return NULL;
  }
  for (i = 0; i < ACCEPT_OPTIONS; i++) {
    napi_value v;
    napi_get_element(env, args[2], i, &v);
    if (napi_get_value_double(env, v, &o[i]) != napi_ok || !(o[i] >= 0)) {
      napi_throw_type_error(env, NULL, "connAccept: options must be numbers >= 0");
      return NULL;
    }
  }
  l = calloc(1, sizeof *l);
  if (!l || !(l->queue = malloc(sizeof *l->queue * (o[12] > 0 ? (size_t)o[12] : 1)))) {
    free(l);
    napi_throw_error(env, "ENOMEM", "connAccept: out of memory");
    return NULL;
  }
  l->hub = h;
  l->addon = h->addon;
  l->fd = fd;
  l->id = id;
  l->timeout_ms = o[0];
  l->request_timeout_ms = o[1];
  l->kill_timeout = (uint32_t)o[2];
  l->limits.max_args = (uint64_t)o[3];
  l->limits.max_arg_length = (uint64_t)o[4];
  l->limits.max_arg_bytes = (uint64_t)o[5];
  l->limits.max_data_length = (uint64_t)o[6];
  l->want_peer = o[7] != 0;
  l->direct = o[8] != 0;
  l->process_group = o[9] != 0;
  l->exit_grace = (uint32_t)o[10];
  l->max_conns = (uint32_t)o[11];
  l->backlog = (uint32_t)o[12];
  if (reaper_len > 0 && !(l->reaper = strdup(reaper))) {
    free(l->queue);
    free(l);
    napi_throw_error(env, "ENOMEM", "connAccept: out of memory");
    return NULL;
  }
  if (uv_poll_init(h->addon->loop, &l->poll, fd) != 0) {
    free(l->reaper);
    free(l->queue);
    free(l);
    napi_throw_error(env, "EBADF", "connAccept: cannot watch the descriptor");
    return NULL;
  }
  l->poll.data = l;
  uv_timer_init(h->addon->loop, &l->retry);
  l->retry.data = l;
  /* Ref'd: while it is armed it stands in for the stopped (ref'd) poll, so an accept backing
   * off at the descriptor limit keeps the daemon's loop alive when no connection does. */
  uv_poll_start(&l->poll, UV_READABLE, on_listen_readable);
  LIST_ADD(h->listeners, l);
  return NULL;
}

static void conn_shutdown(conn_t *c);

/* Stops accepting: the listening socket and the queued clients closed, the served shut down. */
static void listener_close(listener_t *l, int shut_down) {
  conn_t *c, *next;
  if (l->closing) return;
  l->closing = 1;
  l->handles = 2;
  /* Closed now, not at the close callback: nobody can connect once close() has returned. */
  uv_poll_stop(&l->poll);
  close(l->fd);
  l->fd = -1;
  while (l->q_len > 0) {
    close(l->queue[l->q_head]);
    l->q_head = (l->q_head + 1) % l->backlog;
    l->q_len--;
  }
  addon_close(l->hub->addon, (uv_handle_t *)&l->poll, listener_closed);
  addon_close(l->hub->addon, (uv_handle_t *)&l->retry, listener_closed);
  if (!shut_down) return;
  for (c = l->hub->conns; c; c = next) {
    next = c->next; /* (a shut-down connection may end at once: unlinked) */
    if (c->listener == l) conn_shutdown(c);
  }
}

/*
 * connUnlisten(id) → how many of its connections are still served natively: stops accepting,
 * closes the listening socket and the queued clients, and shuts the served ones down
 * (Connection.shutdown). When some remain, onEvent(EV_DRAINED) tells when the last has ended.
 */
napi_value js_conn_unlisten(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, result;
  hub_t *h = hub_of(env);
  listener_t *l;
  uint32_t left = 0;
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  if (!h || argc < 1) {
    napi_throw_type_error(env, NULL, "connUnlisten: expected (id)");
    return NULL;
  }
  if ((l = listener_of(h, env, arg))) {
    l->want_events = 1;
    listener_close(l, 1);
    left = l->native;
    if (left == 0) l->want_events = 0;
  }
  napi_create_uint32(env, left, &result);
  return result;
}

/* connRelease(listenerId): a handed-off client's JS Connection has ended: its slot is free. */
napi_value js_conn_release(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  listener_t *l;
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  if (argc >= 1 && (l = listener_of(hub_of(env), env, arg)) && l->active > l->native) {
    slot_freed(l);
  }
  return NULL;
}

/* connStats(listenerId) → [served natively, queued] (0s once unlistened). */
napi_value js_conn_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, result, v;
  listener_t *l;
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  l = argc >= 1 ? listener_of(hub_of(env), env, arg) : NULL;
  napi_create_array_with_length(env, 2, &result);
  napi_create_uint32(env, l ? l->native : 0, &v);
  napi_set_element(env, result, 0, v);
  napi_create_uint32(env, l ? l->q_len : 0, &v);
  napi_set_element(env, result, 1, v);
  return result;
}

static conn_t *conn_of(hub_t *h, napi_env env, napi_value value) {
  int32_t id = 0;
  conn_t *c;
  if (!h || napi_get_value_int32(env, value, &id) != napi_ok) return NULL;
  for (c = h->conns; c; c = c->next) {
    if (c->id == id) return c;
  }
  return NULL;
}

/* Serves the accepted client `fd` (owned from now on) in a slot of `l`. */
static void conn_start(listener_t *l, int fd) {
  hub_t *h = l->hub;
  conn_t *c = calloc(1, sizeof *c);
  if (!c) {
    close(fd);
    return;
  }
  l->active++;
  l->native++;
  c->hub = h;
  c->addon = h->addon;
  c->listener = l;
  c->listener_id = l->id;
  /* 1 to INT32_MAX, then 1 again: a signed ++ past the top is undefined behaviour. */
  h->last_id = h->last_id == INT32_MAX ? 1 : h->last_id + 1;
  c->id = h->last_id;
  c->sock = (watch_t){c, fd, W_SOCKET, 0, 0, 0};
  c->out[0] = (watch_t){c, -1, W_STDOUT, 0, 1, 0};
  c->out[1] = (watch_t){c, -1, W_STDERR, 0, 1, 0};
  c->in = (watch_t){c, -1, W_STDIN, 0, 0, 0};
  c->pidw = (watch_t){c, -1, W_PIDFD, 0, 1, 0};
  c->report = (watch_t){c, -1, W_REPORT, 0, 1, 0};
  c->reaper = l->reaper;
  c->kill_timeout = l->kill_timeout;
  c->direct = l->direct;
  c->process_group = l->process_group;
  c->exit_grace = l->exit_grace;
  c->limits = l->limits;
  c->peer[0] = c->peer[1] = c->peer[2] = -1;
  if (l->want_peer) {
    struct ucred cred;
    socklen_t size = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &size) == 0) {
      c->peer[0] = cred.pid;
      c->peer[1] = cred.uid;
      c->peer[2] = cred.gid;
    }
  }
  request_init(&c->req, &c->limits);
  uv_timer_init(h->addon->loop, &c->timer);
  LIST_ADD(h->conns, c);
  if (h->conn_count++ == 0) uv_ref((uv_handle_t *)&h->poll);
  c->accepted_at = uv_now(h->addon->loop);
  if (l->timeout_ms > 0) c->t_deadline = after_ms(c, (uint64_t)l->timeout_ms);
  if (l->request_timeout_ms > 0) c->t_request = after_ms(c, (uint64_t)l->request_timeout_ms);
  c->state = S_READING;
  update(c);
  rearm(c);
  if (c->sock.mask == 0) { /* not watchable (not a socket?): dropped */
    abandon(c, E_INTERNAL);
    maybe_done(c);
  }
}

/*
 * connSpawn(id, ...PackedSpawn (9), exitGraceMs) → 0 when the program started (its pid in
 * out[0] of the Int32Array given last), else the errno of what failed (nothing was started:
 * the caller hands the client off, whose Connection reports it). Only while deciding.
 */
napi_value js_conn_spawn(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value args[12], result;
  hub_t *h = hub_of(env);
  conn_t *c;
  uint32_t exit_grace = 0;
  int32_t *out = NULL, flags = 0;
  size_t out_length = 0;
  napi_typedarray_type type;
  spawn_watch_t watch = {-1, NULL};
  int error;
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 12 || !(c = conn_of(h, env, args[0])) || c->state != S_DECIDING ||
      napi_get_value_uint32(env, args[10], &exit_grace) != napi_ok ||
      napi_get_typedarray_info(env, args[11], &type, &out_length, (void **)&out, NULL, NULL) !=
          napi_ok ||
      type != napi_int32_array) {
    napi_throw_type_error(env, NULL, "connSpawn: expected (id, ...packed, exitGraceMs, out) while deciding");
    return NULL;
  }
  napi_get_value_int32(env, args[6], &flags);
  if (c->reaper) { /* a contained listener's requests are all its own (nativePathFor) */
    napi_create_int32(env, EINVAL, &result);
    return result;
  }
  error = spawn_packed(env, h->addon, args + 1, NULL, out, out_length, c->kill_timeout, 80, 24,
                       on_child_exit, c, &watch);
  if (error < 0) return NULL; /* thrown */
  if (error == 0) {
    c->exit_grace = exit_grace;
    started(c, out, (flags & FLAG_PROCESS_GROUP) != 0, &watch);
  }
  napi_create_int32(env, error, &result);
  return result;
}

/*
 * connHandoff(id) → [fd, Buffer]: JavaScript serves this client from now on — its socket,
 * and every byte read from it so far. Only while deciding (nothing was spawned).
 */
napi_value js_conn_handoff(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, result, fd_value, bytes;
  hub_t *h = hub_of(env);
  conn_t *c;
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  if (argc < 1 || !(c = conn_of(h, env, arg)) || c->state != S_DECIDING) {
    napi_throw_type_error(env, NULL, "connHandoff: expected (id) while deciding");
    return NULL;
  }
  watch_set(h, &c->sock, 0);
  napi_create_int32(env, c->sock.fd, &fd_value);
  napi_create_buffer_copy(env, c->buf_len, c->buf ? c->buf : "", NULL, &bytes);
  napi_create_array_with_length(env, 2, &result);
  napi_set_element(env, result, 0, fd_value);
  napi_set_element(env, result, 1, bytes);
  c->sock.fd = -1; /* JavaScript's now */
  c->state = S_CLOSED;
  c->handed_off = 1;
  conn_release(c);
  return result;
}

/* The daemon shuts down (Connection.shutdown). */
static void conn_shutdown(conn_t *c) {
  if (c->state == S_READING) {
    if (!c->stop_reason) c->stop_reason = R_SHUTDOWN;
    close_socket(c);
    c->state = S_CLOSED;
  } else if (c->state == S_RUNNING) {
    if (!c->stop_reason) c->stop_reason = R_SHUTDOWN;
    terminate(c);
  }
  c->drop_on_full = 1;
  stop_drop_update(c);
  update(c);
  rearm(c);
  maybe_done(c);
}

/*
 * connParse(chunks: Buffer[], maxArgs, maxArgLength, maxArgBytes) → the request parser alone,
 * for the fuzz test: { result: 'more' | 'complete' | 'handoff', args?: Buffer, used: number }.
 */
napi_value js_conn_parse(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value args[4], result, value;
  uint32_t count = 0, i;
  double numbers[3] = {0};
  limits_t limits;
  request_t r;
  int state = REQ_MORE;
  size_t total = 0;
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 4 || napi_get_array_length(env, args[0], &count) != napi_ok) {
    napi_throw_type_error(env, NULL, "connParse: expected (chunks, maxArgs, maxArgLength, maxArgBytes)");
    return NULL;
  }
  for (i = 0; i < 3; i++) napi_get_value_double(env, args[1 + i], &numbers[i]);
  limits.max_args = (uint64_t)numbers[0];
  limits.max_arg_length = (uint64_t)numbers[1];
  limits.max_arg_bytes = (uint64_t)numbers[2];
  limits.max_data_length = 1u << 30;
  request_init(&r, &limits);
  for (i = 0; i < count && state == REQ_MORE; i++) {
    void *data = NULL;
    size_t length = 0, used = 0;
    napi_get_element(env, args[0], i, &value);
    if (napi_get_buffer_info(env, value, &data, &length) != napi_ok) continue;
    state = request_feed(&r, &limits, data, length, &used);
    total += used;
  }
  napi_create_object(env, &result);
  napi_create_string_utf8(env,
                          state == REQ_MORE ? "more" : state == REQ_COMPLETE ? "complete" : "handoff",
                          NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, result, "result", value);
  napi_create_double(env, (double)total, &value);
  napi_set_named_property(env, result, "used", value);
  if (state == REQ_COMPLETE) {
    napi_create_buffer_copy(env, r.args_len, r.args ? r.args : "", NULL, &value);
    napi_set_named_property(env, result, "args", value);
  }
  free(r.args);
  return result;
}

/* ---- teardown ---------------------------------------------------------------------------- */

void close_all_conns(addon_t *a) {
  hub_t *h = a->conns;
  int i;
  if (!h) return;
  h->tearing = 1;
  while (h->listeners) {
    listener_t *l = h->listeners;
    listener_close(l, 0);
    LIST_REMOVE(h->listeners, l);
    l->detached = 1;
    if (l->native == 0 && l->handles == 0) listener_free(l);
  }
  while (h->conns) {
    conn_t *c = h->conns;
    watch_close(h, &c->sock);
    watch_close(h, &c->out[0]);
    watch_close(h, &c->out[1]);
    watch_close(h, &c->in);
    watch_forget(h, &c->pidw); /* spawn.c's (spawn_teardown has closed or adopted it) */
    conn_release(c);
  }
  while (h->group_kills) {
    group_kill_t *g = h->group_kills;
    LIST_REMOVE(h->group_kills, g);
    addon_close(a, (uv_handle_t *)&g->timer, group_kill_closed);
  }
  for (i = 0; i < 65; i++) free(h->signal_names[i]);
  if (h->on_event) napi_delete_reference(a->env, h->on_event);
  if (h->record_ref) napi_delete_reference(a->env, h->record_ref);
  h->record = NULL;
  a->conns = NULL;
  addon_close(a, (uv_handle_t *)&h->poll, hub_closed);
}
