// The process-wide POSIX lock registry of platform.h (Unix).
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "platform.h"
#include "posix_internal.h"

namespace fslock {
namespace platform {

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

bool Overlaps(const Holder& a, uint64_t begin, uint64_t end) { return a.begin < end && begin < a.end; }

int Set(int fd, int type, uint64_t begin, uint64_t end) { return SetRange(fd, type, begin, end, kToEnd); }

int KeyOf(int fd, Key* key) {
  struct stat st;
  if (int e = StatFd(fd, &st)) return e;
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
  r = Set(fd, type, begin, end);
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
  int r = Set(self->fd, new_type, self->begin, self->end);
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
  auto it = std::find_if(st.holders.begin(), st.holders.end(), [&](const Holder& o) { return o.id == holder_id; });
  if (it == st.holders.end()) return EINVAL;
  Holder self = *it;
  st.holders.erase(it);
  // Unlock only the parts of our range no other in-process holder covers:
  // the kernel keeps one lock per process, so unlocking a shared region that
  // another handle still holds would silently drop that handle's lock too.
  std::vector<std::pair<uint64_t, uint64_t>> covered;
  for (const Holder& o : st.holders) {
    if (Overlaps(o, self.begin, self.end))
      covered.emplace_back(std::max(o.begin, self.begin), std::min(o.end, self.end));
  }
  std::sort(covered.begin(), covered.end());
  int result = 0;
  uint64_t cursor = self.begin;
  for (const auto& c : covered) {
    if (c.first > cursor) {
      int r = Set(self.fd, kUnlock, cursor, c.first);
      if (r != 0 && result == 0) result = r;
    }
    cursor = std::max(cursor, c.second);
  }
  if (cursor < self.end) {
    int r = Set(self.fd, kUnlock, cursor, self.end);
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
    if (!g_inodes.empty() && KeyOf(fd, &key) == 0) {
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

}  // namespace platform
}  // namespace fslock
