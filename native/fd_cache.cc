// Descriptors of released locks kept open for the next lock of the same path
// (the `keepOpen` option): a few per environment, in a vector searched in
// order. locks.cc takes one back in acquire() and keeps one in release();
// sweepCache closes those kept too long.
#include "fd_cache.h"

#include <cstring>

namespace fslock {

namespace p = platform;

bool TakeCachedFd(Instance* inst, const char* path, size_t len, Instance::CachedFd* out) {
  for (size_t c = 0; c < inst->fd_cache.size(); c++) {
    const std::string& cached = inst->fd_cache[c].path;
    if (cached.size() != len || memcmp(cached.data(), path, len) != 0) continue;
    *out = std::move(inst->fd_cache[c]);
    inst->fd_cache.erase(inst->fd_cache.begin() + static_cast<std::ptrdiff_t>(c));
    return true;
  }
  return false;
}

bool KeepFd(Instance* inst, p::handle_t h) {
  if (inst->fd_cache.size() >= kMaxCached) return false;
  auto a = inst->acquired.find(h);
  if (a == inst->acquired.end()) return false;
  for (const auto& c : inst->fd_cache) {
    if (c.path == a->second.path) return false;
  }
  inst->fd_cache.push_back(
      Instance::CachedFd{std::move(a->second.path), h, a->second.id, std::chrono::steady_clock::now()});
  inst->acquired.erase(a);
  return true;
}

namespace {

// sweepCache(idleMs) -> how many descriptors stay cached: closes those kept
// open for at least `idleMs` (0: all of them).
Napi::Value SweepCache(const Napi::CallbackInfo& info) {
  Instance* inst = Inst(info.Env());
  auto idle = std::chrono::milliseconds(IntArg(info, 0, "idleMs"));
  auto now = std::chrono::steady_clock::now();
  for (auto it = inst->fd_cache.begin(); it != inst->fd_cache.end();) {
    if (now - it->since >= idle) {
      CloseHandle(inst, it->fd);
      it = inst->fd_cache.erase(it);
    } else {
      ++it;
    }
  }
  return Napi::Number::New(info.Env(), static_cast<double>(inst->fd_cache.size()));
}

}  // namespace

void InitFdCache(Napi::Env env, Napi::Object exports) {
  exports.Set("sweepCache", Napi::Function::New(env, SweepCache, "sweepCache"));
}

}  // namespace fslock
