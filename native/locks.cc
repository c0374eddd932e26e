// Node-API functions that take and release locks without waiting: one lock
// call, a query, and the fast paths that open, lock every step and check the
// file's identity (acquire), or unlock every step and close (release), in a
// single call each.
#include "errors.h"
#include "instance.h"

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

constexpr int kMaxSteps = 2;
// How many released descriptors an environment keeps open for reuse.
constexpr size_t kMaxCached = 16;

// Reads (type, nsteps, primitive0, start0, len0, primitive1, start1, len1) from `i`.
int StepArgs(const Napi::CallbackInfo& info, size_t i, p::LockRequest* steps) {
  int64_t type = IntArg(info, i, "type");
  int64_t n = IntArg(info, i + 1, "steps");
  if (n < 1 || n > kMaxSteps || type < p::kUnlock || type > p::kExclusive) {
    throw Napi::RangeError::New(info.Env(), "fslock binding: invalid lock steps");
  }
  for (int64_t k = 0; k < n; k++) {
    size_t a = i + 2 + static_cast<size_t>(k) * 3;
    int64_t prim = IntArg(info, a, "primitive");
    steps[k].type = static_cast<int>(type);
    steps[k].start = IntArg(info, a + 1, "start");
    steps[k].len = IntArg(info, a + 2, "len");
    if (prim < p::kFlock || prim > p::kWindows || steps[k].start < 0 || steps[k].len < 0) {
      throw Napi::RangeError::New(info.Env(), "fslock binding: invalid lock steps");
    }
    steps[k].primitive = static_cast<int>(prim);
  }
  return static_cast<int>(n);
}

void UnlockSteps(p::handle_t h, const p::LockRequest* steps, int upto) {
  for (int k = upto - 1; k >= 0; k--) {
    p::LockRequest u = steps[k];
    u.type = p::kUnlock;
    p::Lock(u, h, false);
  }
}

// acquire(path, openFlags, type, nsteps, primitive0, start0, len0, ...) -> identity
//
// Opens `path` (read-write, never following a symlink; with kOpenCreate a
// missing file is created with O_EXCL, again never through a symlink), takes
// the steps in order without waiting, and checks that the file is still the
// one at `path` (starting again if it was replaced meanwhile). Returns the
// file's identity and sets out[0] to the descriptor and out[1] to -1 when every
// step was taken, or to the index of the contended step (the descriptor stays
// open holding the earlier steps, for the caller to wait on). Errors are
// thrown as they are (ELOOP for a symlink, EACCES, EISDIR, ...): the caller
// handles those on its slower path.
Napi::Value Acquire(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Instance* inst = Inst(env);
  const std::string path = StrArg(info, 0, "path");
  int flags = static_cast<int>(IntArg(info, 1, "flags"));
  p::LockRequest steps[kMaxSteps];
  int n = StepArgs(info, 2, steps);
  bool create = (flags & p::kOpenCreate) != 0;
  int open_flags = (flags & p::kOpenWrite) | p::kOpenNoFollow;
  auto taken = [&](p::handle_t h, const p::Identity& id) {
    inst->out[0] = static_cast<double>(h);
    inst->out[1] = -1;
    inst->acquired[h] = id;
    return Napi::String::New(env, IdentityKey(id));
  };
  // A descriptor this environment kept open from an earlier lock of the same
  // path: no open() or close(), only the locks and the identity check.
  if ((flags & p::kOpenWrite) && !inst->fd_cache.empty()) {
    auto c = inst->fd_cache.find(path);
    if (c != inst->fd_cache.end()) {
      Instance::CachedFd cached = c->second;
      inst->fd_cache.erase(c);
      int r = 0;
      int k = 0;
      for (; k < n; k++) {
        r = p::Lock(steps[k], cached.fd, false);
        if (r != 0) break;
      }
      if (r != 0 && p::IsContended(r)) {
        inst->out[0] = static_cast<double>(cached.fd);
        inst->out[1] = k;
        return Napi::String::New(env, IdentityKey(cached.id));
      }
      p::Identity now;
      if (r == 0 && p::StatPathIdentity(path.c_str(), &now) == 0 && now == cached.id)
        return taken(cached.fd, cached.id);
      UnlockSteps(cached.fd, steps, k);  // an error, or the file was replaced: forget this descriptor
      CloseHandle(inst, cached.fd);
    }
  }
  for (int attempt = 0; attempt < 1000; attempt++) {
    p::handle_t h;
    int r = p::Open(path.c_str(), open_flags, &h);
    if (r != 0 && create && p::IsMissing(r)) {
      r = p::Open(path.c_str(), open_flags | p::kOpenCreate | p::kOpenExclusive, &h);
      if (r != 0 && p::DescribeError(r).code == "EEXIST") continue;  // created meanwhile: look again
    }
    if (r != 0) throw MakeSystemError(env, r, "open", path);
    TrackHandle(inst, h);
    int k = 0;
    for (; k < n; k++) {
      r = p::Lock(steps[k], h, false);
      if (r != 0) break;
    }
    if (r != 0 && !p::IsContended(r)) {
      UnlockSteps(h, steps, k);
      CloseHandle(inst, h);
      throw MakeSystemError(env, r, LockSyscall(steps[k].primitive), path);
    }
    p::Identity fid, pid;
    int e = p::GetIdentity(h, &fid);
    if (e != 0) {
      UnlockSteps(h, steps, k);
      CloseHandle(inst, h);
      throw MakeSystemError(env, e, "fstat", path);
    }
    if (k < n) {
      inst->out[0] = static_cast<double>(h);
      inst->out[1] = k;
      return Napi::String::New(env, IdentityKey(fid));
    }
    e = p::StatPathIdentity(path.c_str(), &pid);
    if (e == 0 && pid == fid) return taken(h, fid);
    // replaced or deleted while we locked: a lock on it would exclude nobody
    UnlockSteps(h, steps, k);
    CloseHandle(inst, h);
    if (e != 0 && !p::IsMissing(e)) throw MakeSystemError(env, e, "stat", path);
  }
  Napi::Error e =
      Napi::Error::New(env, "EAGAIN: the lock file kept being replaced while it was locked, '" + path + "'");
  e.Set("code", Napi::String::New(env, "EAGAIN"));
  e.Set("path", Napi::String::New(env, path));
  throw e;
}

// release(fd, type, nsteps, primitive0, start0, len0, ..., keepOpenPath): unlocks
// the steps in reverse order (explicitly: a child between fork and exec still
// references the open file description, and only an explicit unlock releases
// the lock for everyone at once). Then closes the descriptor, or with
// a `keepOpenPath` (the path it was acquired by) keeps it, unlocked, for the
// next lock of that path (at most kMaxCached of them; sweepCache closes idle ones).
Napi::Value Release(const Napi::CallbackInfo& info) {
  Instance* inst = Inst(info.Env());
  p::handle_t h = IntArg(info, 0, "fd");
  p::LockRequest steps[kMaxSteps];
  int n = StepArgs(info, 1, steps);
  size_t keep_arg = 3 + static_cast<size_t>(n) * 3;
  bool keep = info.Length() > keep_arg && info[keep_arg].IsString();
  int failed = 0;
  int failed_prim = 0;
  for (int k = n - 1; k >= 0; k--) {
    p::LockRequest u = steps[k];
    u.type = p::kUnlock;
    int r = p::Lock(u, h, false);
    if (r != 0 && failed == 0) {
      failed = r;
      failed_prim = u.primitive;
    }
  }
  if (keep && failed == 0 && inst->fd_cache.size() < kMaxCached) {
    auto a = inst->acquired.find(h);
    if (a != inst->acquired.end()) {
      auto ins = inst->fd_cache.emplace(info[keep_arg].As<Napi::String>().Utf8Value(),
                                        Instance::CachedFd{h, a->second, std::chrono::steady_clock::now()});
      if (ins.second) {
        inst->acquired.erase(a);
        return info.Env().Undefined();
      }
    }
  }
  int c = CloseHandle(inst, h);
  if (failed != 0) throw MakeSystemError(info.Env(), failed, LockSyscall(failed_prim));
  if (c != 0) throw MakeSystemError(info.Env(), c, "close");
  return info.Env().Undefined();
}

// sweepCache(idleMs) -> how many descriptors stay cached: closes those kept
// open for at least `idleMs` (0: all of them).
Napi::Value SweepCache(const Napi::CallbackInfo& info) {
  Instance* inst = Inst(info.Env());
  auto idle = std::chrono::milliseconds(IntArg(info, 0, "idleMs"));
  auto now = std::chrono::steady_clock::now();
  for (auto it = inst->fd_cache.begin(); it != inst->fd_cache.end();) {
    if (now - it->second.since >= idle) {
      CloseHandle(inst, it->second.fd);
      it = inst->fd_cache.erase(it);
    } else {
      ++it;
    }
  }
  return Napi::Number::New(info.Env(), static_cast<double>(inst->fd_cache.size()));
}

}  // namespace

void InitLocks(Napi::Env env, Napi::Object exports) {
  exports.Set("lock", Napi::Function::New(env, Lock, "lock"));
  exports.Set("query", Napi::Function::New(env, Query, "query"));
  exports.Set("acquire", Napi::Function::New(env, Acquire, "acquire"));
  exports.Set("release", Napi::Function::New(env, Release, "release"));
  exports.Set("sweepCache", Napi::Function::New(env, SweepCache, "sweepCache"));
}

}  // namespace fslock
