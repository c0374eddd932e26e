// The shims of glibc_floor.h that are code rather than symbol versions: the
// stat family through the functions every glibc since 2.2.5 exports, and the
// one libstdc++ function of GCC 11+ that has no older version. Compiled on
// every Unix; empty unless glibc_floor.h set FSLOCK_GLIBC_FLOOR (posix_calls.cc
// then has the plain versions).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <new>

#include "posix_internal.h"

#if defined(FSLOCK_GLIBC_FLOOR)
namespace fslock {
namespace platform {

// glibc before 2.33 has no stat/fstat functions: its headers turned them into
// these, which every glibc still exports (stat64 and fstat64 are GLIBC_2.33).
extern "C" int __fxstat64(int ver, int fd, struct stat64* st);
extern "C" int __xstat64(int ver, const char* path, struct stat64* st);
extern "C" int __lxstat64(int ver, const char* path, struct stat64* st);
extern "C" int __fxstatat64(int ver, int dirfd, const char* path, struct stat64* st, int flags);
static_assert(sizeof(struct stat) == sizeof(struct stat64), "64-bit Linux: stat is stat64");

int StatFd(int fd, struct stat* st) {
  return __fxstat64(FSLOCK_STAT_VER, fd, reinterpret_cast<struct stat64*>(st)) == 0 ? 0 : Errno();
}
int StatPath(const char* path, struct stat* st) {
  return __xstat64(FSLOCK_STAT_VER, path, reinterpret_cast<struct stat64*>(st)) == 0 ? 0 : Errno();
}
int LstatPath(const char* path, struct stat* st) {
  return __lxstat64(FSLOCK_STAT_VER, path, reinterpret_cast<struct stat64*>(st)) == 0 ? 0 : Errno();
}
int LstatAt(int dirfd, const char* name, struct stat* st) {
  return __fxstatat64(FSLOCK_STAT_VER, dirfd, name, reinterpret_cast<struct stat64*>(st), AT_SYMLINK_NOFOLLOW) == 0
             ? 0
             : Errno();
}
#if defined(__GLIBCXX__)
// See glibc_floor.h: what GCC 11+ headers call when an allocation size
// overflows, bound here instead of to libstdc++'s GLIBCXX_3.4.29 function.
extern "C" [[noreturn]] __attribute__((visibility("hidden"))) void __wrap__ZSt28__throw_bad_array_new_lengthv() {
  std::__throw_bad_alloc();
}
#endif

}  // namespace platform
}  // namespace fslock
#endif  // FSLOCK_GLIBC_FLOOR
