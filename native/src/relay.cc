#include "relay.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace zt {
namespace {

// Splice rounds per direction per wake-up: bounds how long one busy relay can hold the thread
// before the others get a turn (it is re-queued, not parked, when the budget runs out).
constexpr int kBudget = 8;
constexpr int kMaxEvents = 64;
constexpr unsigned kSpliceFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

enum class Cmd { kKick, kStop };

RelayReason Classify(int err) {
  switch (-err) {
    case ECONNRESET:
    case EPIPE:
    case ENOTCONN:
    case ECONNABORTED:
      return RelayReason::kReset;
    default:
      return RelayReason::kError;
  }
}

int SetNonBlocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return -errno;
  if ((fl & O_NONBLOCK) == 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
  return 0;
}

}  // namespace

struct Endpoint {
  Relay* relay;
  int side;  // 0 = A, 1 = B
};

// Direction d reads fd[d] and writes fd[1 - d] through pipe d: d = 0 is A->B, d = 1 is B->A.
struct Relay {
  uint32_t id = 0;
  int fd[2] = {-1, -1};
  int pipeR[2] = {-1, -1};
  int pipeW[2] = {-1, -1};
  size_t pipeCap[2] = {0, 0};
  size_t inPipe[2] = {0, 0};  // bytes sitting in pipe d
  bool eof[2] = {false, false};   // fd[d] reported EOF
  bool shut[2] = {false, false};  // EOF forwarded: shutdown(fd[1 - d], SHUT_WR) done
  bool finished = false;          // relay thread only
  bool queued = false;            // in the relay thread's "again" list
  std::atomic<bool> armed{false};  // set once both fds are registered; events before are ignored
  std::atomic<uint64_t> bytes[2];
  Endpoint ends[2];

  Relay() {
    bytes[0].store(0);
    bytes[1].store(0);
    ends[0] = Endpoint{this, 0};
    ends[1] = Endpoint{this, 1};
  }
  void ClosePipes() {
    for (int d = 0; d < 2; d++) {
      if (pipeR[d] >= 0) close(pipeR[d]);
      if (pipeW[d] >= 0) close(pipeW[d]);
      pipeR[d] = pipeW[d] = -1;
    }
  }
};

namespace {

// Moves bytes in direction d until both ends would block. Returns 0 when parked on an epoll edge
// (or the direction is done), 1 when the budget ran out with work left, or -errno.
int PumpDirection(Relay* r, int d) {
  const int src = r->fd[d];
  const int dst = r->fd[1 - d];
  for (int round = 0; round < kBudget; round++) {
    bool progressed = false;
    if (r->inPipe[d] > 0) {
      ssize_t n = splice(r->pipeR[d], nullptr, dst, nullptr, r->inPipe[d], kSpliceFlags);
      if (n > 0) {
        r->inPipe[d] -= static_cast<size_t>(n);
        r->bytes[d].fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
        progressed = true;
      } else if (n < 0 && errno == EINTR) {
        progressed = true;
      } else if (n < 0 && errno != EAGAIN) {
        return -errno;
      }
    }
    if (!r->eof[d] && r->inPipe[d] < r->pipeCap[d]) {
      ssize_t n = splice(src, nullptr, r->pipeW[d], nullptr, r->pipeCap[d] - r->inPipe[d],
                         kSpliceFlags);
      if (n > 0) {
        r->inPipe[d] += static_cast<size_t>(n);
        progressed = true;
      } else if (n == 0) {
        r->eof[d] = true;
      } else if (errno == EINTR) {
        progressed = true;
      } else if (errno != EAGAIN) {
        return -errno;
      }
    }
    // Half-close: the source finished and everything it sent was delivered, so tell the other
    // side, and keep the opposite direction running.
    if (r->eof[d] && r->inPipe[d] == 0 && !r->shut[d]) {
      if (shutdown(dst, SHUT_WR) < 0) return -errno;
      r->shut[d] = true;
    }
    if (r->shut[d] || !progressed) return 0;
  }
  return 1;
}

}  // namespace

int RelayEngine::EnsureThread(const char** syscall) {
  if (threadStarted_) return 0;
  *syscall = "epoll_create1";
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) return -errno;
  *syscall = "eventfd";
  wakefd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wakefd_ < 0) {
    int err = -errno;
    close(epfd_);
    epfd_ = -1;
    return err;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the wake-up fd is the only registration without an Endpoint
  *syscall = "epoll_ctl";
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev) < 0) {
    int err = -errno;
    close(wakefd_);
    close(epfd_);
    wakefd_ = epfd_ = -1;
    return err;
  }
  // The relay thread takes no signals (they belong to Node's threads); a SIGPIPE raised by
  // splice() into a reset socket then stays pending on this thread instead of hitting the process.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  *syscall = "pthread_create";
  // pthread rather than std::thread: the addon builds without C++ exceptions, and a failed
  // thread creation must come back as -errno, not abort the process.
  int rc = pthread_create(
      &thread_, nullptr,
      [](void* self) -> void* {
        static_cast<RelayEngine*>(self)->Run();
        return nullptr;
      },
      this);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc != 0) {
    // No thread: the next Start tries again from scratch and would otherwise overwrite (leak)
    // both fds made for this one.
    close(wakefd_);
    close(epfd_);
    wakefd_ = epfd_ = -1;
    return -rc;
  }
  // A stable name lets operators (top -H) and the tests (/proc/self/task/*/comm) find it.
  pthread_setname_np(thread_, "zt-relay");
  threadStarted_ = true;
  return 0;
}

int RelayEngine::Start(int fdA, int fdB, size_t pipeSize, const uint8_t* prefixAB, size_t nAB,
                       const uint8_t* prefixBA, size_t nBA, uint32_t* id, const char** syscall) {
  // Until a later step says otherwise, a failure is fcntl's (F_GETFL/F_SETFL on the two fds;
  // a negative fd is what fcntl itself would refuse with EBADF).
  *syscall = "fcntl";
  if (fdA < 0 || fdB < 0) return -EBADF;
  if (fdA == fdB) return -EINVAL;
  int err = SetNonBlocking(fdA);
  if (err == 0) err = SetNonBlocking(fdB);
  if (err != 0) return err;

  auto* r = new Relay();
  r->fd[0] = fdA;
  r->fd[1] = fdB;
  const uint8_t* prefix[2] = {prefixAB, prefixBA};
  const size_t prefixLen[2] = {nAB, nBA};
  for (int d = 0; d < 2 && err == 0; d++) {
    int p[2];
    *syscall = "pipe2";
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) {
      err = -errno;
      break;
    }
    r->pipeR[d] = p[0];
    r->pipeW[d] = p[1];
    // Best effort: beyond fs.pipe-max-size or the per-user pipe budget the kernel refuses, and
    // the default capacity still works, only with more wake-ups.
    fcntl(p[1], F_SETPIPE_SZ, static_cast<int>(pipeSize));
    *syscall = "fcntl";
    int cap = fcntl(p[1], F_GETPIPE_SZ);
    if (cap <= 0) {
      err = cap < 0 ? -errno : -EINVAL;
      break;
    }
    r->pipeCap[d] = static_cast<size_t>(cap);
    if (prefixLen[d] > 0) {
      *syscall = "write";  // the prefix goes into the pipe; EMSGSIZE: it does not fit
      if (prefixLen[d] > r->pipeCap[d]) {
        err = -EMSGSIZE;
        break;
      }
      ssize_t n = write(r->pipeW[d], prefix[d], prefixLen[d]);
      if (n < 0) {
        err = -errno;
      } else if (static_cast<size_t>(n) != prefixLen[d]) {
        err = -EMSGSIZE;
      } else {
        r->inPipe[d] = prefixLen[d];
      }
    }
  }
  if (err != 0) {
    r->ClosePipes();
    delete r;
    return err;
  }

  std::lock_guard<std::mutex> lock(mu_);
  if (shutdown_) {
    *syscall = "relayStart";  // the engine is being torn down: no system call failed
    err = -ESHUTDOWN;
  }
  if (err == 0) err = EnsureThread(syscall);
  if (err != 0) {
    r->ClosePipes();
    delete r;
    return err;
  }
  do {
    r->id = nextId_++;
  } while (r->id == 0 || relays_.count(r->id) != 0);
  relays_[r->id] = r;
  int added = 0;
  *syscall = "epoll_ctl";
  for (; added < 2; added++) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
    ev.data.ptr = &r->ends[added];
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, r->fd[added], &ev) < 0) {
      err = -errno;
      break;
    }
  }
  if (err != 0) {
    // The relay thread may already hold an event pointing at r from the fd that did get added
    // (it ignores it: r is not armed), so r is parked until Shutdown instead of freed now.
    for (int i = 0; i < added; i++) epoll_ctl(epfd_, EPOLL_CTL_DEL, r->fd[i], nullptr);
    relays_.erase(r->id);
    r->ClosePipes();
    abandoned_.push_back(r);
    return err;
  }
  // Edges that fired before arming were ignored; the kick makes the relay thread pump once,
  // which drains whatever is already readable and re-arms the edges.
  r->armed.store(true, std::memory_order_release);
  commands_.push_back({r->id, static_cast<int>(Cmd::kKick)});
  Wake();
  *id = r->id;
  return 0;
}

void RelayEngine::Wake() {
  uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the thread is due to wake anyway.
  ssize_t ignored = write(wakefd_, &one, sizeof one);
  (void)ignored;
}

int RelayEngine::Stop(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shutdown_ || relays_.count(id) == 0) return -ENOENT;
  commands_.push_back({id, static_cast<int>(Cmd::kStop)});
  Wake();
  return 0;
}

int RelayEngine::Stats(uint32_t id, uint64_t* aToB, uint64_t* bToA) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = relays_.find(id);
  if (it != relays_.end()) {
    *aToB = it->second->bytes[0].load(std::memory_order_relaxed);
    *bToA = it->second->bytes[1].load(std::memory_order_relaxed);
    return 0;
  }
  auto fin = finals_.find(id);
  if (fin == finals_.end()) return -ENOENT;
  *aToB = fin->second.first;
  *bToA = fin->second.second;
  return 0;
}

void RelayEngine::Forget(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  finals_.erase(id);
}

size_t RelayEngine::LiveCount() {
  std::lock_guard<std::mutex> lock(mu_);
  return relays_.size();
}

void RelayEngine::Finish(Relay* r, RelayReason reason, int err, std::vector<Relay*>* graveyard) {
  r->finished = true;
  // Explicit DEL: if someone else still holds a duplicate of these fds, close() alone would
  // leave the registration (and events pointing at r) alive.
  // A relay that failed (peer reset, or a local error) must not hand the other peer a clean FIN
  // that would pass for a complete transfer: SO_LINGER {1, 0} makes close() send an RST, as the
  // JS engine's resetAndDestroy() does (src/proxy/copy.ts). On the side that was already reset
  // it changes nothing.
  const bool abort = reason == RelayReason::kReset || reason == RelayReason::kError;
  for (int side = 0; side < 2; side++) {
    epoll_ctl(epfd_, EPOLL_CTL_DEL, r->fd[side], nullptr);
    if (abort) {
      linger lg{1, 0};
      setsockopt(r->fd[side], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(r->fd[side]);
  }
  r->ClosePipes();
  RelayResult res{r->id, r->bytes[0].load(), r->bytes[1].load(), reason, err};
  {
    std::lock_guard<std::mutex> lock(mu_);
    relays_.erase(r->id);
    finals_[r->id] = {res.aToB, res.bToA};
  }
  graveyard->push_back(r);
  if (!quit_.load()) done_(ctx_, res);
}

void RelayEngine::Pump(Relay* r, std::vector<Relay*>* again, std::vector<Relay*>* graveyard) {
  bool more = false;
  for (int d = 0; d < 2; d++) {
    int rc = PumpDirection(r, d);
    if (rc < 0) {
      Finish(r, Classify(rc), rc, graveyard);
      return;
    }
    more = more || rc == 1;
  }
  if (r->shut[0] && r->shut[1]) {
    Finish(r, RelayReason::kEof, 0, graveyard);
  } else if (more && !r->queued) {
    r->queued = true;
    again->push_back(r);
  }
}

void RelayEngine::Run() {
  std::vector<Relay*> again, current, graveyard;
  std::vector<std::pair<uint32_t, int>> cmds;
  epoll_event evs[kMaxEvents];
  while (!quit_.load()) {
    int n = epoll_wait(epfd_, evs, kMaxEvents, again.empty() ? -1 : 0);
    if (n < 0 && errno != EINTR) break;  // only EBADF/EINVAL: the engine is being torn down
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == nullptr) {
        uint64_t v;
        while (read(wakefd_, &v, sizeof v) > 0) {
        }
        {
          std::lock_guard<std::mutex> lock(mu_);
          cmds.swap(commands_);
        }
        if (quit_.load()) break;
        for (const auto& c : cmds) {
          Relay* r = nullptr;
          {
            std::lock_guard<std::mutex> lock(mu_);
            auto it = relays_.find(c.first);
            if (it != relays_.end()) r = it->second;
          }
          if (r == nullptr || r->finished) continue;
          if (c.second == static_cast<int>(Cmd::kStop)) {
            Finish(r, RelayReason::kStopped, 0, &graveyard);
          } else {
            Pump(r, &again, &graveyard);
          }
        }
        cmds.clear();
        continue;
      }
      auto* e = static_cast<Endpoint*>(evs[i].data.ptr);
      Relay* r = e->relay;
      if (!r->armed.load(std::memory_order_acquire) || r->finished) continue;
      if (evs[i].events & EPOLLERR) {
        // A pending socket error may never surface through splice() if that side has nothing
        // left to read or write (e.g. a half-closed direction), so fetch it here.
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(r->fd[e->side], SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr != 0) {
          Finish(r, Classify(-soerr), -soerr, &graveyard);
          continue;
        }
      }
      Pump(r, &again, &graveyard);
    }
    current.swap(again);
    for (Relay* r : current) {
      r->queued = false;
      if (!r->finished) Pump(r, &again, &graveyard);
    }
    current.clear();
    if (!graveyard.empty()) {
      again.erase(std::remove_if(again.begin(), again.end(), [](Relay* r) { return r->finished; }),
                  again.end());
      for (Relay* r : graveyard) delete r;
      graveyard.clear();
    }
  }
  for (Relay* r : graveyard) delete r;
}

void RelayEngine::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutdown_) return;
    shutdown_ = true;
    quit_.store(true);
    if (wakefd_ >= 0) Wake();
  }
  if (threadStarted_) pthread_join(thread_, nullptr);
  threadStarted_ = false;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& kv : relays_) {
    Relay* r = kv.second;
    close(r->fd[0]);
    close(r->fd[1]);
    r->ClosePipes();
    delete r;
  }
  relays_.clear();
  finals_.clear();
  commands_.clear();
  for (Relay* r : abandoned_) delete r;
  abandoned_.clear();
  if (epfd_ >= 0) close(epfd_);
  if (wakefd_ >= 0) close(wakefd_);
  epfd_ = wakefd_ = -1;
}

}  // namespace zt
