// Node-API glue: converts JS arguments to the plain C++ calls in sockets.h / relay.h and back.
// Arguments were validated by src/native/ (JS); here a wrong type simply yields -EINVAL.
// Every function returns its value, or -errno (single system call), or [-errno, "syscall"]
// (several system calls) — never throws for system errors.
//
// Context-aware: Node creates one Addon per environment (main thread, each worker_thread); all
// state lives in that instance. Teardown order matters: the completion ThreadSafeFunction is
// created BEFORE our env cleanup hook is added, so (hooks run last-added-first) our hook stops the
// relay thread and releases the TSFN while the TSFN is still alive.
#include <napi.h>

#include <cerrno>
#include <memory>
#include <string>
#include <unordered_map>

#include "netns.h"
#include "relay.h"
#include "seqpacket.h"
#include "sockets.h"

namespace {

struct Completion {
  zt::RelayResult result;
};

class Addon;
void DeliverDone(Napi::Env env, Napi::Function unused, Addon* self, Completion* c);
using DoneTsfn = Napi::TypedThreadSafeFunction<Addon, Completion, DeliverDone>;

Napi::Value Fail(Napi::Env env, int negErrno, const char* syscall) {
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(uint32_t{0}, Napi::Number::New(env, negErrno));
  a.Set(uint32_t{1}, Napi::String::New(env, syscall));
  return a;
}

bool IsInt(const Napi::Value& v) { return v.IsNumber(); }

int IntOr(const Napi::Object& o, const char* key, int dflt) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : dflt;
}

bool BoolOr(const Napi::Object& o, const char* key, bool dflt) {
  Napi::Value v = o.Get(key);
  return v.IsBoolean() ? v.As<Napi::Boolean>().Value() : dflt;
}

void ReadSocketOptions(const Napi::Object& o, zt::SocketOptions* s) {
  s->transparent = BoolOr(o, "transparent", false);
  s->freebind = BoolOr(o, "freebind", false);
  Napi::Value mark = o.Get("mark");
  if (mark.IsNumber()) {
    s->hasMark = true;
    s->mark = mark.As<Napi::Number>().Uint32Value();
  }
}

const char* ReasonName(zt::RelayReason r) {
  switch (r) {
    case zt::RelayReason::kEof:
      return "eof";
    case zt::RelayReason::kReset:
      return "reset";
    case zt::RelayReason::kStopped:
      return "stopped";
    case zt::RelayReason::kError:
      break;
  }
  return "error";
}

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports) : env_(env), engine_(&Addon::OnDone, this) {
    tsfn_ = DoneTsfn::New(env, "ztunnelRelayDone", 0, 1, this);
    // Idle relays must not keep the event loop alive; RelayStart refs it while any relay runs.
    tsfn_.Unref(env);
    napi_add_env_cleanup_hook(env, &Addon::Cleanup, this);
    // Owns itself from here: its async cleanup hook frees it at teardown (see seqpacket.h).
    watches_ = zt::FdWatches::Create(env);
    DefineAddon(exports, {
                             InstanceMethod("listen", &Addon::Listen),
                             InstanceMethod("socketForConnect", &Addon::SocketForConnect),
                             InstanceMethod("originalDst", &Addon::OriginalDst),
                             InstanceMethod("socketInfo", &Addon::SocketInfo),
                             InstanceMethod("setKeepalive", &Addon::SetKeepalive),
                             InstanceMethod("dup", &Addon::Dup),
                             InstanceMethod("close", &Addon::Close),
                             InstanceMethod("relayStart", &Addon::RelayStart),
                             InstanceMethod("relayStats", &Addon::RelayStats),
                             InstanceMethod("relayStop", &Addon::RelayStop),
                             InstanceMethod("relayCount", &Addon::RelayCount),
                             InstanceMethod("seqpacketConnect", &Addon::SeqpacketConnect),
                             InstanceMethod("seqpacketListen", &Addon::SeqpacketListen),
                             InstanceMethod("seqpacketAccept", &Addon::SeqpacketAccept),
                             InstanceMethod("seqpacketSend", &Addon::SeqpacketSend),
                             InstanceMethod("seqpacketRecv", &Addon::SeqpacketRecv),
                             InstanceMethod("watchFd", &Addon::WatchFd),
                             InstanceMethod("unwatchFd", &Addon::UnwatchFd),
                             InstanceMethod("watchCount", &Addon::WatchCount),
                         });
  }

  ~Addon() {
    if (!cleaned_) {
      napi_remove_env_cleanup_hook(env_, &Addon::Cleanup, this);
      engine_.Shutdown();
    }
  }

  // Runs on the JS thread when a relay's completion reaches it (or with env == null when the
  // TSFN is torn down with items still queued: only free them then).
  void Deliver(Napi::Env env, const zt::RelayResult& r) {
    engine_.Forget(r.id);
    auto it = callbacks_.find(r.id);
    if (it == callbacks_.end()) return;
    Napi::FunctionReference fn = std::move(it->second);
    callbacks_.erase(it);
    if (callbacks_.empty()) tsfn_.Unref(env);
    Napi::Object res = Napi::Object::New(env);
    res.Set("aToB", Napi::Number::New(env, static_cast<double>(r.aToB)));
    res.Set("bToA", Napi::Number::New(env, static_cast<double>(r.bToA)));
    res.Set("reason", Napi::String::New(env, ReasonName(r.reason)));
    res.Set("errno", Napi::Number::New(env, r.err));
    fn.Call({res});
  }

 private:
  static void OnDone(void* ctx, const zt::RelayResult& result) {  // relay thread
    auto* self = static_cast<Addon*>(ctx);
    auto* c = new Completion{result};
    if (self->tsfn_.NonBlockingCall(c) != napi_ok) delete c;
  }

  static void Cleanup(void* arg) {
    auto* self = static_cast<Addon*>(arg);
    self->cleaned_ = true;
    self->engine_.Shutdown();  // joins the relay thread: no TSFN call can follow
    self->callbacks_.clear();
    self->tsfn_.Release();
  }

  Napi::Value Listen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) return Napi::Number::New(env, -EINVAL);
    Napi::Object o = info[0].As<Napi::Object>();
    zt::ListenOptions opts;
    Napi::Value host = o.Get("host");
    if (!host.IsString() ||
        zt::ParseAddress(host.As<Napi::String>().Utf8Value(), IntOr(o, "port", -1), &opts.addr) <
            0) {
      return Fail(env, -EINVAL, "inet_pton");
    }
    opts.backlog = IntOr(o, "backlog", 511);
    opts.reusePort = BoolOr(o, "reusePort", false);
    ReadSocketOptions(o, &opts.sock);
    int port = 0;
    Napi::Value ns = o.Get("netnsFd");
    zt::SysResult r = ns.IsNumber()
                          ? zt::ListenInNetns(ns.As<Napi::Number>().Int32Value(), opts, &port)
                          : zt::Listen(opts, &port);
    if (r.value < 0) return Fail(env, r.value, r.syscall);
    Napi::Object res = Napi::Object::New(env);
    res.Set("fd", r.value);
    res.Set("port", port);
    return res;
  }

  Napi::Value SocketForConnect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) return Napi::Number::New(env, -EINVAL);
    Napi::Object o = info[0].As<Napi::Object>();
    zt::ConnectSocketOptions opts;
    opts.family = IntOr(o, "family", 4) == 6 ? AF_INET6 : AF_INET;
    ReadSocketOptions(o, &opts.sock);
    Napi::Value bindAddress = o.Get("bindAddress");
    if (bindAddress.IsString()) {
      if (zt::ParseAddress(bindAddress.As<Napi::String>().Utf8Value(), IntOr(o, "bindPort", 0),
                           &opts.bindAddr) < 0 ||
          opts.bindAddr.family != opts.family) {
        return Fail(env, -EINVAL, "inet_pton");
      }
      opts.hasBind = true;
    }
    Napi::Value ka = o.Get("keepalive");
    if (ka.IsObject()) {
      Napi::Object k = ka.As<Napi::Object>();
      opts.keepalive = zt::Keepalive{true, IntOr(k, "idleSec", 0), IntOr(k, "intervalSec", 0),
                                     IntOr(k, "count", 0)};
    }
    Napi::Value ns = o.Get("netnsFd");
    zt::SysResult r = ns.IsNumber()
                          ? zt::SocketForConnectInNetns(ns.As<Napi::Number>().Int32Value(), opts)
                          : zt::SocketForConnect(opts);
    if (r.value < 0) return Fail(env, r.value, r.syscall);
    return Napi::Number::New(env, r.value);
  }

  Napi::Value OriginalDst(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!IsInt(info[0])) return Napi::Number::New(env, -EINVAL);
    std::string host;
    int port = 0;
    zt::SysResult r = zt::OriginalDst(info[0].As<Napi::Number>().Int32Value(), &host, &port);
    if (r.value < 0) return Fail(env, r.value, r.syscall);
    Napi::Object res = Napi::Object::New(env);
    res.Set("address", host);
    res.Set("port", port);
    return res;
  }

  Napi::Value SocketInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!IsInt(info[0])) return Napi::Number::New(env, -EINVAL);
    zt::SocketInfo s{};
    zt::SysResult r = zt::GetSocketInfo(info[0].As<Napi::Number>().Int32Value(), &s);
    if (r.value < 0) return Fail(env, r.value, r.syscall);
    Napi::Object o = Napi::Object::New(env);
    o.Set("family", s.family);
    o.Set("type", s.type);
    o.Set("reuseAddr", s.reuseAddr);
    o.Set("reusePort", s.reusePort);
    o.Set("transparent", s.transparent);
    o.Set("freebind", s.freebind);
    o.Set("mark", s.mark);
    o.Set("keepalive", s.keepalive);
    o.Set("keepIdle", s.keepIdle);
    o.Set("keepIntvl", s.keepIntvl);
    o.Set("keepCnt", s.keepCnt);
    o.Set("nonBlocking", s.nonBlocking);
    o.Set("cloexec", s.cloexec);
    return o;
  }

  // setKeepalive(fd, {idleSec, intervalSec, count} | null) -> 0 | -errno (null: keepalive off)
  Napi::Value SetKeepalive(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!IsInt(info[0])) return Napi::Number::New(env, -EINVAL);
    zt::Keepalive k;
    if (info[1].IsObject()) {
      Napi::Object o = info[1].As<Napi::Object>();
      k = zt::Keepalive{true, IntOr(o, "idleSec", 0), IntOr(o, "intervalSec", 0), IntOr(o, "count", 0)};
    }
    return Napi::Number::New(env, zt::SetKeepalive(info[0].As<Napi::Number>().Int32Value(), k));
  }

  Napi::Value Dup(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!IsInt(info[0])) return Napi::Number::New(env, -EINVAL);
    return Napi::Number::New(env, zt::Dup(info[0].As<Napi::Number>().Int32Value()));
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!IsInt(info[0])) return Napi::Number::New(env, -EINVAL);
    return Napi::Number::New(env, zt::Close(info[0].As<Napi::Number>().Int32Value()));
  }

  // relayStart(fdA, fdB, onDone, pipeSize, prefixAB | null, prefixBA | null)
  //   -> id | -EINVAL (bad arguments) | [-errno, "syscall"] (the step of Start that failed).
  // On success the engine owns fdA and fdB; on failure the caller still does.
  Napi::Value RelayStart(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!IsInt(info[0]) || !IsInt(info[1]) || !info[2].IsFunction() || !IsInt(info[3])) {
      return Napi::Number::New(env, -EINVAL);
    }
    const uint8_t* pre[2] = {nullptr, nullptr};
    size_t preLen[2] = {0, 0};
    for (int d = 0; d < 2; d++) {
      Napi::Value v = info[4 + d];
      if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
        Napi::Uint8Array a = v.As<Napi::Uint8Array>();
        pre[d] = a.Data();
        preLen[d] = a.ByteLength();
      }
    }
    uint32_t id = 0;
    const char* syscall = "relayStart";
    int rc = engine_.Start(info[0].As<Napi::Number>().Int32Value(),
                           info[1].As<Napi::Number>().Int32Value(),
                           static_cast<size_t>(info[3].As<Napi::Number>().Int64Value()), pre[0],
                           preLen[0], pre[1], preLen[1], &id, &syscall);
    if (rc < 0) return Fail(env, rc, syscall);
    if (callbacks_.empty()) tsfn_.Ref(env);
    callbacks_[id] = Napi::Persistent(info[2].As<Napi::Function>());
    return Napi::Number::New(env, id);
  }

  Napi::Value RelayStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!IsInt(info[0])) return Napi::Number::New(env, -EINVAL);
    uint64_t ab = 0, ba = 0;
    int rc = engine_.Stats(info[0].As<Napi::Number>().Uint32Value(), &ab, &ba);
    if (rc < 0) return Napi::Number::New(env, rc);
    Napi::Array a = Napi::Array::New(env, 2);
    a.Set(uint32_t{0}, Napi::Number::New(env, static_cast<double>(ab)));
    a.Set(uint32_t{1}, Napi::Number::New(env, static_cast<double>(ba)));
    return a;
  }

  Napi::Value RelayStop(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!IsInt(info[0])) return Napi::Number::New(env, -EINVAL);
    return Napi::Number::New(env, engine_.Stop(info[0].As<Napi::Number>().Uint32Value()));
  }

  Napi::Value RelayCount(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(engine_.LiveCount()));
  }

  // Unix SOCK_SEQPACKET + SCM_RIGHTS: conversions live in seqpacket.cc.
  Napi::Value SeqpacketConnect(const Napi::CallbackInfo& info) {
    return zt::JsSeqpacketConnect(info);
  }
  Napi::Value SeqpacketListen(const Napi::CallbackInfo& info) { return zt::JsSeqpacketListen(info); }
  Napi::Value SeqpacketAccept(const Napi::CallbackInfo& info) { return zt::JsSeqpacketAccept(info); }
  Napi::Value SeqpacketSend(const Napi::CallbackInfo& info) { return zt::JsSeqpacketSend(info); }
  Napi::Value SeqpacketRecv(const Napi::CallbackInfo& info) { return zt::JsSeqpacketRecv(info); }

  // watchFd(fd, cb(events | -errno)) -> id | -errno
  Napi::Value WatchFd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!IsInt(info[0]) || !info[1].IsFunction()) return Napi::Number::New(env, -EINVAL);
    if (watches_ == nullptr) return Napi::Number::New(env, -ENOSYS);
    uint32_t id = 0;
    int rc = watches_->Watch(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Function>(), &id);
    return Napi::Number::New(env, rc < 0 ? rc : static_cast<double>(id));
  }

  Napi::Value UnwatchFd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!IsInt(info[0]) || watches_ == nullptr) return Napi::Number::New(env, -EINVAL);
    return Napi::Number::New(env, watches_->Unwatch(info[0].As<Napi::Number>().Uint32Value()));
  }

  Napi::Value WatchCount(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), watches_ == nullptr ? 0 : static_cast<double>(watches_->Count()));
  }

  napi_env env_;
  bool cleaned_ = false;
  zt::FdWatches* watches_ = nullptr;  // not owned: deletes itself after environment teardown
  DoneTsfn tsfn_;
  zt::RelayEngine engine_;
  // Completion callbacks by relay id; touched only on the JS thread.
  std::unordered_map<uint32_t, Napi::FunctionReference> callbacks_;
};

void DeliverDone(Napi::Env env, Napi::Function /*unused*/, Addon* self, Completion* c) {
  std::unique_ptr<Completion> owned(c);
  if (static_cast<napi_env>(env) == nullptr || self == nullptr) return;
  self->Deliver(env, owned->result);
}

}  // namespace

NODE_API_ADDON(Addon)
