#include "sockets.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

// Values from linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h; those headers clash
// with glibc's netinet/in.h, so the two constants are repeated here.
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

namespace zt {
namespace {

SysResult Fail(const char* syscall) { return SysResult{-errno, syscall}; }

int SetInt(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof value);
}

// Closes fd without letting close() clobber the errno of the step that failed.
SysResult FailAndClose(int fd, const char* syscall) {
  SysResult r = Fail(syscall);
  close(fd);
  return r;
}

// Applies the shared options; returns nullptr on success or the name of the failed call.
const char* ApplyOptions(int fd, int family, const SocketOptions& o) {
  const bool v6 = family == AF_INET6;
  if (o.transparent &&
      SetInt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, 1) < 0) {
    return "setsockopt";
  }
  if (o.freebind && SetInt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_FREEBIND : IP_FREEBIND, 1) < 0) {
    return "setsockopt";
  }
  if (o.hasMark && setsockopt(fd, SOL_SOCKET, SO_MARK, &o.mark, sizeof o.mark) < 0) {
    return "setsockopt";
  }
  return nullptr;
}

int GetInt(int fd, int level, int name) {
  int v = 0;
  socklen_t len = sizeof v;
  if (getsockopt(fd, level, name, &v, &len) < 0) return -1;
  return v;
}

}  // namespace

int ParseAddress(const std::string& host, int port, Address* out) {
  *out = Address{};
  if (port < 0 || port > 65535) return -EINVAL;
  auto* in4 = reinterpret_cast<sockaddr_in*>(&out->storage);
  if (inet_pton(AF_INET, host.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(static_cast<uint16_t>(port));
    out->len = sizeof(sockaddr_in);
    out->family = AF_INET;
    return 0;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&out->storage);
  if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    out->len = sizeof(sockaddr_in6);
    out->family = AF_INET6;
    return 0;
  }
  return -EINVAL;
}

bool FormatAddress(const sockaddr_storage& ss, std::string* host, int* port) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(&ss);
    if (!inet_ntop(AF_INET, &in4->sin_addr, buf, sizeof buf)) return false;
    *port = ntohs(in4->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      if (!inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], buf, sizeof buf)) return false;
    } else if (!inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf)) {
      return false;
    }
    *port = ntohs(in6->sin6_port);
  } else {
    return false;
  }
  *host = buf;
  return true;
}

SysResult Listen(const ListenOptions& opts, int* port) {
  const int family = opts.addr.family;
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Fail("socket");
  // SO_REUSEADDR like Node/libuv listeners: restart while old connections sit in TIME_WAIT.
  if (SetInt(fd, SOL_SOCKET, SO_REUSEADDR, 1) < 0) return FailAndClose(fd, "setsockopt");
  if (opts.reusePort && SetInt(fd, SOL_SOCKET, SO_REUSEPORT, 1) < 0) {
    return FailAndClose(fd, "setsockopt");
  }
  if (const char* failed = ApplyOptions(fd, family, opts.sock)) return FailAndClose(fd, failed);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&opts.addr.storage), opts.addr.len) < 0) {
    return FailAndClose(fd, "bind");
  }
  if (listen(fd, opts.backlog) < 0) return FailAndClose(fd, "listen");
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) < 0) {
    return FailAndClose(fd, "getsockname");
  }
  std::string ignored;
  if (!FormatAddress(bound, &ignored, port)) {
    close(fd);
    return SysResult{-EAFNOSUPPORT, "getsockname"};
  }
  return SysResult{fd, nullptr};
}

SysResult SocketForConnect(const ConnectSocketOptions& opts) {
  int fd = socket(opts.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Fail("socket");
  if (const char* failed = ApplyOptions(fd, opts.family, opts.sock)) {
    return FailAndClose(fd, failed);
  }
  if (opts.keepalive.enabled && SetKeepalive(fd, opts.keepalive) < 0) {
    return FailAndClose(fd, "setsockopt");
  }
  if (opts.hasBind) {
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(&opts.bindAddr.storage);
    // Port 0: let connect() pick the port from the full 4-tuple instead of reserving one at
    // bind time, so many connections from one spoofed source address do not exhaust ports.
    if (in4->sin_port == 0 && SetInt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1) < 0) {
      return FailAndClose(fd, "setsockopt");
    }
    if (bind(fd, reinterpret_cast<const sockaddr*>(&opts.bindAddr.storage), opts.bindAddr.len) <
        0) {
      return FailAndClose(fd, "bind");
    }
  }
  return SysResult{fd, nullptr};
}

int SetKeepalive(int fd, const Keepalive& k) {
  if (!k.enabled) return SetInt(fd, SOL_SOCKET, SO_KEEPALIVE, 0) < 0 ? -errno : 0;
  if (SetInt(fd, SOL_SOCKET, SO_KEEPALIVE, 1) < 0 ||
      SetInt(fd, IPPROTO_TCP, TCP_KEEPIDLE, k.idleSec) < 0 ||
      SetInt(fd, IPPROTO_TCP, TCP_KEEPINTVL, k.intervalSec) < 0 ||
      SetInt(fd, IPPROTO_TCP, TCP_KEEPCNT, k.count) < 0) {
    return -errno;
  }
  return 0;
}

SysResult OriginalDst(int fd, std::string* host, int* port) {
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) < 0) return Fail("getsockname");
  sockaddr_storage dst{};
  len = sizeof dst;
  const auto* l6 = reinterpret_cast<const sockaddr_in6*>(&local);
  // A dual-stack IPv6 socket carrying an IPv4 connection was NATed by iptables (IPv4), not
  // ip6tables, so its original destination lives under SOL_IP.
  const bool v6 = local.ss_family == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&l6->sin6_addr);
  int rc = v6 ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len)
              : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len);
  if (rc < 0) return Fail("getsockopt");
  if (!FormatAddress(dst, host, port)) return SysResult{-EAFNOSUPPORT, "getsockopt"};
  return SysResult{0, nullptr};
}

SysResult GetSocketInfo(int fd, SocketInfo* o) {
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) < 0) return Fail("getsockname");
  const bool v6 = local.ss_family == AF_INET6;
  o->family = local.ss_family == AF_INET6 ? 6 : local.ss_family == AF_INET ? 4 : 0;
  o->type = GetInt(fd, SOL_SOCKET, SO_TYPE);
  o->reuseAddr = GetInt(fd, SOL_SOCKET, SO_REUSEADDR);
  o->reusePort = GetInt(fd, SOL_SOCKET, SO_REUSEPORT);
  o->transparent = GetInt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_TRANSPARENT : IP_TRANSPARENT);
  o->freebind = GetInt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_FREEBIND : IP_FREEBIND);
  o->mark = GetInt(fd, SOL_SOCKET, SO_MARK);
  o->keepalive = GetInt(fd, SOL_SOCKET, SO_KEEPALIVE);
  o->keepIdle = GetInt(fd, IPPROTO_TCP, TCP_KEEPIDLE);
  o->keepIntvl = GetInt(fd, IPPROTO_TCP, TCP_KEEPINTVL);
  o->keepCnt = GetInt(fd, IPPROTO_TCP, TCP_KEEPCNT);
  const int fl = fcntl(fd, F_GETFL);
  const int fdfl = fcntl(fd, F_GETFD);
  if (fl < 0 || fdfl < 0) return Fail("fcntl");
  o->nonBlocking = (fl & O_NONBLOCK) ? 1 : 0;
  o->cloexec = (fdfl & FD_CLOEXEC) ? 1 : 0;
  return SysResult{0, nullptr};
}

int Dup(int fd) {
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  return nfd < 0 ? -errno : nfd;
}

int Close(int fd) {
  // Linux releases the descriptor even when close() reports EINTR, so never retry.
  return close(fd) < 0 ? -errno : 0;
}

}  // namespace zt
