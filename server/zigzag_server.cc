#include "server/zigzag_server.h"

#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "kernels/backend_registry.h"
#include "spdlog/spdlog.h"

namespace zigzag {
namespace {

absl::StatusOr<std::string> ReadTextFile(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::UnavailableError(absl::StrCat(flag, ": cannot read ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string HostPort(const std::string& host, int port) {
  // An IPv6 literal needs brackets before the port.
  if (host.find(':') != std::string::npos && host.front() != '[') {
    return absl::StrCat("[", host, "]:", port);
  }
  return absl::StrCat(host, ":", port);
}

std::string DefaultModelName(const ServerOptions& options) {
  if (!options.model_name.empty()) return options.model_name;
  std::filesystem::path dir(options.model_dir);
  if (!dir.has_filename()) dir = dir.parent_path();  // "models/llama/" -> "llama"
  const std::string name = dir.filename().string();
  return name.empty() ? "model" : name;
}

}  // namespace

// The scheduler takes one observer: this one forwards to the metrics and any extra observers.
class ZigzagServer::FanOutObserver final : public SchedulerObserver {
 public:
  explicit FanOutObserver(std::vector<SchedulerObserver*> observers)
      : observers_(std::move(observers)) {}

  void OnIteration(const IterationMetrics& metrics) override {
    for (SchedulerObserver* o : observers_) o->OnIteration(metrics);
  }
  void OnFirstToken(const std::string& request_id, double ttft_seconds) override {
    for (SchedulerObserver* o : observers_) o->OnFirstToken(request_id, ttft_seconds);
  }
  void OnPreemption(const std::string& request_id) override {
    for (SchedulerObserver* o : observers_) o->OnPreemption(request_id);
  }
  void OnRequestFinished(const std::string& request_id, const RequestOutcome& outcome,
                         std::span<const double> inter_token_seconds) override {
    for (SchedulerObserver* o : observers_) {
      o->OnRequestFinished(request_id, outcome, inter_token_seconds);
    }
  }

 private:
  const std::vector<SchedulerObserver*> observers_;
};

absl::Status ValidateServerOptions(const ServerOptions& o) {
  const auto invalid = [](const std::string& message) {
    return absl::InvalidArgumentError(message);
  };
  if (o.model_dir.empty()) return invalid("--model is required (a Hugging Face model folder)");
  if (o.port < 0 || o.port > 65535) return invalid(absl::StrCat("--port ", o.port, " is invalid"));
  if (o.metrics_port > 65535) {
    return invalid(absl::StrCat("--metrics-port ", o.metrics_port, " is invalid"));
  }
  if (o.block_size < 1)
    return invalid(absl::StrCat("--block-size must be >= 1, got ", o.block_size));
  if (o.kv_memory_mb < 1) {
    return invalid(absl::StrCat("--kv-memory-mb must be >= 1, got ", o.kv_memory_mb));
  }
  if (o.max_waiting < 1)
    return invalid(absl::StrCat("--max-waiting must be >= 1, got ", o.max_waiting));
  if (o.max_running < 1)
    return invalid(absl::StrCat("--max-running must be >= 1, got ", o.max_running));
  if (o.max_prefill_tokens_per_step < 1) {
    return invalid(
        absl::StrCat("--prefill-chunk must be >= 1, got ", o.max_prefill_tokens_per_step));
  }
  if (o.max_message_bytes < 1024 || o.max_message_bytes > std::numeric_limits<int>::max()) {
    return invalid(
        absl::StrCat("--max-message-bytes must be in [1024, 2^31), got ", o.max_message_bytes));
  }
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return invalid("--tls-cert and --tls-key go together: set both or neither");
  }
  const RequestDefaults& d = o.defaults;
  if (d.max_tokens_limit < 1) {
    return invalid(absl::StrCat("--max-tokens-limit must be >= 1, got ", d.max_tokens_limit));
  }
  if (d.default_max_tokens < 1 || d.default_max_tokens > d.max_tokens_limit) {
    return invalid(absl::StrCat("--default-max-tokens must be in [1, --max-tokens-limit=",
                                d.max_tokens_limit, "], got ", d.default_max_tokens));
  }
  const absl::Status compression = ValidateCompressionParams(d.compression);
  if (!compression.ok()) {
    return invalid(absl::StrCat("the default KV compression (--kv-* flags) is invalid: ",
                                std::string(compression.message())));
  }
  if (o.drain_timeout.count() < 0) return invalid("--drain-timeout must be >= 0");
  return absl::OkStatus();
}

ZigzagServer::ZigzagServer(ServerOptions options)
    : options_(std::move(options)), model_name_(DefaultModelName(options_)) {
  metrics_ = std::make_unique<ServerMetrics>(model_name_);
  std::vector<SchedulerObserver*> observers = {metrics_.get()};
  observers.insert(observers.end(), options_.extra_observers.begin(),
                   options_.extra_observers.end());
  observer_ = std::make_unique<FanOutObserver>(std::move(observers));
  service_ = std::make_unique<EngineService>(EngineServiceOptions{
      .model_name = model_name_,
      .defaults = options_.defaults,
      .auth_token = options_.auth_token,
      .max_running = options_.max_running,
      .max_waiting = options_.max_waiting,
  });
}

ZigzagServer::~ZigzagServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<ZigzagServer>> ZigzagServer::Start(ServerOptions options) {
  if (absl::Status status = ValidateServerOptions(options); !status.ok()) return status;
  std::unique_ptr<ZigzagServer> server(new ZigzagServer(std::move(options)));
  if (absl::Status status = server->StartGrpc(); !status.ok()) return status;
  const ServerOptions& o = server->options_;
  if (o.metrics_port >= 0) {
    if (absl::Status status = server->metrics_->StartHttp(o.metrics_host, o.metrics_port);
        !status.ok()) {
      return status;
    }
    spdlog::info("metrics: http://{}/metrics",
                 HostPort(o.metrics_host, server->metrics_->http_port()));
  }
  return server;
}

absl::Status ZigzagServer::StartGrpc() {
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!options_.tls_cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadTextFile(options_.tls_cert_file, "--tls-cert");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadTextFile(options_.tls_key_file, "--tls-key");
    if (!key.ok()) return key.status();
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    credentials = grpc::SslServerCredentials(ssl);
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = HostPort(options_.host, options_.port);
  builder.AddListeningPort(address, credentials, &port_);
  builder.RegisterService(service_.get());
  // gRPC sets SO_REUSEPORT by default, which lets a second server silently share a busy port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options_.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options_.max_message_bytes));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    return absl::UnavailableError(absl::StrCat("gRPC: cannot listen on ", address));
  }
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus(kEngineServiceName, false);
  spdlog::info("gRPC: listening on {} ({}{}), loading {}", HostPort(options_.host, port_),
               options_.tls_cert_file.empty() ? "plaintext" : "TLS",
               options_.auth_token.empty() ? "" : ", bearer token required", options_.model_dir);
  return absl::OkStatus();
}

absl::Status ZigzagServer::LoadModel() {
  std::lock_guard<std::mutex> lock(lifecycle_mu_);
  if (shut_down_) return absl::FailedPreconditionError("the server was shut down");
  if (loading_started_) return absl::FailedPreconditionError("LoadModel() was already called");
  loading_started_ = true;
  const auto start = std::chrono::steady_clock::now();

  BackendOptions backend_options;
  backend_options.num_threads = options_.num_threads;
  absl::StatusOr<std::unique_ptr<Backend>> backend =
      CreateBackend(options_.backend, backend_options);
  if (!backend.ok()) return backend.status();
  backend_ = std::move(*backend);
  absl::StatusOr<std::unique_ptr<LlamaModel>> model =
      LlamaModel::LoadFromDir(options_.model_dir, backend_.get());
  if (!model.ok()) return model.status();
  model_ = std::move(*model);
  // A model folder without a tokenizer is served with token ids only.
  const std::string tokenizer_dir =
      options_.tokenizer_dir.empty() ? options_.model_dir : options_.tokenizer_dir;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizer(tokenizer_dir);
  std::string tokenizer_file;
  if (tokenizer.ok()) {
    tokenizer_ = std::move(*tokenizer);
    tokenizer_file =
        std::filesystem::exists(std::filesystem::path(tokenizer_dir) / "tokenizer.json")
            ? "tokenizer.json"
            : "tokenizer.model";
    spdlog::info("tokenizer: {}/{} ({} tokens)", tokenizer_dir, tokenizer_file,
                 tokenizer_->vocab_size());
  } else if (tokenizer.status().code() == absl::StatusCode::kNotFound &&
             options_.tokenizer_dir.empty()) {
    spdlog::warn("no tokenizer in {}: requests must send token_ids, and responses carry no text",
                 tokenizer_dir);
  } else {
    return tokenizer.status();
  }
  absl::StatusOr<std::unique_ptr<KvCache>> cache = KvCache::CreateWithBytes(
      backend_.get(), model_->kv_layout(options_.block_size), options_.kv_memory_mb << 20);
  if (!cache.ok()) return cache.status();
  cache_ = std::move(*cache);
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
      Scheduler::Create(model_.get(), cache_.get(),
                        SchedulerOptions{
                            .max_waiting = options_.max_waiting,
                            .max_running = options_.max_running,
                            .max_prefill_tokens_per_step = options_.max_prefill_tokens_per_step,
                            .observer = observer_.get(),
                        });
  if (!scheduler.ok()) return scheduler.status();
  scheduler_ = std::move(*scheduler);
  scheduler_->Start();
  running_scheduler_.store(scheduler_.get());

  handles_ = EngineHandles{
      .scheduler = scheduler_.get(),
      .config = model_->config(),
      .kv_layout = cache_->layout(),
      .kv_num_blocks = cache_->pool().num_blocks(),
      .backend_name = backend_->name(),
      .tokenizer = tokenizer_.get(),
      .tokenizer_file = tokenizer_file,
  };
  Scheduler* const scheduler_ptr = scheduler_.get();
  metrics_->SetLoadSource([scheduler_ptr] { return scheduler_ptr->Load(); });
  service_->AttachEngine(&handles_);
  if (service_->state() == v1::SERVER_STATE_SERVING) {
    server_->GetHealthCheckService()->SetServingStatus(kEngineServiceName, true);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::info(
      "ready: model {} ({}, {} layers, context {}) on {} in {:.2f}s; KV cache {} blocks of {} "
      "tokens ({} MiB)",
      model_name_, model_->config().architecture, model_->config().num_layers,
      model_->config().max_context(), backend_->name(), seconds, cache_->pool().num_blocks(),
      options_.block_size, cache_->bytes_total() >> 20);
  return absl::OkStatus();
}

void ZigzagServer::BeginDrain() {
  service_->BeginDrain();
  if (server_ != nullptr) {
    grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
    health->SetServingStatus("", false);
    health->SetServingStatus(kEngineServiceName, false);
  }
  if (Scheduler* scheduler = running_scheduler_.load(); scheduler != nullptr) {
    scheduler->BeginDrain();
  }
}

int ZigzagServer::Drain(std::chrono::milliseconds timeout) {
  BeginDrain();
  std::lock_guard<std::mutex> lock(lifecycle_mu_);
  if (scheduler_ == nullptr) return 0;
  const int aborted = scheduler_->Drain(timeout);
  spdlog::info("drained: {} request(s) cut off after the {} ms drain timeout", aborted,
               timeout.count());
  return aborted;
}

void ZigzagServer::Shutdown() {
  BeginDrain();
  std::lock_guard<std::mutex> lock(lifecycle_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  if (server_ != nullptr) {
    // Calls still open after the grace period are cancelled; their reactors abort their
    // requests in the scheduler, which is still running, so every call gets its status.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
  }
  metrics_->SetLoadSource(nullptr);
  metrics_->StopHttp();
  if (scheduler_ != nullptr) scheduler_->Stop();
  running_scheduler_.store(nullptr);
  spdlog::info("server stopped");
}

}  // namespace zigzag
