#ifndef PROCSOCK_PEERCRED_H
#define PROCSOCK_PEERCRED_H
#include <node_api.h>
napi_value js_peer_credentials(napi_env env, napi_callback_info info);
napi_value js_shutdown_write(napi_env env, napi_callback_info info);
#endif
