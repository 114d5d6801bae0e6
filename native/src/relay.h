// Splice relay engine: moves bytes between two connected TCP sockets with splice(2), off the JS
// thread. No Node-API, no policy, no logging.
//
// Threading: one engine per addon instance (the main thread and each worker_thread load their own
// instance). The engine owns one relay thread, started on the first Start(), running an epoll loop
// (edge-triggered) over the sockets of all its relays. Start/Stop/Stats may be called from any
// one other thread (the JS thread); they take `mu_`. Per-relay byte state (pipes, EOF flags) is
// touched only by the relay thread; the byte counters are atomics readable from the JS thread.
//
// Ownership: Start() takes ownership of fdA and fdB ONLY when it returns 0; from then on the engine
// closes them exactly once (when the relay finishes, is stopped, or at Shutdown). On failure the
// caller still owns them.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace zt {

enum class RelayReason : int { kEof = 0, kReset = 1, kError = 2, kStopped = 3 };

struct RelayResult {
  uint32_t id;
  uint64_t aToB;
  uint64_t bToA;
  RelayReason reason;
  int err;  // -errno for kReset/kError, else 0
};

struct Relay;

class RelayEngine {
 public:
  // Called on the relay thread once per relay that finishes (never after Shutdown() began).
  using DoneFn = void (*)(void* ctx, const RelayResult& result);

  RelayEngine(DoneFn done, void* ctx) : done_(done), ctx_(ctx) {}
  ~RelayEngine() { Shutdown(); }
  RelayEngine(const RelayEngine&) = delete;
  RelayEngine& operator=(const RelayEngine&) = delete;

  // Starts relaying between fdA and fdB. prefixAB / prefixBA are bytes already read from A (resp.
  // B) that must reach the other side first (at most one pipe's capacity each). pipeSize is the
  // requested capacity of each direction's pipe (the kernel may grant less).
  // Returns 0 and sets *id, or -errno and sets *syscall to the step that failed (fcntl, pipe2,
  // write, epoll_create1, eventfd, epoll_ctl, pthread_create; a string literal).
  int Start(int fdA, int fdB, size_t pipeSize, const uint8_t* prefixAB, size_t nAB,
            const uint8_t* prefixBA, size_t nBA, uint32_t* id, const char** syscall);
  // Asks the relay thread to finish relay `id` with kStopped. 0 or -ENOENT (unknown or finished).
  int Stop(uint32_t id);
  // Counters: bytes written to B (from A) and to A (from B), live while the relay runs and final
  // once it finished, until Forget(id). 0 or -ENOENT.
  int Stats(uint32_t id, uint64_t* aToB, uint64_t* bToA);
  // Drops a finished relay's final counters (call once its result was delivered).
  void Forget(uint32_t id);
  // Stops the relay thread, closes every live relay's fds and pipes; no DoneFn calls. Idempotent.
  void Shutdown();
  size_t LiveCount();

 private:
  int EnsureThread(const char** syscall);  // under mu_; *syscall names a failed step
  void Wake();         // under mu_ (wakefd_ is valid once the thread exists)
  void Run();
  void Pump(Relay* r, std::vector<Relay*>* again, std::vector<Relay*>* graveyard);
  void Finish(Relay* r, RelayReason reason, int err, std::vector<Relay*>* graveyard);

  DoneFn done_;
  void* ctx_;
  std::mutex mu_;
  std::unordered_map<uint32_t, Relay*> relays_;  // live relays, guarded by mu_
  std::unordered_map<uint32_t, std::pair<uint64_t, uint64_t>> finals_;  // guarded by mu_
  std::vector<std::pair<uint32_t, int>> commands_;  // {id, Cmd} for the relay thread, by mu_
  std::vector<Relay*> abandoned_;  // failed mid-Start, freed at Shutdown; guarded by mu_
  uint32_t nextId_ = 1;                          // guarded by mu_
  bool shutdown_ = false;                        // guarded by mu_
  int epfd_ = -1;
  int wakefd_ = -1;  // eventfd: Stop/Shutdown wake the relay thread
  pthread_t thread_{};
  bool threadStarted_ = false;  // written under mu_ / by Shutdown after join
  std::atomic<bool> quit_{false};
};

}  // namespace zt
