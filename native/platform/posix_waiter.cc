// Interruptible lock waits of platform.h on a pool of threads (Unix).
//
// A wait is a blocking flock / F_OFD_SETLKW / F_SETLKW on a thread of its own,
// never in the libuv threadpool. Threads are pooled: a finished one parks for
// the next wait (up to kMaxIdle of them, for kIdleSeconds), so a contended
// lock does not pay for creating a thread, and many waits in a row reuse a
// few threads.
//
// Waking a blocked call: the kernel returns EINTR from it when a signal whose
// handler was installed without SA_RESTART is delivered to that thread. On
// Linux the wake signal is a real-time signal nothing else in the process
// handles: JavaScript cannot listen to real-time signals (process.on only
// knows named ones), so no listener can replace our handler with libuv's
// SA_RESTART one and turn cancels into restarts. Elsewhere it is SIGURG
// (ignored by default; Node does not use it), and a handler that replaced ours
// is found at the next wait and ours is put back in front of it. On Linux our
// own signals are tagged (pthread_sigqueue + SI_QUEUE + magic value); any
// other delivery is passed on to the handler installed before ours.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "platform.h"
#include "posix_internal.h"
#include "steady_wait.h"

namespace fslock {
namespace platform {

namespace {

constexpr int kWakeMagic = 0x66736c6b;  // "fslk"
constexpr size_t kMaxIdle = 8;
constexpr int kIdleSeconds = 30;

std::atomic<int> g_wake_signal{0};
struct sigaction g_previous;
std::mutex g_signal_mu;

void WakeHandler(int sig, siginfo_t* info, void* uctx) {
#if defined(__linux__)
  if (info != nullptr && info->si_code == SI_QUEUE && info->si_value.sival_int == kWakeMagic) {
    return;
  }
#endif
  if ((g_previous.sa_flags & SA_SIGINFO) && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(sig, info, uctx);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN && g_previous.sa_handler != nullptr) {
    g_previous.sa_handler(sig);
  }
}

bool IsOurs(const struct sigaction& sa) { return (sa.sa_flags & SA_SIGINFO) && sa.sa_sigaction == WakeHandler; }

int ChooseWakeSignal() {
#if defined(__linux__) && defined(SIGRTMIN)
  // The first real-time signal from SIGRTMIN+4 on that nobody handles
  // (glibc reserves the ones below SIGRTMIN; some runtimes use the lowest few).
  for (int sig = SIGRTMIN + 4; sig <= SIGRTMAX - 4; sig++) {
    struct sigaction cur;
    if (sigaction(sig, nullptr, &cur) != 0) continue;
    if (IsOurs(cur)) return sig;
    if (!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == SIG_DFL) return sig;
  }
#endif
  return SIGURG;
}

// Installs (or re-installs, if someone replaced it) the wake handler and
// returns the wake signal: one sigaction() query per wait, two when installing.
int EnsureWakeHandler() {
  std::lock_guard<std::mutex> lk(g_signal_mu);
  int sig = g_wake_signal.load();
  if (sig == 0) sig = ChooseWakeSignal();
  struct sigaction cur;
  if (sigaction(sig, nullptr, &cur) == 0 && IsOurs(cur)) {
    g_wake_signal.store(sig);
    return sig;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = WakeHandler;
  sa.sa_flags = SA_SIGINFO;  // deliberately no SA_RESTART
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, &g_previous);
  g_wake_signal.store(sig);
  return sig;
}

void Wake(pthread_t t) {
  int sig = g_wake_signal.load();
#if defined(__linux__)
  union sigval v;
  v.sival_int = kWakeMagic;
  pthread_sigqueue(t, sig, v);
#else
  pthread_kill(t, sig);
#endif
}

}  // namespace

struct Waiter {
  LockRequest req;
  int fd = -1;
  WaitDone done = nullptr;
  WaitDone granted = nullptr;
  void* ctx = nullptr;
  pthread_t thread{};
  std::atomic<bool> cancel{false};
  std::mutex mu;
  SteadyCondition cv;      // timed on the monotonic clock (see steady_wait.h)
  bool finished = false;   // the system call returned
  bool abandoned = false;  // cancel gave up: the thread closes the fd and frees the waiter
  int result = 0;
};

namespace {

// A pooled thread: runs one Waiter at a time.
struct PoolThread {
  pthread_t thread{};
  Waiter* job = nullptr;
  std::condition_variable cv;
};

std::mutex g_pool_mu;
std::vector<PoolThread*> g_idle;

void RunJob(Waiter* w) {
  int r;
  for (;;) {
    if (w->cancel.load()) {
      r = EINTR;
      break;
    }
    r = LockOnce(w->req, w->fd, true);
    // EINTR without a cancel: a stale wake meant for an earlier job of this thread
    if (r == EINTR && !w->cancel.load()) continue;
    break;
  }
  if (r == 0 && w->granted != nullptr && !w->cancel.load()) w->granted(w, w->ctx);
  bool abandoned;
  {
    std::lock_guard<std::mutex> lk(w->mu);
    w->finished = true;
    w->result = r;
    abandoned = w->abandoned;
    w->cv.NotifyAll();
  }
  if (abandoned) {
    // The canceller gave up on us and was told so: nobody waits for `done`
    // and nobody else will close the descriptor or free the waiter.
    close(w->fd);  // releases the lock if it was granted meanwhile
    delete w;
    return;
  }
  w->done(w, w->ctx);  // must not touch `w` after handing it on
}

void* PoolMain(void* arg) {
  PoolThread* self = static_cast<PoolThread*>(arg);
  // Only the wake signal may interrupt this thread; process signals such as
  // SIGINT are handled by Node on its own threads.
  sigset_t set;
  sigfillset(&set);
  sigdelset(&set, g_wake_signal.load());
  pthread_sigmask(SIG_SETMASK, &set, nullptr);
  std::unique_lock<std::mutex> lk(g_pool_mu);
  for (;;) {
    while (self->job == nullptr) {
      if (self->cv.wait_for(lk, std::chrono::seconds(kIdleSeconds)) == std::cv_status::timeout &&
          self->job == nullptr) {
        g_idle.erase(std::remove(g_idle.begin(), g_idle.end(), self), g_idle.end());
        delete self;
        return nullptr;
      }
    }
    Waiter* w = self->job;
    lk.unlock();
    RunJob(w);
    lk.lock();
    self->job = nullptr;
    if (g_idle.size() >= kMaxIdle) {
      delete self;
      return nullptr;
    }
    g_idle.push_back(self);
  }
}

}  // namespace

bool WaitSupported() { return true; }

int WaitStart(const LockRequest& req, handle_t h, WaitDone done, void* ctx, Waiter** out, WaitDone granted) {
  EnsureWakeHandler();
  Waiter* w = new Waiter();
  w->req = req;
  w->fd = static_cast<int>(h);
  w->done = done;
  w->granted = granted;
  w->ctx = ctx;
  std::lock_guard<std::mutex> lk(g_pool_mu);
  if (!g_idle.empty()) {
    PoolThread* t = g_idle.back();
    g_idle.pop_back();
    w->thread = t->thread;
    *out = w;  // before the thread can run `done`
    t->job = w;
    t->cv.notify_one();
    return 0;
  }
  PoolThread* t = new PoolThread();
  t->job = w;
  *out = w;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  // The thread makes one system call at a time: a small stack is plenty.
  pthread_attr_setstacksize(&attr, 128 * 1024);
  int r = pthread_create(&t->thread, &attr, PoolMain, t);
  pthread_attr_destroy(&attr);
  if (r != 0) {
    delete t;
    delete w;
    *out = nullptr;
    return r;
  }
  w->thread = t->thread;  // under g_pool_mu: the thread cannot start the job before this
  return 0;
}

int WaitResult(Waiter* w) {
  std::lock_guard<std::mutex> lk(w->mu);
  return w->result;
}

int WaitCancel(Waiter* w, int budget_ms) {
  w->cancel.store(true);
  {
    // w->thread is written under g_pool_mu in WaitStart
    std::lock_guard<std::mutex> plk(g_pool_mu);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(budget_ms);
  std::unique_lock<std::mutex> lk(w->mu);
  // The thread may be between its check of `cancel` and entering the system
  // call, where a signal is lost; so signal again until it has returned, with
  // doubling pauses (0.25 ms, 0.5 ms, ... capped at 128 ms): at most about a
  // dozen signals per cancel, whatever happens to them.
  auto pause = std::chrono::microseconds(250);
  while (!w->finished) {
    Wake(w->thread);
    if (w->cv.WaitFor(lk, pause, [w] { return w->finished; })) break;
    if (std::chrono::steady_clock::now() > deadline) {
      w->abandoned = true;
      return kCancelStuck;
    }
    pause = std::min(pause * 2, std::chrono::microseconds(128000));
  }
  return w->result == 0 ? kCancelGranted : kCancelInterrupted;
}

void WaitFree(Waiter* w) {
  {
    std::lock_guard<std::mutex> lk(w->mu);
    // Abandoned (kCancelStuck): its thread frees the waiter when the call returns.
    if (w->abandoned) return;
  }
  delete w;
}

}  // namespace platform
}  // namespace fslock
