/*
 * Force-included into the glibc prebuilds (scripts/prebuild.mjs): binds the symbols that a
 * newer glibc moved or re-versioned to their old versions, so one binary built on this
 * Debian loads on every glibc from the floor in scripts/native-build.json (2.28, the floor
 * of Node 20's own Linux binaries). The prebuild script fails if any other symbol needs a
 * newer version, so a new one is added here rather than shipped.
 */
#if defined(__x86_64__)
#define PROCSOCK_GLIBC_FLOOR "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define PROCSOCK_GLIBC_FLOOR "GLIBC_2.17"
#endif
#ifdef PROCSOCK_GLIBC_FLOOR
/* pthread_sigmask was re-versioned; dlopen/dladdr (libdl) and pthread_create/pthread_once
 * (libpthread) moved into libc in 2.34, which keeps their old versions as compat symbols. */
__asm__(".symver pthread_sigmask,pthread_sigmask@" PROCSOCK_GLIBC_FLOOR);
__asm__(".symver dlopen,dlopen@" PROCSOCK_GLIBC_FLOOR);
__asm__(".symver dladdr,dladdr@" PROCSOCK_GLIBC_FLOOR);
__asm__(".symver pthread_create,pthread_create@" PROCSOCK_GLIBC_FLOOR);
__asm__(".symver pthread_once,pthread_once@" PROCSOCK_GLIBC_FLOOR);
#endif
