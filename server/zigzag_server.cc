#include "server/zigzag_server.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "kernels/backend_registry.h"
#include "server/parse_error_interceptor.h"
#include "server/process_limits.h"
#include "spdlog/spdlog.h"

namespace zigzag {
namespace {

// Descriptors the process needs besides gRPC connections (model files, /metrics, gRPC's own
// pipes and the self-check's connection): the connection cap stays this far below the limit.
constexpr int64_t kReservedDescriptors = 256;
// Bytes of text per token of context: --max-text-bytes's default (UTF-8 text averages well
// under 8 bytes per token for every tokenizer we serve).
constexpr int64_t kTextBytesPerToken = 16;

// gRPC's channel arguments are ints: durations beyond ~24 days are cut to that.
int ArgumentMs(std::chrono::milliseconds duration) {
  return static_cast<int>(std::min<int64_t>(duration.count(), std::numeric_limits<int>::max()));
}

bool IsWildcardHost(const std::string& host) {
  return host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]";
}

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
  if (o.max_text_bytes < 0 || o.max_text_bytes > o.max_message_bytes) {
    return invalid(
        absl::StrCat("--max-text-bytes must be in [0, --max-message-bytes=", o.max_message_bytes,
                     "] (0 = derived from the model's context), got ", o.max_text_bytes));
  }
  if (o.tokenizer_threads < 1 || o.tokenizer_threads > 64) {
    return invalid(
        absl::StrCat("--tokenizer-threads must be in [1, 64], got ", o.tokenizer_threads));
  }
  if (o.tokenizer_queue < 1 || o.tokenizer_queue > 65536) {
    return invalid(
        absl::StrCat("--tokenizer-queue must be in [1, 65536], got ", o.tokenizer_queue));
  }
  if (o.max_connections < 1) {
    return invalid(absl::StrCat("--max-connections must be >= 1, got ", o.max_connections));
  }
  if (o.connection_idle_timeout.count() < 1) {
    return invalid("--connection-idle-timeout must be > 0");
  }
  if (o.keepalive_time.count() < 1 || o.keepalive_timeout.count() < 1) {
    return invalid("--keepalive-time and --keepalive-timeout must be > 0");
  }
  if (o.handshake_timeout.count() < 1) return invalid("the handshake timeout must be > 0");
  if (o.grpc_max_threads < 2) {
    return invalid(absl::StrCat("the gRPC thread limit must be >= 2, got ", o.grpc_max_threads));
  }
  if (o.self_check_interval < std::chrono::milliseconds(0) ||
      o.self_check_interval > std::chrono::hours(24)) {
    return invalid("--self-check-interval must be in [0, 24h] (0 = off)");
  }
  if (o.self_check_timeout < std::chrono::milliseconds(1) ||
      o.self_check_timeout > std::chrono::hours(1)) {
    return invalid("--self-check-timeout must be in (0, 1h]");
  }
  if (o.self_check_failures < 1) {
    return invalid(absl::StrCat("--self-check-failures must be >= 1, got ", o.self_check_failures));
  }
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
  server->StartSelfCheck();
  const ServerOptions& o = server->options_;
  if (o.metrics_port >= 0) {
    // /livez and /readyz say what gRPC health says for "" and zigzag.v1.Engine, for probes that
    // cannot use gRPC health (the kubelet's gRPC probes are plaintext only: with TLS on, the
    // Helm chart probes these instead).
    ZigzagServer* const self = server.get();
    HttpHealth health{
        .live = [self] { return self->live(); },
        .ready = [self] { return self->service_->state() == v1::SERVER_STATE_SERVING; },
    };
    if (absl::Status status =
            server->metrics_->StartHttp(o.metrics_host, o.metrics_port, std::move(health));
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
  const bool tls = !options_.tls_cert_file.empty();
  if (tls) {
    absl::StatusOr<std::string> cert = ReadTextFile(options_.tls_cert_file, "--tls-cert");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadTextFile(options_.tls_key_file, "--tls-key");
    if (!key.ok()) return key.status();
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    credentials = grpc::SslServerCredentials(ssl);
  }
  // Every connection holds a descriptor: keep the cap clear of the open-file limit.
  max_connections_ = options_.max_connections;
  const int64_t file_limit = OpenFileSoftLimit();
  if (file_limit > 0 && max_connections_ > file_limit - kReservedDescriptors) {
    const int64_t lowered = std::max<int64_t>(1, file_limit - kReservedDescriptors);
    spdlog::warn(
        "--max-connections {} does not fit the open-file limit {} (RLIMIT_NOFILE) with {} "
        "descriptors to spare: using {}",
        max_connections_, file_limit, kReservedDescriptors, lowered);
    max_connections_ = static_cast<int>(lowered);
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = HostPort(options_.host, options_.port);
  if (tls) {
    // gRPC's own listener: connections cannot be handed over with TLS (see
    // connection_acceptor.h), so --max-connections is not enforced; the handshake timeout, idle
    // and keepalive limits still bound what idle connections hold.
    builder.AddListeningPort(address, credentials, &port_);
  } else {
    absl::StatusOr<std::unique_ptr<ConnectionAcceptor>> acceptor =
        ConnectionAcceptor::Listen(options_.host, options_.port, max_connections_);
    if (!acceptor.ok()) return acceptor.status();
    acceptor_ = *std::move(acceptor);
    port_ = acceptor_->port();
  }
  builder.RegisterService(service_.get());
  // gRPC sets SO_REUSEPORT by default, which lets a second server silently share a busy port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options_.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options_.max_message_bytes));
  // Idle connections are closed (clients reconnect on their next call), dead peers are found by
  // keepalive pings, and a connection that never finishes its TLS handshake is dropped.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             ArgumentMs(options_.connection_idle_timeout));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ArgumentMs(options_.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ArgumentMs(options_.keepalive_timeout));
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             ArgumentMs(options_.handshake_timeout));
  grpc::ResourceQuota quota("zigzag-server");
  quota.SetMaxThreads(options_.grpc_max_threads);
  builder.SetResourceQuota(quota);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<ParseErrorInterceptorFactory>());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    acceptor_.reset();
    return absl::UnavailableError(absl::StrCat("gRPC: cannot listen on ", address));
  }
  if (acceptor_ != nullptr) {
    acceptor_->Start(server_.get());
    ConnectionAcceptor* const acceptor = acceptor_.get();
    metrics_->SetConnectionSource([acceptor] {
      return ConnectionLoad{.open = acceptor->open_connections(),
                            .max = acceptor->max_connections(),
                            .refused = acceptor->refused()};
    });
  }
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus(kEngineServiceName, false);
  spdlog::info("gRPC: listening on {} ({}{}; at most {} connections{}), loading {}",
               HostPort(options_.host, port_), tls ? "TLS" : "plaintext",
               options_.auth_token.empty() ? "" : ", bearer token required", max_connections_,
               tls ? " is not enforced with TLS" : "", options_.model_dir);
  return absl::OkStatus();
}

void ZigzagServer::StartSelfCheck() {
  if (options_.self_check_interval.count() == 0) return;
  SelfCheckOptions check;
  check.target = HostPort(IsWildcardHost(options_.host) ? "127.0.0.1" : options_.host, port_);
  check.tls = !options_.tls_cert_file.empty();
  check.interval = options_.self_check_interval;
  check.timeout = options_.self_check_timeout;
  check.failures = options_.self_check_failures;
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  self_check_ = std::make_unique<LivenessSelfCheck>(
      check, [health](bool alive) { health->SetServingStatus("", alive); });
  self_check_->Start();
}

absl::Status ZigzagServer::LoadModel() {
  std::lock_guard<std::mutex> lock(lifecycle_mu_);
  if (shut_down_) return absl::FailedPreconditionError("the server was shut down");
  if (loading_started_) return absl::FailedPreconditionError("LoadModel() was already called");
  loading_started_ = true;
  const auto start = std::chrono::steady_clock::now();

  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::Open(options_.model_dir);
  if (!checkpoint.ok()) return checkpoint.status();
  ASSIGN_OR_RETURN(const DType checkpoint_dtype, (*checkpoint)->WeightDtype());
  BackendOptions backend_options;
  backend_options.num_threads = options_.num_threads;
  ASSIGN_OR_RETURN(backend_options.cpu_weight_dtype,
                   ResolveCpuWeightDtype(options_.cpu_weight_dtype, checkpoint_dtype));
  absl::StatusOr<std::unique_ptr<Backend>> backend =
      CreateBackend(options_.backend, backend_options);
  if (!backend.ok()) return backend.status();
  backend_ = std::move(*backend);
  absl::StatusOr<std::unique_ptr<LlamaModel>> model =
      LlamaModel::Load(**checkpoint, backend_.get());
  if (!model.ok()) return model.status();
  model_ = std::move(*model);
  // A model folder without a tokenizer is served with token ids only.
  const std::string tokenizer_dir =
      options_.tokenizer_dir.empty() ? options_.model_dir : options_.tokenizer_dir;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizer(tokenizer_dir);
  if (options_.wrap_tokenizer) {
    tokenizer = options_.wrap_tokenizer(tokenizer.ok() ? *std::move(tokenizer) : nullptr);
    if (*tokenizer == nullptr) tokenizer = absl::NotFoundError("no tokenizer");
  }
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

  tokenizer_pool_ =
      std::make_unique<TokenizerPool>(options_.tokenizer_threads, options_.tokenizer_queue);
  const int64_t max_context = model_->config().max_context();
  RequestLimits limits{
      .max_text_bytes = options_.max_text_bytes > 0 ? options_.max_text_bytes
                                                    : std::min(kTextBytesPerToken * max_context,
                                                               options_.max_message_bytes),
      .max_prompt_tokens = max_context,
  };
  handles_ = EngineHandles{
      .scheduler = scheduler_.get(),
      .config = model_->config(),
      .kv_layout = cache_->layout(),
      .kv_num_blocks = cache_->pool().num_blocks(),
      .backend_name = backend_->name(),
      .tokenizer = tokenizer_.get(),
      .tokenizer_file = tokenizer_file,
      .tokenizer_pool = tokenizer_pool_.get(),
      .limits = limits,
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
      "tokens ({} MiB); text up to {} bytes, {} tokenizer thread(s), {} queued",
      model_name_, model_->config().architecture, model_->config().num_layers,
      model_->config().max_context(), backend_->name(), seconds, cache_->pool().num_blocks(),
      options_.block_size, cache_->bytes_total() >> 20, limits.max_text_bytes,
      options_.tokenizer_threads, options_.tokenizer_queue);
  return absl::OkStatus();
}

void ZigzagServer::BeginDrain() {
  service_->BeginDrain();
  // Not ready any more, but alive: "" stays SERVING, or the liveness probe would restart a pod
  // that is finishing its requests.
  if (server_ != nullptr)
    server_->GetHealthCheckService()->SetServingStatus(kEngineServiceName, false);
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
  if (self_check_ != nullptr) self_check_->Stop();
  if (acceptor_ != nullptr) acceptor_->Stop();  // no connection is handed to a stopping server
  if (server_ != nullptr) {
    // Calls still open after the grace period are cancelled; their reactors abort their
    // requests in the scheduler, which is still running, so every call gets its status. Jobs
    // still in the tokenizer pool finish their calls too (the pool runs until after Wait).
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
  }
  if (tokenizer_pool_ != nullptr) tokenizer_pool_->Stop();
  metrics_->SetLoadSource(nullptr);
  metrics_->SetConnectionSource(nullptr);
  metrics_->StopHttp();
  if (scheduler_ != nullptr) scheduler_->Stop();
  running_scheduler_.store(nullptr);
  spdlog::info("server stopped");
}

}  // namespace zigzag
