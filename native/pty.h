/* Pseudo-terminals for PTY mode: the pair spawn() gives a program, and the master's writer (pty.c). */
#ifndef PROCSOCK_PTY_H
#define PROCSOCK_PTY_H
#include "addon.h"

/* Opens a new pair sized columns x rows (raw: in raw mode), both ends O_NOCTTY | O_CLOEXEC: 0, or -1 with errno. */
int pty_open(int columns, int rows, int raw, int *master, int *slave);
/* Stops watching every tty writer and closes it (the environment is going away). */
void close_all_tty_writers(addon_t *a);

napi_value js_tty_writer_open(napi_env env, napi_callback_info info);
napi_value js_tty_write(napi_env env, napi_callback_info info);
napi_value js_tty_wait_writable(napi_env env, napi_callback_info info);
napi_value js_tty_writer_close(napi_env env, napi_callback_info info);
napi_value js_tty_resize(napi_env env, napi_callback_info info);
napi_value js_tty_ref(napi_env env, napi_callback_info info);
napi_value js_tty_eof_char(napi_env env, napi_callback_info info);
#endif
