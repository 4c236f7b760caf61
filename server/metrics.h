// ServerMetrics: the Prometheus exporter (HTTP /metrics, prometheus-cpp). Gauges and counters are
// read from the scheduler's Load() at scrape time, so they always agree with it; histograms of
// per-request figures are fed through SchedulerObserver. Names follow vLLM's with the zigzag_
// prefix and vLLM's bucket boundaries; every series has the label `model`. It does not log.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/scheduler/observer.h"
#include "core/scheduler/scheduler.h"
#include "server/metrics_http.h"

namespace prometheus {
class Registry;
class Histogram;
}  // namespace prometheus

namespace zigzag {

// vLLM's buckets (vllm/v1/metrics/loggers.py) and ours for the KV figures.
const std::vector<double>& TimeToFirstTokenBuckets();
const std::vector<double>& InterTokenLatencyBuckets();
const std::vector<double>& RequestLatencyBuckets();  // e2e and queue time
const std::vector<double>& KvRetainedRatioBuckets();
const std::vector<double>& KvSavedBytesBuckets();

// The plaintext gRPC listener's connections (ConnectionAcceptor), read at scrape time. TLS
// listeners are gRPC's own and report none.
struct ConnectionLoad {
  int64_t open = 0;     // handed to gRPC and still open
  int64_t max = 0;      // --max-connections in effect
  int64_t refused = 0;  // closed at once: cap reached or descriptors out
};

class ServerMetrics final : public SchedulerObserver {
 public:
  explicit ServerMetrics(std::string model_name);
  ~ServerMetrics() override;
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // Serves /metrics (and /livez, /readyz from `health`) on "host:port" (port 0: any free port).
  // Unavailable when it cannot bind.
  absl::Status StartHttp(const std::string& host, int port, HttpHealth health = {});
  // The bound port, or -1 when not serving.
  int http_port() const { return http_port_; }
  // Stops serving (idempotent).
  void StopHttp();

  // Where gauges and counters come from; until set (while the model loads) they read 0.
  // Pass nullptr before the source goes away.
  void SetLoadSource(std::function<SchedulerLoad()> source);
  // Where the connection series come from; until set (and with TLS) they are left out. Pass
  // nullptr before the source goes away.
  void SetConnectionSource(std::function<ConnectionLoad()> source);

  // The exposition text of everything registered, as /metrics serves it.
  std::string Serialize() const;

  // SchedulerObserver.
  void OnFirstToken(const std::string& request_id, double ttft_seconds) override;
  void OnRequestFinished(const std::string& request_id, const RequestOutcome& outcome,
                         std::span<const double> inter_token_seconds) override;

 private:
  class LoadCollectable;

  const std::string model_name_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<LoadCollectable> load_collectable_;
  prometheus::Histogram* time_to_first_token_ = nullptr;
  prometheus::Histogram* inter_token_latency_ = nullptr;
  prometheus::Histogram* e2e_request_latency_ = nullptr;
  prometheus::Histogram* request_queue_time_ = nullptr;
  prometheus::Histogram* request_kv_retained_ratio_ = nullptr;
  prometheus::Histogram* request_kv_saved_bytes_ = nullptr;
  std::unique_ptr<MetricsHttpServer> http_;
  int http_port_ = -1;
};

}  // namespace zigzag
