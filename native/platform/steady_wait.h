// A condition variable whose timed waits are measured on the monotonic clock
// on every platform fslock ships for.
//
// std::condition_variable::wait_for measures against the system (wall)
// clock in the libstdc++ that loads on glibc 2.28 (see glibc_floor.h: no
// pthread_cond_clockwait there), so a clock stepped back by 5 s made a 200 ms
// lockSync() timeout last 5.2 s. Here the condition is created with
// pthread_condattr_setclock(CLOCK_MONOTONIC) (glibc since 2.3.3; bound to
// that version by glibc_floor.h), macOS waits with a relative timeout, and
// Windows (whose condition variables take relative timeouts) uses the
// standard one.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

#if defined(_WIN32)
#include <condition_variable>
#else
#include <errno.h>
#include <pthread.h>
#include <time.h>
#endif

namespace fslock {
namespace platform {

class SteadyCondition {
 public:
#if defined(_WIN32)
  void NotifyAll() { cv_.notify_all(); }
  void Wait(std::unique_lock<std::mutex>& lk) { cv_.wait(lk); }
#else
  SteadyCondition() {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
#if !defined(__APPLE__)
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
#endif
    pthread_cond_init(&cv_, &attr);
    pthread_condattr_destroy(&attr);
  }
  ~SteadyCondition() { pthread_cond_destroy(&cv_); }
  SteadyCondition(const SteadyCondition&) = delete;
  SteadyCondition& operator=(const SteadyCondition&) = delete;

  void NotifyAll() { pthread_cond_broadcast(&cv_); }
  void Wait(std::unique_lock<std::mutex>& lk) { pthread_cond_wait(&cv_, lk.mutex()->native_handle()); }
#endif

  // Waits until `pred` holds or `timeout` has passed; returns pred(). Any
  // timeout, however large: it is waited for a day at a time.
  template <typename Pred>
  bool WaitFor(std::unique_lock<std::mutex>& lk, std::chrono::microseconds timeout, Pred pred) {
    using std::chrono::steady_clock;
    const std::chrono::microseconds kDay = std::chrono::hours(24);
    auto left = timeout;
    while (!pred()) {
      if (left <= std::chrono::microseconds::zero()) return false;
      auto chunk = left < kDay ? left : kDay;
      auto start = steady_clock::now();
      TimedWait(lk, chunk);
      left -= std::chrono::duration_cast<std::chrono::microseconds>(steady_clock::now() - start);
    }
    return true;
  }

 private:
#if defined(_WIN32)
  void TimedWait(std::unique_lock<std::mutex>& lk, std::chrono::microseconds left) { cv_.wait_for(lk, left); }
  std::condition_variable cv_;
#else
  // One wait of at most `left` (a day or less); may wake early.
  void TimedWait(std::unique_lock<std::mutex>& lk, std::chrono::microseconds left) {
    int64_t ns = static_cast<int64_t>(left.count()) * 1000;
    struct timespec ts;
#if defined(__APPLE__)
    ts.tv_sec = static_cast<time_t>(ns / 1000000000);
    ts.tv_nsec = static_cast<long>(ns % 1000000000);
    pthread_cond_timedwait_relative_np(&cv_, lk.mutex()->native_handle(), &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t sec = static_cast<int64_t>(ts.tv_sec) + ns / 1000000000;
    int64_t nsec = static_cast<int64_t>(ts.tv_nsec) + ns % 1000000000;
    if (nsec >= 1000000000) {
      sec += 1;
      nsec -= 1000000000;
    }
    ts.tv_sec = static_cast<time_t>(sec);
    ts.tv_nsec = static_cast<long>(nsec);
    pthread_cond_timedwait(&cv_, lk.mutex()->native_handle(), &ts);
#endif
  }
  pthread_cond_t cv_;
#endif
};

}  // namespace platform
}  // namespace fslock
