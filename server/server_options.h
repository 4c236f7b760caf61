// ServerOptions: everything zigzag-server is configured with (main.cc fills it from flags; tests
// fill it directly). Plain data; ZigzagServer checks it when it starts.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/compress/compression_params.h"
#include "core/scheduler/observer.h"
#include "core/tokenizer/tokenizer.h"

namespace zigzag {

// What a GenerateRequest gets for the fields it leaves unset, and the server's limits on them.
struct RequestDefaults {
  // Policy and parameters for requests that set no kv_compression field (and the fallback for
  // each field a request leaves unset). A budget is used only by non-full policies.
  CompressionParams compression;
  int32_t default_max_tokens = 16;
  int32_t max_tokens_limit = 4096;  // sampling_params.max_tokens above this: INVALID_ARGUMENT
};

struct ServerOptions {
  // Model.
  std::string model_dir;   // Hugging Face folder: config.json + *.safetensors
  std::string model_name;  // the `model` label and GetModelInfo; empty = the folder's name
  // Folder with tokenizer.json or tokenizer.model; empty = model_dir, where none is fine (ids
  // only).
  std::string tokenizer_dir;
  std::string backend = "auto";
  int num_threads = 0;  // CPU backend threads; 0 = all cores
  // CPU weight dtype: auto (the checkpoint's), f32, bf16 or f16 (ResolveCpuWeightDtype).
  std::string cpu_weight_dtype = "auto";

  // KV cache and scheduler.
  int32_t block_size = 16;
  int64_t kv_memory_mb = 1024;
  int32_t max_waiting = 256;
  int32_t max_running = 64;
  int64_t max_prefill_tokens_per_step = 512;
  RequestDefaults defaults;

  // gRPC.
  std::string host = "0.0.0.0";
  int port = 50051;                        // 0 = any free port (see ZigzagServer::port())
  int64_t max_message_bytes = 16ll << 20;  // larger requests: RESOURCE_EXHAUSTED
  std::string tls_cert_file;               // both set: TLS; both empty: plaintext
  std::string tls_key_file;
  std::string auth_token;  // non-empty: Engine calls need "authorization: Bearer <token>"

  // Text input: the byte cap on `text` (Generate's and Tokenize's), checked before any work;
  // 0 = 16 bytes per token of the model's context, at most max_message_bytes.
  int64_t max_text_bytes = 0;
  // The tokenizer pool: threads, and texts that may wait (beyond: RESOURCE_EXHAUSTED).
  int tokenizer_threads = 2;
  int tokenizer_queue = 64;

  // Connections. Open connections beyond max_connections are closed at once (plaintext only:
  // gRPC 1.51 cannot cap TLS connections); it is lowered to fit the open-file limit.
  int max_connections = 1024;
  std::chrono::milliseconds connection_idle_timeout{std::chrono::minutes(5)};
  std::chrono::milliseconds keepalive_time{std::chrono::minutes(1)};
  std::chrono::milliseconds keepalive_timeout{std::chrono::seconds(20)};
  std::chrono::milliseconds handshake_timeout{std::chrono::seconds(10)};  // gRPC's listener (TLS)
  int grpc_max_threads = 64;  // grpc::ResourceQuota::SetMaxThreads

  // Liveness self-check (liveness_self_check.h): every interval a new connection to the gRPC port
  // and a health call; `self_check_failures` failures in a row turn health "" NOT_SERVING.
  // Interval 0 = off.
  std::chrono::milliseconds self_check_interval{std::chrono::seconds(10)};
  std::chrono::milliseconds self_check_timeout{std::chrono::seconds(3)};
  int self_check_failures = 3;

  // Prometheus /metrics over HTTP.
  std::string metrics_host = "0.0.0.0";
  int metrics_port = 9090;  // 0 = any free port; < 0 = no metrics endpoint

  std::chrono::milliseconds drain_timeout{30000};

  // Observers called next to the metrics exporter (tests use one to pause the worker).
  std::vector<SchedulerObserver*> extra_observers;
  // Tests: replaces the tokenizer LoadModel found (null when the folder has none), e.g. with one
  // that waits on a gate.
  std::function<std::unique_ptr<Tokenizer>(std::unique_ptr<Tokenizer>)> wrap_tokenizer;
};

}  // namespace zigzag
