// Module registration: per-environment state, the cleanup hook, the
// constants shared with src/binding.ts, and each module's functions
// (files.cc, locks.cc, waits.cc, registry.cc, marks.cc).
#include <napi.h>

#include "instance.h"

#ifndef FSLOCK_SOURCE_HASH
#define FSLOCK_SOURCE_HASH "unknown"
#endif

namespace fslock {

namespace p = platform;

namespace {

// Releases everything an environment still holds when it goes away: a
// terminated worker behaves like a process that exited.
void Cleanup(void* arg) {
  Instance* inst = static_cast<Instance*>(arg);
  std::unordered_set<p::handle_t> handles;
  std::set<uint64_t> holders;
  {
    std::lock_guard<std::mutex> lk(inst->mu);
    handles = inst->handles;
    holders.swap(inst->holders);
  }
  CleanupWaits(inst, &handles);
  for (uint64_t id : holders) p::RegistryUnlock(id);
  for (p::handle_t h : handles) p::RegistryClose(h);
  {
    std::lock_guard<std::mutex> lk(inst->mu);
    inst->handles.clear();
  }
  CleanupMarks(inst);
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* inst = new Instance();
  env.SetInstanceData<Instance>(inst);  // deleted by node-addon-api at teardown
  napi_add_env_cleanup_hook(env, Cleanup, inst);

  InitFiles(env, exports);
  InitLocks(env, exports);
  InitWaits(env, exports);
  InitRegistry(env, exports);
  InitMarks(env, exports);

  Napi::Float64Array out = Napi::Float64Array::New(env, 2);
  inst->out = out.Data();
  inst->out_ref = Napi::Persistent(out);
  exports.Set("out", out);

  Napi::Object c = Napi::Object::New(env);
  c.Set("FLOCK", Napi::Number::New(env, p::kFlock));
  c.Set("OFD", Napi::Number::New(env, p::kOfd));
  c.Set("POSIX", Napi::Number::New(env, p::kPosix));
  c.Set("WINDOWS", Napi::Number::New(env, p::kWindows));
  c.Set("UNLOCK", Napi::Number::New(env, p::kUnlock));
  c.Set("SHARED", Napi::Number::New(env, p::kShared));
  c.Set("EXCLUSIVE", Napi::Number::New(env, p::kExclusive));
  c.Set("OPEN_WRITE", Napi::Number::New(env, p::kOpenWrite));
  c.Set("OPEN_CREATE", Napi::Number::New(env, p::kOpenCreate));
  c.Set("OPEN_NOFOLLOW", Napi::Number::New(env, p::kOpenNoFollow));
  c.Set("OPEN_EXCLUSIVE", Napi::Number::New(env, p::kOpenExclusive));
  c.Set("ACQUIRE_KEEP", Napi::Number::New(env, kAcquireKeep));
  c.Set("ANONYMOUS_FILE", Napi::Number::New(env, p::AnonymousFileFlags()));
  c.Set("NATIVE_WAIT", Napi::Boolean::New(env, p::WaitSupported()));
  exports.Set("constants", c);
  exports.Set("sourceHash", Napi::String::New(env, FSLOCK_SOURCE_HASH));
  return exports;
}

}  // namespace fslock

namespace {
Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return fslock::Init(env, exports); }
}  // namespace

NODE_API_MODULE(fslock, InitModule)
