#ifndef PROCSOCK_CGROUP_H
#define PROCSOCK_CGROUP_H
#include <node_api.h>
napi_value js_cgroup_delegated(napi_env env, napi_callback_info info);
#endif
