/* The daemon's plain-protocol connections served in native code (conn.c). */
#ifndef PROCSOCK_CONN_H
#define PROCSOCK_CONN_H
#include "addon.h"

/* The environment is going away: every connection and listener closed (their children are spawn.c's). */
void close_all_conns(addon_t *a);

/* The request parser, alone (conn.c uses it; the fuzz test drives it through connParse). */
napi_value js_conn_init(napi_env env, napi_callback_info info);
napi_value js_conn_listen(napi_env env, napi_callback_info info);
napi_value js_conn_accept(napi_env env, napi_callback_info info);
napi_value js_conn_unlisten(napi_env env, napi_callback_info info);
napi_value js_conn_release(napi_env env, napi_callback_info info);
napi_value js_conn_stats(napi_env env, napi_callback_info info);
napi_value js_conn_spawn(napi_env env, napi_callback_info info);
napi_value js_conn_handoff(napi_env env, napi_callback_info info);
napi_value js_conn_parse(napi_env env, napi_callback_info info);
#endif
