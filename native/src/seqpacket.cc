#include "seqpacket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace zt {
namespace {

SysResult FailAndClose(int fd, const char* syscall) {
  SysResult r{-errno, syscall};
  close(fd);
  return r;
}

bool UnixAddress(const std::string& path, sockaddr_un* a, socklen_t* len) {
  *a = sockaddr_un{};
  a->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a->sun_path) return false;
  memcpy(a->sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return true;
}

// SO_PASSCRED makes the kernel attach SCM_CREDENTIALS to every message this socket receives,
// which is what tells a zero-length message (credentials attached) from EOF (recvmsg returns 0
// with no control data): both read as 0 bytes otherwise.
int EnablePassCred(int fd) {
  int one = 1;
  return setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
}

// After recvmsg returned 0 bytes with no control data: EOF for certain when SO_PASSCRED is on;
// for an fd made elsewhere (no SO_PASSCRED) EOF when the peer has gone and nothing is queued.
bool IsEof(int fd) {
  int passcred = 0;
  socklen_t len = sizeof passcred;
  if (getsockopt(fd, SOL_SOCKET, SO_PASSCRED, &passcred, &len) == 0 && passcred) return true;
  pollfd p{fd, POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0 || !(p.revents & (POLLRDHUP | POLLHUP))) return false;
  int queued = 0;
  return ioctl(fd, FIONREAD, &queued) < 0 || queued == 0;
}

Napi::Value Fail(Napi::Env env, int negErrno, const char* syscall) {
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(uint32_t{0}, Napi::Number::New(env, negErrno));
  a.Set(uint32_t{1}, Napi::String::New(env, syscall));
  return a;
}

Napi::Value FdOrFail(Napi::Env env, const SysResult& r) {
  if (r.value < 0) return Fail(env, r.value, r.syscall);
  return Napi::Number::New(env, r.value);
}

}  // namespace

SysResult SeqpacketConnect(const std::string& path) {
  sockaddr_un a;
  socklen_t len;
  if (!UnixAddress(path, &a, &len)) return SysResult{-ENAMETOOLONG, "connect"};
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return SysResult{-errno, "socket"};
  if (EnablePassCred(fd) < 0) return FailAndClose(fd, "setsockopt");
  // A Unix connect completes at once (or fails with EAGAIN when the listener's backlog is
  // full): non-blocking never means EINPROGRESS here.
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), len) < 0) return FailAndClose(fd, "connect");
  return SysResult{fd, nullptr};
}

SysResult SeqpacketListen(const std::string& path, int backlog) {
  sockaddr_un a;
  socklen_t len;
  if (!UnixAddress(path, &a, &len)) return SysResult{-ENAMETOOLONG, "bind"};
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return SysResult{-errno, "socket"};
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), len) < 0) return FailAndClose(fd, "bind");
  if (listen(fd, backlog) < 0) return FailAndClose(fd, "listen");
  return SysResult{fd, nullptr};
}

int SeqpacketAccept(int fd) {
  int c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (c < 0) return -errno;
  if (EnablePassCred(c) < 0) {
    const int err = -errno;
    close(c);
    return err;
  }
  return c;
}

int SeqpacketSend(int fd, const uint8_t* data, size_t len, const int* fds, size_t nfds) {
  if (nfds > kMaxPassedFds) return -EINVAL;
  iovec iov{const_cast<uint8_t*>(data), len};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
  if (nfds > 0) {
    memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  // MSG_NOSIGNAL: a closed peer is EPIPE, never SIGPIPE.
  ssize_t n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  return n < 0 ? -errno : static_cast<int>(n);
}

int SeqpacketRecv(int fd, uint8_t* buf, size_t maxLen, std::vector<int>* fds, bool* eof) {
  *eof = false;
  iovec iov{buf, maxLen};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds) + CMSG_SPACE(sizeof(ucred))];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0) return -errno;
  const size_t before = fds->size();
  bool control_seen = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    control_seen = true;
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* p = CMSG_DATA(c);
    for (size_t i = 0; i < count; i++) {
      int v;
      memcpy(&v, p + i * sizeof(int), sizeof v);
      fds->push_back(v);
    }
  }
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    // A partial message is useless to a protocol with one request per message; the fds that
    // did arrive would leak if nobody owned them, so they are closed here.
    for (size_t i = before; i < fds->size(); i++) close((*fds)[i]);
    fds->resize(before);
    return -EMSGSIZE;
  }
  if (n == 0 && !control_seen) *eof = IsEof(fd);
  return static_cast<int>(n);
}

Napi::Value JsSeqpacketConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) return Napi::Number::New(env, -EINVAL);
  return FdOrFail(env, SeqpacketConnect(info[0].As<Napi::String>().Utf8Value()));
}

Napi::Value JsSeqpacketListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsNumber()) return Napi::Number::New(env, -EINVAL);
  return FdOrFail(env, SeqpacketListen(info[0].As<Napi::String>().Utf8Value(),
                                       info[1].As<Napi::Number>().Int32Value()));
}

Napi::Value JsSeqpacketAccept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) return Napi::Number::New(env, -EINVAL);
  return Napi::Number::New(env, SeqpacketAccept(info[0].As<Napi::Number>().Int32Value()));
}

// seqpacketSend(fd, data: Uint8Array, fds: number[]) -> bytes | -errno
Napi::Value JsSeqpacketSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsTypedArray() || !info[2].IsArray()) {
    return Napi::Number::New(env, -EINVAL);
  }
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_uint8_array) return Napi::Number::New(env, -EINVAL);
  Napi::Uint8Array data = ta.As<Napi::Uint8Array>();
  Napi::Array arr = info[2].As<Napi::Array>();
  if (arr.Length() > kMaxPassedFds) return Napi::Number::New(env, -EINVAL);
  int fds[kMaxPassedFds];
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr.Get(i);
    if (!v.IsNumber()) return Napi::Number::New(env, -EINVAL);
    fds[i] = v.As<Napi::Number>().Int32Value();
  }
  return Napi::Number::New(
      env, SeqpacketSend(info[0].As<Napi::Number>().Int32Value(), data.Data(), data.ByteLength(),
                         fds, arr.Length()));
}

// seqpacketRecv(fd, maxLen) -> {data, fds} | null (EOF) | -errno
Napi::Value JsSeqpacketRecv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsNumber()) return Napi::Number::New(env, -EINVAL);
  const int64_t maxLen = info[1].As<Napi::Number>().Int64Value();
  if (maxLen < 1 || maxLen > (64 << 20)) return Napi::Number::New(env, -EINVAL);
  std::vector<uint8_t> buf(static_cast<size_t>(maxLen));
  std::vector<int> fds;
  bool eof = false;
  int n = SeqpacketRecv(info[0].As<Napi::Number>().Int32Value(), buf.data(), buf.size(), &fds,
                        &eof);
  if (n < 0) return Napi::Number::New(env, n);
  if (eof) return env.Null();
  Napi::Object res = Napi::Object::New(env);
  res.Set("data", Napi::Buffer<uint8_t>::Copy(env, buf.data(), static_cast<size_t>(n)));
  Napi::Array arr = Napi::Array::New(env, fds.size());
  for (uint32_t i = 0; i < fds.size(); i++) arr.Set(i, Napi::Number::New(env, fds[i]));
  res.Set("fds", arr);
  return res;
}

// ---- FdWatches ----

FdWatches* FdWatches::Create(napi_env env) {
  auto* self = new FdWatches(env);
  if (napi_add_async_cleanup_hook(env, &FdWatches::Teardown, self, &self->hook_) != napi_ok) {
    delete self;
    return nullptr;
  }
  return self;
}

int FdWatches::Watch(int fd, Napi::Function cb, uint32_t* id) {
  if (tearingDown_) return -ESHUTDOWN;
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env_, &loop) != napi_ok || loop == nullptr) return -ENOSYS;
  auto* e = new Entry{};
  e->owner = this;
  e->fd = fd;
  e->poll.data = e;
  int rc = uv_poll_init(loop, &e->poll, fd);
  if (rc < 0) {
    delete e;  // a failed init registered nothing with the loop
    return rc;
  }
  rc = uv_poll_start(&e->poll, UV_READABLE | UV_DISCONNECT, &FdWatches::OnPoll);
  if (rc < 0) {
    closing_++;
    uv_close(reinterpret_cast<uv_handle_t*>(&e->poll), &FdWatches::OnClosed);
    return rc;
  }
  napi_value name;
  napi_create_string_utf8(env_, "ztunnelFdWatch", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env_, nullptr, name, &e->ctx);
  e->cb = Napi::Persistent(cb);
  *id = nextId_++;
  if (nextId_ == 0) nextId_ = 1;
  live_[*id] = e;
  return 0;
}

int FdWatches::Unwatch(uint32_t id) {
  auto it = live_.find(id);
  if (it == live_.end()) return -ENOENT;
  Entry* e = it->second;
  live_.erase(it);
  if (e->dispatching) {
    // Its own callback is on the stack: stop events now, free the JS side once it returns.
    uv_poll_stop(&e->poll);
    e->releasePending = true;
  } else {
    Release(e);
  }
  return 0;
}

void FdWatches::Release(Entry* e) {
  e->cb.Reset();
  if (e->ctx != nullptr) napi_async_destroy(env_, e->ctx);
  e->ctx = nullptr;
  closing_++;
  // uv_close stops the poll (removing the fd from epoll) at once; the fd may be closed next.
  uv_close(reinterpret_cast<uv_handle_t*>(&e->poll), &FdWatches::OnClosed);
}

void FdWatches::OnPoll(uv_poll_t* h, int status, int events) {
  auto* e = static_cast<Entry*>(h->data);
  FdWatches* self = e->owner;
  if (self->tearingDown_ || e->releasePending) return;
  napi_env env = self->env_;
  Napi::HandleScope scope(env);
  napi_value global;
  napi_get_global(env, &global);
  napi_value arg = Napi::Number::New(env, status < 0 ? status : events);
  napi_value fn = e->cb.Value();
  e->dispatching = true;
  napi_value result;
  napi_status st = napi_make_callback(env, e->ctx, global, fn, 1, &arg, &result);
  e->dispatching = false;
  bool pending = false;
  // While the environment is being torn down JS cannot run: the call fails without an
  // exception, and there is nobody to tell.
  if (st != napi_ok && napi_is_exception_pending(env, &pending) == napi_ok && pending) {
    napi_value ex;
    napi_get_and_clear_last_exception(env, &ex);
    napi_fatal_exception(env, ex);  // -> process 'uncaughtException', like any socket callback
  }
  if (e->releasePending) self->Release(e);
}

void FdWatches::OnClosed(uv_handle_t* h) {
  auto* e = static_cast<Entry*>(h->data);
  FdWatches* self = e->owner;
  delete e;
  self->closing_--;
  self->MaybeFinish();
}

void FdWatches::Teardown(napi_async_cleanup_hook_handle /*handle*/, void* arg) {
  auto* self = static_cast<FdWatches*>(arg);
  self->tearingDown_ = true;
  for (auto& kv : self->live_) {
    Entry* e = kv.second;
    const int fd = e->fd;
    self->Release(e);
    close(fd);  // JS owned it and can no longer close it; the peer sees EOF
  }
  self->live_.clear();
  self->MaybeFinish();
}

void FdWatches::MaybeFinish() {
  if (!tearingDown_ || closing_ != 0) return;
  napi_remove_async_cleanup_hook(hook_);
  delete this;
}

}  // namespace zt
