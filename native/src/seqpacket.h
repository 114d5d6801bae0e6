// Unix SOCK_SEQPACKET sockets with SCM_RIGHTS fd passing (the istio-cni <-> ztunnel ZDS channel),
// and fd readiness watching on the calling thread's own libuv loop. Node's `net` has neither
// SOCK_SEQPACKET nor fd passing. All sockets are non-blocking and close-on-exec; nothing here
// ever blocks the JS thread.
#pragma once

#include <napi.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "sockets.h"

namespace zt {

// SCM_MAX_FD: the most fds the kernel accepts in one SCM_RIGHTS message.
constexpr size_t kMaxPassedFds = 253;

// socket + connect; {-ENAMETOOLONG, "connect"} for a path that does not fit sun_path.
SysResult SeqpacketConnect(const std::string& path);
// socket + bind + listen (the path must not exist yet).
SysResult SeqpacketListen(const std::string& path, int backlog);
// accept4; -EAGAIN when no connection is pending.
int SeqpacketAccept(int fd);
// One message with fds attached (the sender keeps its copies). Bytes sent or -errno
// (-EAGAIN when the peer's queue is full).
int SeqpacketSend(int fd, const uint8_t* data, size_t len, const int* fds, size_t nfds);
// One message into buf: its length, or -errno (-EAGAIN when none is queued; -EMSGSIZE when it
// or its fds did not fit, after closing every fd that did arrive). Received fds are
// close-on-exec and appended to *fds (the caller owns them). *eof is set on an orderly peer
// close. Sockets from SeqpacketConnect/SeqpacketAccept have SO_PASSCRED on, so every real
// message carries SCM_CREDENTIALS and a zero-length message is never mistaken for EOF; for other
// fds, 0 bytes read as EOF only when the peer is gone and nothing is queued.
int SeqpacketRecv(int fd, uint8_t* buf, size_t maxLen, std::vector<int>* fds, bool* eof);

// Node-API conversions for the calls above (see addon.cc for the calling convention).
Napi::Value JsSeqpacketConnect(const Napi::CallbackInfo& info);
Napi::Value JsSeqpacketListen(const Napi::CallbackInfo& info);
Napi::Value JsSeqpacketAccept(const Napi::CallbackInfo& info);
Napi::Value JsSeqpacketSend(const Napi::CallbackInfo& info);
Napi::Value JsSeqpacketRecv(const Napi::CallbackInfo& info);

// uv_poll_t watchers (readable | disconnect) on one environment's loop. The JS callback runs on
// that environment's thread through napi_make_callback, so promises and nextTicks it queues run
// right after it and a throw becomes an uncaught exception, as with any Node socket callback.
//
// Lifetime: created by the Addon; registers an async env cleanup hook which, at environment
// teardown (worker exit), closes every watcher's handle AND its fd (JS can no longer close it),
// waits for libuv's close callbacks and then deletes itself — possibly after the Addon is gone,
// which is why it is a separate allocation that never points back at the Addon.
class FdWatches {
 public:
  static FdWatches* Create(napi_env env);  // nullptr when the cleanup hook cannot be added
  // Starts watching; *id identifies the watch. 0 or a negative errno (libuv's, e.g. -EBADF).
  int Watch(int fd, Napi::Function cb, uint32_t* id);
  // Stops and closes the watch (the fd stays open: the caller closes it). 0 or -ENOENT.
  int Unwatch(uint32_t id);
  size_t Count() const { return live_.size(); }

 private:
  struct Entry {
    uv_poll_t poll;
    FdWatches* owner;
    int fd;
    Napi::FunctionReference cb;
    napi_async_context ctx;
    bool dispatching;     // inside the JS callback
    bool releasePending;  // unwatched from inside its own callback
  };
  explicit FdWatches(napi_env env) : env_(env) {}
  static void OnPoll(uv_poll_t* h, int status, int events);
  static void OnClosed(uv_handle_t* h);
  static void Teardown(napi_async_cleanup_hook_handle handle, void* arg);
  void Release(Entry* e);  // drops the JS references, starts uv_close
  void MaybeFinish();

  napi_env env_;
  napi_async_cleanup_hook_handle hook_ = nullptr;
  std::unordered_map<uint32_t, Entry*> live_;
  size_t closing_ = 0;  // handles whose close callback has not run yet
  uint32_t nextId_ = 1;
  bool tearingDown_ = false;
};

}  // namespace zt
