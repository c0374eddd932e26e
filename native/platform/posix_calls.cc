// Unix system-call wrappers of platform.h: files, flock(2), OFD and classic
// fcntl locks, and error descriptions (libuv's names, as Node reports them).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <sys/vfs.h>
#else
#include <sys/mount.h>
#include <sys/param.h>
#endif
#if defined(__APPLE__)
#include <stdio.h>  // renamex_np
#endif

#include "platform.h"
#include "posix_internal.h"

#if defined(__APPLE__) && !defined(F_OFD_SETLK)
// Present in current XNU but not always in the SDK headers.
#define F_OFD_SETLK 90
#define F_OFD_SETLKW 91
#define F_OFD_GETLK 92
#endif

namespace fslock {
namespace platform {

int Errno() { return errno ? errno : EIO; }

#if !defined(FSLOCK_GLIBC_FLOOR)
// (glibc_floor.cc has the versions that load on glibc 2.28)
int StatFd(int fd, struct stat* st) { return fstat(fd, st) == 0 ? 0 : Errno(); }
int StatPath(const char* path, struct stat* st) { return stat(path, st) == 0 ? 0 : Errno(); }
int LstatPath(const char* path, struct stat* st) { return lstat(path, st) == 0 ? 0 : Errno(); }
int LstatAt(int dirfd, const char* name, struct stat* st) {
  return fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : Errno();
}
#endif

namespace {

short FcntlType(int type) {
  switch (type) {
    case kShared: return F_RDLCK;
    case kExclusive: return F_WRLCK;
    default: return F_UNLCK;
  }
}

int TypeFromFcntl(short t) {
  if (t == F_RDLCK) return kShared;
  if (t == F_WRLCK) return kExclusive;
  return kUnlock;
}

int FcntlLock(int fd, int cmd, const LockRequest& req) {
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = FcntlType(req.type);
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(req.start);
  fl.l_len = static_cast<off_t>(req.len);
  fl.l_pid = 0;  // must be 0 for OFD requests
  return fcntl(fd, cmd, &fl) == 0 ? 0 : Errno();
}

}  // namespace

ErrorInfo DescribeError(int err) { return {uv_err_name(-err), uv_strerror(-err), -err}; }

bool IsContended(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EACCES; }
bool IsMissing(int err) { return err == ENOENT || err == ENOTDIR; }

int LockOnce(const LockRequest& req, int fd, bool wait) {
  if (req.primitive == kFlock) {
    int op = req.type == kShared ? LOCK_SH : req.type == kExclusive ? LOCK_EX : LOCK_UN;
    if (!wait && req.type != kUnlock) op |= LOCK_NB;
    return flock(fd, op) == 0 ? 0 : Errno();
  }
  if (req.primitive == kOfd) {
#ifdef F_OFD_SETLK
    return FcntlLock(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, req);
#else
    return ENOTSUP;
#endif
  }
  if (req.primitive == kPosix) return FcntlLock(fd, wait ? F_SETLKW : F_SETLK, req);
  return ENOTSUP;
}

int Open(const char* path, int flags, handle_t* out) {
  int oflags = O_CLOEXEC | O_NOCTTY;
  oflags |= (flags & kOpenWrite) ? O_RDWR : O_RDONLY;
  if (flags & kOpenCreate) oflags |= O_CREAT;
  if (flags & kOpenNoFollow) oflags |= O_NOFOLLOW;
  if ((flags & kOpenExclusive) && (flags & kOpenCreate)) oflags |= O_EXCL;
  int fd;
  do {
    fd = open(path, oflags, 0666);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return Errno();
  *out = fd;
  return 0;
}

double PerfClockMs() {
#if defined(__linux__)
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
#else
  return 0;  // macOS: libuv counts on another clock
#endif
}

int Close(handle_t h) {
  // POSIX leaves the descriptor state unspecified after EINTR; on Linux it is
  // closed, so never retry.
  return close(static_cast<int>(h)) == 0 || errno == EINTR ? 0 : Errno();
}

int GetIdentity(handle_t h, Identity* out) {
  struct stat st;
  if (int e = StatFd(static_cast<int>(h), &st)) return e;
  out->dev = static_cast<uint64_t>(st.st_dev);
  out->ino = static_cast<uint64_t>(st.st_ino);
  return 0;
}

int StatPathIdentity(const char* path, Identity* out) {
  struct stat st;
  if (int e = StatPath(path, &st)) return e;
  out->dev = static_cast<uint64_t>(st.st_dev);
  out->ino = static_cast<uint64_t>(st.st_ino);
  return 0;
}

int GetFsInfo(handle_t h, FsInfo* out) {
  struct statfs sf;
  if (fstatfs(static_cast<int>(h), &sf) != 0) return Errno();
#if defined(__linux__)
  out->type = static_cast<uint64_t>(static_cast<unsigned long>(sf.f_type)) & 0xffffffffu;
#else
  out->type = 0;
  out->name = sf.f_fstypename;
#endif
  return 0;
}

int WriteAt(handle_t h, const void* data, size_t len, int64_t offset, size_t* written) {
  ssize_t n;
  do {
    n = pwrite(static_cast<int>(h), data, len, static_cast<off_t>(offset));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Errno();
  *written = static_cast<size_t>(n);
  return 0;
}

int ReadAt(handle_t h, void* data, size_t len, int64_t offset, size_t* got) {
  ssize_t n;
  do {
    n = pread(static_cast<int>(h), data, len, static_cast<off_t>(offset));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Errno();
  *got = static_cast<size_t>(n);
  return 0;
}

int AnonymousFileFlags() {
#if defined(__linux__) && defined(O_TMPFILE)
  return O_TMPFILE | O_RDWR;
#else
  return 0;
#endif
}

int LinkAnonymous(handle_t h, const char* to) {
#if defined(__linux__) && defined(O_TMPFILE)
  char proc[48];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", static_cast<int>(h));
  if (linkat(AT_FDCWD, proc, AT_FDCWD, to, AT_SYMLINK_FOLLOW) == 0) return 0;
  int e = errno;
  // ENOENT from a missing /proc (a chroot, a minimal container) is not about `to`
  if (e == ENOENT && access("/proc/self/fd", F_OK) != 0) return ENOSYS;
  return e;
#else
  (void)h;
  (void)to;
  return ENOSYS;
#endif
}

int MoveAside(const char* path, const char* aside, bool* moved, bool* found, Identity* id, int64_t* size) {
  *moved = false;
  *found = false;
  int r = RenameNoReplace(path, aside);
  if (r == ENOSYS) r = rename(path, aside) == 0 ? 0 : Errno();  // the aside name is unguessable (64 random bits)
  if (r != 0) return r == ENOENT ? 0 : r;
  *moved = true;
  struct stat st;
  if (LstatPath(aside, &st) != 0) return 0;
  *found = true;
  id->dev = static_cast<uint64_t>(st.st_dev);
  id->ino = static_cast<uint64_t>(st.st_ino);
  *size = static_cast<int64_t>(st.st_size);
  return 0;
}

int RenameNoReplace(const char* from, const char* to) {
#if defined(__linux__) && defined(SYS_renameat2)
  // The raw system call: glibc's wrapper needs glibc 2.28.
  if (syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, 1 /* RENAME_NOREPLACE */) == 0) return 0;
  return errno == EINVAL ? ENOSYS : Errno();  // EINVAL: this filesystem has no RENAME_NOREPLACE
#elif defined(__APPLE__) && defined(RENAME_EXCL)
  if (renamex_np(from, to, RENAME_EXCL) == 0) return 0;
  return errno == ENOTSUP ? ENOSYS : Errno();
#else
  (void)from;
  (void)to;
  return ENOSYS;
#endif
}

int Lock(const LockRequest& req, handle_t h, bool wait) {
  int r;
  do {
    r = LockOnce(req, static_cast<int>(h), wait);
  } while (r == EINTR);
  return r;
}

int Query(const LockRequest& req, handle_t h, LockQuery* out) {
  int cmd;
  if (req.primitive == kOfd) {
#ifdef F_OFD_GETLK
    cmd = F_OFD_GETLK;
#else
    return ENOTSUP;
#endif
  } else if (req.primitive == kPosix) {
    cmd = F_GETLK;
  } else {
    return ENOTSUP;  // flock has no query
  }
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = FcntlType(req.type);
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(req.start);
  fl.l_len = static_cast<off_t>(req.len);
  fl.l_pid = 0;
  if (fcntl(static_cast<int>(h), cmd, &fl) != 0) return Errno();
  out->type = TypeFromFcntl(fl.l_type);
  out->start = fl.l_start;
  out->len = fl.l_len;
  out->pid = fl.l_pid;
  return 0;
}

int SetRange(int fd, int type, uint64_t begin, uint64_t end, uint64_t to_end) {
  LockRequest req;
  req.primitive = kPosix;
  req.type = type;
  req.start = static_cast<int64_t>(begin);
  req.len = end == to_end ? 0 : static_cast<int64_t>(end - begin);
  return Lock(req, fd, false);
}

}  // namespace platform
}  // namespace fslock
