/* Watching a client socket for its peer's full close while it is not read (hangup.c). */
#ifndef PROCSOCK_HANGUP_H
#define PROCSOCK_HANGUP_H
#include "addon.h"

napi_value js_hangup_watch(napi_env env, napi_callback_info info);
napi_value js_hangup_unwatch(napi_env env, napi_callback_info info);
void close_all_hangup_watches(addon_t *a);
#endif
