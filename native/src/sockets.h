// Socket system calls for ztunnel-ts: no Node-API, no policy, no logging.
// Every function returns >= 0 on success or -errno on failure; functions that make several
// system calls also report which one failed, so JS can build a Node-shaped error
// ({code, errno, syscall}).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace zt {

// Result of a multi-step call: value >= 0 on success; on failure value = -errno and syscall names
// the step that failed (a string literal, never freed).
struct SysResult {
  int value;
  const char* syscall;
};

struct Address {
  sockaddr_storage storage{};
  socklen_t len = 0;
  int family = 0;
};

// Parses an IPv4/IPv6 literal (no zone) and a port. Returns 0 or -EINVAL.
int ParseAddress(const std::string& host, int port, Address* out);
// Formats a sockaddr as {address text, port}; IPv4-mapped IPv6 is returned as plain IPv4 because
// that is what the connection actually used.
bool FormatAddress(const sockaddr_storage& ss, std::string* host, int* port);

struct SocketOptions {
  bool transparent = false;  // IP_TRANSPARENT / IPV6_TRANSPARENT (needs CAP_NET_ADMIN)
  bool freebind = false;     // IP_FREEBIND / IPV6_FREEBIND
  bool hasMark = false;      // SO_MARK (needs CAP_NET_ADMIN)
  uint32_t mark = 0;
};

struct ListenOptions {
  Address addr;
  int backlog = 511;
  bool reusePort = false;
  SocketOptions sock;
};

// socket + SO_REUSEADDR [+ SO_REUSEPORT] [+ options] + bind + listen; non-blocking, close-on-exec.
// On success value is the fd and *port the bound port.
SysResult Listen(const ListenOptions& opts, int* port);

struct Keepalive {
  bool enabled = false;
  int idleSec = 0;
  int intervalSec = 0;
  int count = 0;
};

struct ConnectSocketOptions {
  int family = AF_INET;
  SocketOptions sock;
  bool hasBind = false;  // bind to bindAddr (port 0 = any) before connect
  Address bindAddr;
  Keepalive keepalive;
};

// An unconnected, non-blocking, close-on-exec TCP socket with the options applied (and bound
// when asked). On success value is the fd.
SysResult SocketForConnect(const ConnectSocketOptions& opts);

// SO_KEEPALIVE on with TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT, or SO_KEEPALIVE off when
// !k.enabled (a connected socket too: Node's own setKeepAlive cannot set the interval or count).
// 0 or -errno (every step is a setsockopt).
int SetKeepalive(int fd, const Keepalive& k);

// SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST of an accepted (redirected) socket.
SysResult OriginalDst(int fd, std::string* host, int* port);

// Options as the kernel reports them (for tests and diagnostics).
struct SocketInfo {
  int family, type, reuseAddr, reusePort, transparent, freebind, mark, keepalive, keepIdle,
      keepIntvl, keepCnt, nonBlocking, cloexec;
};
SysResult GetSocketInfo(int fd, SocketInfo* out);

int Dup(int fd);  // F_DUPFD_CLOEXEC
int Close(int fd);

}  // namespace zt
