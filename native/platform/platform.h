// Plain C++ interface to the operating system's lock primitives.
//
// Nothing in native/platform/ knows about Node-API. Functions return 0 on
// success or a platform error number (errno on Unix, GetLastError() on
// Windows); errors.cc turns that into a Node-style error. Most are one system
// call; where a function makes more (an EINTR retry, a query before an
// install), its comment says so. Policy — which primitive to use, retries,
// timeouts — lives in TypeScript.
//
// Implementations: posix_calls.cc (system-call wrappers), posix_waiter.cc
// (interruptible waits on pooled threads), posix_registry.cc (the POSIX lock
// registry), posix_tree.cc (tree removal by descriptors); win32.cc for Windows.
#pragma once

#include <cstdint>
#include <string>

namespace fslock {
namespace platform {

// A file descriptor on Unix, a HANDLE value on Windows.
using handle_t = int64_t;

enum Primitive : int {
  kFlock = 1,    // flock(2)
  kOfd = 2,      // fcntl F_OFD_SETLK / F_OFD_SETLKW / F_OFD_GETLK
  kPosix = 3,    // classic, process-scoped fcntl F_SETLK / F_SETLKW / F_GETLK
  kWindows = 4,  // LockFileEx / UnlockFileEx
};

enum LockType : int {
  kUnlock = 0,
  kShared = 1,
  kExclusive = 2,
};

enum OpenFlags : int {
  kOpenWrite = 1,      // read-write instead of read-only
  kOpenCreate = 2,     // create if missing (mode 0666 before umask)
  kOpenNoFollow = 4,   // fail with ELOOP when the last component is a symlink (Unix)
  kOpenExclusive = 8,  // with kOpenCreate: fail with EEXIST when anything is there,
                       // a symlink included (O_EXCL, CREATE_NEW): never creates through one
};

struct Identity {
  uint64_t dev = 0;
  uint64_t ino = 0;
  bool operator==(const Identity& o) const { return dev == o.dev && ino == o.ino; }
};

struct FsInfo {
  uint64_t type = 0;  // statfs f_type (Linux); 0 where the OS has no number
  std::string name;   // f_fstypename (BSD/macOS), filesystem name (Windows), "" on Linux
};

struct LockQuery {
  int type = kUnlock;  // kUnlock when nothing conflicts
  int64_t start = 0;
  int64_t len = 0;
  int64_t pid = 0;  // -1 for OFD locks (the kernel does not know an owner process)
};

// One lock request: which primitive, which mode, which bytes (len 0 = to the
// end of the file and beyond, as fcntl does; kFlock ignores the range).
struct LockRequest {
  int primitive = kFlock;
  int type = kExclusive;
  int64_t start = 0;
  int64_t len = 0;
};

// An error number described the way Node describes it.
struct ErrorInfo {
  std::string code;     // "ENOENT"
  std::string message;  // "no such file or directory"
  int uv_errno;         // Node's (libuv's) negative error number
};
ErrorInfo DescribeError(int err);

// Which error numbers mean "somebody else holds a conflicting lock".
bool IsContended(int err);
// Error numbers of a path that is missing (for identity checks).
bool IsMissing(int err);

int Open(const char* path, int flags, handle_t* out);  // retries EINTR
int Close(handle_t h);
int GetIdentity(handle_t h, Identity* out);
int StatPathIdentity(const char* path, Identity* out);
int GetFsInfo(handle_t h, FsInfo* out);
int WriteAt(handle_t h, const void* data, size_t len, int64_t offset, size_t* written);  // retries EINTR
int ReadAt(handle_t h, void* data, size_t len, int64_t offset, size_t* got);             // retries EINTR
// rename(from, to) that fails with EEXIST instead of replacing `to`
// (renameat2 RENAME_NOREPLACE, renamex_np RENAME_EXCL, MoveFileExW without
// MOVEFILE_REPLACE_EXISTING). ENOSYS where the OS or filesystem has no such call.
int RenameNoReplace(const char* from, const char* to);
// Renames `path` to `aside` (a fresh name in the same directory) in one
// atomic step, never replacing anything at `aside` (EEXIST where the OS can
// refuse; pick another name), and lstats what was moved (a symlink is never
// taken for its target): `moved` false when nothing was at `path`, `found`
// false when the moved entry could not be lstat'ed. ENOTSUP (Windows): not here.
int MoveAside(const char* path, const char* aside, bool* moved, bool* found, Identity* id, int64_t* size);
// Deletes `path` and, if it is a directory, everything in it, walking by
// directory descriptors (openat O_NOFOLLOW|O_DIRECTORY, fstatat, unlinkat),
// so no rename or symlink swapped in meanwhile can lead it outside the tree;
// never crosses into another filesystem (EXDEV). A missing `path` is 0.
// `removed` counts the entries deleted. ENOSYS (Windows): not here.
int RemoveTree(const char* path, uint64_t* removed);
// The open(2) flags that create an anonymous file in a directory (Linux
// O_TMPFILE|O_RDWR), or 0 where there is no such thing.
int AnonymousFileFlags();
// Gives the anonymous file open as `h` the name `to` (linkat through
// /proc/self/fd): fails with EEXIST when anything is at `to`, like O_EXCL.
// ENOSYS where anonymous files cannot be linked (no O_TMPFILE, no /proc).
int LinkAnonymous(handle_t h, const char* to);

// One lock system call. `wait` selects the blocking form (flock without
// LOCK_NB, F_OFD_SETLKW, F_SETLKW); an interrupted blocking call is retried,
// so use the waiter below for waits that must be cancellable.
int Lock(const LockRequest& req, handle_t h, bool wait);
int Query(const LockRequest& req, handle_t h, LockQuery* out);

// Milliseconds on the clock Node's performance.now() counts on (libuv's
// uv_hrtime: CLOCK_MONOTONIC on Linux), or 0 where that clock is not known
// to be the same.
double PerfClockMs();

// Interruptible waits (Unix). Each wait runs on a thread from a small
// process-wide pool (idle threads are reused, not one created per wait); the
// thread makes the blocking call, and Cancel() interrupts it with a
// thread-directed signal (a real-time signal on Linux, SIGURG elsewhere).
struct Waiter;
using WaitDone = void (*)(Waiter* w, void* ctx);
// Starts the wait. `done` runs on the pool thread once the system call has
// returned (a cancel only makes it return sooner), except after kCancelStuck;
// `ctx` is passed through. `granted`, if given, runs on the pool thread right
// after the call granted the lock and before the wait counts as finished (so
// WaitCancel waits for it), unless a cancel was asked for: the place for the
// few non-blocking calls that follow a grant, without waking another thread.
int WaitStart(const LockRequest& req, handle_t h, WaitDone done, void* ctx, Waiter** out, WaitDone granted = nullptr);
// Result of a finished wait: 0 = granted, otherwise the error number.
int WaitResult(Waiter* w);
enum CancelOutcome : int {
  kCancelInterrupted = 0,  // the wait ended without the lock
  kCancelGranted = 1,      // the lock was granted just before the cancel landed
  kCancelStuck = 2,        // the system call could not be interrupted in time
};
// Interrupts the waiter (a bounded number of signals, over at most
// `budget_ms`) and reports how the call ended. After kCancelInterrupted or
// kCancelGranted, `done` has run or is about to. After kCancelStuck the call
// is still running, `done` will not run, and its thread closes `h` and frees
// the waiter itself when the call returns: the caller must not touch `h` again.
int WaitCancel(Waiter* w, int budget_ms);
// Frees a waiter whose `done` has run; a no-op after kCancelStuck.
void WaitFree(Waiter* w);
bool WaitSupported();

// Process-wide registry for classic POSIX locks, keyed by (dev, ino).
// POSIX record locks belong to the process, so by themselves they do not
// exclude a second handle or another worker thread in the same process, and
// closing *any* descriptor of the file drops them all. The registry keeps an
// in-process table of holders, refuses conflicting in-process requests, and
// defers closing descriptors of inodes that still have holders.
int RegistryLock(handle_t h, int type, int64_t start, int64_t len, uint64_t* holder_id);
int RegistryChange(uint64_t holder_id, int new_type);
int RegistryUnlock(uint64_t holder_id);
// Close a descriptor that may refer to a registry inode.
int RegistryClose(handle_t h);

}  // namespace platform
}  // namespace fslock
