// Windows implementation of platform.h: LockFileEx / UnlockFileEx on handles
// opened with FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, so that a
// held lock never stops anyone from reading, renaming or deleting the file.
//
// Waits are not done on native threads here: Wine cannot complete or cancel an
// overlapped LockFileEx wait, and a blocking synchronous one cannot be
// cancelled at all there. The TypeScript layer polls with FAIL_IMMEDIATELY and
// capped backoff instead, which is correct on real Windows too.
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include <string>

#include "platform.h"

namespace fslock {
namespace platform {

namespace {

int LastError() {
  DWORD e = GetLastError();
  return e == 0 ? ERROR_GEN_FAILURE : static_cast<int>(e);
}

HANDLE H(handle_t h) { return reinterpret_cast<HANDLE>(static_cast<intptr_t>(h)); }

std::wstring Widen(const char* s) {
  int n = MultiByteToWideChar(CP_UTF8, 0, s, -1, nullptr, 0);
  if (n <= 0) return std::wstring();
  std::wstring w(static_cast<size_t>(n - 1), L'\0');
  MultiByteToWideChar(CP_UTF8, 0, s, -1, &w[0], n);
  return w;
}

void SplitLength(int64_t start, int64_t len, OVERLAPPED* ov, DWORD* low, DWORD* high) {
  ZeroMemory(ov, sizeof *ov);
  uint64_t s = static_cast<uint64_t>(start);
  ov->Offset = static_cast<DWORD>(s & 0xffffffffu);
  ov->OffsetHigh = static_cast<DWORD>(s >> 32);
  // len == 0 means "to the end and beyond", as with fcntl.
  uint64_t l = len == 0 ? (UINT64_MAX - s) : static_cast<uint64_t>(len);
  *low = static_cast<DWORD>(l & 0xffffffffu);
  *high = static_cast<DWORD>(l >> 32);
}

}  // namespace

struct Waiter {};

// The Windows errors a lock file can produce, described as Node describes
// them. Hand-written because libuv's own translation (uv_translate_sys_error)
// is not part of the Node-API surface an addon may rely on, and because one
// entry must differ from libuv's: ERROR_INVALID_FUNCTION (a filesystem without
// byte-range locks) is ENOTSUP here, not libuv's EISDIR. Numbers are libuv's
// negative error numbers on Windows.
ErrorInfo DescribeError(int err) {
  switch (err) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_INVALID_NAME: return {"ENOENT", "no such file or directory", -4058};
    case ERROR_ACCESS_DENIED: return {"EPERM", "operation not permitted", -4048};
    case ERROR_SHARING_VIOLATION:
    case ERROR_LOCK_VIOLATION: return {"EBUSY", "resource busy or locked", -4082};
    case ERROR_INVALID_FUNCTION:
    case ERROR_NOT_SUPPORTED: return {"ENOTSUP", "operation not supported on socket", -4049};
    case ERROR_INVALID_HANDLE: return {"EBADF", "bad file descriptor", -4083};
    case ERROR_NOT_LOCKED:
    case ERROR_INVALID_PARAMETER: return {"EINVAL", "invalid argument", -4071};
    case ERROR_WRITE_PROTECT: return {"EROFS", "read-only file system", -4036};
    case ERROR_DIRECTORY: return {"ENOTDIR", "not a directory", -4052};
    case ERROR_OPERATION_ABORTED: return {"ECANCELED", "operation canceled", -4081};
    case ERROR_TOO_MANY_OPEN_FILES: return {"EMFILE", "too many open files", -4066};
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL: return {"ENOSPC", "no space left on device", -4055};
    case ERROR_FILE_EXISTS:
    case ERROR_ALREADY_EXISTS: return {"EEXIST", "file already exists", -4075};
    default: return {"EIO", "i/o error (Windows error " + std::to_string(err) + ")", -4070};
  }
}

bool IsContended(int err) { return err == ERROR_LOCK_VIOLATION || err == ERROR_IO_PENDING; }
bool IsMissing(int err) { return err == ERROR_FILE_NOT_FOUND || err == ERROR_PATH_NOT_FOUND; }

int Open(const char* path, int flags, handle_t* out) {
  std::wstring wpath = Widen(path);
  DWORD access = GENERIC_READ | ((flags & kOpenWrite) ? GENERIC_WRITE : 0);
  DWORD share = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE;
  DWORD disposition = (flags & kOpenCreate) ? ((flags & kOpenExclusive) ? CREATE_NEW : OPEN_ALWAYS) : OPEN_EXISTING;
  HANDLE h = CreateFileW(wpath.c_str(), access, share, nullptr, disposition, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (h == INVALID_HANDLE_VALUE) return LastError();
  // Handles are not inherited by child processes unless asked for.
  SetHandleInformation(h, HANDLE_FLAG_INHERIT, 0);
  *out = static_cast<handle_t>(reinterpret_cast<intptr_t>(h));
  return 0;
}

int Close(handle_t h) { return CloseHandle(H(h)) ? 0 : LastError(); }

int AnonymousFileFlags() { return 0; }

int LinkAnonymous(handle_t, const char*) { return ERROR_NOT_SUPPORTED; }

int MoveAside(const char*, const char*, bool*, bool*, Identity*, int64_t*) { return ERROR_NOT_SUPPORTED; }

int RemoveTree(const char*, uint64_t* removed) {
  *removed = 0;
  return ERROR_NOT_SUPPORTED;
}

int RenameNoReplace(const char* from, const char* to) {
  std::wstring wfrom = Widen(from);
  std::wstring wto = Widen(to);
  return MoveFileExW(wfrom.c_str(), wto.c_str(), 0) ? 0 : LastError();
}

int GetIdentity(handle_t h, Identity* out) {
  BY_HANDLE_FILE_INFORMATION info;
  if (!GetFileInformationByHandle(H(h), &info)) return LastError();
  out->dev = info.dwVolumeSerialNumber;
  out->ino = (static_cast<uint64_t>(info.nFileIndexHigh) << 32) | info.nFileIndexLow;
  return 0;
}

int StatPathIdentity(const char* path, Identity* out) {
  std::wstring wpath = Widen(path);
  HANDLE h = CreateFileW(wpath.c_str(), 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr,
                         OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, nullptr);
  if (h == INVALID_HANDLE_VALUE) return LastError();
  int r = GetIdentity(static_cast<handle_t>(reinterpret_cast<intptr_t>(h)), out);
  CloseHandle(h);
  return r;
}

int GetFsInfo(handle_t h, FsInfo* out) {
  wchar_t name[MAX_PATH + 1] = {0};
  if (!GetVolumeInformationByHandleW(H(h), nullptr, 0, nullptr, nullptr, nullptr, name, MAX_PATH + 1)) {
    return LastError();
  }
  char buf[4 * (MAX_PATH + 1)] = {0};
  WideCharToMultiByte(CP_UTF8, 0, name, -1, buf, sizeof buf, nullptr, nullptr);
  out->type = 0;
  out->name = buf;
  return 0;
}

int WriteAt(handle_t h, const void* data, size_t len, int64_t offset, size_t* written) {
  OVERLAPPED ov;
  ZeroMemory(&ov, sizeof ov);
  ov.Offset = static_cast<DWORD>(static_cast<uint64_t>(offset) & 0xffffffffu);
  ov.OffsetHigh = static_cast<DWORD>(static_cast<uint64_t>(offset) >> 32);
  DWORD n = 0;
  if (!WriteFile(H(h), data, static_cast<DWORD>(len), &n, &ov)) return LastError();
  *written = n;
  return 0;
}

int ReadAt(handle_t h, void* data, size_t len, int64_t offset, size_t* got) {
  OVERLAPPED ov;
  ZeroMemory(&ov, sizeof ov);
  ov.Offset = static_cast<DWORD>(static_cast<uint64_t>(offset) & 0xffffffffu);
  ov.OffsetHigh = static_cast<DWORD>(static_cast<uint64_t>(offset) >> 32);
  DWORD n = 0;
  if (!ReadFile(H(h), data, static_cast<DWORD>(len), &n, &ov)) {
    DWORD e = GetLastError();
    if (e == ERROR_HANDLE_EOF) {
      *got = 0;
      return 0;
    }
    return static_cast<int>(e);
  }
  *got = n;
  return 0;
}

int Lock(const LockRequest& req, handle_t h, bool wait) {
  if (req.primitive != kWindows) return ERROR_NOT_SUPPORTED;
  OVERLAPPED ov;
  DWORD low, high;
  SplitLength(req.start, req.len, &ov, &low, &high);
  if (req.type == kUnlock) {
    return UnlockFileEx(H(h), 0, low, high, &ov) ? 0 : LastError();
  }
  DWORD flags = (req.type == kExclusive ? LOCKFILE_EXCLUSIVE_LOCK : 0) | (wait ? 0 : LOCKFILE_FAIL_IMMEDIATELY);
  return LockFileEx(H(h), flags, 0, low, high, &ov) ? 0 : LastError();
}

int Query(const LockRequest&, handle_t, LockQuery*) { return ERROR_NOT_SUPPORTED; }

// Waits are not done on native threads here (see the top of this file).
double PerfClockMs() { return 0; }
bool WaitSupported() { return false; }
int WaitStart(const LockRequest&, handle_t, WaitDone, void*, Waiter**, WaitDone) { return ERROR_NOT_SUPPORTED; }
int WaitResult(Waiter*) { return ERROR_NOT_SUPPORTED; }
int WaitCancel(Waiter*, int) { return kCancelInterrupted; }
void WaitFree(Waiter*) {}

int RegistryLock(handle_t, int, int64_t, int64_t, uint64_t*) { return ERROR_NOT_SUPPORTED; }
int RegistryChange(uint64_t, int) { return ERROR_NOT_SUPPORTED; }
int RegistryUnlock(uint64_t) { return ERROR_NOT_SUPPORTED; }
int RegistryClose(handle_t h) { return Close(h); }
}  // namespace platform
}  // namespace fslock
