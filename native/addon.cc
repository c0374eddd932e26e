// Module registration only; everything else is in lock.cc and platform/.
#include <napi.h>

#include "lock.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  fslock::InitLock(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(fslock, Init)
