// MetricsHttpServer: a minimal HTTP/1.0 responder for Prometheus scrapes: GET /metrics answers
// with the text a callback renders, anything else 404. One std::thread with a normal stack:
// civetweb (prometheus-cpp's Exposer) creates 100 KiB thread stacks, which glibc refuses once
// cuBLAS's ~110 KiB of static TLS is loaded, so it cannot serve in CUDA builds.
// Knows nothing of metrics; ServerMetrics renders them.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace zigzag {

class MetricsHttpServer {
 public:
  // Binds host:port (an IPv4 or IPv6 literal, or a name; port 0 = any free port) and starts
  // answering. Unavailable (naming the address and the reason) when it cannot bind.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& host, int port, std::function<std::string()> render);
  ~MetricsHttpServer();  // stops and joins
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const { return port_; }

 private:
  MetricsHttpServer(int listen_fd, int port, std::function<std::string()> render);
  void Serve();
  void Answer(int client_fd) const;

  const int listen_fd_;
  const int port_;
  const std::function<std::string()> render_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace zigzag
