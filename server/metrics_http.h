// MetricsHttpServer: serves Prometheus scrapes with libmicrohttpd, a thread per connection, so a
// slow client delays neither a scrape nor a stop; GET/HEAD /metrics get what a callback renders,
// /livez and /readyz what health callbacks say, other methods 405, other paths 404. Knows
// nothing of metrics or health; ServerMetrics and ZigzagServer supply them.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"

struct MHD_Daemon;

namespace zigzag {

// Bounds on what clients of /metrics may hold. Prometheus sends one small request per scrape
// interval, so these are far above what it needs and far below what could hurt the server.
struct MetricsHttpOptions {
  // An idle connection (no byte either way) is closed after this long.
  int connection_timeout_seconds = 5;
  // Open connections in all, and from one address: a client that dribbles bytes keeps its
  // connection (and thread) alive, so one address may hold only a few. A connection over either
  // limit is closed at once, unanswered.
  int connection_limit = 32;
  int per_ip_connection_limit = 8;
  // libmicrohttpd's per-connection memory (request line, headers and buffers): a request that does
  // not fit gets 431 or 414 and the connection is closed. Prometheus's request is ~300 bytes.
  size_t connection_memory_limit_bytes = 16 * 1024;
};

// Plain-HTTP health for probes that cannot use gRPC health: the kubelet's gRPC probes speak
// plaintext only, so with TLS on the gRPC port they point here. GET/HEAD /livez and /readyz answer
// 200 while their callback returns true and 503 otherwise; a path whose callback is unset is 404.
// Callbacks may be called from several threads at once and must not block.
struct HttpHealth {
  std::function<bool()> live;
  std::function<bool()> ready;
};

class MetricsHttpServer {
 public:
  // Binds host:port (an IPv4 or IPv6 literal, or a name; port 0 = any free port) and starts
  // answering with `render`, which may be called from several threads at once. InvalidArgument
  // naming the option or port when one is out of range; Unavailable naming the address and the
  // reason when it cannot bind or start.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& host, int port, std::function<std::string()> render,
      const MetricsHttpOptions& options = {}, HttpHealth health = {});
  // Stops: closes the listener and every open connection (slow clients included) and joins the
  // threads; a render in progress finishes first.
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const { return port_; }
  // Connections accepted and not yet closed (slow or idle ones included).
  int open_connections() const { return open_connections_.load(); }

 private:
  MetricsHttpServer(std::function<std::string()> render, HttpHealth health);

  // libmicrohttpd's callbacks (their cls pointer is `this`), defined in the .cc file.
  struct Callbacks;

  const std::function<std::string()> render_;
  const HttpHealth health_;
  MHD_Daemon* daemon_ = nullptr;
  int port_ = -1;
  std::atomic<int> open_connections_{0};
  // While Start() runs, libmicrohttpd's messages are kept here for the error it may return.
  std::mutex log_mutex_;
  bool starting_ = true;
  std::string start_log_;
};

}  // namespace zigzag
