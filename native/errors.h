// Node-style errors for platform error numbers.
#pragma once

#include <napi.h>

#include <string>

namespace fslock {

// Builds an Error like Node's fs errors: message "CODE: text, syscall 'path'",
// with code, errno, syscall and (when given) path properties. The error
// number is described by platform::DescribeError.
Napi::Error MakeSystemError(Napi::Env env, int err, const char* syscall, const std::string& path = std::string());

}  // namespace fslock
