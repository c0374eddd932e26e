// The Node-API surface of the addon: unpack arguments, make one platform call,
// return or throw. See src/binding.ts for the TypeScript view of it.
#pragma once

#include <napi.h>

namespace fslock {

// Adds the lock functions to `exports` and sets up per-environment state
// (open descriptors, pending waits) with a cleanup hook, so a terminating
// worker releases its locks and stops its waiter threads.
void InitLock(Napi::Env env, Napi::Object exports);

}  // namespace fslock
