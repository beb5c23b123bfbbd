/*
 * Who is on the other end of a Unix socket: SO_PEERCRED gives the pid, uid and gid the
 * peer had when it connected, as the kernel recorded them (not what the peer claims).
 * The daemon's audit log records them; Node has no API for it.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <sys/socket.h>

#include "peercred.h"

static napi_value set_int(napi_env env, napi_value object, const char* name, int64_t value) {
  napi_value number;
  napi_create_int64(env, value, &number);
  napi_set_named_property(env, object, name, number);
  return object;
}

/* peerCredentials(fd) -> { pid, uid, gid } or null when the OS does not tell. */
napi_value js_peer_credentials(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value result;
  int32_t fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "peerCredentials(fd): fd must be a number");
    return NULL;
  }
  struct ucred cred;
  socklen_t length = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0 || length != sizeof cred) {
    napi_get_null(env, &result);
    return result;
  }
  napi_create_object(env, &result);
  set_int(env, result, "pid", cred.pid);
  set_int(env, result, "uid", cred.uid);
  set_int(env, result, "gid", cred.gid);
  return result;
}

/*
 * shutdownWrite(fd) -> 0 or -errno: shutdown(fd, SHUT_WR) now. Node's socket.end() shuts a
 * socket down an event-loop turn or two after its last write has gone; the daemon sends its
 * last reply pair and the end of stream together instead, so a client that polls the moment
 * the last pair arrives already sees the end (lua-resty-exec's LuaSocket mode needs it).
 */
napi_value js_shutdown_write(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, result;
  int32_t fd = -1;
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, arg, &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "shutdownWrite(fd): fd must be a number");
    return NULL;
  }
  napi_create_int32(env, shutdown(fd, SHUT_WR) == 0 ? 0 : -errno, &result);
  return result;
}
