#include "tests/server_test_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "kernels/backend_registry.h"
#include "server/request_validation.h"
#include "tests/test_support.h"

namespace zigzag::testing {

RandomCheckpointSpec ServerTestSpec() {
  RandomCheckpointSpec spec;
  spec.vocab_size = 256;
  spec.hidden_size = 64;
  spec.intermediate_size = 128;
  spec.num_layers = 3;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.max_position_embeddings = 1024;
  spec.seed = 11;
  spec.bos_token_id = 1;
  spec.eos_token_id = 2;
  return spec;
}

const std::filesystem::path& ServerTestCheckpoint() {
  static const std::filesystem::path* dir = [] {
    auto* path = new std::filesystem::path(MakeTempDir("server-model"));
    const absl::Status status = WriteRandomCheckpoint(*path, ServerTestSpec());
    EXPECT_TRUE(status.ok()) << status;
    return path;
  }();
  return *dir;
}

ServerOptions TestServerOptions() {
  ServerOptions options;
  options.model_dir = ServerTestCheckpoint().string();
  options.model_name = "tiny";
  options.backend = "cpu";
  options.num_threads = 1;
  options.host = "127.0.0.1";
  options.port = 0;
  options.metrics_host = "127.0.0.1";
  // No /metrics listener unless a test asks for one (the metrics test does).
  options.metrics_port = -1;
  options.block_size = 16;
  // 2048-byte blocks (K+V, 16 tokens, one KV head of 16, f32): 2048 of them.
  options.kv_memory_mb = 4;
  options.max_waiting = 64;
  options.max_running = 32;
  options.max_prefill_tokens_per_step = 256;
  options.defaults.max_tokens_limit = 512;
  options.drain_timeout = std::chrono::seconds(10);
  // Well within the test process's open-file limit; tests of the cap set their own.
  options.max_connections = 256;
  // Off unless a test is about it: no background connections in other tests.
  options.self_check_interval = std::chrono::milliseconds(0);
  return options;
}

std::unique_ptr<ZigzagServer> StartServer(ServerOptions options) {
  absl::StatusOr<std::unique_ptr<ZigzagServer>> server = ZigzagServer::Start(std::move(options));
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return nullptr;
  const absl::Status loaded = (*server)->LoadModel();
  EXPECT_TRUE(loaded.ok()) << loaded;
  if (!loaded.ok()) return nullptr;
  return std::move(*server);
}

std::shared_ptr<grpc::Channel> Connect(int port) {
  // A channel of its own per stub: tests that cancel calls must not disturb each other.
  grpc::ChannelArguments arguments;
  arguments.SetInt("grpc.use_local_subchannel_pool", 1);
  arguments.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials(), arguments);
}

std::unique_ptr<v1::Engine::Stub> NewStub(int port) { return v1::Engine::NewStub(Connect(port)); }

absl::StatusOr<int> HealthCheck(int port, const std::string& service) {
  // HealthCheckRequest { string service = 1; }: tag 0x0a, length, bytes (service names are short).
  std::string request_bytes;
  if (!service.empty()) {
    request_bytes.push_back('\x0a');
    request_bytes.push_back(static_cast<char>(service.size()));
    request_bytes += service;
  }
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::GenericStub stub(Connect(port));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  std::mutex mu;
  std::condition_variable cv;
  std::optional<grpc::Status> result;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status status) {
                   std::lock_guard<std::mutex> lock(mu);
                   result = std::move(status);
                   cv.notify_all();
                 });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return result.has_value(); });
  if (!result->ok()) {
    return absl::Status(static_cast<absl::StatusCode>(result->error_code()),
                        result->error_message());
  }
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return absl::InternalError("cannot read the response");
  std::string bytes;
  for (const grpc::Slice& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse { ServingStatus status = 1; }: 0x08, varint (absent = UNKNOWN = 0).
  if (bytes.empty()) return 0;
  if (bytes.size() != 2 || bytes[0] != '\x08') return absl::InternalError("unexpected response");
  return static_cast<int>(bytes[1]);
}

namespace {

// The whole reply to GET path: its header block (status line first) and its body.
struct HttpReply {
  std::string head;
  std::string body;
};

absl::StatusOr<HttpReply> HttpExchange(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket() failed");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to 127.0.0.1:", port));
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::InternalError("write() failed");
  }
  std::string reply;
  char buffer[8192];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) reply.append(buffer, n);
  close(fd);
  const size_t body = reply.find("\r\n\r\n");
  if (reply.rfind("HTTP/1.", 0) != 0 || body == std::string::npos) {
    return absl::InternalError("not an HTTP response: " + reply.substr(0, 100));
  }
  return HttpReply{.head = reply.substr(0, body), .body = reply.substr(body + 4)};
}

// "HTTP/1.x NNN reason": NNN, or -1.
int StatusCode(const std::string& head) {
  int code = -1;
  if (head.size() < 12 || !absl::SimpleAtoi(head.substr(9, 3), &code)) return -1;
  return code;
}

}  // namespace

absl::StatusOr<std::string> HttpGet(int port, const std::string& path) {
  absl::StatusOr<HttpReply> reply = HttpExchange(port, path);
  if (!reply.ok()) return reply.status();
  if (StatusCode(reply->head) != 200) {
    return absl::InternalError("HTTP status is not 200: " +
                               reply->head.substr(0, reply->head.find("\r\n")));
  }
  return reply->body;
}

int HttpStatus(int port, const std::string& path) {
  absl::StatusOr<HttpReply> reply = HttpExchange(port, path);
  return reply.ok() ? StatusCode(reply->head) : -1;
}

std::optional<double> Metric(const std::string& text, const std::string& name,
                             const std::vector<std::pair<std::string, std::string>>& labels) {
  std::string series = name;
  if (!labels.empty()) {
    series += "{";
    for (size_t i = 0; i < labels.size(); ++i) {
      absl::StrAppend(&series, i ? "," : "", labels[i].first, "=\"", labels[i].second, "\"");
    }
    series += "}";
  }
  series += " ";
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (text.compare(start, series.size(), series) == 0) {
      return std::stod(text.substr(start + series.size(), end - start - series.size()));
    }
    start = end + 1;
  }
  return std::nullopt;
}

v1::GenerateRequest GreedyRequest(const std::vector<int32_t>& prompt, uint32_t max_tokens) {
  v1::GenerateRequest request;
  request.mutable_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
  v1::SamplingParams* sampling = request.mutable_sampling_params();
  sampling->set_temperature(0.0f);
  sampling->set_max_tokens(max_tokens);
  sampling->set_ignore_eos(true);
  return request;
}

std::vector<int32_t> RandomPrompt(size_t length, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(
      3, static_cast<int32_t>(ServerTestSpec().vocab_size) - 1);
  std::vector<int32_t> prompt(length);
  for (int32_t& id : prompt) id = dist(rng);
  return prompt;
}

StreamResult RunStream(v1::Engine::Stub& stub, const v1::GenerateRequest& request,
                       grpc::ClientContext* context) {
  StreamResult result;
  std::unique_ptr<grpc::ClientReader<v1::GenerateStreamResponse>> reader =
      stub.GenerateStream(context, request);
  v1::GenerateStreamResponse message;
  while (reader->Read(&message)) {
    if (message.has_chunk()) {
      ++result.num_chunks;
      result.chunk_tokens.insert(result.chunk_tokens.end(), message.chunk().token_ids().begin(),
                                 message.chunk().token_ids().end());
      result.chunk_logprobs.insert(result.chunk_logprobs.end(), message.chunk().logprobs().begin(),
                                   message.chunk().logprobs().end());
    } else if (message.has_complete()) {
      EXPECT_FALSE(result.complete.has_value()) << "two complete messages";
      result.complete = message.complete();
    }
  }
  result.status = reader->Finish();
  return result;
}

EngineReference::EngineReference() {
  auto backend = CreateBackend("cpu", BackendOptions{.num_threads = 1});
  EXPECT_TRUE(backend.ok()) << backend.status();
  backend_ = std::move(*backend);
  auto model = LlamaModel::LoadFromDir(ServerTestCheckpoint(), backend_.get());
  EXPECT_TRUE(model.ok()) << model.status();
  model_ = std::move(*model);
  auto cache =
      KvCache::Create(backend_.get(), model_->kv_layout(TestServerOptions().block_size), 2048);
  EXPECT_TRUE(cache.ok()) << cache.status();
  cache_ = std::move(*cache);
}

GenerationResult EngineReference::Generate(const v1::GenerateRequest& request) {
  // The same conversion as the server's, with the same defaults.
  absl::StatusOr<ConvertedRequest> converted = ToEngineRequest(
      request, TestServerOptions().defaults, model_->config(), /*tokenizer=*/nullptr);
  EXPECT_TRUE(converted.ok()) << converted.status();
  if (!converted.ok()) return {};
  GenerationRequest alone;
  alone.prompt = converted->request.prompt;
  alone.sampling = converted->request.sampling;
  alone.compression = converted->request.compression;
  auto results = GenerateBatch(*model_, *cache_, {&alone, 1});
  EXPECT_TRUE(results.ok()) << results.status();
  EXPECT_EQ(cache_->pool().num_used(), 0);
  return results.ok() ? results->front() : GenerationResult{};
}

void WorkerGate::HoldWhen(Predicate when) {
  std::lock_guard<std::mutex> lock(mu_);
  when_ = std::move(when);
}

bool WorkerGate::WaitUntilHeld() {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, kServerHangGuard, [this] { return held_; });
}

void WorkerGate::Step() {
  std::lock_guard<std::mutex> lock(mu_);
  held_ = false;
  ++steps_;
  cv_.notify_all();
}

void WorkerGate::Release() {
  std::lock_guard<std::mutex> lock(mu_);
  when_ = nullptr;
  held_ = false;
  ++steps_;
  cv_.notify_all();
}

void WorkerGate::OnIteration(const IterationMetrics& metrics) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!when_ || !when_(metrics)) return;
  held_ = true;
  const uint64_t step = steps_;
  cv_.notify_all();
  cv_.wait(lock, [&] { return steps_ != step; });
}

void WorkerGate::OnRequestFinished(const std::string& request_id, const RequestOutcome& outcome,
                                   std::span<const double> inter_token_seconds) {
  (void)inter_token_seconds;
  std::lock_guard<std::mutex> lock(mu_);
  finished_.push_back({request_id, Finished{outcome.status, outcome.tokens.size()}});
  cv_.notify_all();
}

std::optional<WorkerGate::Finished> WorkerGate::finished(const std::string& request_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, finished] : finished_) {
    if (id == request_id) return finished;
  }
  return std::nullopt;
}

bool WorkerGate::FinishedLocked(const std::string& request_id) const {
  for (const auto& entry : finished_) {
    if (entry.first == request_id) return true;
  }
  return false;
}

bool WorkerGate::WaitFinished(const std::string& request_id) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, kServerHangGuard, [&] { return FinishedLocked(request_id); });
}

bool WorkerGate::StepUntilFinished(const std::string& request_id, std::chrono::milliseconds pause) {
  const auto give_up = std::chrono::steady_clock::now() + kServerHangGuard;
  std::unique_lock<std::mutex> lock(mu_);
  while (!FinishedLocked(request_id)) {
    if (!cv_.wait_until(lock, give_up, [&] { return held_ || FinishedLocked(request_id); })) {
      return false;
    }
    if (FinishedLocked(request_id)) break;
    lock.unlock();
    std::this_thread::sleep_for(pause);
    lock.lock();
    held_ = false;
    ++steps_;
    cv_.notify_all();
  }
  return true;
}

bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds within) {
  const auto give_up = std::chrono::steady_clock::now() + within;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

bool WaitForIdlePool(ZigzagServer& server) {
  const auto give_up = std::chrono::steady_clock::now() + kServerHangGuard;
  while (std::chrono::steady_clock::now() < give_up) {
    const SchedulerLoad load = server.scheduler()->Load();
    if (load.running == 0 && load.waiting == 0 && load.kv_blocks_used == 0 &&
        load.kv_blocks_free == load.kv_blocks_total) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

}  // namespace zigzag::testing
