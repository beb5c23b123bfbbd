/*
 * Pseudo-terminals for PTY mode: the pair a program gets as its terminal, its window size,
 * and writing to the master without blocking the event loop.
 *
 * spawn() (spawn.c) opens the pair with pty_open when asked for a terminal: the child gets
 * the slave on 0 and 1 (and 2 when stderr goes there too), starts a session of its own and
 * makes the slave its controlling terminal; JS gets the master twice — one descriptor read
 * by pipe.c like any output pipe, one written through a tty writer below (two descriptors
 * of one open file, because libuv watches a descriptor with one handle only). Both ends
 * are opened O_NOCTTY: neither may become the controlling terminal of this process (a
 * daemon has none, and opening a terminal would give it one).
 *
 * Why a writer of our own: Node cannot write to a pty master without blocking. A
 * net.Socket refuses a terminal descriptor, and a tty.WriteStream of a master falls back
 * to blocking writes (libuv cannot reopen a master non-blocking), so a program that does
 * not read its input would stall the whole event loop. The writer makes one non-blocking
 * write(2) per call and, when the terminal's input queue is full, tells JS once it has room
 * again (a uv_poll for writability), so stdin has the same back-pressure as on a pipe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "pty.h"
#include "watch.h"

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

struct tty_writer {
  watched_t w;          /* first (watch.h) */
  napi_ref on_writable; /* JS function () => void */
  tty_writer_t *prev, *next;
};

/* The slave of `master`: TIOCGPTPEER where the kernel has it (no path to look up), else its name. */
static int open_slave(int master) {
  char name[128];
  int fd = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd >= 0 || (errno != EINVAL && errno != ENOTTY)) return fd;
  if (ptsname_r(master, name, sizeof name) != 0) return -1;
  return open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
}

static int set_window(int fd, int columns, int rows) {
  struct winsize size = {0};
  if (columns <= 0 || rows <= 0 || columns > 0xffff || rows > 0xffff) {
    errno = EINVAL;
    return -1;
  }
  size.ws_col = (unsigned short)columns;
  size.ws_row = (unsigned short)rows;
  return ioctl(fd, TIOCSWINSZ, &size);
}

/*
 * Opens a pseudo-terminal pair sized `columns` x `rows`, both ends close-on-exec and neither
 * our controlling terminal. The line discipline is the kernel's default for a new terminal
 * (echo, canonical input, ^C/^D/^Z, output \n as \r\n), plus IUTF8 so that erasing a
 * character in canonical mode erases a whole UTF-8 character; or, with `raw`, raw mode
 * (cfmakeraw: no echo, no lines, no signal characters, no translation of \r or \n), set
 * before the child runs so that not one byte goes through the other discipline first.
 * Returns 0, or -1 with errno.
 */
int pty_open(int columns, int rows, int raw, int *master_out, int *slave_out) {
  struct termios modes;
  int saved;
  int slave = -1;
  int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return -1;
  if (unlockpt(master) != 0 || (slave = open_slave(master)) < 0) goto fail;
  if (tcgetattr(slave, &modes) != 0) goto fail;
  if (raw) cfmakeraw(&modes);
  modes.c_iflag |= IUTF8;
  if (tcsetattr(slave, TCSANOW, &modes) != 0) goto fail;
  if (set_window(master, columns, rows) != 0) goto fail;
  *master_out = master;
  *slave_out = slave;
  return 0;

fail:
  saved = errno;
  if (slave >= 0) close(slave);
  close(master);
  errno = saved;
  return -1;
}

/* ---- the writer ------------------------------------------------------------------------ */

static tty_writer_t *writer_of(napi_env env, napi_value value) {
  void *data = NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok) return NULL;
  return data;
}

/* The writer named by a call's only argument; NULL (a TypeError thrown) when there is none. */
static tty_writer_t *only_writer_arg(napi_env env, napi_callback_info info, const char *usage) {
  size_t argc = 1;
  napi_value arg;
  tty_writer_t *w = NULL;
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  if (argc < 1 || !(w = writer_of(env, arg))) napi_throw_type_error(env, NULL, usage);
  return w;
}

static void on_writable(uv_poll_t *handle, int status, int events) {
  tty_writer_t *w = (tty_writer_t *)handle;
  (void)status;
  (void)events;
  /* Once: JS writes what it holds and asks again if the queue fills up again. */
  uv_poll_stop(handle);
  addon_call(w->w.addon, w->on_writable, 0, NULL);
}

static void close_writer(tty_writer_t *w) {
  addon_t *a = w->w.addon;
  LIST_REMOVE(a->writers, w);
  /* The reference is deleted here, while the environment is alive (not in the close callback). */
  napi_delete_reference(a->env, w->on_writable);
  w->on_writable = NULL;
  watched_close(&w->w);
}

void close_all_tty_writers(addon_t *a) {
  while (a->writers) close_writer(a->writers);
}

/*
 * ttyWriterOpen(fd: number, onWritable: () => void) → handle: takes a master descriptor over
 * (closed by ttyWriterClose, or at teardown). onWritable is called once after each
 * ttyWaitWritable(handle), when a write would no longer fail with EAGAIN.
 */
napi_value js_tty_writer_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2], result;
  napi_valuetype type = napi_undefined;
  addon_t *a = NULL;
  int32_t fd = -1;
  tty_writer_t *w;
  napi_get_instance_data(env, (void **)&a);
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc >= 2) napi_typeof(env, args[1], &type);
  if (!a || argc < 2 || napi_get_value_int32(env, args[0], &fd) != napi_ok || fd < 0 ||
      type != napi_function) {
    napi_throw_type_error(env, NULL, "ttyWriterOpen: expected (fd, onWritable) after init");
    return NULL;
  }
  w = watched_new(env, a, fd, sizeof *w, "ttyWriterOpen");
  if (!w) return NULL;
  napi_create_reference(env, args[1], 1, &w->on_writable);
  LIST_ADD(a->writers, w);
  napi_create_external(env, w, NULL, NULL, &result);
  return result;
}

/*
 * ttyWrite(handle, data: Uint8Array, offset: number) → bytes written from data[offset..],
 * or -errno (-EAGAIN: the terminal's input queue is full; ttyWaitWritable, then again).
 */
napi_value js_tty_write(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3], result;
  tty_writer_t *w;
  napi_typedarray_type type;
  void *data = NULL;
  size_t length = 0;
  uint32_t offset = 0;
  ssize_t n;
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 3 || !(w = writer_of(env, args[0])) ||
      napi_get_typedarray_info(env, args[1], &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array || napi_get_value_uint32(env, args[2], &offset) != napi_ok ||
      offset > length) {
    napi_throw_type_error(env, NULL, "ttyWrite: expected (handle, Uint8Array, offset)");
    return NULL;
  }
  do n = write(w->w.fd, (char *)data + offset, length - offset);
  while (n < 0 && errno == EINTR);
  napi_create_int32(env, n < 0 ? -errno : (int32_t)n, &result);
  return result;
}

/* ttyWaitWritable(handle): calls onWritable once the descriptor can be written again. */
napi_value js_tty_wait_writable(napi_env env, napi_callback_info info) {
  tty_writer_t *w = only_writer_arg(env, info, "ttyWaitWritable: expected (handle)");
  if (!w) return NULL;
  uv_poll_start(&w->w.poll, UV_WRITABLE, on_writable);
  return NULL;
}

/*
 * ttyRef(handle, on: boolean): whether a write waiting for room keeps the event loop alive
 * (as a socket's ref()); an idle writer holds nothing either way.
 */
napi_value js_tty_ref(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  tty_writer_t *w;
  bool on = true;
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 2 || !(w = writer_of(env, args[0])) ||
      napi_get_value_bool(env, args[1], &on) != napi_ok) {
    napi_throw_type_error(env, NULL, "ttyRef: expected (handle, on)");
    return NULL;
  }
  if (on) uv_ref((uv_handle_t *)&w->w.poll);
  else uv_unref((uv_handle_t *)&w->w.poll);
  return NULL;
}

/* ttyWriterClose(handle): stops watching and closes the descriptor; the handle is dead after it. */
napi_value js_tty_writer_close(napi_env env, napi_callback_info info) {
  tty_writer_t *w = only_writer_arg(env, info, "ttyWriterClose: expected (handle)");
  if (!w) return NULL;
  close_writer(w);
  return NULL;
}

/*
 * ttyResize(handle, columns, rows) → 0 or -errno: the new window size; the kernel sends
 * SIGWINCH to the terminal's foreground process group.
 */
napi_value js_tty_resize(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value args[3], result;
  tty_writer_t *w;
  int32_t columns = 0, rows = 0;
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 3 || !(w = writer_of(env, args[0])) ||
      napi_get_value_int32(env, args[1], &columns) != napi_ok ||
      napi_get_value_int32(env, args[2], &rows) != napi_ok) {
    napi_throw_type_error(env, NULL, "ttyResize: expected (handle, columns, rows)");
    return NULL;
  }
  napi_create_int32(env, set_window(w->w.fd, columns, rows) == 0 ? 0 : -errno, &result);
  return result;
}

/*
 * ttyEofChar(handle) → the terminal's end-of-file character as it is now (VEOF: ^D unless the
 * program changed it), or -errno when the modes cannot be read.
 */
napi_value js_tty_eof_char(napi_env env, napi_callback_info info) {
  napi_value result;
  struct termios modes;
  tty_writer_t *w = only_writer_arg(env, info, "ttyEofChar: expected (handle)");
  if (!w) return NULL;
  napi_create_int32(env, tcgetattr(w->w.fd, &modes) == 0 ? (int32_t)modes.c_cc[VEOF] : -errno,
                    &result);
  return result;
}
