#include "server/liveness_self_check.h"

#include <memory>
#include <optional>
#include <utility>

#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "grpcpp/support/byte_buffer.h"
#include "server/grpc_status.h"
#include "spdlog/spdlog.h"

namespace zigzag {
namespace {

std::shared_ptr<grpc::ChannelCredentials> Credentials(bool tls) {
  if (!tls) return grpc::InsecureChannelCredentials();
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_verify_server_certs(false);
  options.set_check_call_host(false);
  options.set_certificate_verifier(std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
  return grpc::experimental::TlsCredentials(options);
}

}  // namespace

LivenessSelfCheck::LivenessSelfCheck(SelfCheckOptions options,
                                     std::function<void(bool alive)> on_change)
    : options_(std::move(options)), on_change_(std::move(on_change)) {}

LivenessSelfCheck::~LivenessSelfCheck() { Stop(); }

void LivenessSelfCheck::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || stop_) return;
  thread_ = std::thread([this] { Loop(); });
}

void LivenessSelfCheck::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool LivenessSelfCheck::alive() const {
  std::lock_guard<std::mutex> lock(mu_);
  return alive_;
}

absl::Status LivenessSelfCheck::CheckOnce(const SelfCheckOptions& options) {
  // A channel of its own with a subchannel of its own: every round makes a new TCP connection,
  // which is what the listener has to accept.
  grpc::ChannelArguments arguments;
  arguments.SetInt("grpc.use_local_subchannel_pool", 1);
  grpc::GenericStub stub(
      grpc::CreateCustomChannel(options.target, Credentials(options.tls), arguments));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + options.timeout);
  // HealthCheckRequest{service: ""} is the empty message.
  grpc::ByteBuffer request;
  grpc::Slice empty;
  request = grpc::ByteBuffer(&empty, 1);
  grpc::ByteBuffer response;
  std::mutex mu;
  std::condition_variable done;
  std::optional<grpc::Status> result;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status status) {
                   std::lock_guard<std::mutex> lock(mu);
                   result = std::move(status);
                   done.notify_all();
                 });
  std::unique_lock<std::mutex> lock(mu);
  // The deadline ends the call; the wait is only a guard in case it never completes.
  if (!done.wait_for(lock, options.timeout * 2 + std::chrono::seconds(1),
                     [&] { return result.has_value(); })) {
    context.TryCancel();
    done.wait(lock, [&] { return result.has_value(); });
  }
  return FromGrpcStatus(*result);
}

void LivenessSelfCheck::Loop() {
  int failed = 0;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, options_.interval, [this] { return stop_; })) return;
    }
    const absl::Status status = CheckOnce(options_);
    failed = status.ok() ? 0 : failed + 1;
    const bool alive = failed < options_.failures;
    bool changed = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      changed = alive != alive_;  // only this thread writes alive_
    }
    if (!status.ok()) {
      spdlog::warn("liveness self-check: {} could not be reached ({} in a row): {}",
                   options_.target, failed, status.ToString());
    }
    if (!changed) continue;
    if (alive) {
      spdlog::info("liveness self-check: {} answers again; health \"\" is SERVING",
                   options_.target);
    } else {
      spdlog::error(
          "liveness self-check: the gRPC port {} accepted no new connection {} times in a row; "
          "health \"\" is NOT_SERVING so that the liveness probe restarts the server",
          options_.target, failed);
    }
    // The health status first, then the verdict alive() reports: whoever sees the new verdict
    // (ZigzagServer::live(), /livez) then sees health "" agree (tests wait on live() and then ask
    // health; the other order let them see the old status).
    on_change_(alive);
    std::lock_guard<std::mutex> lock(mu_);
    alive_ = alive;
  }
}

}  // namespace zigzag
