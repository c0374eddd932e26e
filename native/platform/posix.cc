// Unix implementation of platform.h: flock(2), OFD and classic fcntl locks,
// interruptible waiter threads, and the process-wide POSIX lock registry.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <sys/vfs.h>
#else
#include <sys/mount.h>
#include <sys/param.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#if defined(__APPLE__)
#include <stdio.h>  // renamex_np
#endif

#if defined(__APPLE__) && !defined(F_OFD_SETLK)
// Present in current XNU but not always in the SDK headers.
#define F_OFD_SETLK 90
#define F_OFD_SETLKW 91
#define F_OFD_GETLK 92
#endif

namespace fslock {
namespace platform {

namespace {

int Errno() { return errno ? errno : EIO; }

short FcntlType(int type) {
  switch (type) {
    case kShared: return F_RDLCK;
    case kExclusive: return F_WRLCK;
    default: return F_UNLCK;
  }
}

int TypeFromFcntl(short t) {
  if (t == F_RDLCK) return kShared;
  if (t == F_WRLCK) return kExclusive;
  return kUnlock;
}

// The single system call behind Lock(); EINTR is returned to the caller.
int LockOnce(int primitive, int fd, int type, int64_t start, int64_t len, bool wait) {
  if (primitive == kFlock) {
    int op = type == kShared ? LOCK_SH : type == kExclusive ? LOCK_EX : LOCK_UN;
    if (!wait && type != kUnlock) op |= LOCK_NB;
    return flock(fd, op) == 0 ? 0 : Errno();
  }
  int cmd;
  if (primitive == kOfd) {
#ifdef F_OFD_SETLK
    cmd = wait ? F_OFD_SETLKW : F_OFD_SETLK;
#else
    return ENOTSUP;
#endif
  } else if (primitive == kPosix) {
    cmd = wait ? F_SETLKW : F_SETLK;
  } else {
    return ENOTSUP;
  }
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = FcntlType(type);
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(start);
  fl.l_len = static_cast<off_t>(len);
  fl.l_pid = 0;  // must be 0 for OFD requests
  return fcntl(fd, cmd, &fl) == 0 ? 0 : Errno();
}

// ---------------------------------------------------------------------------
// Waking a thread blocked in flock / F_SETLKW / F_OFD_SETLKW.
//
// The kernel returns EINTR from a blocked lock call when a signal whose handler
// was installed without SA_RESTART is delivered to that thread. On Linux the
// wake signal is a real-time signal that nothing else in the process has a
// handler for: JavaScript cannot listen to real-time signals (process.on only
// knows named ones), so no listener can replace our handler with libuv's
// SA_RESTART one and turn cancels into restarts. Elsewhere it is SIGURG
// (ignored by default; Node does not use it), and a handler that replaced ours
// is detected at the next wait and ours is put back in front of it.
// On Linux our own signals are tagged (pthread_sigqueue + SI_QUEUE + magic
// value); any other delivery is passed on to the handler installed before ours.
constexpr int kWakeMagic = 0x66736c6b;  // "fslk"
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
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN &&
             g_previous.sa_handler != nullptr) {
    g_previous.sa_handler(sig);
  }
}

bool IsOurs(const struct sigaction& sa) {
  return (sa.sa_flags & SA_SIGINFO) && sa.sa_sigaction == WakeHandler;
}

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
// returns the wake signal. One sigaction() query per wait.
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
  pthread_t thread;
  int primitive;
  int fd;
  int type;
  int64_t start;
  int64_t len;
  WaitDone done;
  void* ctx;
  std::atomic<bool> cancel{false};
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;   // the system call returned
  bool abandoned = false;  // cancel gave up: the thread closes the fd
  bool joined = false;
  int result = 0;
};

namespace {

void* WaiterMain(void* arg) {
  Waiter* w = static_cast<Waiter*>(arg);
  // Only our wake signal may interrupt this thread; process signals such as
  // SIGINT are handled by Node on its own threads.
  sigset_t set;
  sigfillset(&set);
  sigdelset(&set, g_wake_signal.load());
  pthread_sigmask(SIG_SETMASK, &set, nullptr);

  int r;
  for (;;) {
    if (w->cancel.load()) {
      r = EINTR;
      break;
    }
    r = LockOnce(w->primitive, w->fd, w->type, w->start, w->len, true);
    if (r == EINTR && !w->cancel.load()) continue;
    break;
  }
  bool abandoned;
  {
    std::lock_guard<std::mutex> lk(w->mu);
    w->finished = true;
    w->result = r;
    abandoned = w->abandoned;
    w->cv.notify_all();
  }
  if (abandoned) close(w->fd);  // releases the lock if it was granted
  w->done(w, w->ctx);
  return nullptr;
}

}  // namespace

bool WaitSupported() { return true; }

int WaitStart(int primitive, handle_t h, int type, int64_t start, int64_t len, WaitDone done,
              void* ctx, Waiter** out) {
  EnsureWakeHandler();
  Waiter* w = new Waiter();
  w->primitive = primitive;
  w->fd = static_cast<int>(h);
  w->type = type;
  w->start = start;
  w->len = len;
  w->done = done;
  w->ctx = ctx;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  // The thread only makes one system call: a small stack is plenty.
  pthread_attr_setstacksize(&attr, 128 * 1024);
  int r = pthread_create(&w->thread, &attr, WaiterMain, w);
  pthread_attr_destroy(&attr);
  if (r != 0) {
    delete w;
    return r;
  }
  *out = w;
  return 0;
}

int WaitResult(Waiter* w) {
  std::lock_guard<std::mutex> lk(w->mu);
  return w->result;
}

int WaitCancel(Waiter* w, int budget_ms) {
  w->cancel.store(true);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(budget_ms);
  std::unique_lock<std::mutex> lk(w->mu);
  // The thread may be between its check of `cancel` and entering the system
  // call, where a signal is lost; so signal again until it has returned, with
  // doubling pauses (0.25 ms, 0.5 ms, ... capped at 128 ms): at most about a
  // dozen signals per cancel, whatever happens to them.
  auto pause = std::chrono::microseconds(250);
  while (!w->finished) {
    Wake(w->thread);
    if (w->cv.wait_for(lk, pause, [w] { return w->finished; })) break;
    if (std::chrono::steady_clock::now() > deadline) {
      w->abandoned = true;
      return kCancelStuck;
    }
    pause = std::min(pause * 2, std::chrono::microseconds(128000));
  }
  return w->result == 0 ? kCancelGranted : kCancelInterrupted;
}

void WaitFree(Waiter* w) {
  bool abandoned;
  {
    std::lock_guard<std::mutex> lk(w->mu);
    abandoned = w->abandoned && !w->finished;
  }
  if (abandoned) {
    // Still inside an uninterruptible system call: let it finish on its own.
    pthread_detach(w->thread);
    return;  // leaks the small Waiter on purpose; the thread still uses it
  }
  pthread_join(w->thread, nullptr);
  delete w;
}

bool IsContended(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EACCES; }
bool IsInterrupted(int err) { return err == EINTR; }
int NotSupported() { return ENOTSUP; }

int Open(const char* path, int flags, handle_t* out) {
  int oflags = O_CLOEXEC | O_NOCTTY;
  oflags |= (flags & kOpenWrite) ? O_RDWR : O_RDONLY;
  if (flags & kOpenCreate) oflags |= O_CREAT;
  if (flags & kOpenNoFollow) oflags |= O_NOFOLLOW;
  if ((flags & kOpenExclusive) && (flags & kOpenCreate)) oflags |= O_EXCL;
  int fd;
  do {
    fd = open(path, oflags, 0666);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return Errno();
  *out = fd;
  return 0;
}

int Close(handle_t h) {
  // POSIX leaves the descriptor state unspecified after EINTR; on Linux it is
  // closed, so never retry.
  return close(static_cast<int>(h)) == 0 || errno == EINTR ? 0 : Errno();
}

int GetIdentity(handle_t h, Identity* out) {
  struct stat st;
  if (fstat(static_cast<int>(h), &st) != 0) return Errno();
  out->dev = static_cast<uint64_t>(st.st_dev);
  out->ino = static_cast<uint64_t>(st.st_ino);
  return 0;
}

int StatPathIdentity(const char* path, Identity* out) {
  struct stat st;
  if (stat(path, &st) != 0) return Errno();
  out->dev = static_cast<uint64_t>(st.st_dev);
  out->ino = static_cast<uint64_t>(st.st_ino);
  return 0;
}

int GetFsInfo(handle_t h, FsInfo* out) {
  struct statfs sf;
  if (fstatfs(static_cast<int>(h), &sf) != 0) return Errno();
#if defined(__linux__)
  out->type = static_cast<uint64_t>(static_cast<unsigned long>(sf.f_type)) & 0xffffffffu;
#else
  out->type = 0;
  out->name = sf.f_fstypename;
#endif
  return 0;
}

int Truncate(handle_t h, int64_t size) {
  int r;
  do {
    r = ftruncate(static_cast<int>(h), static_cast<off_t>(size));
  } while (r != 0 && errno == EINTR);
  return r == 0 ? 0 : Errno();
}

int WriteAt(handle_t h, const void* data, size_t len, int64_t offset, size_t* written) {
  ssize_t n;
  do {
    n = pwrite(static_cast<int>(h), data, len, static_cast<off_t>(offset));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Errno();
  *written = static_cast<size_t>(n);
  return 0;
}

int ReadAt(handle_t h, void* data, size_t len, int64_t offset, size_t* got) {
  ssize_t n;
  do {
    n = pread(static_cast<int>(h), data, len, static_cast<off_t>(offset));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Errno();
  *got = static_cast<size_t>(n);
  return 0;
}

int RenameNoReplace(const char* from, const char* to) {
#if defined(__linux__) && defined(SYS_renameat2)
  // The raw system call: glibc's wrapper needs glibc 2.28.
  if (syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, 1 /* RENAME_NOREPLACE */) == 0) return 0;
  return errno == EINVAL ? ENOSYS : Errno();  // EINVAL: this filesystem has no RENAME_NOREPLACE
#elif defined(__APPLE__) && defined(RENAME_EXCL)
  if (renamex_np(from, to, RENAME_EXCL) == 0) return 0;
  return errno == ENOTSUP ? ENOSYS : Errno();
#else
  (void)from;
  (void)to;
  return ENOSYS;
#endif
}

int Lock(int primitive, handle_t h, int type, int64_t start, int64_t len, bool wait) {
  int r;
  do {
    r = LockOnce(primitive, static_cast<int>(h), type, start, len, wait);
  } while (r == EINTR);
  return r;
}

int Query(int primitive, handle_t h, int type, int64_t start, int64_t len, LockQuery* out) {
  int cmd;
  if (primitive == kOfd) {
#ifdef F_OFD_GETLK
    cmd = F_OFD_GETLK;
#else
    return ENOTSUP;
#endif
  } else if (primitive == kPosix) {
    cmd = F_GETLK;
  } else {
    return ENOTSUP;  // flock has no query
  }
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = FcntlType(type);
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(start);
  fl.l_len = static_cast<off_t>(len);
  fl.l_pid = 0;
  if (fcntl(static_cast<int>(h), cmd, &fl) != 0) return Errno();
  out->type = TypeFromFcntl(fl.l_type);
  out->start = fl.l_start;
  out->len = fl.l_len;
  out->pid = fl.l_pid;
  return 0;
}

// ---------------------------------------------------------------------------
// The POSIX registry.
namespace {

constexpr uint64_t kToEnd = UINT64_MAX;

struct Holder {
  uint64_t id;
  int fd;
  int type;
  uint64_t begin;
  uint64_t end;  // exclusive; kToEnd for len == 0
};

struct InodeState {
  std::vector<Holder> holders;
  std::vector<int> deferred;  // descriptors whose close() would drop the locks
};

using Key = std::pair<uint64_t, uint64_t>;

std::mutex g_registry_mu;
std::map<Key, InodeState> g_inodes;
std::map<uint64_t, Key> g_holder_keys;
uint64_t g_next_holder = 1;

bool Overlaps(const Holder& a, uint64_t begin, uint64_t end) {
  return a.begin < end && begin < a.end;
}

int SetRange(int fd, short type, uint64_t begin, uint64_t end) {
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(begin);
  fl.l_len = end == kToEnd ? 0 : static_cast<off_t>(end - begin);
  int r;
  do {
    r = fcntl(fd, F_SETLK, &fl);
  } while (r != 0 && errno == EINTR);
  return r == 0 ? 0 : Errno();
}

int KeyOf(int fd, Key* key) {
  struct stat st;
  if (fstat(fd, &st) != 0) return Errno();
  *key = Key(static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino));
  return 0;
}

}  // namespace

int RegistryLock(handle_t h, int type, int64_t start, int64_t len, uint64_t* holder_id) {
  if (type != kShared && type != kExclusive) return EINVAL;
  if (start < 0 || len < 0) return EINVAL;
  int fd = static_cast<int>(h);
  Key key;
  int r = KeyOf(fd, &key);
  if (r != 0) return r;
  uint64_t begin = static_cast<uint64_t>(start);
  uint64_t end = len == 0 ? kToEnd : begin + static_cast<uint64_t>(len);
  std::lock_guard<std::mutex> lk(g_registry_mu);
  InodeState& st = g_inodes[key];
  for (const Holder& o : st.holders) {
    if (Overlaps(o, begin, end) && (o.type == kExclusive || type == kExclusive)) {
      if (st.holders.empty() && st.deferred.empty()) g_inodes.erase(key);
      return EAGAIN;  // held by another handle or thread of this process
    }
  }
  r = SetRange(fd, FcntlType(type), begin, end);
  if (r != 0) {
    if (st.holders.empty() && st.deferred.empty()) g_inodes.erase(key);
    return r;
  }
  Holder hd{g_next_holder++, fd, type, begin, end};
  st.holders.push_back(hd);
  g_holder_keys[hd.id] = key;
  *holder_id = hd.id;
  return 0;
}

int RegistryChange(uint64_t holder_id, int new_type) {
  std::lock_guard<std::mutex> lk(g_registry_mu);
  auto hk = g_holder_keys.find(holder_id);
  if (hk == g_holder_keys.end()) return EINVAL;
  InodeState& st = g_inodes[hk->second];
  Holder* self = nullptr;
  for (Holder& o : st.holders) {
    if (o.id == holder_id) self = &o;
  }
  if (self == nullptr) return EINVAL;
  if (self->type == new_type) return 0;
  if (new_type == kExclusive) {
    for (const Holder& o : st.holders) {
      if (o.id != holder_id && Overlaps(o, self->begin, self->end)) return EAGAIN;
    }
  }
  // F_SETLK converts atomically: a refused upgrade keeps the read lock.
  int r = SetRange(self->fd, FcntlType(new_type), self->begin, self->end);
  if (r != 0) return r;
  self->type = new_type;
  return 0;
}

int RegistryUnlock(uint64_t holder_id) {
  std::lock_guard<std::mutex> lk(g_registry_mu);
  auto hk = g_holder_keys.find(holder_id);
  if (hk == g_holder_keys.end()) return EINVAL;
  Key key = hk->second;
  g_holder_keys.erase(hk);
  InodeState& st = g_inodes[key];
  auto it = std::find_if(st.holders.begin(), st.holders.end(),
                         [&](const Holder& o) { return o.id == holder_id; });
  if (it == st.holders.end()) return EINVAL;
  Holder self = *it;
  st.holders.erase(it);
  // Unlock only the parts of our range no other in-process holder covers:
  // the kernel keeps one lock per process, so unlocking a shared region that
  // another handle still holds would silently drop that handle's lock too.
  std::vector<std::pair<uint64_t, uint64_t>> covered;
  for (const Holder& o : st.holders) {
    if (Overlaps(o, self.begin, self.end)) {
      covered.emplace_back(std::max(o.begin, self.begin), std::min(o.end, self.end));
    }
  }
  std::sort(covered.begin(), covered.end());
  int result = 0;
  uint64_t cursor = self.begin;
  for (const auto& c : covered) {
    if (c.first > cursor) {
      int r = SetRange(self.fd, F_UNLCK, cursor, c.first);
      if (r != 0 && result == 0) result = r;
    }
    cursor = std::max(cursor, c.second);
  }
  if (cursor < self.end) {
    int r = SetRange(self.fd, F_UNLCK, cursor, self.end);
    if (r != 0 && result == 0) result = r;
  }
  if (st.holders.empty()) {
    for (int fd : st.deferred) close(fd);
    g_inodes.erase(key);
  }
  return result;
}

int RegistryClose(handle_t h) {
  int fd = static_cast<int>(h);
  Key key;
  {
    std::lock_guard<std::mutex> lk(g_registry_mu);
    if (KeyOf(fd, &key) == 0) {
      auto it = g_inodes.find(key);
      if (it != g_inodes.end() && !it->second.holders.empty()) {
        for (const Holder& o : it->second.holders) {
          if (o.fd == fd) return EBUSY;  // still holds a lock: unlock first
        }
        it->second.deferred.push_back(fd);
        return 0;
      }
    }
  }
  return Close(h);
}

int RegistryHolders(handle_t h, int* count) {
  Key key;
  int r = KeyOf(static_cast<int>(h), &key);
  if (r != 0) return r;
  std::lock_guard<std::mutex> lk(g_registry_mu);
  auto it = g_inodes.find(key);
  *count = it == g_inodes.end() ? 0 : static_cast<int>(it->second.holders.size());
  return 0;
}

}  // namespace platform
}  // namespace fslock
