// In-pod mode: sockets created inside another network namespace (a pod's), without moving the
// calling thread. A socket keeps the namespace it was created in for its whole life, so a helper
// thread that joins the namespace, makes the socket and exits is enough; the JS thread (and every
// other thread of the process) stays in its own namespace throughout.
#pragma once

#include "sockets.h"

namespace zt {

// Listen() run on a short-lived helper thread that first did setns(netnsFd, CLONE_NEWNET).
// Failures: {-errno, "setns"} (EBADF: not an fd; EINVAL: not a network namespace; EPERM: no
// CAP_SYS_ADMIN), {-errno, "pthread_create"}, or whatever Listen() reports.
SysResult ListenInNetns(int netnsFd, const ListenOptions& opts, int* port);

// SocketForConnect() on such a helper thread (the socket then routes, binds and connects inside
// that namespace).
SysResult SocketForConnectInNetns(int netnsFd, const ConnectSocketOptions& opts);

}  // namespace zt
