// Node-style errors for platform error numbers.
#pragma once

#include <napi.h>

#include <string>

namespace fslock {

struct ErrorName {
  std::string code;     // "ENOENT"
  std::string message;  // "no such file or directory"
  int uv_errno;         // Node's negative errno value
};

// Describes a platform error number (errno, or GetLastError() on Windows).
ErrorName DescribeError(int err);

// Builds an Error like Node's fs errors: message "CODE: text, syscall 'path'",
// with code, errno, syscall and (when given) path properties.
Napi::Error MakeSystemError(Napi::Env env, int err, const char* syscall,
                            const std::string& path = std::string());

}  // namespace fslock
