#include "netns.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>

#include <cerrno>

namespace zt {
namespace {

// One unit of work for the helper thread. Plain function pointer + context: no allocation, no
// exceptions; the caller's stack owns everything because it joins the thread before returning.
struct Job {
  int netnsFd;
  SysResult (*work)(void* ctx);
  void* ctx;
  SysResult result;
};

void* RunJob(void* arg) {
  auto* job = static_cast<Job*>(arg);
  // The name shows up in /proc/<pid>/task/*/comm, so a stuck helper is easy to spot.
  pthread_setname_np(pthread_self(), "zt-netns");
  // setns() changes only this thread's network namespace; it dies with the thread.
  if (setns(job->netnsFd, CLONE_NEWNET) < 0) {
    job->result = SysResult{-errno, "setns"};
    return nullptr;
  }
  job->result = job->work(job->ctx);
  return nullptr;
}

// Runs work(ctx) on a fresh thread inside netnsFd's namespace and waits for it. The thread is
// created with every signal blocked (it inherits the creator's mask), so no process signal is
// ever delivered to a thread that is not Node's. The wait is a few syscalls long.
SysResult RunInNetns(int netnsFd, SysResult (*work)(void*), void* ctx) {
  Job job{netnsFd, work, ctx, SysResult{-EINVAL, "setns"}};
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  // The work is a handful of syscalls: a small stack keeps a burst of pod registrations cheap.
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_t th;
  const int rc = pthread_create(&th, &attr, &RunJob, &job);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc != 0) return SysResult{-rc, "pthread_create"};
  pthread_join(th, nullptr);
  return job.result;
}

struct ListenCtx {
  const ListenOptions* opts;
  int* port;
};

SysResult DoListen(void* p) {
  auto* c = static_cast<ListenCtx*>(p);
  return Listen(*c->opts, c->port);
}

SysResult DoSocketForConnect(void* p) {
  return SocketForConnect(*static_cast<const ConnectSocketOptions*>(p));
}

}  // namespace

SysResult ListenInNetns(int netnsFd, const ListenOptions& opts, int* port) {
  ListenCtx c{&opts, port};
  return RunInNetns(netnsFd, &DoListen, &c);
}

SysResult SocketForConnectInNetns(int netnsFd, const ConnectSocketOptions& opts) {
  return RunInNetns(netnsFd, &DoSocketForConnect, const_cast<ConnectSocketOptions*>(&opts));
}

}  // namespace zt
