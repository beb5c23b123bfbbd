/* Output pipes read by the addon, and the pipe calls JS makes directly (pipe.c). */
#ifndef PROCSOCK_PIPE_H
#define PROCSOCK_PIPE_H
#include "addon.h"

/* Stops watching every open pipe and closes it (the environment is going away). */
void close_all_readers(addon_t *a);

napi_value js_pipe_open(napi_env env, napi_callback_info info);
napi_value js_pipe_read(napi_env env, napi_callback_info info);
napi_value js_pipe_close(napi_env env, napi_callback_info info);
napi_value js_pipe_ref(napi_env env, napi_callback_info info);
napi_value js_set_read_buffer(napi_env env, napi_callback_info info);
napi_value js_read_available(napi_env env, napi_callback_info info);
napi_value js_set_pipe_size(napi_env env, napi_callback_info info);
#endif
