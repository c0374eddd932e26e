// Keeps Linux builds loadable on glibc 2.28, the oldest glibc Node 20
// supports, when they are compiled against a newer glibc (the prebuilds are
// built on Debian 12, glibc 2.36). binding.gyp force-includes this header
// into every translation unit on Linux (-include), before anything else.
//
// A binary records the symbol version of every function it links against,
// and glibc gives a function a new default version when it moves or changes:
// the pthread functions moved from libpthread into libc in 2.32-2.34, and
// stat/fstat became real functions in 2.33. An older glibc refuses to load a
// binary that names a version it does not have. Every glibc still exports the
// old versions, which are the same code, so the directives below bind the few
// functions fslock calls to them. On glibc before 2.34 those pthread
// functions live in libpthread.so.0: binding.gyp names it as a dependency, and
// the dynamic linker matches versioned symbols by version, not by file.
//
// The same goes for libstdc++: Node 20's oldest systems (RHEL 8) have GCC 8's,
// GLIBCXX_3.4.25. test/prebuilds.test.ts checks the shipped binaries: no
// version newer than GLIBC_2.28, GLIBCXX_3.4.25 and CXXABI_1.3.11.
#pragma once

// Before features.h, which reads it once (g++ defines it anyway).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <features.h>

#if defined(__linux__) && defined(__GLIBC__)

#if defined(__x86_64__)
#define FSLOCK_GLIBC_BASE "GLIBC_2.2.5"
#define FSLOCK_GLIBC_SIGQUEUE "GLIBC_2.11"
#define FSLOCK_GLIBC_SETCLOCK "GLIBC_2.3.3"
#define FSLOCK_STAT_VER 1  // _STAT_VER_LINUX of glibc before 2.33
#elif defined(__aarch64__)
#define FSLOCK_GLIBC_BASE "GLIBC_2.17"
#define FSLOCK_GLIBC_SIGQUEUE "GLIBC_2.17"
#define FSLOCK_GLIBC_SETCLOCK "GLIBC_2.17"
#define FSLOCK_STAT_VER 0
#endif

#if defined(FSLOCK_GLIBC_BASE)
#define FSLOCK_GLIBC_FLOOR 1
__asm__(".symver pthread_create, pthread_create@" FSLOCK_GLIBC_BASE);
__asm__(".symver pthread_attr_setstacksize, pthread_attr_setstacksize@" FSLOCK_GLIBC_BASE);
__asm__(".symver pthread_sigmask, pthread_sigmask@" FSLOCK_GLIBC_BASE);
__asm__(".symver pthread_sigqueue, pthread_sigqueue@" FSLOCK_GLIBC_SIGQUEUE);
// steady_wait.h: timed waits on the monotonic clock
__asm__(".symver pthread_condattr_setclock, pthread_condattr_setclock@" FSLOCK_GLIBC_SETCLOCK);
#endif

// libstdc++ built for glibc 2.30+ implements steady-clock waits of
// std::condition_variable with pthread_cond_clockwait, which glibc 2.28 does
// not have. Without this macro it uses pthread_cond_timedwait against the
// system clock, exactly as libstdc++ does when it is built on glibc 2.28: a
// clock step stretches such a wait. So every timed wait whose length matters
// uses platform::SteadyCondition (steady_wait.h) instead; only the idle pool
// threads' 30 s linger still waits this way.
#if defined(__cplusplus) && __has_include(<bits/c++config.h>)
#include <bits/c++config.h>
#undef _GLIBCXX_USE_PTHREAD_COND_CLOCKWAIT
// GCC 12 gave condition_variable::wait a new version (GLIBCXX_3.4.30); the
// GLIBCXX_3.4.11 one is the same function in every libstdc++ since GCC 4.4.
// The other GCC 11+ symbol the headers emit, __throw_bad_array_new_length
// (GLIBCXX_3.4.29), has no older version: binding.gyp wraps it (--wrap) and
// posix_calls.cc throws std::bad_alloc instead, its base class.
__asm__(
    ".symver _ZNSt18condition_variable4waitERSt11unique_lockISt5mutexE,"
    " _ZNSt18condition_variable4waitERSt11unique_lockISt5mutexE@GLIBCXX_3.4.11");
#endif

#endif  // __linux__ && __GLIBC__
