// Argument helpers and descriptor bookkeeping shared by the Node-API modules.
#include "instance.h"

#include "errors.h"

namespace fslock {

namespace p = platform;

void TrackHandle(Instance* inst, p::handle_t h) {
  std::lock_guard<std::mutex> lk(inst->mu);
  inst->handles.insert(h);
}

void ForgetHandle(Instance* inst, p::handle_t h) {
  std::lock_guard<std::mutex> lk(inst->mu);
  inst->handles.erase(h);
  inst->acquired.erase(h);
}

int CloseHandle(Instance* inst, p::handle_t h) {
  ForgetHandle(inst, h);
  return p::RegistryClose(h);
}

int64_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string("fslock binding: ") + name + " must be a number");
  }
  return info[i].As<Napi::Number>().Int64Value();
}

std::string StrArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string("fslock binding: ") + name + " must be a string");
  }
  return info[i].As<Napi::String>().Utf8Value();
}

bool BoolArg(const Napi::CallbackInfo& info, size_t i) { return info.Length() > i && info[i].ToBoolean().Value(); }

p::LockRequest LockArgs(const Napi::CallbackInfo& info, size_t i, p::handle_t* fd) {
  p::LockRequest req;
  int64_t prim = IntArg(info, i, "primitive");
  *fd = IntArg(info, i + 1, "fd");
  int64_t type = IntArg(info, i + 2, "type");
  req.start = IntArg(info, i + 3, "start");
  req.len = IntArg(info, i + 4, "len");
  if (prim < p::kFlock || prim > p::kWindows || type < p::kUnlock || type > p::kExclusive || req.start < 0 ||
      req.len < 0) {
    throw Napi::RangeError::New(info.Env(), "fslock binding: invalid lock request");
  }
  req.primitive = static_cast<int>(prim);
  req.type = static_cast<int>(type);
  return req;
}

std::string IdentityKey(const p::Identity& id) { return std::to_string(id.dev) + ":" + std::to_string(id.ino); }

const char* LockSyscall(int primitive) {
  switch (primitive) {
    case p::kFlock: return "flock";
    case p::kOfd: return "fcntl(F_OFD_SETLK)";
    case p::kPosix: return "fcntl(F_SETLK)";
    default: return "LockFileEx";
  }
}

}  // namespace fslock
