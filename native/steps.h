// Taking a lock's steps and checking that the locked file is still the one at
// its path: the two things the fast path (locks.cc) and the waiter thread's
// follow-up (waits.cc) both do, written once.
#pragma once

#include "platform/platform.h"

namespace fslock {

// Takes steps[0..n) in order without waiting. Returns 0 when every step was
// taken, else the error of the first that was not (contended or another);
// `taken` is how many were.
inline int TakeSteps(platform::handle_t h, const platform::LockRequest* steps, int n, int* taken) {
  int k = 0;
  int r = 0;
  for (; k < n; k++) {
    r = platform::Lock(steps[k], h, false);
    if (r != 0) break;
  }
  *taken = k;
  return r;
}

// Unlocks steps[0..upto) in reverse order.
inline void UnlockSteps(platform::handle_t h, const platform::LockRequest* steps, int upto) {
  for (int k = upto - 1; k >= 0; k--) {
    platform::LockRequest u = steps[k];
    u.type = platform::kUnlock;
    platform::Lock(u, h, false);
  }
}

// Whether the file open as `h` is still the one `path` names: `id` is its
// identity; `same` false when the path names another file or none (it was
// replaced or deleted: a lock on it would exclude nobody). Returns 0, or the
// error of fstat or stat (a missing path is not an error) with `syscall`.
struct Verified {
  platform::Identity id;
  bool same = false;
  const char* syscall = nullptr;
};
inline int VerifyIdentity(platform::handle_t h, const char* path, Verified* v) {
  int e = platform::GetIdentity(h, &v->id);
  if (e != 0) {
    v->syscall = "fstat";
    return e;
  }
  platform::Identity at;
  e = platform::StatPathIdentity(path, &at);
  if (e != 0 && !platform::IsMissing(e)) {
    v->syscall = "stat";
    return e;
  }
  v->same = e == 0 && at == v->id;
  return 0;
}

// VerifyIdentity for a descriptor whose identity is `known` already (one kept
// open: the file it refers to cannot change): only the path is looked at.
inline int VerifyPath(const platform::Identity& known, const char* path, Verified* v) {
  v->id = known;
  platform::Identity at;
  int e = platform::StatPathIdentity(path, &at);
  if (e != 0 && !platform::IsMissing(e)) {
    v->syscall = "stat";
    return e;
  }
  v->same = e == 0 && at == known;
  return 0;
}

}  // namespace fslock
