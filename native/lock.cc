#include "lock.h"

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_set>

#include "errors.h"
#include "platform/platform.h"

#ifndef FSLOCK_SOURCE_HASH
#define FSLOCK_SOURCE_HASH "unknown"
#endif

namespace fslock {

namespace p = platform;

namespace {

struct WaitCtx;

// Per-environment (main thread or worker) state.
struct Instance {
  std::mutex mu;
  std::set<p::handle_t> handles;              // opened here and not yet closed
  std::set<uint64_t> holders;                 // POSIX registry holders taken here
  std::set<std::shared_ptr<WaitCtx>> waits;   // pending asynchronous waits
  std::set<std::string> marks;                // process-wide marks set by this env
};

struct WaitCtx {
  Instance* inst = nullptr;
  p::Waiter* waiter = nullptr;
  p::handle_t handle = 0;
  Napi::ThreadSafeFunction tsfn;
  std::atomic<bool> freed{false};
  std::atomic<bool> stuck{false};
};

// Process-wide marks (shared by every worker thread): used by the session
// protocol to know which sessions are live anywhere in this process.
std::mutex g_marks_mu;
std::unordered_multiset<std::string> g_marks;

Instance* Inst(Napi::Env env) { return env.GetInstanceData<Instance>(); }

// ---- argument helpers: cheap checks so misuse throws instead of crashing ----
int64_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string("fslock binding: ") + name + " must be a number");
  }
  return info[i].As<Napi::Number>().Int64Value();
}

std::string StrArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string("fslock binding: ") + name + " must be a string");
  }
  return info[i].As<Napi::String>().Utf8Value();
}

bool BoolArg(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].ToBoolean().Value();
}

void CheckLockArgs(Napi::Env env, int64_t primitive, int64_t type, int64_t start, int64_t len) {
  if (primitive < p::kFlock || primitive > p::kWindows || type < p::kUnlock || type > p::kExclusive ||
      start < 0 || len < 0) {
    throw Napi::RangeError::New(env, "fslock binding: invalid lock request");
  }
}

void ForgetHandle(Instance* inst, p::handle_t h) {
  std::lock_guard<std::mutex> lk(inst->mu);
  inst->handles.erase(h);
}

// ---- files ----
Napi::Value Open(const Napi::CallbackInfo& info) {
  std::string path = StrArg(info, 0, "path");
  int flags = static_cast<int>(IntArg(info, 1, "flags"));
  p::handle_t h;
  int r = p::Open(path.c_str(), flags, &h);
  if (r != 0) throw MakeSystemError(info.Env(), r, "open", path);
  Instance* inst = Inst(info.Env());
  {
    std::lock_guard<std::mutex> lk(inst->mu);
    inst->handles.insert(h);
  }
  return Napi::Number::New(info.Env(), static_cast<double>(h));
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  p::handle_t h = IntArg(info, 0, "fd");
  ForgetHandle(Inst(info.Env()), h);
  int r = p::RegistryClose(h);
  if (r != 0) throw MakeSystemError(info.Env(), r, "close");
  return info.Env().Undefined();
}

std::string IdentityKey(const p::Identity& id) {
  return std::to_string(id.dev) + ":" + std::to_string(id.ino);
}

Napi::Value Identity(const Napi::CallbackInfo& info) {
  p::Identity id;
  int r = p::GetIdentity(IntArg(info, 0, "fd"), &id);
  if (r != 0) throw MakeSystemError(info.Env(), r, "fstat");
  return Napi::String::New(info.Env(), IdentityKey(id));
}

// Identity of the file at `path`, or null when nothing is there.
Napi::Value PathIdentity(const Napi::CallbackInfo& info) {
  std::string path = StrArg(info, 0, "path");
  p::Identity id;
  int r = p::StatPathIdentity(path.c_str(), &id);
  if (r != 0) {
    ErrorName n = DescribeError(r);
    if (n.code == "ENOENT" || n.code == "ENOTDIR") return info.Env().Null();
    throw MakeSystemError(info.Env(), r, "stat", path);
  }
  return Napi::String::New(info.Env(), IdentityKey(id));
}

Napi::Value FsInfo(const Napi::CallbackInfo& info) {
  p::FsInfo fs;
  int r = p::GetFsInfo(IntArg(info, 0, "fd"), &fs);
  if (r != 0) throw MakeSystemError(info.Env(), r, "fstatfs");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("type", Napi::Number::New(info.Env(), static_cast<double>(fs.type)));
  o.Set("name", Napi::String::New(info.Env(), fs.name));
  return o;
}

Napi::Value Truncate(const Napi::CallbackInfo& info) {
  int r = p::Truncate(IntArg(info, 0, "fd"), IntArg(info, 1, "size"));
  if (r != 0) throw MakeSystemError(info.Env(), r, "ftruncate");
  return info.Env().Undefined();
}

Napi::Value WriteAt(const Napi::CallbackInfo& info) {
  p::handle_t h = IntArg(info, 0, "fd");
  if (info.Length() < 2 || !info[1].IsBuffer()) {
    throw Napi::TypeError::New(info.Env(), "fslock binding: data must be a Buffer");
  }
  Napi::Buffer<uint8_t> buf = info[1].As<Napi::Buffer<uint8_t>>();
  size_t written = 0;
  int r = p::WriteAt(h, buf.Data(), buf.Length(), IntArg(info, 2, "offset"), &written);
  if (r != 0) throw MakeSystemError(info.Env(), r, "write");
  return Napi::Number::New(info.Env(), static_cast<double>(written));
}

Napi::Value ReadAt(const Napi::CallbackInfo& info) {
  p::handle_t h = IntArg(info, 0, "fd");
  if (info.Length() < 2 || !info[1].IsBuffer()) {
    throw Napi::TypeError::New(info.Env(), "fslock binding: data must be a Buffer");
  }
  Napi::Buffer<uint8_t> buf = info[1].As<Napi::Buffer<uint8_t>>();
  size_t got = 0;
  int r = p::ReadAt(h, buf.Data(), buf.Length(), IntArg(info, 2, "offset"), &got);
  if (r != 0) throw MakeSystemError(info.Env(), r, "read");
  return Napi::Number::New(info.Env(), static_cast<double>(got));
}

// renameNoReplace(from, to): rename that fails with EEXIST instead of
// replacing; ENOSYS where the OS or filesystem cannot do that atomically.
Napi::Value RenameNoReplace(const Napi::CallbackInfo& info) {
  std::string from = StrArg(info, 0, "from");
  std::string to = StrArg(info, 1, "to");
  int r = p::RenameNoReplace(from.c_str(), to.c_str());
  if (r != 0) throw MakeSystemError(info.Env(), r, "rename", from);
  return info.Env().Undefined();
}

const char* LockSyscall(int64_t primitive) {
  switch (primitive) {
    case p::kFlock: return "flock";
    case p::kOfd: return "fcntl(F_OFD_SETLK)";
    case p::kPosix: return "fcntl(F_SETLK)";
    default: return "LockFileEx";
  }
}

// lock(primitive, fd, type, start, len, wait) -> true, or false when contended.
Napi::Value Lock(const Napi::CallbackInfo& info) {
  int64_t prim = IntArg(info, 0, "primitive");
  p::handle_t h = IntArg(info, 1, "fd");
  int64_t type = IntArg(info, 2, "type");
  int64_t start = IntArg(info, 3, "start");
  int64_t len = IntArg(info, 4, "len");
  CheckLockArgs(info.Env(), prim, type, start, len);
  int r = p::Lock(static_cast<int>(prim), h, static_cast<int>(type), start, len, BoolArg(info, 5));
  if (r == 0) return Napi::Boolean::New(info.Env(), true);
  if (p::IsContended(r) && type != p::kUnlock) return Napi::Boolean::New(info.Env(), false);
  throw MakeSystemError(info.Env(), r, LockSyscall(prim));
}

// query(primitive, fd, type, start, len) -> { type, start, len, pid }
Napi::Value Query(const Napi::CallbackInfo& info) {
  int64_t prim = IntArg(info, 0, "primitive");
  int64_t type = IntArg(info, 2, "type");
  int64_t start = IntArg(info, 3, "start");
  int64_t len = IntArg(info, 4, "len");
  CheckLockArgs(info.Env(), prim, type, start, len);
  p::LockQuery q;
  int r = p::Query(static_cast<int>(prim), IntArg(info, 1, "fd"), static_cast<int>(type), start, len, &q);
  if (r != 0) throw MakeSystemError(info.Env(), r, prim == p::kOfd ? "fcntl(F_OFD_GETLK)" : "fcntl(F_GETLK)");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("type", Napi::Number::New(info.Env(), q.type));
  o.Set("start", Napi::Number::New(info.Env(), static_cast<double>(q.start)));
  o.Set("len", Napi::Number::New(info.Env(), static_cast<double>(q.len)));
  o.Set("pid", Napi::Number::New(info.Env(), static_cast<double>(q.pid)));
  return o;
}

// ---- asynchronous waits on a dedicated thread ----
void FreeWaiter(const std::shared_ptr<WaitCtx>& ctx) {
  if (!ctx->freed.exchange(true)) p::WaitFree(ctx->waiter);
}

void CallJs(Napi::Env env, Napi::Function callback, std::shared_ptr<WaitCtx>* data) {
  std::shared_ptr<WaitCtx> ctx = *data;
  delete data;
  if (env == nullptr) return;  // environment is shutting down
  int result = p::WaitResult(ctx->waiter);
  bool stuck = ctx->stuck.load();
  {
    std::lock_guard<std::mutex> lk(ctx->inst->mu);
    ctx->inst->waits.erase(ctx);
  }
  FreeWaiter(ctx);
  if (stuck) return;  // the caller was told already; the thread closed the fd
  if (result == 0) {
    callback.Call({env.Null()});
  } else {
    callback.Call({MakeSystemError(env, result, "lock wait").Value()});
  }
}

void WaitDoneOnThread(p::Waiter*, void* raw) {
  auto* holder = static_cast<std::shared_ptr<WaitCtx>*>(raw);
  std::shared_ptr<WaitCtx> ctx = *holder;
  delete holder;
  auto* data = new std::shared_ptr<WaitCtx>(ctx);
  if (ctx->tsfn.NonBlockingCall(data, CallJs) != napi_ok) delete data;
  ctx->tsfn.Release();
}

// waitStart(primitive, fd, type, start, len, callback) -> handle
// The callback receives (null) once the lock is granted or (error).
Napi::Value WaitStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t prim = IntArg(info, 0, "primitive");
  p::handle_t h = IntArg(info, 1, "fd");
  int64_t type = IntArg(info, 2, "type");
  int64_t start = IntArg(info, 3, "start");
  int64_t len = IntArg(info, 4, "len");
  CheckLockArgs(env, prim, type, start, len);
  if (info.Length() < 6 || !info[5].IsFunction()) {
    throw Napi::TypeError::New(env, "fslock binding: callback must be a function");
  }
  auto ctx = std::make_shared<WaitCtx>();
  ctx->inst = Inst(env);
  ctx->handle = h;
  // The thread-safe function keeps the event loop alive while the wait is
  // pending, like a timer would.
  ctx->tsfn = Napi::ThreadSafeFunction::New(env, info[5].As<Napi::Function>(), "fslock.wait", 0, 1);
  auto* arg = new std::shared_ptr<WaitCtx>(ctx);
  p::Waiter* w = nullptr;
  int r = p::WaitStart(static_cast<int>(prim), h, static_cast<int>(type), start, len,
                       WaitDoneOnThread, arg, &w);
  if (r != 0) {
    delete arg;
    ctx->tsfn.Release();
    throw MakeSystemError(env, r, "pthread_create");
  }
  ctx->waiter = w;  // set before the thread can report: CallJs runs on this thread later
  {
    std::lock_guard<std::mutex> lk(ctx->inst->mu);
    ctx->inst->waits.insert(ctx);
  }
  return Napi::External<std::shared_ptr<WaitCtx>>::New(
      env, new std::shared_ptr<WaitCtx>(ctx),
      [](Napi::Env, std::shared_ptr<WaitCtx>* d) { delete d; });
}

int CancelCtx(const std::shared_ptr<WaitCtx>& ctx, int budget_ms) {
  if (ctx->freed.load()) return -1;
  int outcome = p::WaitCancel(ctx->waiter, budget_ms);
  if (outcome == p::kCancelStuck) {
    ctx->stuck.store(true);
    ForgetHandle(ctx->inst, ctx->handle);  // the waiter thread owns it now
  }
  return outcome;
}

// waitCancel(handle, budgetMs) -> 0 interrupted, 1 granted, 2 stuck, -1 already finished
Napi::Value WaitCancel(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(info.Env(), "fslock binding: wait handle expected");
  }
  auto ctx = *info[0].As<Napi::External<std::shared_ptr<WaitCtx>>>().Data();
  return Napi::Number::New(info.Env(), CancelCtx(ctx, static_cast<int>(IntArg(info, 1, "budgetMs"))));
}

// waitSync(primitive, fd, type, start, len, timeoutMs) -> 1 granted, 0 timed out, 2 stuck
// Blocks the calling thread; the system call runs on a helper thread so the
// timeout can interrupt it.
struct SyncWait {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
};

void SyncDone(p::Waiter*, void* raw) {
  auto* sw = static_cast<SyncWait*>(raw);
  std::lock_guard<std::mutex> lk(sw->mu);
  sw->done = true;
  sw->cv.notify_all();
}

Napi::Value WaitSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t prim = IntArg(info, 0, "primitive");
  p::handle_t h = IntArg(info, 1, "fd");
  int64_t type = IntArg(info, 2, "type");
  int64_t start = IntArg(info, 3, "start");
  int64_t len = IntArg(info, 4, "len");
  int64_t timeout = IntArg(info, 5, "timeoutMs");
  CheckLockArgs(env, prim, type, start, len);
  auto* sw = new SyncWait();
  p::Waiter* w = nullptr;
  int r = p::WaitStart(static_cast<int>(prim), h, static_cast<int>(type), start, len, SyncDone, sw, &w);
  if (r != 0) {
    delete sw;
    throw MakeSystemError(env, r, "pthread_create");
  }
  bool finished;
  {
    std::unique_lock<std::mutex> lk(sw->mu);
    finished = sw->cv.wait_for(lk, std::chrono::milliseconds(timeout), [sw] { return sw->done; });
  }
  int outcome;
  if (finished) {
    int res = p::WaitResult(w);
    p::WaitFree(w);
    delete sw;
    if (res != 0) throw MakeSystemError(env, res, LockSyscall(prim));
    return Napi::Number::New(env, 1);
  }
  outcome = p::WaitCancel(w, 200);
  if (outcome == p::kCancelStuck) {
    ForgetHandle(Inst(env), h);
    p::WaitFree(w);  // detaches; `sw` stays alive for the thread
    return Napi::Number::New(env, 2);
  }
  p::WaitFree(w);
  delete sw;
  return Napi::Number::New(env, outcome == p::kCancelGranted ? 1 : 0);
}

// ---- the process-wide POSIX registry ----
Napi::Value RegistryLock(const Napi::CallbackInfo& info) {
  p::handle_t h = IntArg(info, 0, "fd");
  int64_t type = IntArg(info, 1, "type");
  int64_t start = IntArg(info, 2, "start");
  int64_t len = IntArg(info, 3, "len");
  CheckLockArgs(info.Env(), p::kPosix, type, start, len);
  uint64_t id = 0;
  int r = p::RegistryLock(h, static_cast<int>(type), start, len, &id);
  if (r == 0) {
    Instance* inst = Inst(info.Env());
    std::lock_guard<std::mutex> lk(inst->mu);
    inst->holders.insert(id);
    return Napi::Number::New(info.Env(), static_cast<double>(id));
  }
  if (p::IsContended(r)) return info.Env().Null();
  throw MakeSystemError(info.Env(), r, "fcntl(F_SETLK)");
}

Napi::Value RegistryChange(const Napi::CallbackInfo& info) {
  int r = p::RegistryChange(static_cast<uint64_t>(IntArg(info, 0, "holder")),
                            static_cast<int>(IntArg(info, 1, "type")));
  if (r == 0) return Napi::Boolean::New(info.Env(), true);
  if (p::IsContended(r)) return Napi::Boolean::New(info.Env(), false);
  throw MakeSystemError(info.Env(), r, "fcntl(F_SETLK)");
}

Napi::Value RegistryUnlock(const Napi::CallbackInfo& info) {
  uint64_t id = static_cast<uint64_t>(IntArg(info, 0, "holder"));
  {
    Instance* inst = Inst(info.Env());
    std::lock_guard<std::mutex> lk(inst->mu);
    inst->holders.erase(id);
  }
  int r = p::RegistryUnlock(id);
  if (r != 0) throw MakeSystemError(info.Env(), r, "fcntl(F_SETLK)");
  return info.Env().Undefined();
}

Napi::Value RegistryHolders(const Napi::CallbackInfo& info) {
  int count = 0;
  int r = p::RegistryHolders(IntArg(info, 0, "fd"), &count);
  if (r != 0) throw MakeSystemError(info.Env(), r, "fstat");
  return Napi::Number::New(info.Env(), count);
}

// ---- process-wide marks ----
Napi::Value Mark(const Napi::CallbackInfo& info) {
  std::string key = StrArg(info, 0, "key");
  bool add = BoolArg(info, 1);
  Instance* inst = Inst(info.Env());
  std::lock_guard<std::mutex> lk(g_marks_mu);
  std::lock_guard<std::mutex> lk2(inst->mu);
  if (add) {
    g_marks.insert(key);
    inst->marks.insert(key);
  } else if (inst->marks.erase(key) > 0) {
    auto it = g_marks.find(key);
    if (it != g_marks.end()) g_marks.erase(it);
  }
  return info.Env().Undefined();
}

Napi::Value IsMarked(const Napi::CallbackInfo& info) {
  std::string key = StrArg(info, 0, "key");
  std::lock_guard<std::mutex> lk(g_marks_mu);
  return Napi::Boolean::New(info.Env(), g_marks.count(key) > 0);
}

// Releases everything an environment still holds when it goes away: a
// terminated worker behaves like a process that exited.
void Cleanup(Instance* inst) {
  std::set<std::shared_ptr<WaitCtx>> waits;
  std::set<uint64_t> holders;
  std::set<p::handle_t> handles;
  std::set<std::string> marks;
  {
    std::lock_guard<std::mutex> lk(inst->mu);
    waits.swap(inst->waits);
    holders.swap(inst->holders);
    handles.swap(inst->handles);
    marks.swap(inst->marks);
  }
  for (const auto& ctx : waits) {
    if (CancelCtx(ctx, 100) == p::kCancelStuck) handles.erase(ctx->handle);
    FreeWaiter(ctx);
  }
  for (uint64_t id : holders) p::RegistryUnlock(id);
  for (p::handle_t h : handles) p::RegistryClose(h);
  {
    std::lock_guard<std::mutex> lk(g_marks_mu);
    for (const auto& m : marks) {
      auto it = g_marks.find(m);
      if (it != g_marks.end()) g_marks.erase(it);
    }
  }
}

}  // namespace

void InitLock(Napi::Env env, Napi::Object exports) {
  auto* inst = new Instance();
  env.SetInstanceData<Instance>(inst);  // deleted by node-addon-api at teardown
  napi_add_env_cleanup_hook(env, [](void* arg) { Cleanup(static_cast<Instance*>(arg)); }, inst);

  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("identity", Napi::Function::New(env, Identity, "identity"));
  exports.Set("pathIdentity", Napi::Function::New(env, PathIdentity, "pathIdentity"));
  exports.Set("fsInfo", Napi::Function::New(env, FsInfo, "fsInfo"));
  exports.Set("truncate", Napi::Function::New(env, Truncate, "truncate"));
  exports.Set("writeAt", Napi::Function::New(env, WriteAt, "writeAt"));
  exports.Set("readAt", Napi::Function::New(env, ReadAt, "readAt"));
  exports.Set("renameNoReplace", Napi::Function::New(env, RenameNoReplace, "renameNoReplace"));
  exports.Set("lock", Napi::Function::New(env, Lock, "lock"));
  exports.Set("query", Napi::Function::New(env, Query, "query"));
  exports.Set("waitStart", Napi::Function::New(env, WaitStart, "waitStart"));
  exports.Set("waitCancel", Napi::Function::New(env, WaitCancel, "waitCancel"));
  exports.Set("waitSync", Napi::Function::New(env, WaitSync, "waitSync"));
  exports.Set("registryLock", Napi::Function::New(env, RegistryLock, "registryLock"));
  exports.Set("registryChange", Napi::Function::New(env, RegistryChange, "registryChange"));
  exports.Set("registryUnlock", Napi::Function::New(env, RegistryUnlock, "registryUnlock"));
  exports.Set("registryHolders", Napi::Function::New(env, RegistryHolders, "registryHolders"));
  exports.Set("mark", Napi::Function::New(env, Mark, "mark"));
  exports.Set("isMarked", Napi::Function::New(env, IsMarked, "isMarked"));

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
  c.Set("NATIVE_WAIT", Napi::Boolean::New(env, p::WaitSupported()));
  exports.Set("constants", c);
  exports.Set("sourceHash", Napi::String::New(env, FSLOCK_SOURCE_HASH));
}

}  // namespace fslock
