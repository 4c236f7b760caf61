#include "server/metrics_http.h"

#include <link.h>
#include <microhttpd.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cstdarg>
#include <cstdio>
#include <exception>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "spdlog/spdlog.h"

namespace zigzag {
namespace {

constexpr std::string_view kMetricsPath = "/metrics";
constexpr std::string_view kLivePath = "/livez";
constexpr std::string_view kReadyPath = "/readyz";
// The Prometheus text exposition format, as prometheus-cpp's own exposer labels it.
constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";
constexpr char kPlainText[] = "text/plain; charset=utf-8";
constexpr char kAllowedMethods[] = "GET, HEAD";

// libmicrohttpd's threads get explicit stacks, sized for what they run plus static TLS. glibc
// carves a thread's static TLS (that of every library loaded at start-up) out of the top of the
// stack it allocates and refuses to create a thread whose stack cannot hold it: cuBLAS brings
// ~110 KiB of TLS, which is why civetweb's fixed 100 KiB stacks never started in CUDA builds.
// Rendering and libmicrohttpd's request handling use a few KiB of stack; 512 KiB is ample.
constexpr size_t kHandlerStackBytes = 512 * 1024;

// The TLS segments of every object loaded now (an upper bound on static TLS, alignment included).
size_t LoadedTlsBytes() {
  size_t total = 0;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* sum) {
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& header = info->dlpi_phdr[i];
          if (header.p_type == PT_TLS) {
            *static_cast<size_t*>(sum) += header.p_memsz + header.p_align;
          }
        }
        return 0;
      },
      &total);
  return total;
}

absl::Status CheckRange(const char* name, long long value, long long lo, long long hi) {
  if (value >= lo && value <= hi) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("metrics: ", name, " = ", value, " is outside [", lo, ", ", hi, "]"));
}

absl::Status ValidateOptions(int port, const MetricsHttpOptions& o) {
  for (absl::Status status : {
           CheckRange("port", port, 0, 65535),
           CheckRange("connection_timeout_seconds", o.connection_timeout_seconds, 1, 3600),
           CheckRange("connection_limit", o.connection_limit, 1, 4096),
           CheckRange("per_ip_connection_limit", o.per_ip_connection_limit, 1, o.connection_limit),
       }) {
    if (!status.ok()) return status;
  }
  // Below 4 KiB libmicrohttpd cannot hold a request line, headers and its response headers.
  constexpr size_t kMinMemory = 4 * 1024, kMaxMemory = 1024 * 1024;
  if (o.connection_memory_limit_bytes < kMinMemory ||
      o.connection_memory_limit_bytes > kMaxMemory) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics: connection_memory_limit_bytes = ", o.connection_memory_limit_bytes,
                     " is outside [", kMinMemory, ", ", kMaxMemory, "]"));
  }
  return absl::OkStatus();
}

// Queues a response whose body libmicrohttpd copies (it outlives this call). For HEAD requests
// libmicrohttpd sends the headers only, Content-Length included.
MHD_Result Respond(MHD_Connection* connection, unsigned int status, std::string_view body,
                   const char* content_type, const char* allow = nullptr) {
  MHD_Response* response = MHD_create_response_from_buffer(
      body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;  // out of memory: libmicrohttpd closes the connection
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  if (allow != nullptr) MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, allow);
  const MHD_Result queued = MHD_queue_response(connection, status, response);
  MHD_destroy_response(response);
  return queued;
}

// Whether the request says a body follows (a non-zero Content-Length or any Transfer-Encoding).
bool AnnouncesBody(MHD_Connection* connection) {
  const char* length =
      MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (length != nullptr && std::string_view(length) != "0") return true;
  return MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                     MHD_HTTP_HEADER_TRANSFER_ENCODING) != nullptr;
}

}  // namespace

struct MetricsHttpServer::Callbacks {
  // libmicrohttpd calls this first when the request line and headers are in, then again once the
  // body (if any) has been read. Errors are answered on the first call, before any body is read:
  // libmicrohttpd then closes the connection instead of reading an upload nobody wants. A scrape
  // is answered on the second call, which keeps an HTTP/1.1 connection open for the next one.
  static MHD_Result Answer(void* cls, MHD_Connection* connection, const char* url,
                           const char* method, const char* /*version*/, const char* /*upload_data*/,
                           size_t* upload_data_size, void** request_state) {
    // No exception may cross into libmicrohttpd's C frames.
    try {
      const auto* server = static_cast<const MetricsHttpServer*>(cls);
      const std::string_view path = url == nullptr ? "" : url;
      const std::function<bool()>* probe = nullptr;
      if (path == kLivePath && server->health_.live) probe = &server->health_.live;
      if (path == kReadyPath && server->health_.ready) probe = &server->health_.ready;
      if (path != kMetricsPath && probe == nullptr) {
        return Respond(connection, MHD_HTTP_NOT_FOUND,
                       server->health_.live
                           ? "not found: scrape /metrics; health at /livez, /readyz\n"
                           : "not found: scrape /metrics\n",
                       kPlainText);
      }
      const std::string_view verb = method == nullptr ? "" : method;
      if (verb != MHD_HTTP_METHOD_GET && verb != MHD_HTTP_METHOD_HEAD) {
        return Respond(
            connection, MHD_HTTP_METHOD_NOT_ALLOWED,
            absl::StrCat("method not allowed: ", std::string(path), " takes GET or HEAD\n"),
            kPlainText, kAllowedMethods);
      }
      if (*request_state == nullptr) {
        if (AnnouncesBody(connection)) {
          return Respond(
              connection, MHD_HTTP_BAD_REQUEST,
              absl::StrCat("bad request: GET ", std::string(path), " takes no request body\n"),
              kPlainText);
        }
        static char headers_checked;
        *request_state = &headers_checked;
        return MHD_YES;
      }
      if (*upload_data_size != 0) {  // unreachable: no body was announced; drop it all the same
        *upload_data_size = 0;
        return MHD_YES;
      }
      if (probe != nullptr) {
        const bool ok = (*probe)();
        return Respond(connection, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                       ok ? "ok\n" : (path == kLivePath ? "not live\n" : "not ready\n"),
                       kPlainText);
      }
      std::string body;
      try {
        body = server->render_();
      } catch (const std::exception& e) {
        spdlog::warn("metrics: rendering /metrics failed: {}", e.what());
        return Respond(connection, MHD_HTTP_INTERNAL_SERVER_ERROR,
                       "internal error: rendering the metrics failed\n", kPlainText);
      }
      return Respond(connection, MHD_HTTP_OK, body, kMetricsContentType);
    } catch (...) {
      return MHD_NO;  // libmicrohttpd closes the connection
    }
  }

  static void Notify(void* cls, MHD_Connection* /*connection*/, void** /*socket_context*/,
                     MHD_ConnectionNotificationCode code) {
    auto* server = static_cast<MetricsHttpServer*>(cls);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) ++server->open_connections_;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) --server->open_connections_;
  }

  // libmicrohttpd's messages. While Start() runs they become the error it returns; later they are
  // mostly about misbehaving clients (timeouts, oversize headers), which any open port sees, so
  // they go to debug: a client must not be able to flood the log.
  static void Log(void* cls, const char* format, va_list args) {
    char buffer[512];
    std::vsnprintf(buffer, sizeof(buffer), format, args);
    const std::string message(absl::StripTrailingAsciiWhitespace(buffer));
    auto* server = static_cast<MetricsHttpServer*>(cls);
    {
      std::lock_guard<std::mutex> lock(server->log_mutex_);
      if (server->starting_) {
        absl::StrAppend(&server->start_log_, server->start_log_.empty() ? "" : "; ", message);
        return;
      }
    }
    spdlog::debug("metrics: libmicrohttpd: {}", message);
  }
};

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& host, int port, std::function<std::string()> render,
    const MetricsHttpOptions& options, HttpHealth health) {
  if (absl::Status status = ValidateOptions(port, options); !status.ok()) return status;
  if (!render) return absl::InvalidArgumentError("metrics: no render callback");
  const auto unavailable = [&](const std::string& why) {
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot serve /metrics on ", host, ":", port, ": ", why));
  };

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* addresses = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &addresses); rc != 0) {
    return unavailable(gai_strerror(rc));
  }
  std::unique_ptr<MetricsHttpServer> server(
      new MetricsHttpServer(std::move(render), std::move(health)));
  const size_t stack_bytes = kHandlerStackBytes + LoadedTlsBytes();
  std::string last_error = "no IPv4 or IPv6 address";
  for (const addrinfo* a = addresses; a != nullptr && server->daemon_ == nullptr; a = a->ai_next) {
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
    // One thread per connection (polled with poll(), so descriptor numbers above FD_SETSIZE are
    // fine): a client that dribbles its request holds only its own thread. ITC lets
    // MHD_stop_daemon wake every thread at once. "::" listens on IPv4 too, as a plain socket would.
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                         MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (a->ai_family == AF_INET6) flags |= MHD_USE_DUAL_STACK;
    {
      std::lock_guard<std::mutex> lock(server->log_mutex_);
      server->start_log_.clear();
    }
    server->daemon_ = MHD_start_daemon(
        flags, static_cast<uint16_t>(port), nullptr, nullptr, &Callbacks::Answer, server.get(),
        // The logger first, so that every start-up message reaches it.
        MHD_OPTION_EXTERNAL_LOGGER, &Callbacks::Log, server.get(),  //
        MHD_OPTION_SOCK_ADDR, a->ai_addr,                           //
        MHD_OPTION_NOTIFY_CONNECTION, &Callbacks::Notify, server.get(),
        MHD_OPTION_CONNECTION_TIMEOUT,
        static_cast<unsigned int>(options.connection_timeout_seconds),  //
        MHD_OPTION_CONNECTION_LIMIT, static_cast<unsigned int>(options.connection_limit),
        MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        static_cast<unsigned int>(options.per_ip_connection_limit),  //
        MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        static_cast<size_t>(options.connection_memory_limit_bytes),  //
        MHD_OPTION_THREAD_STACK_SIZE, stack_bytes,                   //
        MHD_OPTION_END);
    if (server->daemon_ == nullptr) {
      std::lock_guard<std::mutex> lock(server->log_mutex_);
      last_error =
          server->start_log_.empty() ? "libmicrohttpd could not start" : server->start_log_;
    }
  }
  freeaddrinfo(addresses);
  if (server->daemon_ == nullptr) return unavailable(last_error);

  const MHD_DaemonInfo* info = MHD_get_daemon_info(server->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  if (info == nullptr || info->port == 0) return unavailable("cannot read the bound port");
  server->port_ = info->port;
  {
    std::lock_guard<std::mutex> lock(server->log_mutex_);
    server->starting_ = false;
  }
  spdlog::debug("metrics: libmicrohttpd serves port {} with {} KiB thread stacks", server->port_,
                stack_bytes / 1024);
  return server;
}

MetricsHttpServer::MetricsHttpServer(std::function<std::string()> render, HttpHealth health)
    : render_(std::move(render)), health_(std::move(health)) {}

MetricsHttpServer::~MetricsHttpServer() {
  // Shuts every connection's socket down and joins its thread; none waits for a slow client.
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

}  // namespace zigzag
