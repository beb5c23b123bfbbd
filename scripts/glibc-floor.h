/*
 * Force-included into the glibc prebuilds (scripts/prebuild.mjs): binds the symbols that a
 * newer glibc moved or re-versioned to their old versions, so one binary built on this
 * Debian loads on every glibc from the floor in scripts/native-build.json (2.28, the floor
 * of Node 20's own Linux binaries). The prebuild script fails if any other symbol needs a
 * newer version, so a new one is added here rather than shipped.
 */
#if defined(__x86_64__)
__asm__(".symver pthread_sigmask,pthread_sigmask@GLIBC_2.2.5");
#elif defined(__aarch64__)
__asm__(".symver pthread_sigmask,pthread_sigmask@GLIBC_2.17");
#endif
