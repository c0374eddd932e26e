// Helpers shared by the Unix platform files (not part of platform.h).
#pragma once

#include <cstdint>

#include "platform.h"

namespace fslock {
namespace platform {

// errno, or EIO if a failing call left it 0.
int Errno();
// The single system call behind Lock(); EINTR is returned to the caller.
int LockOnce(const LockRequest& req, int fd, bool wait);
// F_SETLK on [begin, end) (end == to_end: to the end of the file and beyond).
int SetRange(int fd, int type, uint64_t begin, uint64_t end, uint64_t to_end);

}  // namespace platform
}  // namespace fslock
