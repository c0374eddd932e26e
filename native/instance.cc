// Argument helpers and descriptor bookkeeping shared by the Node-API modules.
#include "instance.h"

#include <charconv>

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
  // One Node-API call: napi_get_value_int64 checks the type itself.
  int64_t v;
  if (i >= info.Length() || napi_get_value_int64(info.Env(), info[i], &v) != napi_ok) {
    throw Napi::TypeError::New(info.Env(), std::string("fslock binding: ") + name + " must be a number");
  }
  return v;
}

// Reads the steps from `i`: a plan number alone (see plan() in locks.cc), or
// (nsteps, primitive0, start0, len0, primitive1, start1, len1).
int StepArgs(const Napi::CallbackInfo& info, size_t i, int type, p::LockRequest* steps) {
  if (type < p::kUnlock || type > p::kExclusive)
    throw Napi::RangeError::New(info.Env(), "fslock binding: invalid type");
  int64_t first = IntArg(info, i, "steps");
  if (first < 0) {  // plan -1 - k
    Instance* inst = Inst(info.Env());
    size_t k = static_cast<size_t>(-1 - first);
    if (k >= inst->plans.size()) throw Napi::RangeError::New(info.Env(), "fslock binding: unknown plan");
    const Instance::Plan& plan = inst->plans[k];
    for (int j = 0; j < plan.n; j++) {
      steps[j] = plan.steps[j];
      steps[j].type = type;
    }
    return plan.n;
  }
  if (first < 1 || first > kMaxSteps) throw Napi::RangeError::New(info.Env(), "fslock binding: invalid lock steps");
  for (int64_t k = 0; k < first; k++) {
    size_t a = i + 1 + static_cast<size_t>(k) * 3;
    int64_t prim = IntArg(info, a, "primitive");
    steps[k].start = IntArg(info, a + 1, "start");
    steps[k].len = IntArg(info, a + 2, "len");
    if (prim < p::kFlock || prim > p::kWindows || steps[k].start < 0 || steps[k].len < 0) {
      throw Napi::RangeError::New(info.Env(), "fslock binding: invalid lock steps");
    }
    steps[k].primitive = static_cast<int>(prim);
    steps[k].type = type;
  }
  return static_cast<int>(first);
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

namespace {
// "dev:ino" into `buf` (at least 42 bytes); returns its length.
size_t FormatIdentity(const p::Identity& id, char* buf) {
  char* end = std::to_chars(buf, buf + 20, id.dev).ptr;
  *end++ = ':';
  return static_cast<size_t>(std::to_chars(end, end + 20, id.ino).ptr - buf);
}
}  // namespace

Napi::String IdentityValue(Napi::Env env, const p::Identity& id) {
  char buf[48];
  return Napi::String::New(env, buf, FormatIdentity(id, buf));
}

const char* LockSyscall(int primitive) {
  switch (primitive) {
    case p::kFlock: return "flock";
    case p::kOfd: return "fcntl(F_OFD_SETLK)";
    case p::kPosix: return "fcntl(F_SETLK)";
    default: return "LockFileEx";
  }
}

}  // namespace fslock
