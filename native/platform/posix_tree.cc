// RemoveTree (platform.h): deletes a directory tree through directory
// descriptors, never through a path resolved again from the top, so nothing
// renamed or swapped for a symlink inside the tree while it is being removed
// can lead the removal out of it (the bug of CVE-2022-21658 in Rust's
// remove_dir_all, and of any check-then-remove-by-path walk).
//
// Every directory is opened relative to its parent's descriptor with
// O_NOFOLLOW | O_DIRECTORY and checked to be the entry that was looked at
// (same device and inode); a symlink or file found where a directory was is
// removed as what it is (the link itself), and the walk never enters another
// filesystem (a mount inside the tree is EXDEV, left as it is).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "platform.h"
#include "posix_internal.h"

namespace fslock {
namespace platform {

namespace {

constexpr int kMaxDepth = 256;  // deeper trees are ELOOP: fslock's own never come near

// Opens the directory `name` in `dirfd` without following a symlink and
// checks that it is the entry `seen` (not something renamed in meanwhile).
int OpenChildDir(int dirfd, const char* name, const struct stat& seen, int* out) {
  int fd;
  do {
    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return Errno();
  struct stat st;
  int r = StatFd(fd, &st);
  if (r == 0 && (st.st_dev != seen.st_dev || st.st_ino != seen.st_ino)) r = EAGAIN;  // swapped: look again
  if (r != 0) {
    close(fd);
    return r;
  }
  *out = fd;
  return 0;
}

int EmptyDir(int fd, dev_t dev, int depth, uint64_t* removed);

// Removes the entry `name` of the directory `dirfd`, whatever it is now.
int RemoveEntry(int dirfd, const char* name, dev_t dev, int depth, uint64_t* removed) {
  for (int tries = 0; tries < 16; tries++) {
    struct stat st;
    int r = LstatAt(dirfd, name, &st);
    if (r == ENOENT) return 0;
    if (r != 0) return r;
    if (!S_ISDIR(st.st_mode)) {
      if (unlinkat(dirfd, name, 0) == 0) {
        (*removed)++;
        return 0;
      }
      r = Errno();
      if (r == ENOENT) return 0;
      if (r == EISDIR || r == EPERM) continue;  // became a directory meanwhile: look again
      return r;
    }
    if (st.st_dev != dev) return EXDEV;  // a mount point: never removed through
    if (depth >= kMaxDepth) return ELOOP;
    int child = -1;
    r = OpenChildDir(dirfd, name, st, &child);
    if (r == ENOENT) return 0;
    if (r == ENOTDIR || r == ELOOP || r == EAGAIN) continue;  // replaced meanwhile: look again
    if (r != 0) return r;
    r = EmptyDir(child, dev, depth + 1, removed);
    close(child);
    if (r != 0) return r;
    if (unlinkat(dirfd, name, AT_REMOVEDIR) == 0) {
      (*removed)++;
      return 0;
    }
    r = Errno();
    if (r == ENOENT) return 0;
    if (r == ENOTEMPTY || r == EEXIST || r == ENOTDIR) continue;  // changed meanwhile: look again
    return r;
  }
  return EAGAIN;  // someone keeps changing it: give up on this entry, not loop forever
}

// Removes everything in the open directory `fd`; passes again until a pass
// finds nothing (entries may be added while it runs).
int EmptyDir(int fd, dev_t dev, int depth, uint64_t* removed) {
  for (int pass = 0; pass < 16; pass++) {
    int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0) return Errno();
    DIR* d = fdopendir(dup_fd);
    if (d == nullptr) {
      int e = Errno();
      close(dup_fd);
      return e;
    }
    bool found = false;
    int r = 0;
    for (;;) {
      errno = 0;
      struct dirent* ent = readdir(d);
      if (ent == nullptr) {
        if (errno != 0) r = Errno();
        break;
      }
      const char* n = ent->d_name;
      if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'))) continue;
      found = true;
      r = RemoveEntry(fd, n, dev, depth, removed);
      if (r != 0) break;
    }
    closedir(d);
    if (r != 0) return r;
    if (!found) return 0;
  }
  return ENOTEMPTY;
}

}  // namespace

int RemoveTree(const char* path, uint64_t* removed) {
  *removed = 0;
  std::string p(path);
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : p.substr(0, slash);
  std::string base = slash == std::string::npos ? p : p.substr(slash + 1);
  if (base.empty() || base == "." || base == "..") return EINVAL;
  int pfd;
  do {
    pfd = open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } while (pfd < 0 && errno == EINTR);
  if (pfd < 0) return Errno();
  struct stat pst;
  int r = StatFd(pfd, &pst);
  if (r == 0) r = RemoveEntry(pfd, base.c_str(), pst.st_dev, 0, removed);
  close(pfd);
  return r;
}

}  // namespace platform
}  // namespace fslock
