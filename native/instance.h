// Per-environment state of the addon (the main thread and each worker thread
// has its own), and the argument helpers every Node-API function uses.
#pragma once

#include <napi.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "platform/platform.h"

namespace fslock {

struct WaitCtx;
struct SyncWait;

// acquire()'s flag beside the open flags: the lock may be released with
// keepOpen, so remember it (path and identity) for release().
constexpr int kAcquireKeep = 256;

// Steps of one lock: flock then OFD on Linux, at most.
constexpr int kMaxSteps = 2;

struct Instance {
  std::mutex mu;
  std::unordered_set<platform::handle_t> handles;  // opened here and not yet closed
  std::set<uint64_t> holders;                      // POSIX registry holders taken here
  std::set<WaitCtx*> waits;                        // pending asynchronous waits (each holds a reference)
  std::set<SyncWait*> sync_waits;                  // unsettled synchronous waits (each holds a reference)
  std::set<std::string> marks;                     // process-wide marks set by this env
  // Results that do not fit a return value: out[0] the descriptor, out[1] the
  // contended step (or -1). A Float64Array the JS side keeps (HANDLE values fit).
  double* out = nullptr;
  Napi::Reference<Napi::Float64Array> out_ref;
  // Descriptors of released locks kept open for the next lock of the same
  // path (see locks.cc): a few of them, so a vector searched in order.
  struct CachedFd {
    std::string path;
    platform::handle_t fd;
    platform::Identity id;
    std::chrono::steady_clock::time_point since;
  };
  std::vector<CachedFd> fd_cache;
  // Locks taken whole by the fast path: descriptor -> identity and the path it
  // was acquired by (moved to and from fd_cache, so a lock taken again and
  // again allocates nothing).
  struct Held {
    platform::Identity id;
    std::string path;
  };
  std::unordered_map<platform::handle_t, Held> acquired;
  // Step lists registered once by the JS strategies (plan()), so the fast
  // path's calls carry a plan number instead of every step's arguments.
  struct Plan {
    int n;
    platform::LockRequest steps[kMaxSteps];
  };
  std::vector<Plan> plans;
  // One thread-safe function per environment delivers every wait's result.
  napi_threadsafe_function tsfn = nullptr;
  size_t pending_waits = 0;  // referenced while > 0
};

inline Instance* Inst(Napi::Env env) { return env.GetInstanceData<Instance>(); }

// Remembers a descriptor opened in this environment, to close it at teardown.
void TrackHandle(Instance* inst, platform::handle_t h);
void ForgetHandle(Instance* inst, platform::handle_t h);
// Closes through the POSIX registry (a close never drops a registry lock).
int CloseHandle(Instance* inst, platform::handle_t h);

// ---- argument helpers: cheap checks so misuse throws instead of crashing ----
int64_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* name);
std::string StrArg(const Napi::CallbackInfo& info, size_t i, const char* name);
bool BoolArg(const Napi::CallbackInfo& info, size_t i);
// Reads the (primitive, fd, type, start, len) arguments starting at `i`, checked.
platform::LockRequest LockArgs(const Napi::CallbackInfo& info, size_t i, platform::handle_t* fd);
// Reads the steps of a fast-path call from `i`: a plan number alone (see
// plan() in locks.cc), or (nsteps, primitive0, start0, len0, ...), each with
// `type`. Returns how many.
int StepArgs(const Napi::CallbackInfo& info, size_t i, int type, platform::LockRequest* steps);
// "dev:ino", the identity string the JS side compares.
Napi::String IdentityValue(Napi::Env env, const platform::Identity& id);
// The system call a lock request makes, for error messages.
const char* LockSyscall(int primitive);

// Each module adds its functions to `exports`.
void InitFiles(Napi::Env env, Napi::Object exports);
void InitLocks(Napi::Env env, Napi::Object exports);
void InitWaits(Napi::Env env, Napi::Object exports);
void InitRegistry(Napi::Env env, Napi::Object exports);
void InitMarks(Napi::Env env, Napi::Object exports);
// Teardown of an environment's waits and marks (called by the cleanup hook).
void CleanupWaits(Instance* inst, std::unordered_set<platform::handle_t>* handles);
void CleanupMarks(Instance* inst);

}  // namespace fslock
