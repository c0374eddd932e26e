// Node-API functions for waits that block in the kernel: asynchronous ones,
// whose results come back through the environment's one thread-safe function,
// and synchronous ones bounded by a timeout. The blocking call runs on a
// pooled native thread (platform::WaitStart), never in the libuv threadpool.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "errors.h"
#include "instance.h"
#include "platform/steady_wait.h"
#include "steps.h"

namespace fslock {

namespace p = platform;

struct WaitCtx {
  Instance* inst = nullptr;
  p::Waiter* waiter = nullptr;
  p::handle_t handle = 0;
  int primitive = 0;
  Napi::FunctionReference callback;
  std::atomic<bool> freed{false};
  std::atomic<bool> stuck{false};
  std::atomic<bool> posted{false};  // the pool thread has handed the result on
  bool cancelled = false;           // JS thread: a cancel settled the wait
  bool delivered = false;           // JS thread: the callback has run
  // The early post (FollowUp): under early_mu, and never once teardown has
  // set `closing`, so it cannot race the thread-safe function's release.
  std::mutex early_mu;
  bool closing = false;
  std::atomic<bool> follow_done{false};  // FollowUp's results are written
  // The follow-up after a grant (FollowUp), when waitStart was given a path:
  // the remaining steps, without waiting, and the identity check.
  bool follow = false;
  int nthen = 0;
  p::LockRequest then[kMaxSteps];
  std::string verify_path;
  bool reusable = false;  // a read-write descriptor whose whole lock release() may keep open for reuse
  int follow_state = -1;  // -1 every step taken and the file verified, k contended at then[k], -2 file replaced
  int follow_err = 0;
  double grant_ms = 0;  // when the kernel granted the wait (p::PerfClockMs), 0 unknown
  const char* follow_syscall = nullptr;
  p::Identity id;
  // Owners: the pool thread until it posts, each posted result (the early one
  // and the ordinary one) until its CallJs,
  // inst->waits while pending, and the JS handle until it is collected.
  // (An intrusive count rather than std::shared_ptr, whose inline code needs
  // glibc 2.32 and a newer libstdc++ than Node 20's oldest systems have.)
  std::atomic<int> refs{1};
};

namespace {

// The intrusive count of a WaitCtx or a SyncWait (their `refs`).
template <typename T>
T* Retain(T* o) {
  o->refs.fetch_add(1, std::memory_order_relaxed);
  return o;
}

template <typename T>
void Release(T* o) {
  if (o->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete o;
}

// Holds one reference for a scope.
class CtxRef {
 public:
  explicit CtxRef(WaitCtx* adopted) : ctx_(adopted) {}
  CtxRef(const CtxRef&) = delete;
  CtxRef& operator=(const CtxRef&) = delete;
  ~CtxRef() { Release(ctx_); }
  WaitCtx* operator->() const { return ctx_; }
  WaitCtx* get() const { return ctx_; }

 private:
  WaitCtx* ctx_;
};

// Removes a wait from inst->waits, dropping that reference. JS thread or teardown.
void Unregister(WaitCtx* ctx) {
  bool erased;
  {
    std::lock_guard<std::mutex> lk(ctx->inst->mu);
    erased = ctx->inst->waits.erase(ctx) > 0;
  }
  if (erased) Release(ctx);
}

// A worker that is terminating cannot wait long for its waits to stop (see
// CANCEL_BUDGET_MS in src/wait.ts for the budget of ordinary cancels).
constexpr int kTeardownCancelBudgetMs = 100;

void FreeWaiter(WaitCtx* ctx) {
  if (!ctx->freed.exchange(true)) p::WaitFree(ctx->waiter);
}

// One fewer pending wait; the thread-safe function stops keeping the event
// loop alive when none is left. JS thread only.
void WaitSettled(Napi::Env env, Instance* inst) {
  if (inst->pending_waits > 0 && --inst->pending_waits == 0 && inst->tsfn != nullptr) {
    napi_unref_threadsafe_function(env, inst->tsfn);
  }
}

// A posted result is a WaitCtx pointer; the early post (FollowUp) tags it with
// the low bit, free in a pointer to an 8-byte-aligned object.
void* EarlyTag(WaitCtx* ctx) { return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(ctx) | 1); }

// On the pool thread, right after the kernel granted the waited-for step: take
// the remaining steps and check the file is still the one at the path, so the
// JS thread wakes once to a finished lock (or to what stands in its way).
//
// The JS thread is woken first, before those steps: waking an idle event loop
// takes tens of microseconds (the eventfd write, the other CPU leaving its idle
// state), and the steps run meanwhile. That early post delivers the result if
// the steps are done by the time the JS thread runs it (almost always); if not,
// the ordinary post after them does.
void FollowUp(p::Waiter*, void* raw) {
  WaitCtx* ctx = static_cast<WaitCtx*>(raw);
  ctx->grant_ms = p::PerfClockMs();
  {
    std::lock_guard<std::mutex> lk(ctx->early_mu);
    if (!ctx->closing) {
      WaitCtx* early = Retain(ctx);
      if (napi_call_threadsafe_function(ctx->inst->tsfn, EarlyTag(early), napi_tsfn_nonblocking) != napi_ok) {
        Release(early);
      }
    }
  }
  struct Done {
    WaitCtx* ctx;
    ~Done() { ctx->follow_done.store(true, std::memory_order_release); }
  } done{ctx};
  int k = 0;
  int r = TakeSteps(ctx->handle, ctx->then, ctx->nthen, &k);
  if (r != 0) {
    if (p::IsContended(r)) {
      ctx->follow_state = k;
    } else {
      ctx->follow_err = r;
      ctx->follow_syscall = LockSyscall(ctx->then[k].primitive);
    }
    return;
  }
  Verified v;
  int e = VerifyIdentity(ctx->handle, ctx->verify_path.c_str(), &v);
  if (e != 0) {
    ctx->follow_err = e;
    ctx->follow_syscall = v.syscall;
    return;
  }
  ctx->follow_state = v.same ? -1 : -2;
  ctx->id = v.id;
}

// Runs on the JS thread for every posted result: the early one of a grant
// with a follow-up (FollowUp), and the ordinary one of every finished wait,
// which frees the waiter. The callback runs once, from whichever comes first
// with the result complete.
void CallJs(napi_env raw_env, napi_value, void*, void* data) {
  uintptr_t bits = reinterpret_cast<uintptr_t>(data);
  bool early = (bits & 1) != 0;
  CtxRef ctx(reinterpret_cast<WaitCtx*>(bits & ~uintptr_t{1}));  // the posted result's reference
  int result = 0;                                                // an early post comes only after a grant
  if (early) {
    if (raw_env == nullptr || ctx->stuck.load() || ctx->cancelled || ctx->delivered ||
        !ctx->follow_done.load(std::memory_order_acquire)) {
      return;  // the ordinary post settles it (or the caller was told already)
    }
  } else {
    if (raw_env == nullptr) {  // the environment is shutting down
      FreeWaiter(ctx.get());
      return;
    }
    result = p::WaitResult(ctx->waiter);
    Unregister(ctx.get());
    FreeWaiter(ctx.get());
    // stuck: the caller was told already, and settled then
    if (ctx->stuck.load() || ctx->delivered) return;
  }
  Napi::Env env(raw_env);
  ctx->delivered = true;
  WaitSettled(env, ctx->inst);
  Napi::FunctionReference cb = std::move(ctx->callback);
  Napi::HandleScope scope(env);
  if (result == 0 && !ctx->follow) {
    cb.Call({env.Null()});
  } else if (result == 0 && ctx->follow_err != 0) {
    cb.Call({MakeSystemError(env, ctx->follow_err, ctx->follow_syscall, ctx->verify_path).Value()});
  } else if (result == 0) {
    Napi::Value identity = env.Undefined();
    if (ctx->follow_state == -1) {
      identity = IdentityValue(env, ctx->id);
      // taken whole, like acquire() takes it: release() may keep the descriptor open for the next lock
      if (ctx->reusable && !ctx->cancelled) {
        ctx->inst->acquired[ctx->handle] = Instance::Held{ctx->id, ctx->verify_path};
      }
    }
    cb.Call({env.Null(), Napi::Number::New(env, ctx->follow_state), identity, Napi::Number::New(env, ctx->grant_ms)});
  } else {
    cb.Call({MakeSystemError(env, result, LockSyscall(ctx->primitive)).Value()});
  }
}

void WaitDoneOnThread(p::Waiter*, void* raw) {
  CtxRef ctx(static_cast<WaitCtx*>(raw));  // the pool thread's reference
  WaitCtx* data = Retain(ctx.get());
  if (napi_call_threadsafe_function(ctx->inst->tsfn, data, napi_tsfn_nonblocking) != napi_ok) Release(data);
  ctx->posted.store(true);
}

// waitStart(primitive, fd, type, start, len, callback[, path, reusable, steps...]) -> handle
// The callback receives (null) once the lock is granted or (error). Given the
// path and the steps after this one (StepArgs' forms; 0 for none), the pool
// thread takes those and checks the file's identity too (FollowUp), and the
// callback receives (null, state, identity, grantMs) (grantMs: when the kernel
// granted it, p::PerfClockMs, 0 unknown): state -1 with the identity when
// the lock is whole, k when then-step k is held by someone else (the wait
// continues there), -2 when the file at `path` was replaced meanwhile.
Napi::Value WaitStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  p::handle_t h;
  p::LockRequest req = LockArgs(info, 0, &h);
  if (info.Length() < 6 || !info[5].IsFunction()) {
    throw Napi::TypeError::New(env, "fslock binding: callback must be a function");
  }
  Instance* inst = Inst(env);
  if (inst->tsfn == nullptr) {
    napi_status st = napi_create_threadsafe_function(env, nullptr, nullptr, Napi::String::New(env, "fslock.wait"), 0, 1,
                                                     nullptr, nullptr, nullptr, CallJs, &inst->tsfn);
    if (st != napi_ok) throw Napi::Error::New(env, "fslock binding: cannot create the wait notifier");
    napi_unref_threadsafe_function(env, inst->tsfn);
  }
  CtxRef ctx(new WaitCtx());  // this function's reference
  ctx->inst = inst;
  ctx->handle = h;
  ctx->primitive = req.primitive;
  ctx->callback = Napi::Persistent(info[5].As<Napi::Function>());
  if (info.Length() > 8 && info[6].IsString()) {
    ctx->follow = true;
    ctx->verify_path = info[6].As<Napi::String>().Utf8Value();
    ctx->reusable = BoolArg(info, 7);
    if (IntArg(info, 8, "steps") != 0) ctx->nthen = StepArgs(info, 8, req.type, ctx->then);
  }
  {
    // registered before the thread can report: CallJs runs on this thread later
    std::lock_guard<std::mutex> lk(inst->mu);
    inst->waits.insert(Retain(ctx.get()));
  }
  WaitCtx* arg = Retain(ctx.get());
  p::Waiter* w = nullptr;
  int r = p::WaitStart(req, h, WaitDoneOnThread, arg, &w, ctx->follow ? FollowUp : nullptr);
  if (r != 0) {
    Release(arg);
    Unregister(ctx.get());
    throw MakeSystemError(env, r, "pthread_create");
  }
  ctx->waiter = w;
  // A pending wait keeps the event loop alive, like a timer would.
  if (inst->pending_waits++ == 0) napi_ref_threadsafe_function(env, inst->tsfn);
  return Napi::External<WaitCtx>::New(env, Retain(ctx.get()), [](Napi::Env, WaitCtx* d) { Release(d); });
}

int CancelCtx(WaitCtx* ctx, int budget_ms) {
  if (ctx->freed.load()) return -1;
  ctx->cancelled = true;
  int outcome = p::WaitCancel(ctx->waiter, budget_ms);
  if (outcome == p::kCancelStuck) {
    ctx->stuck.store(true);
    ForgetHandle(ctx->inst, ctx->handle);  // the waiter thread owns it now
    Unregister(ctx);                       // its `done` never comes
    FreeWaiter(ctx);                       // a no-op for the waiter itself: its thread frees it
  }
  return outcome;
}

// waitCancel(handle, budgetMs) -> 0 interrupted, 1 granted, 2 stuck, -1 already finished
// The callback is not called after a cancel (the JS side settles then).
Napi::Value WaitCancel(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(info.Env(), "fslock binding: wait handle expected");
  }
  // The handle's reference keeps ctx alive for this call.
  WaitCtx* ctx = info[0].As<Napi::External<WaitCtx>>().Data();
  int outcome = CancelCtx(ctx, static_cast<int>(IntArg(info, 1, "budgetMs")));
  if (outcome == p::kCancelStuck) WaitSettled(info.Env(), ctx->inst);
  return Napi::Number::New(info.Env(), outcome);
}

// Milliseconds as microseconds, saturating (timeouts up to Number.MAX_VALUE arrive here).
std::chrono::microseconds TimeoutMicros(int64_t ms) {
  const int64_t kMax = INT64_MAX / 1000;
  return std::chrono::microseconds(ms > kMax ? INT64_MAX : ms * 1000);
}

// A synchronous wait: the calling thread blocks on a condition variable, in
// slices (syncWaitFor), while a pool thread blocks in the kernel, so a
// timeout can interrupt it. Between slices the kernel wait goes on: the
// request stays in the kernel's lock table, where other processes looking for
// cycles of waits see it (src/deadlock.ts), and JavaScript looks for cycles
// itself meanwhile.
}  // namespace

struct SyncWait {
  Instance* inst = nullptr;
  p::handle_t handle = 0;
  int primitive = 0;
  p::Waiter* waiter = nullptr;
  std::mutex mu;
  p::SteadyCondition cv;             // timed on the monotonic clock: a clock step cannot stretch a timeout
  bool done = false;                 // the pool thread has finished (SyncDone ran)
  std::atomic<bool> settled{false};  // finished, cancelled or abandoned: the waiter is no longer ours
  // Owners: the JS handle, inst->sync_waits while unsettled, the pool thread until SyncDone.
  std::atomic<int> refs{1};
};

namespace {

void SyncDone(p::Waiter*, void* raw) {
  auto* sw = static_cast<SyncWait*>(raw);
  {
    std::lock_guard<std::mutex> lk(sw->mu);
    sw->done = true;
    sw->cv.NotifyAll();
  }
  Release(sw);  // the pool thread's reference
}

// Drops the wait from the environment's list (and that reference).
void UnregisterSync(SyncWait* sw) {
  bool erased;
  {
    std::lock_guard<std::mutex> lk(sw->inst->mu);
    erased = sw->inst->sync_waits.erase(sw) > 0;
  }
  if (erased) Release(sw);
}

// Ends a wait that has not finished: interrupts it and reports how it ended
// (p::CancelOutcome), or -1 when it was settled already. After kCancelStuck
// the waiter thread owns the descriptor (it closes it when the call returns).
int SettleSync(SyncWait* sw, int budget_ms) {
  if (sw->settled.exchange(true)) return -1;
  int outcome = p::WaitCancel(sw->waiter, budget_ms);
  if (outcome == p::kCancelStuck) {
    ForgetHandle(sw->inst, sw->handle);
    Release(sw);  // SyncDone never runs now: drop the pool thread's reference for it
  } else {
    std::unique_lock<std::mutex> lk(sw->mu);  // `done` has run or is about to: wait for it
    while (!sw->done) sw->cv.Wait(lk);
    lk.unlock();
    p::WaitFree(sw->waiter);
  }
  UnregisterSync(sw);
  return outcome;
}

SyncWait* SyncArg(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(info.Env(), "fslock binding: sync wait handle expected");
  }
  return info[0].As<Napi::External<SyncWait>>().Data();
}

// syncWaitStart(primitive, fd, type, start, len) -> handle
// Starts a kernel wait on a pool thread; the caller waits for it with
// syncWaitFor and must end it with syncWaitCancel unless syncWaitFor
// reported its end.
Napi::Value SyncWaitStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  p::handle_t h;
  p::LockRequest req = LockArgs(info, 0, &h);
  Instance* inst = Inst(env);
  auto* sw = new SyncWait();  // the JS handle's reference
  sw->inst = inst;
  sw->handle = h;
  sw->primitive = req.primitive;
  {
    std::lock_guard<std::mutex> lk(inst->mu);
    inst->sync_waits.insert(Retain(sw));
  }
  Retain(sw);  // the pool thread's, dropped by SyncDone
  int r = p::WaitStart(req, h, SyncDone, sw, &sw->waiter);
  if (r != 0) {
    sw->settled.store(true);
    Release(sw);  // no thread
    UnregisterSync(sw);
    Release(sw);
    throw MakeSystemError(env, r, "pthread_create");
  }
  // A handle dropped unsettled (only when JavaScript was stopped between two
  // calls, e.g. a worker terminated) is ended here; at teardown the cleanup
  // hook has settled it already.
  return Napi::External<SyncWait>::New(env, sw, [](Napi::Env, SyncWait* d) {
    SettleSync(d, kTeardownCancelBudgetMs);
    Release(d);
  });
}

// syncWaitFor(handle, timeoutMs) -> 1 granted, 0 still waiting
// Blocks this thread for at most timeoutMs. A wait that failed throws its
// error (and is settled).
Napi::Value SyncWaitFor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  SyncWait* sw = SyncArg(info);
  int64_t timeout = IntArg(info, 1, "timeoutMs");
  if (sw->settled.load()) throw Napi::Error::New(env, "fslock binding: this wait has ended");
  {
    std::unique_lock<std::mutex> lk(sw->mu);
    if (!sw->cv.WaitFor(lk, TimeoutMicros(timeout), [&] { return sw->done; })) return Napi::Number::New(env, 0);
  }
  sw->settled.store(true);
  int res = p::WaitResult(sw->waiter);
  p::WaitFree(sw->waiter);
  UnregisterSync(sw);
  if (res != 0) throw MakeSystemError(env, res, LockSyscall(sw->primitive));
  return Napi::Number::New(env, 1);
}

// syncWaitCancel(handle, budgetMs) -> 0 interrupted, 1 granted, 2 stuck, -1 already ended
Napi::Value SyncWaitCancel(const Napi::CallbackInfo& info) {
  SyncWait* sw = SyncArg(info);
  int outcome = SettleSync(sw, static_cast<int>(IntArg(info, 1, "budgetMs")));
  return Napi::Number::New(info.Env(), outcome);
}

}  // namespace

void CleanupWaits(Instance* inst, std::unordered_set<p::handle_t>* handles) {
  std::set<WaitCtx*> waits;
  {
    std::lock_guard<std::mutex> lk(inst->mu);
    waits = inst->waits;
    for (WaitCtx* ctx : waits) Retain(ctx);
  }
  for (WaitCtx* raw : waits) {
    CtxRef ctx(raw);
    {
      // no early post from now on; one under way has finished
      std::lock_guard<std::mutex> lk(ctx->early_mu);
      ctx->closing = true;
    }
    if (CancelCtx(raw, kTeardownCancelBudgetMs) == p::kCancelStuck) {
      handles->erase(ctx->handle);
      continue;
    }
    // Its pool thread is about to use the thread-safe function: let it finish
    // before that function goes away.
    while (!ctx->posted.load()) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  // Synchronous waits left unsettled (JavaScript stopped between two slices)
  std::set<SyncWait*> syncs;
  {
    std::lock_guard<std::mutex> lk(inst->mu);
    syncs = inst->sync_waits;
    for (SyncWait* sw : syncs) Retain(sw);
  }
  for (SyncWait* sw : syncs) {
    p::handle_t h = sw->handle;
    if (SettleSync(sw, kTeardownCancelBudgetMs) == p::kCancelStuck) handles->erase(h);
    Release(sw);
  }
  if (inst->tsfn != nullptr) {
    napi_release_threadsafe_function(inst->tsfn, napi_tsfn_abort);
    inst->tsfn = nullptr;
  }
}

void InitWaits(Napi::Env env, Napi::Object exports) {
  exports.Set("waitStart", Napi::Function::New(env, WaitStart, "waitStart"));
  exports.Set("waitCancel", Napi::Function::New(env, WaitCancel, "waitCancel"));
  exports.Set("syncWaitStart", Napi::Function::New(env, SyncWaitStart, "syncWaitStart"));
  exports.Set("syncWaitFor", Napi::Function::New(env, SyncWaitFor, "syncWaitFor"));
  exports.Set("syncWaitCancel", Napi::Function::New(env, SyncWaitCancel, "syncWaitCancel"));
}

}  // namespace fslock
