// Helpers shared by the Unix platform files (not part of platform.h).
#pragma once

#include <sys/stat.h>

#include <cstdint>

#include "platform.h"

namespace fslock {
namespace platform {

// errno, or EIO if a failing call left it 0.
int Errno();
// fstat(2), stat(2) and lstat(2), returning 0 or the error number; compiled to the
// calls every glibc since 2.2.5 exports (see glibc_floor.h).
int StatFd(int fd, struct stat* st);
int StatPath(const char* path, struct stat* st);
int LstatPath(const char* path, struct stat* st);
// fstatat(2) with AT_SYMLINK_NOFOLLOW: the entry `name` of the directory `dirfd`.
int LstatAt(int dirfd, const char* name, struct stat* st);
// The single system call behind Lock(); EINTR is returned to the caller.
int LockOnce(const LockRequest& req, int fd, bool wait);
// F_SETLK on [begin, end) (end == to_end: to the end of the file and beyond).
int SetRange(int fd, int type, uint64_t begin, uint64_t end, uint64_t to_end);

}  // namespace platform
}  // namespace fslock
