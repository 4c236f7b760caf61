// MetricsHttpServer over plain loopback sockets: what each method and path gets, that slow, idle
// and oversize clients neither block scrapes nor delay a stop, and that bad options or a taken
// port come back as errors naming what was wrong. Every socket read has a 10 s timeout, so a
// server that fails to answer fails the test instead of hanging it.
#include "server/metrics_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace zigzag {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr char kMetricsText[] =
    "# HELP zigzag_up A test series.\n# TYPE zigzag_up gauge\nzigzag_up{model=\"tiny\"} 1\n";

// A connected loopback socket with a 10 s receive timeout (-1 when the connect fails).
int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// False when the peer closed or reset the connection before all was sent.
bool SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

struct Reply {
  int status = 0;       // 0: no status line came back
  std::string headers;  // the header block, status line included
  std::string body;     // whatever followed the header block
  bool timed_out = false;
};

std::optional<std::string> Header(const Reply& reply, const std::string& name) {
  const std::string lower = absl::AsciiStrToLower(reply.headers);
  const std::string key = absl::StrCat("\r\n", absl::AsciiStrToLower(name), ":");
  const size_t at = lower.find(key);
  if (at == std::string::npos) return std::nullopt;
  const size_t begin = at + key.size();
  const size_t end = reply.headers.find("\r\n", begin);
  return std::string(absl::StripAsciiWhitespace(reply.headers.substr(begin, end - begin)));
}

// Reads until the server closes the connection (or resets it, or 10 s pass).
Reply ReadUntilClosed(int fd) {
  std::string raw;
  char buffer[8192];
  bool timed_out = false;
  while (true) {
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      raw.append(buffer, static_cast<size_t>(n));
      continue;
    }
    timed_out = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    break;
  }
  Reply reply;
  reply.timed_out = timed_out;
  const size_t end = raw.find("\r\n\r\n");
  reply.headers = raw.substr(0, end == std::string::npos ? raw.size() : end);
  if (end != std::string::npos) reply.body = raw.substr(end + 4);
  if (absl::StartsWith(raw, "HTTP/1.") && raw.size() >= 12) {
    if (!absl::SimpleAtoi(raw.substr(9, 3), &reply.status)) reply.status = 0;
  }
  return reply;
}

// One request on a fresh connection; HTTP/1.0 requests get answered and closed.
Reply Exchange(int port, const std::string& request) {
  const int fd = Connect(port);
  if (fd < 0) return {};
  SendAll(fd, request);
  Reply reply = ReadUntilClosed(fd);
  close(fd);
  return reply;
}

Reply Scrape(int port) { return Exchange(port, "GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n"); }

// True while the server has neither answered nor closed the connection.
bool StillOpen(int fd) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  return poll(&p, 1, 0) == 0;
}

// Sends the start of a GET one byte at a time, `interval` apart, never finishing it (the slow
// client of issue 11: it held the old single-threaded loop for as long as it kept sending).
class SlowClient {
 public:
  SlowClient(int port, std::chrono::milliseconds interval) : fd_(Connect(port)) {
    thread_ = std::thread([this, interval] {
      const std::string partial = "GET /metrics HTTP/1.1\r\nHost: test\r\nX-Slow: " +
                                  std::string(200, 's');  // no end of headers
      std::unique_lock<std::mutex> lock(mutex_);
      for (char c : partial) {
        if (send(fd_, &c, 1, MSG_NOSIGNAL) != 1) return;
        ++sent_;
        if (stop_cv_.wait_for(lock, interval, [this] { return stop_; })) return;
      }
    });
  }
  ~SlowClient() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    stop_cv_.notify_all();
    thread_.join();
    if (fd_ >= 0) close(fd_);
  }

  int fd() const { return fd_; }
  int sent() const { return sent_.load(); }
  // Waits until `bytes` were sent (false after 10 s).
  bool WaitForSent(int bytes) const {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (sent_.load() < bytes) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(10ms);
    }
    return true;
  }

 private:
  const int fd_;
  std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::atomic<int> sent_{0};
  std::thread thread_;
};

bool WaitForOpenConnections(const MetricsHttpServer& server, int count) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (server.open_connections() != count) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

class MetricsHttpTest : public ::testing::Test {
 protected:
  void Start(MetricsHttpOptions options = {}) {
    auto server = MetricsHttpServer::Start(
        "127.0.0.1", 0,
        [this] {
          ++renders_;
          return std::string(kMetricsText);
        },
        options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->port(), 0);
  }
  int port() const { return server_->port(); }

  std::atomic<int> renders_{0};
  std::unique_ptr<MetricsHttpServer> server_;
};

TEST_F(MetricsHttpTest, GetMetricsGetsTheRenderedTextAsPrometheusText) {
  Start();
  const Reply reply = Scrape(port());
  EXPECT_EQ(reply.status, 200) << reply.headers;
  EXPECT_EQ(reply.body, kMetricsText);
  EXPECT_EQ(Header(reply, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(Header(reply, "Content-Length"), std::to_string(std::string(kMetricsText).size()));
  EXPECT_EQ(renders_.load(), 1);
  // A query string does not change the path.
  EXPECT_EQ(Exchange(port(), "GET /metrics?x=1 HTTP/1.0\r\n\r\n").body, kMetricsText);
}

TEST_F(MetricsHttpTest, HeadGets200WithTheGetHeadersAndNoBody) {
  Start();
  const Reply reply = Exchange(port(), "HEAD /metrics HTTP/1.0\r\nHost: test\r\n\r\n");
  EXPECT_EQ(reply.status, 200) << reply.headers;
  EXPECT_EQ(reply.body, "");
  EXPECT_EQ(Header(reply, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(Header(reply, "Content-Length"), std::to_string(std::string(kMetricsText).size()));
}

TEST_F(MetricsHttpTest, OtherMethodsOnMetricsGet405WithAllowGetHead) {
  Start();
  const Reply post =
      Exchange(port(), "POST /metrics HTTP/1.0\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(post.status, 405) << post.headers;
  EXPECT_EQ(Header(post, "Allow"), "GET, HEAD");
  for (const char* method : {"PUT", "DELETE", "OPTIONS", "PATCH"}) {
    const Reply reply = Exchange(port(), absl::StrCat(method, " /metrics HTTP/1.0\r\n\r\n"));
    EXPECT_EQ(reply.status, 405) << method;
    EXPECT_EQ(Header(reply, "Allow"), "GET, HEAD") << method;
  }
  EXPECT_EQ(renders_.load(), 0);
}

TEST_F(MetricsHttpTest, GetWithABodyGets400BeforeTheBodyIsRead) {
  Start();
  // The body is announced but never sent: the answer must not wait for it.
  const Reply reply =
      Exchange(port(), "GET /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 1000000\r\n\r\n");
  EXPECT_FALSE(reply.timed_out);
  EXPECT_EQ(reply.status, 400) << reply.headers;
  EXPECT_THAT(reply.body, HasSubstr("no request body"));
  EXPECT_EQ(Exchange(port(),
                     "GET /metrics HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: "
                     "chunked\r\n\r\n")
                .status,
            400);
  EXPECT_EQ(renders_.load(), 0);
}

TEST_F(MetricsHttpTest, OtherPathsGet404) {
  Start();
  for (const char* path : {"/", "/metrics/", "/metricsx", "/other", "/Metrics"}) {
    EXPECT_EQ(Exchange(port(), absl::StrCat("GET ", path, " HTTP/1.0\r\n\r\n")).status, 404)
        << path;
  }
  EXPECT_EQ(Exchange(port(), "POST /other HTTP/1.0\r\n\r\n").status, 404);
  EXPECT_EQ(renders_.load(), 0);
}

TEST_F(MetricsHttpTest, KeepAliveConnectionAnswersOneScrapeAfterAnother) {
  Start();
  const int fd = Connect(port());
  ASSERT_GE(fd, 0);
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n";
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(SendAll(fd, request));
    // Read exactly one response: headers, then Content-Length bytes.
    std::string raw;
    char c;
    while (!absl::EndsWith(raw, "\r\n\r\n") && recv(fd, &c, 1, 0) == 1) raw += c;
    Reply reply;
    reply.headers = raw;
    ASSERT_THAT(raw, HasSubstr(" 200 ")) << "response " << i;
    size_t length = 0;
    ASSERT_TRUE(absl::SimpleAtoi(Header(reply, "Content-Length").value_or(""), &length));
    std::string body(length, '\0');
    ASSERT_EQ(recv(fd, body.data(), length, MSG_WAITALL), static_cast<ssize_t>(length));
    EXPECT_EQ(body, kMetricsText);
  }
  close(fd);
  EXPECT_EQ(renders_.load(), 3);
}

TEST_F(MetricsHttpTest, SlowClientDoesNotBlockConcurrentScrapes) {
  Start();
  SlowClient slow(port(), 1000ms);
  ASSERT_GE(slow.fd(), 0);
  ASSERT_TRUE(slow.WaitForSent(2));  // the server has been reading it for a second
  ASSERT_TRUE(WaitForOpenConnections(*server_, 1));
  for (int i = 0; i < 3; ++i) {
    const Reply reply = Scrape(port());
    EXPECT_EQ(reply.status, 200) << "scrape " << i << (reply.timed_out ? " timed out" : "");
    EXPECT_EQ(reply.body, kMetricsText);
  }
  // The slow client is still connected and unanswered: the scrapes did not wait for it.
  EXPECT_TRUE(StillOpen(slow.fd()));
}

TEST_F(MetricsHttpTest, StopReturnsPromptlyAndClosesSlowAndIdleClients) {
  Start();
  std::vector<std::unique_ptr<SlowClient>> slow;
  for (int i = 0; i < 3; ++i) {
    slow.push_back(std::make_unique<SlowClient>(port(), 1000ms));
    ASSERT_GE(slow.back()->fd(), 0);
  }
  const int idle = Connect(port());  // connected, sends nothing
  ASSERT_GE(idle, 0);
  for (const auto& client : slow) ASSERT_TRUE(client->WaitForSent(2));
  ASSERT_TRUE(WaitForOpenConnections(*server_, 4));

  const auto begin = std::chrono::steady_clock::now();
  server_.reset();
  const auto took = std::chrono::steady_clock::now() - begin;
  // Generous: the old loop took as long as the slowest client kept sending (57 s in issue 11).
  EXPECT_LT(took, 5s);
  for (const auto& client : slow) EXPECT_FALSE(StillOpen(client->fd()));
  EXPECT_FALSE(StillOpen(idle));
  close(idle);
}

TEST_F(MetricsHttpTest, IdleConnectionIsClosedAfterTheConnectionTimeout) {
  Start({.connection_timeout_seconds = 1});
  const int idle = Connect(port());
  ASSERT_GE(idle, 0);
  // recv returns 0 (closed by the server) well before its own 10 s timeout would say "hung".
  const Reply reply = ReadUntilClosed(idle);
  close(idle);
  EXPECT_FALSE(reply.timed_out);
  EXPECT_EQ(Scrape(port()).status, 200);
}

TEST_F(MetricsHttpTest, OversizeHeadersGetAnErrorOrCloseAndTheServerKeepsServing) {
  Start();  // 16 KiB per connection
  const int fd = Connect(port());
  ASSERT_GE(fd, 0);
  // 64 KiB of headers. The server may answer (431) and close before it has all of them, so the
  // send may fail with a reset; either way the connection must end, not hang.
  std::string request = "GET /metrics HTTP/1.1\r\nHost: test\r\n";
  for (int i = 0; i < 64; ++i)
    absl::StrAppend(&request, "X-Big-", i, ": ", std::string(1000, 'b'), "\r\n");
  request += "\r\n";
  SendAll(fd, request);
  const Reply reply = ReadUntilClosed(fd);
  close(fd);
  EXPECT_FALSE(reply.timed_out);
  EXPECT_TRUE(reply.status == 0 || reply.status >= 400) << reply.headers;
  EXPECT_NE(reply.body, kMetricsText);
  // A request line longer than the limit is refused the same way.
  const Reply long_url = Exchange(
      port(), absl::StrCat("GET /metrics?", std::string(64 * 1024, 'q'), " HTTP/1.0\r\n\r\n"));
  EXPECT_FALSE(long_url.timed_out);
  EXPECT_TRUE(long_url.status == 0 || long_url.status >= 400) << long_url.headers;
  EXPECT_EQ(renders_.load(), 0);

  const Reply after = Scrape(port());
  EXPECT_EQ(after.status, 200);
  EXPECT_EQ(after.body, kMetricsText);
}

TEST_F(MetricsHttpTest, ConnectionOverThePerAddressLimitIsClosedUnanswered) {
  Start({.per_ip_connection_limit = 2});
  const int first = Connect(port());
  const int second = Connect(port());
  ASSERT_GE(first, 0);
  ASSERT_GE(second, 0);
  ASSERT_TRUE(WaitForOpenConnections(*server_, 2));
  const Reply refused = Scrape(port());
  EXPECT_FALSE(refused.timed_out);
  EXPECT_EQ(refused.status, 0) << refused.headers;
  close(first);
  ASSERT_TRUE(WaitForOpenConnections(*server_, 1));
  EXPECT_EQ(Scrape(port()).status, 200);
  close(second);
  EXPECT_EQ(renders_.load(), 1);
}

TEST_F(MetricsHttpTest, ManyConcurrentScrapesAllSucceed) {
  // Each client's second connection may open before the server has counted its first one closed,
  // so the limits leave room for two per client.
  constexpr int kClients = 16;
  constexpr int kScrapesEach = 2;
  Start({.connection_limit = 2 * kClients, .per_ip_connection_limit = 2 * kClients});
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&] {
      for (int j = 0; j < kScrapesEach; ++j) {
        const Reply reply = Scrape(port());
        if (reply.status == 200 && reply.body == kMetricsText) ++ok;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(ok.load(), kClients * kScrapesEach);
  EXPECT_EQ(renders_.load(), kClients * kScrapesEach);
}

TEST(MetricsHttpServerTest, LivezAndReadyzFollowTheirCallbacks) {
  std::atomic<bool> live{true}, ready{false};
  auto server = MetricsHttpServer::Start(
      "127.0.0.1", 0, [] { return std::string(kMetricsText); }, {},
      HttpHealth{.live = [&] { return live.load(); }, .ready = [&] { return ready.load(); }});
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  const auto get = [port](const char* path) {
    return Exchange(port, absl::StrCat("GET ", path, " HTTP/1.0\r\n\r\n"));
  };
  // Live, not ready (a model still loading): 200 and 503.
  EXPECT_EQ(get("/livez").status, 200);
  EXPECT_EQ(get("/livez").body, "ok\n");
  EXPECT_EQ(get("/readyz").status, 503);
  EXPECT_EQ(get("/readyz").body, "not ready\n");
  ready = true;
  EXPECT_EQ(get("/readyz").status, 200);
  // The self-check failed: liveness 503; /metrics still answers.
  live = false;
  EXPECT_EQ(get("/livez").status, 503);
  EXPECT_EQ(get("/livez").body, "not live\n");
  EXPECT_EQ(get("/metrics").status, 200);
  // HEAD answers the same status without a body; other methods 405 naming the path.
  const Reply head = Exchange(port, "HEAD /readyz HTTP/1.0\r\n\r\n");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.body, "");
  const Reply post = Exchange(port, "POST /livez HTTP/1.0\r\n\r\n");
  EXPECT_EQ(post.status, 405);
  EXPECT_THAT(post.body, HasSubstr("/livez takes GET or HEAD"));
  EXPECT_EQ(get("/livez/").status, 404);
}

TEST(MetricsHttpServerTest, WithoutHealthCallbacksLivezAndReadyzAre404) {
  auto server = MetricsHttpServer::Start("127.0.0.1", 0, [] { return std::string(kMetricsText); });
  ASSERT_TRUE(server.ok()) << server.status();
  for (const char* path : {"/livez", "/readyz"}) {
    EXPECT_EQ(Exchange((*server)->port(), absl::StrCat("GET ", path, " HTTP/1.0\r\n\r\n")).status,
              404)
        << path;
  }
}

TEST(MetricsHttpServerTest, RenderThatThrowsGets500AndTheServerKeepsServing) {
  std::atomic<int> calls{0};
  auto server = MetricsHttpServer::Start("127.0.0.1", 0, [&]() -> std::string {
    if (calls++ == 0) throw std::runtime_error("registry broke");
    return kMetricsText;
  });
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(Scrape((*server)->port()).status, 500);
  const Reply reply = Scrape((*server)->port());
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body, kMetricsText);
}

TEST(MetricsHttpServerTest, MemoryLimitBoundsRequestsNotTheMetricsText) {
  // The smallest memory limit allowed, and a body 1000 times larger: it is sent whole.
  const std::string text(4 << 20, 'm');
  auto server = MetricsHttpServer::Start("127.0.0.1", 0, [&] { return text; },
                                         {.connection_memory_limit_bytes = 4096});
  ASSERT_TRUE(server.ok()) << server.status();
  const Reply reply = Scrape((*server)->port());
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body.size(), text.size());
  EXPECT_TRUE(reply.body == text);
}

TEST(MetricsHttpServerTest, OutOfRangeOptionsAreInvalidArgumentNamingTheField) {
  const auto render = [] { return std::string(); };
  const auto error = [&](int port, MetricsHttpOptions options) {
    auto server = MetricsHttpServer::Start("127.0.0.1", port, render, options);
    EXPECT_FALSE(server.ok());
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(server.status().message());
  };
  EXPECT_THAT(error(70000, {}), HasSubstr("port = 70000"));
  EXPECT_THAT(error(-2, {}), HasSubstr("port = -2"));
  EXPECT_THAT(error(0, {.connection_timeout_seconds = 0}),
              HasSubstr("connection_timeout_seconds = 0"));
  EXPECT_THAT(error(0, {.connection_limit = 0}), HasSubstr("connection_limit = 0"));
  EXPECT_THAT(error(0, {.connection_limit = 4, .per_ip_connection_limit = 5}),
              HasSubstr("per_ip_connection_limit = 5 is outside [1, 4]"));
  EXPECT_THAT(error(0, {.connection_memory_limit_bytes = 100}),
              HasSubstr("connection_memory_limit_bytes = 100 is outside [4096, 1048576]"));
}

TEST(MetricsHttpServerTest, TakenPortIsUnavailableNamingTheAddressAndPort) {
  const auto render = [] { return std::string(kMetricsText); };
  auto first = MetricsHttpServer::Start("127.0.0.1", 0, render);
  ASSERT_TRUE(first.ok()) << first.status();
  const int port = (*first)->port();
  auto second = MetricsHttpServer::Start("127.0.0.1", port, render);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr(absl::StrCat("127.0.0.1:", port)));
  EXPECT_THAT(second.status().message(), HasSubstr("in use"));  // libmicrohttpd's bind error
  EXPECT_EQ(Scrape(port).status, 200);                          // the first one still serves
}

}  // namespace
}  // namespace zigzag
