// LivenessSelfCheck: a thread that, every interval, opens a new connection to the server's own
// gRPC port and calls grpc.health.v1.Health/Check. After `failures` failed rounds in a row it
// reports the server dead, and alive again after a round that succeeds; ZigzagServer then sets
// health "" NOT_SERVING (or back to SERVING) and logs it. It catches a listener that no longer
// accepts (descriptors exhausted, --max-connections full) while the process looks healthy.
// It does not restart anything: the liveness probe does.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"

namespace zigzag {

struct SelfCheckOptions {
  std::string target;  // "127.0.0.1:50051", "[::1]:50051"
  bool tls = false;    // TLS without checking the certificate: it is our own, on loopback
  std::chrono::milliseconds interval{10000};
  std::chrono::milliseconds timeout{3000};  // per round: connect and answer
  int failures = 3;                         // rounds in a row before "dead"
};

class LivenessSelfCheck {
 public:
  // `on_change(alive)` runs on the check's thread whenever the verdict changes, before alive()
  // reports the new verdict.
  LivenessSelfCheck(SelfCheckOptions options, std::function<void(bool alive)> on_change);
  ~LivenessSelfCheck();  // Stop()
  LivenessSelfCheck(const LivenessSelfCheck&) = delete;
  LivenessSelfCheck& operator=(const LivenessSelfCheck&) = delete;

  void Start();  // once
  void Stop();   // idempotent; returns once the thread has ended

  // The current verdict (alive until `failures` rounds failed in a row).
  bool alive() const;

  // One round: OK when a new connection to `options.target` answered the health call in time;
  // else the call's error.
  static absl::Status CheckOnce(const SelfCheckOptions& options);

 private:
  void Loop();

  const SelfCheckOptions options_;
  const std::function<void(bool)> on_change_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  bool alive_ = true;  // guarded by mu_
  std::thread thread_;
};

}  // namespace zigzag
