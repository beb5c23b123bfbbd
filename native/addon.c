/*
 * The plumbing every part of the addon shares (addon.h): calling back into JavaScript, and
 * counting the libuv handles being closed so that teardown knows when the last one is done.
 */
#include <stdlib.h>

#include "addon.h"

void addon_call(addon_t *a, napi_ref fn_ref, int argc, const int32_t *values) {
  napi_env env = a->env;
  napi_handle_scope scope;
  napi_value fn, recv, args[4], result;
  int i;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_get_reference_value(env, fn_ref, &fn);
  napi_get_reference_value(env, a->resource, &recv);
  for (i = 0; i < argc && i < 4; i++) napi_create_int32(env, values[i], &args[i]);
  if (napi_make_callback(env, a->async, recv, fn, (size_t)i, args, &result) == napi_pending_exception) {
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_fatal_exception(env, error);
  }
  napi_close_handle_scope(env, scope);
}

void addon_release(addon_t *a) {
  if (--a->owners > 0) return;
  free(a);
}

void addon_close(addon_t *a, uv_handle_t *handle, uv_close_cb done) {
  a->closing++;
  uv_close(handle, done);
}

void addon_closed(addon_t *a) {
  a->closing--;
  /* Tearing down, and this was the last handle: Node may now go on and free the loop. */
  if (a->cleanup_handle && a->closing == 0) {
    napi_remove_async_cleanup_hook(a->cleanup_handle);
    a->cleanup_handle = NULL;
    addon_release(a);
  }
}
