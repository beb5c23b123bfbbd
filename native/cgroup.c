/*
 * Whether a cgroup was delegated by systemd: `Delegate=yes` marks the unit's cgroup with the
 * extended attribute trusted.delegate (user.delegate for a user's service manager) set to
 * "1". Node has no API for extended attributes; the daemon reads this for `--cgroup auto`
 * (src/channel/cgroup.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <string.h>
#include <sys/xattr.h>

#include "cgroup.h"

/* cgroupDelegated(path) -> true (marked), false (not marked), null (cannot be read). */
napi_value js_cgroup_delegated(napi_env env, napi_callback_info info) {
  static const char *const names[] = {"trusted.delegate", "user.delegate"};
  size_t argc = 1, length = 0, i;
  napi_value arg, result;
  char path[4096];
  int unreadable = 0;
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  if (argc < 1 || napi_get_value_string_utf8(env, arg, path, sizeof path, &length) != napi_ok ||
      length == 0 || length >= sizeof path - 1) {
    napi_throw_type_error(env, NULL, "cgroupDelegated(path): path must be a non-empty string");
    return NULL;
  }
  for (i = 0; i < sizeof names / sizeof names[0]; i++) {
    char value[8];
    ssize_t n = getxattr(path, names[i], value, sizeof value);
    if (n == 1 && value[0] == '1') {
      napi_get_boolean(env, true, &result);
      return result;
    }
    if (n < 0 && errno != ENODATA && errno != ENOTSUP) unreadable = 1;
  }
  if (unreadable) napi_get_null(env, &result);
  else napi_get_boolean(env, false, &result);
  return result;
}
