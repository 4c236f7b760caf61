#include "server/metrics.h"

#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "server/metrics_http.h"

namespace zigzag {

const std::vector<double>& TimeToFirstTokenBuckets() {
  static const std::vector<double> buckets = {0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                              0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                              20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
  return buckets;
}

const std::vector<double>& InterTokenLatencyBuckets() {
  static const std::vector<double> buckets = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
                                              0.3,  0.4,   0.5,  0.75,  1.0, 2.5,  5.0,
                                              7.5,  10.0,  20.0, 40.0,  80.0};
  return buckets;
}

const std::vector<double>& RequestLatencyBuckets() {
  static const std::vector<double> buckets = {0.3,  0.5,   0.8,   1.0,   1.5,   2.0,    2.5,
                                              5.0,  10.0,  15.0,  20.0,  30.0,  40.0,   50.0,
                                              60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
  return buckets;
}

const std::vector<double>& KvRetainedRatioBuckets() {
  static const std::vector<double> buckets = {0.05, 0.1, 0.15, 0.2, 0.25, 0.3,  0.4,
                                              0.5,  0.6, 0.7,  0.8, 0.9,  0.95, 1.0};
  return buckets;
}

const std::vector<double>& KvSavedBytesBuckets() {
  // Powers of 4 from 1 KiB to 64 GiB.
  static const std::vector<double> buckets = [] {
    std::vector<double> b;
    for (int shift = 10; shift <= 36; shift += 2) b.push_back(static_cast<double>(1ll << shift));
    return b;
  }();
  return buckets;
}

// Gauges and counters computed from SchedulerLoad when Prometheus scrapes.
class ServerMetrics::LoadCollectable final : public prometheus::Collectable {
 public:
  explicit LoadCollectable(std::string model_name) : model_name_(std::move(model_name)) {}

  void SetSource(std::function<SchedulerLoad()> source) {
    std::lock_guard<std::mutex> lock(mu_);
    source_ = std::move(source);
  }
  void SetConnectionSource(std::function<ConnectionLoad()> source) {
    std::lock_guard<std::mutex> lock(mu_);
    connection_source_ = std::move(source);
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    SchedulerLoad load;
    std::optional<ConnectionLoad> connections;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (source_) load = source_();
      if (connection_source_) connections = connection_source_();
    }
    const SchedulerCounters& c = load.counters;
    std::vector<prometheus::MetricFamily> families;
    AddGauge(&families, "zigzag_num_requests_running", "Number of requests prefilling or decoding.",
             load.running);
    AddGauge(&families, "zigzag_num_requests_waiting", "Number of requests waiting to be admitted.",
             load.waiting);
    AddGauge(&families, "zigzag_kv_cache_usage_ratio",
             "Fraction of KV cache blocks in use; 1 means full.", load.kv_usage_ratio());
    AddGauge(&families, "zigzag_kv_blocks_free", "KV cache blocks free.", load.kv_blocks_free);
    AddCounter(&families, "zigzag_prompt_tokens_total", "Prompt tokens prefilled (once a request).",
               {{{}, c.prompt_tokens}});
    AddCounter(&families, "zigzag_generation_tokens_total", "Tokens generated.",
               {{{}, c.generation_tokens}});
    AddCounter(&families, "zigzag_request_success_total",
               "Requests finished, by finish reason (abort: Abort() or a client cancel).",
               {{{"finished_reason", "length"}, c.finished_length},
                {{"finished_reason", "stop"}, c.finished_stop},
                {{"finished_reason", "eos"}, c.finished_eos},
                {{"finished_reason", "abort"}, c.cancelled}});
    AddCounter(&families, "zigzag_request_failure_total",
               "Requests that ended with an error, by status.",
               {{{"reason", "deadline_exceeded"}, c.deadline_exceeded},
                {{"reason", "unavailable"}, c.unavailable},
                {{"reason", "internal"}, c.failed}});
    AddCounter(&families, "zigzag_num_preemptions_total",
               "Sequences preempted (KV freed, recomputed later).", {{{}, c.preemptions}});
    AddCounter(&families, "zigzag_kv_bytes_saved_total",
               "KV bytes (whole blocks) saved by compression, summed over finished requests.",
               {{{}, c.kv_saved_bytes}});
    if (connections.has_value()) {
      AddGauge(&families, "zigzag_grpc_connections_open",
               "gRPC connections open (plaintext listener).",
               static_cast<double>(connections->open));
      AddGauge(&families, "zigzag_grpc_connections_max",
               "Open gRPC connections allowed (--max-connections).",
               static_cast<double>(connections->max));
      AddCounter(&families, "zigzag_grpc_connections_refused_total",
                 "gRPC connections closed at once: the cap was reached or descriptors ran out.",
                 {{{}, connections->refused}});
    }
    return families;
  }

 private:
  struct Sample {
    std::pair<std::string, std::string> label;  // extra label; empty name = none
    int64_t value;
  };

  prometheus::ClientMetric Labelled(const std::pair<std::string, std::string>& extra) const {
    prometheus::ClientMetric metric;
    metric.label.push_back({"model", model_name_});
    if (!extra.first.empty()) metric.label.push_back({extra.first, extra.second});
    return metric;
  }

  void AddGauge(std::vector<prometheus::MetricFamily>* families, const char* name, const char* help,
                double value) const {
    prometheus::MetricFamily family{name, help, prometheus::MetricType::Gauge, {}};
    prometheus::ClientMetric metric = Labelled({});
    metric.gauge.value = value;
    family.metric.push_back(std::move(metric));
    families->push_back(std::move(family));
  }

  void AddCounter(std::vector<prometheus::MetricFamily>* families, const char* name,
                  const char* help, const std::vector<Sample>& samples) const {
    prometheus::MetricFamily family{name, help, prometheus::MetricType::Counter, {}};
    for (const Sample& sample : samples) {
      prometheus::ClientMetric metric = Labelled(sample.label);
      metric.counter.value = static_cast<double>(sample.value);
      family.metric.push_back(std::move(metric));
    }
    families->push_back(std::move(family));
  }

  const std::string model_name_;
  mutable std::mutex mu_;
  std::function<SchedulerLoad()> source_;
  std::function<ConnectionLoad()> connection_source_;
};

ServerMetrics::ServerMetrics(std::string model_name)
    : model_name_(std::move(model_name)),
      registry_(std::make_shared<prometheus::Registry>()),
      load_collectable_(std::make_shared<LoadCollectable>(model_name_)) {
  const prometheus::Labels labels = {{"model", model_name_}};
  const auto histogram = [&](const char* name, const char* help,
                             const std::vector<double>& buckets) {
    return &prometheus::BuildHistogram()
                .Name(name)
                .Help(help)
                .Register(*registry_)
                .Add(labels, buckets);
  };
  time_to_first_token_ =
      histogram("zigzag_time_to_first_token_seconds",
                "Time from receiving a request to its first token.", TimeToFirstTokenBuckets());
  inter_token_latency_ =
      histogram("zigzag_inter_token_latency_seconds",
                "Time between consecutive tokens of a request.", InterTokenLatencyBuckets());
  e2e_request_latency_ =
      histogram("zigzag_e2e_request_latency_seconds",
                "Time from receiving a request to its end (finished OK).", RequestLatencyBuckets());
  request_queue_time_ =
      histogram("zigzag_request_queue_time_seconds",
                "Time a request waited before it was first scheduled.", RequestLatencyBuckets());
  request_kv_retained_ratio_ =
      histogram("zigzag_request_kv_retained_ratio",
                "KV bytes a finished request held over what a full cache would hold.",
                KvRetainedRatioBuckets());
  request_kv_saved_bytes_ =
      histogram("zigzag_request_kv_saved_bytes",
                "KV bytes (whole blocks) compression saved per request.", KvSavedBytesBuckets());
}

ServerMetrics::~ServerMetrics() { StopHttp(); }

absl::Status ServerMetrics::StartHttp(const std::string& host, int port, HttpHealth health) {
  StopHttp();
  auto http = MetricsHttpServer::Start(
      host, port, [this] { return Serialize(); }, {}, std::move(health));
  if (!http.ok()) return http.status();
  http_ = std::move(*http);
  http_port_ = http_->port();
  return absl::OkStatus();
}

void ServerMetrics::StopHttp() {
  http_.reset();
  http_port_ = -1;
}

void ServerMetrics::SetLoadSource(std::function<SchedulerLoad()> source) {
  load_collectable_->SetSource(std::move(source));
}

void ServerMetrics::SetConnectionSource(std::function<ConnectionLoad()> source) {
  load_collectable_->SetConnectionSource(std::move(source));
}

std::string ServerMetrics::Serialize() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  std::vector<prometheus::MetricFamily> load = load_collectable_->Collect();
  families.insert(families.end(), load.begin(), load.end());
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

void ServerMetrics::OnFirstToken(const std::string& request_id, double ttft_seconds) {
  (void)request_id;
  time_to_first_token_->Observe(ttft_seconds);
}

void ServerMetrics::OnRequestFinished(const std::string& request_id, const RequestOutcome& outcome,
                                      std::span<const double> inter_token_seconds) {
  (void)request_id;
  for (double seconds : inter_token_seconds) inter_token_latency_->Observe(seconds);
  // Request-level figures describe requests that completed; an aborted or failed request's
  // latency and KV figures would mix two populations.
  if (!outcome.status.ok()) return;
  e2e_request_latency_->Observe(outcome.timings.e2e_seconds);
  request_queue_time_->Observe(outcome.timings.queue_seconds);
  request_kv_retained_ratio_->Observe(outcome.kv_stats.retained_ratio);
  request_kv_saved_bytes_->Observe(static_cast<double>(outcome.kv_stats.saved_kv_bytes));
}

}  // namespace zigzag
