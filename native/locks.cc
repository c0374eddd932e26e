// Node-API functions that take and release locks without waiting: one lock
// call, a query, and the fast paths that open, lock every step and check the
// file's identity (acquire), or unlock every step and close (release), in a
// single call each.
#include <string.h>

#include "errors.h"
#include "fd_cache.h"
#include "instance.h"
#include "steps.h"

namespace fslock {

namespace p = platform;

namespace {

// lock(primitive, fd, type, start, len, wait) -> true, or false when contended.
Napi::Value Lock(const Napi::CallbackInfo& info) {
  p::handle_t h;
  p::LockRequest req = LockArgs(info, 0, &h);
  int r = p::Lock(req, h, BoolArg(info, 5));
  if (r == 0) return Napi::Boolean::New(info.Env(), true);
  if (p::IsContended(r) && req.type != p::kUnlock) return Napi::Boolean::New(info.Env(), false);
  throw MakeSystemError(info.Env(), r, LockSyscall(req.primitive));
}

// query(primitive, fd, type, start, len) -> { type, start, len, pid }
Napi::Value Query(const Napi::CallbackInfo& info) {
  p::handle_t h;
  p::LockRequest req = LockArgs(info, 0, &h);
  p::LockQuery q;
  int r = p::Query(req, h, &q);
  if (r != 0) throw MakeSystemError(info.Env(), r, req.primitive == p::kOfd ? "fcntl(F_OFD_GETLK)" : "fcntl(F_GETLK)");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("type", Napi::Number::New(info.Env(), q.type));
  o.Set("start", Napi::Number::New(info.Env(), static_cast<double>(q.start)));
  o.Set("len", Napi::Number::New(info.Env(), static_cast<double>(q.len)));
  o.Set("pid", Napi::Number::New(info.Env(), static_cast<double>(q.pid)));
  return o;
}

// How many step plans an environment registers (whole-file strategies: a few).
constexpr size_t kMaxPlans = 32;

// A path argument, read without allocating when it fits `buf` (a path longer
// than PATH_MAX goes through `spill`).
class PathArg {
 public:
  PathArg(const Napi::CallbackInfo& info, size_t i) {
    napi_env env = info.Env();
    napi_value v = i < info.Length() ? static_cast<napi_value>(info[i]) : nullptr;
    if (v == nullptr || napi_get_value_string_utf8(env, v, buf_, sizeof buf_, &len_) != napi_ok) {
      throw Napi::TypeError::New(env, "fslock binding: path must be a string");
    }
    data_ = buf_;
    if (len_ == sizeof buf_ - 1) {  // may have been cut: read it whole
      spill_ = info[i].As<Napi::String>().Utf8Value();
      data_ = spill_.c_str();
      len_ = spill_.size();
    }
  }
  const char* c_str() const { return data_; }
  size_t size() const { return len_; }
  bool operator==(const std::string& s) const { return s.size() == len_ && memcmp(s.data(), data_, len_) == 0; }

 private:
  char buf_[4096];
  size_t len_ = 0;
  const char* data_ = nullptr;
  std::string spill_;
};

// plan(nsteps, primitive0, start0, len0, ...) -> a plan number (negative) for
// acquire() and release(), or 0 when this environment has too many plans.
Napi::Value Plan(const Napi::CallbackInfo& info) {
  Instance* inst = Inst(info.Env());
  Instance::Plan plan{};
  plan.n = StepArgs(info, 0, p::kUnlock, plan.steps);
  for (size_t k = 0; k < inst->plans.size(); k++) {
    const Instance::Plan& o = inst->plans[k];
    bool same = o.n == plan.n;
    for (int j = 0; same && j < plan.n; j++) {
      same = o.steps[j].primitive == plan.steps[j].primitive && o.steps[j].start == plan.steps[j].start &&
             o.steps[j].len == plan.steps[j].len;
    }
    if (same) return Napi::Number::New(info.Env(), -1 - static_cast<double>(k));
  }
  if (inst->plans.size() >= kMaxPlans) return Napi::Number::New(info.Env(), 0);
  inst->plans.push_back(plan);
  return Napi::Number::New(info.Env(), -static_cast<double>(inst->plans.size()));
}

// What one attempt on an open descriptor came to (see Locked).
enum class Attempt { kHeld, kContended, kReplaced };

// Takes the steps on `h` and checks the file is still the one at `path`.
// kHeld: every step taken, the path names this file (`id`); kContended: step
// `*k` is held elsewhere (the earlier ones are taken; `id` is the file's);
// kReplaced: the path names another file or none now (nothing is held). Other
// errors are thrown, with nothing held.
// `known`: the descriptor's identity when it is known already (a descriptor
// kept open, whose file cannot change), so only the path is looked at.
Attempt Locked(Napi::Env env, p::handle_t h, const PathArg& path, const p::LockRequest* steps, int n, int* k,
               p::Identity* id, const p::Identity* known = nullptr) {
  int r = TakeSteps(h, steps, n, k);
  if (r != 0 && !p::IsContended(r)) {
    UnlockSteps(h, steps, *k);
    throw MakeSystemError(env, r, LockSyscall(steps[*k].primitive), path.c_str());
  }
  if (*k < n) {
    if (known != nullptr) {
      *id = *known;
      return Attempt::kContended;
    }
    int e = p::GetIdentity(h, id);
    if (e != 0) {
      UnlockSteps(h, steps, *k);
      throw MakeSystemError(env, e, "fstat", path.c_str());
    }
    return Attempt::kContended;
  }
  Verified v;
  int e = known != nullptr ? VerifyPath(*known, path.c_str(), &v) : VerifyIdentity(h, path.c_str(), &v);
  if (e != 0 || !v.same) UnlockSteps(h, steps, n);
  if (e != 0) throw MakeSystemError(env, e, v.syscall, path.c_str());
  *id = v.id;
  return v.same ? Attempt::kHeld : Attempt::kReplaced;
}

// Opens `path` for acquire(): read-write or read-only as asked, never
// following a symlink, creating a missing file with O_EXCL when asked. Returns
// false when the file appeared while creating it (look again).
bool OpenLockFile(Napi::Env env, Instance* inst, const PathArg& path, int flags, p::handle_t* h) {
  int open_flags = (flags & p::kOpenWrite) | p::kOpenNoFollow;
  int r = p::Open(path.c_str(), open_flags, h);
  if (r != 0 && (flags & p::kOpenCreate) && p::IsMissing(r)) {
    r = p::Open(path.c_str(), open_flags | p::kOpenCreate | p::kOpenExclusive, h);
    if (r != 0 && p::DescribeError(r).code == "EEXIST") return false;  // created meanwhile
  }
  if (r != 0) throw MakeSystemError(env, r, "open", path.c_str());
  TrackHandle(inst, *h);
  return true;
}

// The answer of acquire(): the identity, with out[0] the descriptor and
// out[1] the contended step or -1; with `remember`, a lock held whole is
// remembered for release()'s keepOpen.
Napi::Value Answer(Napi::Env env, Instance* inst, p::handle_t h, const PathArg& path, Attempt a, int k,
                   const p::Identity& id, bool remember) {
  inst->out[0] = static_cast<double>(h);
  inst->out[1] = a == Attempt::kHeld ? -1 : k;
  if (remember && a == Attempt::kHeld) inst->acquired[h] = Instance::Held{id, std::string(path.c_str(), path.size())};
  return IdentityValue(env, id);
}

// acquire(path, openFlags, type, steps...) -> identity
//
// Opens `path` (read-write, never following a symlink; with kOpenCreate a
// missing file is created with O_EXCL, again never through a symlink), takes
// the steps in order without waiting, and checks that the file is still the
// one at `path` (starting again if it was replaced meanwhile). Returns the
// file's identity and sets out[0] to the descriptor and out[1] to -1 when every
// step was taken, or to the index of the contended step (the descriptor stays
// open holding the earlier steps, for the caller to wait on). Errors are
// thrown as they are (ELOOP for a symlink, EACCES, EISDIR, ...): the caller
// handles those on its slower path. `steps...` as StepArgs reads them. A
// descriptor kept open from an earlier lock of the path (keepOpen) is tried
// first: no open() or close(), only the locks and the identity check.
Napi::Value Acquire(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Instance* inst = Inst(env);
  const PathArg path(info, 0);
  int flags = static_cast<int>(IntArg(info, 1, "flags"));
  bool remember = (flags & kAcquireKeep) != 0;
  p::LockRequest steps[kMaxSteps];
  int n = StepArgs(info, 3, static_cast<int>(IntArg(info, 2, "type")), steps);
  int k = 0;
  p::Identity id;
  Instance::CachedFd cached;
  if ((flags & p::kOpenWrite) && !inst->fd_cache.empty() && TakeCachedFd(inst, path.c_str(), path.size(), &cached)) {
    Attempt a = Attempt::kReplaced;
    try {
      a = Locked(env, cached.fd, path, steps, n, &k, &id, &cached.id);
    } catch (const Napi::Error&) {
      a = Attempt::kReplaced;  // an error on a kept descriptor: forget it and open afresh
    }
    if (a != Attempt::kReplaced) return Answer(env, inst, cached.fd, path, a, k, id, remember);
    CloseHandle(inst, cached.fd);  // replaced, deleted, or an error: nothing is held on it
  }
  for (int attempt = 0; attempt < 1000; attempt++) {
    p::handle_t h;
    if (!OpenLockFile(env, inst, path, flags, &h)) continue;
    Attempt a;
    try {
      a = Locked(env, h, path, steps, n, &k, &id);
    } catch (...) {
      CloseHandle(inst, h);
      throw;
    }
    if (a != Attempt::kReplaced) return Answer(env, inst, h, path, a, k, id, remember);
    CloseHandle(inst, h);  // replaced or deleted while we locked: a lock on it would exclude nobody
  }
  std::string shown(path.c_str(), path.size());
  Napi::Error e =
      Napi::Error::New(env, "EAGAIN: the lock file kept being replaced while it was locked, '" + shown + "'");
  e.Set("code", Napi::String::New(env, "EAGAIN"));
  e.Set("path", Napi::String::New(env, shown));
  throw e;
}

// release(fd, keepOpen, steps...): unlocks the steps in reverse order
// (explicitly: a child between fork and exec still references the open file
// description, and only an explicit unlock releases the lock for everyone at
// once). Then closes the descriptor, or with `keepOpen` keeps it, unlocked, for
// the next acquire() of the path it was acquired by (at most kMaxCached of
// them; sweepCache closes idle ones). `steps...` as StepArgs reads them.
Napi::Value Release(const Napi::CallbackInfo& info) {
  Instance* inst = Inst(info.Env());
  p::handle_t h = IntArg(info, 0, "fd");
  bool keep = BoolArg(info, 1);
  p::LockRequest steps[kMaxSteps];
  int n = StepArgs(info, 2, p::kUnlock, steps);
  int failed = 0;
  int failed_prim = 0;
  for (int k = n - 1; k >= 0; k--) {
    int r = p::Lock(steps[k], h, false);
    if (r != 0 && failed == 0) {
      failed = r;
      failed_prim = steps[k].primitive;
    }
  }
  if (keep && failed == 0 && KeepFd(inst, h)) return info.Env().Undefined();
  int c = CloseHandle(inst, h);
  if (failed != 0) throw MakeSystemError(info.Env(), failed, LockSyscall(failed_prim));
  if (c != 0) throw MakeSystemError(info.Env(), c, "close");
  return info.Env().Undefined();
}

}  // namespace

void InitLocks(Napi::Env env, Napi::Object exports) {
  exports.Set("lock", Napi::Function::New(env, Lock, "lock"));
  exports.Set("query", Napi::Function::New(env, Query, "query"));
  exports.Set("plan", Napi::Function::New(env, Plan, "plan"));
  exports.Set("acquire", Napi::Function::New(env, Acquire, "acquire"));
  exports.Set("release", Napi::Function::New(env, Release, "release"));
  InitFdCache(env, exports);
}

}  // namespace fslock
