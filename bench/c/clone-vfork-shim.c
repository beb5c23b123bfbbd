/*
 * Measurement only (bench/spawn-callgrind.mjs): valgrind cannot run a clone(CLONE_VM) child
 * that is not a thread, but runs a vfork-like one (it forks then). LD_PRELOADed, this adds
 * CLONE_VFORK to such clone() calls — the addon's spawn; threads (CLONE_THREAD) are untouched.
 *   cc -O2 -shared -fPIC -o /tmp/clone-vfork-shim.so bench/c/clone-vfork-shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sched.h>
#include <stdarg.h>

int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...) {
  static int (*real)(int (*)(void *), void *, int, void *, ...);
  va_list ap;
  void *parent_tid, *tls, *child_tid;
  va_start(ap, arg);
  parent_tid = va_arg(ap, void *);
  tls = va_arg(ap, void *);
  child_tid = va_arg(ap, void *);
  va_end(ap);
  if (!real) real = (int (*)(int (*)(void *), void *, int, void *, ...))dlsym(RTLD_NEXT, "clone");
  if ((flags & CLONE_VM) && !(flags & CLONE_THREAD)) flags |= CLONE_VFORK;
  return real(fn, stack, flags, arg, parent_tid, tls, child_tid);
}
