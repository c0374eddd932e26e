// Node-API functions of the process-wide POSIX lock registry.
#include "errors.h"
#include "instance.h"

namespace fslock {

namespace p = platform;

namespace {

// registryLock(fd, type, start, len) -> holder id, or null when contended
Napi::Value RegistryLock(const Napi::CallbackInfo& info) {
  p::handle_t h = IntArg(info, 0, "fd");
  int64_t type = IntArg(info, 1, "type");
  int64_t start = IntArg(info, 2, "start");
  int64_t len = IntArg(info, 3, "len");
  if (type < p::kShared || type > p::kExclusive || start < 0 || len < 0) {
    throw Napi::RangeError::New(info.Env(), "fslock binding: invalid lock request");
  }
  uint64_t id = 0;
  int r = p::RegistryLock(h, static_cast<int>(type), start, len, &id);
  if (r == 0) {
    Instance* inst = Inst(info.Env());
    std::lock_guard<std::mutex> lk(inst->mu);
    inst->holders.insert(id);
    return Napi::Number::New(info.Env(), static_cast<double>(id));
  }
  if (p::IsContended(r)) return info.Env().Null();
  throw MakeSystemError(info.Env(), r, "fcntl(F_SETLK)");
}

Napi::Value RegistryChange(const Napi::CallbackInfo& info) {
  int r =
      p::RegistryChange(static_cast<uint64_t>(IntArg(info, 0, "holder")), static_cast<int>(IntArg(info, 1, "type")));
  if (r == 0) return Napi::Boolean::New(info.Env(), true);
  if (p::IsContended(r)) return Napi::Boolean::New(info.Env(), false);
  throw MakeSystemError(info.Env(), r, "fcntl(F_SETLK)");
}

Napi::Value RegistryUnlock(const Napi::CallbackInfo& info) {
  uint64_t id = static_cast<uint64_t>(IntArg(info, 0, "holder"));
  {
    Instance* inst = Inst(info.Env());
    std::lock_guard<std::mutex> lk(inst->mu);
    inst->holders.erase(id);
  }
  int r = p::RegistryUnlock(id);
  if (r != 0) throw MakeSystemError(info.Env(), r, "fcntl(F_SETLK)");
  return info.Env().Undefined();
}

}  // namespace

void InitRegistry(Napi::Env env, Napi::Object exports) {
  exports.Set("registryLock", Napi::Function::New(env, RegistryLock, "registryLock"));
  exports.Set("registryChange", Napi::Function::New(env, RegistryChange, "registryChange"));
  exports.Set("registryUnlock", Napi::Function::New(env, RegistryUnlock, "registryUnlock"));
}

}  // namespace fslock
