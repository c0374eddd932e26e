#include "errors.h"

#include "platform/platform.h"

namespace fslock {

Napi::Error MakeSystemError(Napi::Env env, int err, const char* syscall, const std::string& path) {
  platform::ErrorInfo name = platform::DescribeError(err);
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
