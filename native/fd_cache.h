// The descriptor cache of the `keepOpen` option (fd_cache.cc).
#pragma once

#include "instance.h"

namespace fslock {

// How many released descriptors an environment keeps open for reuse.
constexpr size_t kMaxCached = 16;

// Takes the descriptor kept for `path` out of the cache: false when none is.
bool TakeCachedFd(Instance* inst, const char* path, size_t len, Instance::CachedFd* out);
// Keeps `h` (a lock taken whole by the fast path, now unlocked) for the next
// acquire() of its path: false when it cannot be kept (the cache is full, the
// path has one already, or `h` was not taken by the fast path).
bool KeepFd(Instance* inst, platform::handle_t h);
void InitFdCache(Napi::Env env, Napi::Object exports);

}  // namespace fslock
