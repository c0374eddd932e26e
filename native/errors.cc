#include "errors.h"

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#else
#include <uv.h>
#endif

namespace fslock {

#ifdef _WIN32
// libuv's translation of the Windows errors a lock file can produce, with
// ERROR_INVALID_FUNCTION (a filesystem without byte-range locks) reported as
// ENOTSUP rather than libuv's EISDIR. Numbers are libuv's on Windows.
ErrorName DescribeError(int err) {
  switch (err) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_INVALID_NAME:
      return {"ENOENT", "no such file or directory", -4058};
    case ERROR_ACCESS_DENIED:
      return {"EPERM", "operation not permitted", -4048};
    case ERROR_SHARING_VIOLATION:
    case ERROR_LOCK_VIOLATION:
      return {"EBUSY", "resource busy or locked", -4082};
    case ERROR_INVALID_FUNCTION:
    case ERROR_NOT_SUPPORTED:
      return {"ENOTSUP", "operation not supported on socket", -4049};
    case ERROR_INVALID_HANDLE:
      return {"EBADF", "bad file descriptor", -4083};
    case ERROR_NOT_LOCKED:
    case ERROR_INVALID_PARAMETER:
      return {"EINVAL", "invalid argument", -4071};
    case ERROR_WRITE_PROTECT:
      return {"EROFS", "read-only file system", -4036};
    case ERROR_DIRECTORY:
      return {"ENOTDIR", "not a directory", -4052};
    case ERROR_OPERATION_ABORTED:
      return {"ECANCELED", "operation canceled", -4081};
    case ERROR_TOO_MANY_OPEN_FILES:
      return {"EMFILE", "too many open files", -4066};
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL:
      return {"ENOSPC", "no space left on device", -4055};
    case ERROR_FILE_EXISTS:
    case ERROR_ALREADY_EXISTS:
      return {"EEXIST", "file already exists", -4075};
    default:
      return {"EIO", "i/o error (Windows error " + std::to_string(err) + ")", -4070};
  }
}
#else
ErrorName DescribeError(int err) {
  return {uv_err_name(-err), uv_strerror(-err), -err};
}
#endif

Napi::Error MakeSystemError(Napi::Env env, int err, const char* syscall, const std::string& path) {
  ErrorName name = DescribeError(err);
  std::string message = name.code + ": " + name.message + ", " + syscall;
  if (!path.empty()) message += " '" + path + "'";
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("errno", Napi::Number::New(env, name.uv_errno));
  e.Set("code", Napi::String::New(env, name.code));
  e.Set("syscall", Napi::String::New(env, syscall));
  if (!path.empty()) e.Set("path", Napi::String::New(env, path));
  return e;
}

}  // namespace fslock
