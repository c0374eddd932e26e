// Plain C++ interface to the operating system's lock primitives.
//
// Nothing in native/platform/ knows about Node-API. Every function makes (at
// most) one system call and returns 0 on success or a platform error number
// (errno on Unix, GetLastError() on Windows); errors.cc turns that into a
// Node-style error. Policy — which primitive to use, retries, timeouts — lives
// in TypeScript.
#pragma once

#include <cstdint>
#include <string>

namespace fslock {
namespace platform {

// A file descriptor on Unix, a HANDLE value on Windows.
using handle_t = int64_t;

enum Primitive : int {
  kFlock = 1,       // flock(2)
  kOfd = 2,         // fcntl F_OFD_SETLK / F_OFD_SETLKW / F_OFD_GETLK
  kPosix = 3,       // classic, process-scoped fcntl F_SETLK / F_SETLKW / F_GETLK
  kWindows = 4,     // LockFileEx / UnlockFileEx
};

enum LockType : int {
  kUnlock = 0,
  kShared = 1,
  kExclusive = 2,
};

enum OpenFlags : int {
  kOpenWrite = 1,      // read-write instead of read-only
  kOpenCreate = 2,     // create if missing (mode 0644 before umask)
  kOpenNoFollow = 4,   // fail with ELOOP when the last component is a symlink (Unix)
  kOpenExclusive = 8,  // with kOpenCreate: fail with EEXIST when anything is there,
                       // a symlink included (O_EXCL, CREATE_NEW): never creates through one
};

struct Identity {
  uint64_t dev = 0;
  uint64_t ino = 0;
};

struct FsInfo {
  uint64_t type = 0;   // statfs f_type (Linux); 0 where the OS has no number
  std::string name;    // f_fstypename (BSD/macOS), filesystem name (Windows), "" on Linux
};

struct LockQuery {
  int type = kUnlock;  // kUnlock when nothing conflicts
  int64_t start = 0;
  int64_t len = 0;
  int64_t pid = 0;     // -1 for OFD locks (the kernel does not know an owner process)
};

// Which error numbers mean "somebody else holds a conflicting lock".
bool IsContended(int err);
// The error number a wait returns when it was interrupted by Cancel().
bool IsInterrupted(int err);
// Error number for "not supported here" (ENOTSUP / ERROR_NOT_SUPPORTED).
int NotSupported();

int Open(const char* path, int flags, handle_t* out);
int Close(handle_t h);
int GetIdentity(handle_t h, Identity* out);
int StatPathIdentity(const char* path, Identity* out);
int GetFsInfo(handle_t h, FsInfo* out);
int Truncate(handle_t h, int64_t size);
int WriteAt(handle_t h, const void* data, size_t len, int64_t offset, size_t* written);
int ReadAt(handle_t h, void* data, size_t len, int64_t offset, size_t* got);
// rename(from, to) that fails with EEXIST instead of replacing `to`
// (renameat2 RENAME_NOREPLACE, renamex_np RENAME_EXCL, MoveFileExW without
// MOVEFILE_REPLACE_EXISTING). ENOSYS where the OS or filesystem has no such call.
int RenameNoReplace(const char* from, const char* to);

// One lock system call. `wait` selects the blocking form (flock without
// LOCK_NB, F_OFD_SETLKW, F_SETLKW). Ranges use len == 0 for "to end of file
// and beyond" as fcntl does. kFlock ignores the range.
int Lock(int primitive, handle_t h, int type, int64_t start, int64_t len, bool wait);
int Query(int primitive, handle_t h, int type, int64_t start, int64_t len, LockQuery* out);

// Interruptible waits on a dedicated thread (Unix). The thread makes the
// blocking system call; Cancel() interrupts it with a thread-directed signal
// and reports how the call ended.
struct Waiter;
using WaitDone = void (*)(Waiter* w, void* ctx);
// Starts the thread. `done` runs on the waiter thread after the system call
// returned, unless Cancel() has already claimed the result.
int WaitStart(int primitive, handle_t h, int type, int64_t start, int64_t len,
              WaitDone done, void* ctx, Waiter** out);
// Result of a finished wait: 0 = granted, otherwise the error number.
int WaitResult(Waiter* w);
enum CancelOutcome : int {
  kCancelInterrupted = 0,  // the wait ended without the lock
  kCancelGranted = 1,      // the lock was granted just before the cancel landed
  kCancelStuck = 2,        // the system call could not be interrupted in time
};
// Interrupts the waiter (repeatedly, up to `budget_ms`) and joins its thread
// when it ended. After kCancelInterrupted / kCancelGranted `done` will not run.
// After kCancelStuck the thread keeps running and closes `h` itself when the
// system call finally returns; the caller must not touch `h` again.
int WaitCancel(Waiter* w, int budget_ms);
// Frees a waiter whose `done` has run (joins the finished thread).
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
// How many holders the registry has for the inode of `h` (for tests/probes).
int RegistryHolders(handle_t h, int* count);

}  // namespace platform
}  // namespace fslock
