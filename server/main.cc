// zigzag-server: serves a Hugging Face Llama-family model over gRPC (zigzag.v1.Engine) with
// Prometheus metrics. Flags configure everything; SIGTERM or SIGINT drains (readiness
// NOT_SERVING, new requests UNAVAILABLE, running requests finish up to --drain-timeout) and exits
// 0. At start-up it raises the open-file soft limit to the hard limit.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/time/time.h"
#include "core/util/command_line.h"
#include "server/auth_token_source.h"
#include "server/process_limits.h"
#include "server/zigzag_server.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, model, "", "Hugging Face model folder (config.json + *.safetensors)");
ABSL_FLAG(std::string, tokenizer, "",
          "Folder with tokenizer.json or tokenizer.model (default: --model; without one, only "
          "token ids are served)");
ABSL_FLAG(std::string, model_name, "",
          "Name in GetModelInfo and the metrics' `model` label; "
          "default: the model folder's name");
ABSL_FLAG(std::string, backend, "auto", "Backend: auto, cpu or cuda");
ABSL_FLAG(int32_t, threads, 0, "CPU backend threads; 0 = all cores");
ABSL_FLAG(
    std::string, cpu_weight_dtype, "auto",
    "CPU backend weight dtype: auto (the checkpoint's: bf16/f16 stay 16-bit), f32, bf16, f16");

ABSL_FLAG(std::string, host, "0.0.0.0", "gRPC listen address");
ABSL_FLAG(int32_t, port, 50051, "gRPC port; 0 = any free port");
ABSL_FLAG(std::string, metrics_host, "0.0.0.0", "Prometheus /metrics listen address");
ABSL_FLAG(int32_t, metrics_port, 9090, "Prometheus /metrics port; 0 = any free port, -1 = off");
ABSL_FLAG(int64_t, max_message_bytes, 16 << 20,
          "Largest gRPC message accepted or sent; larger requests get RESOURCE_EXHAUSTED");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain; with --tls-key enables TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls-cert");
ABSL_FLAG(std::string, auth_token, "",
          "Require \"authorization: Bearer <token>\" on Engine calls (health stays open); "
          "default: $ZIGZAG_AUTH_TOKEN. Visible in the process list: prefer --auth-token-file. "
          "Set but empty is an error");
ABSL_FLAG(std::string, auth_token_file, "",
          "File holding the bearer token (one trailing newline is removed; an empty file is an "
          "error; keep it unreadable by other users)");
ABSL_FLAG(int64_t, max_text_bytes, 0,
          "Largest `text` (Generate, Tokenize) in bytes, checked before tokenizing; 0 = 16 bytes "
          "per token of the model's context, at most --max-message-bytes");
ABSL_FLAG(int32_t, tokenizer_threads, 2, "Threads that tokenize request text");
ABSL_FLAG(int32_t, tokenizer_queue, 64,
          "Texts that may wait for a tokenizer thread; beyond it RESOURCE_EXHAUSTED");
ABSL_FLAG(int32_t, max_connections, 1024,
          "Open gRPC connections; more are closed at once (plaintext only; lowered to fit the "
          "open-file limit)");
ABSL_FLAG(absl::Duration, connection_idle_timeout, absl::Minutes(5),
          "Close connections with no call for this long (clients reconnect on their next call)");
ABSL_FLAG(absl::Duration, keepalive_time, absl::Minutes(1),
          "Ping clients after this long without activity, to find dead connections");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(20),
          "Close a connection whose keepalive ping is not answered within this");
ABSL_FLAG(absl::Duration, self_check_interval, absl::Seconds(10),
          "Liveness self-check: connect to the own gRPC port this often (0 = off); failing "
          "--self-check-failures times in a row turns health \"\" NOT_SERVING");
ABSL_FLAG(absl::Duration, self_check_timeout, absl::Seconds(3),
          "Liveness self-check: time for one connect and health call");
ABSL_FLAG(int32_t, self_check_failures, 3,
          "Liveness self-check: failed checks in a row before health \"\" is NOT_SERVING");

ABSL_FLAG(int32_t, block_size, 16, "KV cache block size in tokens");
ABSL_FLAG(int64_t, kv_memory_mb, 1024, "KV cache memory in MiB, allocated at start-up");
ABSL_FLAG(int32_t, max_waiting, 256, "Waiting queue length; beyond it RESOURCE_EXHAUSTED");
ABSL_FLAG(int32_t, max_running, 64, "Sequences prefilling or decoding at once");
ABSL_FLAG(int64_t, prefill_chunk, 512,
          "Prompt tokens prefilled per iteration across sequences (longer prompts are chunked)");
ABSL_FLAG(int32_t, default_max_tokens, 16, "max_tokens for requests that leave it unset");
ABSL_FLAG(int32_t, max_tokens_limit, 4096, "Largest max_tokens a request may ask for");

ABSL_FLAG(std::string, kv_policy, "full",
          "Default KV compression: full, streaming, snapkv, pyramidkv or zigzag");
ABSL_FLAG(int64_t, kv_budget, 0, "Default average KV budget in tokens per layer (window included)");
ABSL_FLAG(double, kv_ratio, 0.0, "Default KV budget as a fraction of the prompt, in (0, 1]");
ABSL_FLAG(int32_t, kv_window, 32, "Default observation window");
ABSL_FLAG(int32_t, kv_kernel, 7, "Default max-pool kernel (odd)");
ABSL_FLAG(double, kv_tau, 0.9, "Default ZigZag attention-mass threshold, (0, 1]");
ABSL_FLAG(double, kv_rho, 0.2, "Default ZigZag per-layer floor (fraction of the budget)");
ABSL_FLAG(std::string, kv_head_budgets, "uniform",
          "Default split of a layer's budget across its KV heads: uniform or adaptive (AdaKV; "
          "snapkv, pyramidkv and zigzag)");
ABSL_FLAG(double, kv_alpha, 0.2, "Default adaptive head split floor (fraction of B_l - window)");
ABSL_FLAG(double, kv_pyramid_beta, 20.0, "PyramidKV: the top layer keeps budget / beta, > 1");
ABSL_FLAG(int32_t, kv_sink_tokens, 4, "StreamingLLM attention sinks");

ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(30),
          "On SIGTERM/SIGINT: how long running requests may take to finish (e.g. 30s)");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error, critical or off");

namespace {

int Fail(const std::string& what, const absl::Status& status) {
  spdlog::error("{}: {}", what, status.ToString());
  return 1;
}

// Whether --NAME (or -NAME, with '-' or '_' in NAME) appears before any bare "--": Debian's
// Abseil keeps CommandLineFlag::IsSpecifiedOnCommandLine private, and an explicitly empty value
// must be told apart from an absent flag.
bool GivenOnCommandLine(int argc, char** argv, std::string name) {
  std::replace(name.begin(), name.end(), '-', '_');
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") break;
    size_t start = 0;
    while (start < arg.size() && start < 2 && arg[start] == '-') ++start;
    if (start == 0) continue;
    std::string flag = arg.substr(
        start, arg.find('=') == std::string::npos ? std::string::npos : arg.find('=') - start);
    std::replace(flag.begin(), flag.end(), '-', '_');
    if (flag == name) return true;
  }
  return false;
}

absl::StatusOr<zigzag::ServerOptions> OptionsFromFlags(bool auth_token_given) {
  zigzag::ServerOptions o;
  o.model_dir = absl::GetFlag(FLAGS_model);
  o.model_name = absl::GetFlag(FLAGS_model_name);
  o.tokenizer_dir = absl::GetFlag(FLAGS_tokenizer);
  o.backend = absl::GetFlag(FLAGS_backend);
  o.num_threads = absl::GetFlag(FLAGS_threads);
  o.cpu_weight_dtype = absl::GetFlag(FLAGS_cpu_weight_dtype);
  o.host = absl::GetFlag(FLAGS_host);
  o.port = absl::GetFlag(FLAGS_port);
  o.metrics_host = absl::GetFlag(FLAGS_metrics_host);
  o.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  o.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  o.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  zigzag::AuthTokenSources token_sources;
  if (auth_token_given) {
    token_sources.flag = absl::GetFlag(FLAGS_auth_token);
  }
  token_sources.file = absl::GetFlag(FLAGS_auth_token_file);
  if (const char* env = std::getenv("ZIGZAG_AUTH_TOKEN"); env != nullptr) token_sources.env = env;
  absl::StatusOr<zigzag::ResolvedAuthToken> token = zigzag::ResolveAuthToken(token_sources);
  if (!token.ok()) return token.status();
  for (const std::string& warning : token->warnings) spdlog::warn("{}", warning);
  if (!token->source.empty()) spdlog::info("auth: bearer token from {}", token->source);
  o.auth_token = token->token;
  o.max_text_bytes = absl::GetFlag(FLAGS_max_text_bytes);
  o.tokenizer_threads = absl::GetFlag(FLAGS_tokenizer_threads);
  o.tokenizer_queue = absl::GetFlag(FLAGS_tokenizer_queue);
  o.max_connections = absl::GetFlag(FLAGS_max_connections);
  o.connection_idle_timeout =
      absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_connection_idle_timeout));
  o.keepalive_time = absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_keepalive_time));
  o.keepalive_timeout = absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_keepalive_timeout));
  o.self_check_interval = absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_self_check_interval));
  o.self_check_timeout = absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_self_check_timeout));
  o.self_check_failures = absl::GetFlag(FLAGS_self_check_failures);
  o.block_size = absl::GetFlag(FLAGS_block_size);
  o.kv_memory_mb = absl::GetFlag(FLAGS_kv_memory_mb);
  o.max_waiting = absl::GetFlag(FLAGS_max_waiting);
  o.max_running = absl::GetFlag(FLAGS_max_running);
  o.max_prefill_tokens_per_step = absl::GetFlag(FLAGS_prefill_chunk);
  o.defaults.default_max_tokens = absl::GetFlag(FLAGS_default_max_tokens);
  o.defaults.max_tokens_limit = absl::GetFlag(FLAGS_max_tokens_limit);

  zigzag::CompressionParams& c = o.defaults.compression;
  absl::StatusOr<zigzag::KvPolicy> policy = zigzag::ParseKvPolicy(absl::GetFlag(FLAGS_kv_policy));
  if (!policy.ok()) return policy.status();
  c.policy = *policy;
  if (absl::GetFlag(FLAGS_kv_budget) != 0) c.tokens_per_layer = absl::GetFlag(FLAGS_kv_budget);
  if (absl::GetFlag(FLAGS_kv_ratio) != 0.0) c.ratio = absl::GetFlag(FLAGS_kv_ratio);
  c.window = absl::GetFlag(FLAGS_kv_window);
  c.kernel = absl::GetFlag(FLAGS_kv_kernel);
  c.tau = absl::GetFlag(FLAGS_kv_tau);
  c.rho = absl::GetFlag(FLAGS_kv_rho);
  absl::StatusOr<zigzag::HeadBudgets> head_budgets =
      zigzag::ParseHeadBudgets(absl::GetFlag(FLAGS_kv_head_budgets));
  if (!head_budgets.ok()) return head_budgets.status();
  c.head_budgets = *head_budgets;
  c.alpha = absl::GetFlag(FLAGS_kv_alpha);
  c.pyramid_beta = absl::GetFlag(FLAGS_kv_pyramid_beta);
  c.sink_tokens = absl::GetFlag(FLAGS_kv_sink_tokens);
  o.drain_timeout = absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_drain_timeout));
  return o;
}

// Set by the signal watcher thread; main waits on it.
struct StopRequest {
  std::mutex mu;
  std::condition_variable cv;
  bool requested = false;
};

int g_signal_pipe[2] = {-1, -1};

void OnStopSignal(int signal) {
  const unsigned char byte = static_cast<unsigned char>(signal);
  const ssize_t written = write(g_signal_pipe[1], &byte, 1);
  (void)written;  // nothing can be done about a full pipe here
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Serves a Hugging Face Llama-family model over gRPC (zigzag.v1.Engine).\n"
      "  zigzag-server --model DIR [--port 50051] [--metrics-port 9090] [--kv-policy zigzag "
      "--kv-ratio 0.25]");
  const std::vector<std::string> positional = zigzag::ParseCommandLineAcceptingDashes(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "zigzag-server: unexpected argument '%s'\n", positional[1].c_str());
    return 2;
  }
  const std::string log_level = absl::GetFlag(FLAGS_log_level);
  const spdlog::level::level_enum level = spdlog::level::from_str(log_level);
  if (level == spdlog::level::off && log_level != "off") {
    std::fprintf(stderr,
                 "zigzag-server: --log-level '%s' is not one of trace, debug, info, warn, "
                 "error, critical, off\n",
                 log_level.c_str());
    return 2;
  }
  spdlog::set_level(level);
  absl::StatusOr<zigzag::ServerOptions> options =
      OptionsFromFlags(GivenOnCommandLine(argc, argv, "auth_token"));
  if (!options.ok()) {
    std::fprintf(stderr, "zigzag-server: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  if (absl::Status status = zigzag::ValidateServerOptions(*options); !status.ok()) {
    std::fprintf(stderr, "zigzag-server: %s\n", std::string(status.message()).c_str());
    return 2;
  }
  const std::chrono::milliseconds drain_timeout = options->drain_timeout;
  // Every connection holds a descriptor; the soft limit is often far below the hard one.
  if (absl::StatusOr<zigzag::OpenFileLimit> limit = zigzag::RaiseOpenFileLimit(); limit.ok()) {
    spdlog::info("open-file limit (RLIMIT_NOFILE): {} (was {}; hard limit {})", limit->soft,
                 limit->soft_before, limit->hard);
  } else {
    spdlog::warn("cannot raise the open-file limit: {}", limit.status().ToString());
  }

  // SIGTERM and SIGINT only write their number into a pipe (the one async-signal-safe thing a
  // handler needs to do); a watcher thread reads it, so the drain runs as ordinary code. A mask
  // plus sigwait would not do: libraries (OpenBLAS) start threads before main runs.
  if (pipe2(g_signal_pipe, O_CLOEXEC) != 0) {
    std::perror("zigzag-server: pipe2");
    return 1;
  }
  struct sigaction action = {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  static StopRequest stop;
  std::thread([] {
    for (int count = 1;; ++count) {
      unsigned char signal = 0;
      const ssize_t n = read(g_signal_pipe[0], &signal, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n != 1) return;
      if (count > 1) {
        spdlog::warn("second signal {}: exiting without finishing the drain", signal);
        std::_Exit(1);
      }
      spdlog::info("signal {}: draining (up to the drain timeout; a second signal exits now)",
                   signal);
      std::lock_guard<std::mutex> lock(stop.mu);
      stop.requested = true;
      stop.cv.notify_all();
    }
  }).detach();

  absl::StatusOr<std::unique_ptr<zigzag::ZigzagServer>> server =
      zigzag::ZigzagServer::Start(*std::move(options));
  if (!server.ok()) return Fail("starting the server", server.status());
  if (absl::Status status = (*server)->LoadModel(); !status.ok()) {
    (*server)->Shutdown();
    return Fail("loading the model", status);
  }
  {
    std::unique_lock<std::mutex> lock(stop.mu);
    stop.cv.wait(lock, [] { return stop.requested; });
  }
  (*server)->Drain(drain_timeout);
  (*server)->Shutdown();
  return 0;
}
