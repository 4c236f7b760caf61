#include "server/connection_acceptor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/server_posix.h"
#include "spdlog/spdlog.h"

namespace zigzag {
namespace {

// Retry delay after an accept() error that does not clear by itself (out of memory, out of
// descriptors with no reserve left).
constexpr int kRetryMs = 100;
// At most one log line about refused connections per this interval.
constexpr std::chrono::seconds kLogInterval{10};

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string Describe(const std::string& host, int port) {
  return host.find(':') != std::string::npos ? absl::StrCat("[", host, "]:", port)
                                             : absl::StrCat(host, ":", port);
}

// A listening socket bound to `address`, or -1 with errno set.
int ListenOn(const sockaddr* address, socklen_t length, bool dual_stack) {
  const int fd = socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  const int zero = 0;
  // SO_REUSEADDR lets a restarted server bind while old connections sit in TIME_WAIT. Not
  // SO_REUSEPORT: a second server must not silently share the port.
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (dual_stack) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  if (bind(fd, address, length) != 0 || listen(fd, SOMAXCONN) != 0) {
    const int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ConnectionAcceptor>> ConnectionAcceptor::Listen(
    const std::string& host_in, int port, int max_connections) {
  std::string host = host_in;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string where = Describe(host, port);
  int fd = -1;
  int error = 0;
  if (host.empty() || host == "0.0.0.0" || host == "::") {
    // Every address, as gRPC's own listener does: IPv6 with IPv4-mapped addresses, else IPv4.
    sockaddr_in6 any6{};
    any6.sin6_family = AF_INET6;
    any6.sin6_addr = in6addr_any;
    any6.sin6_port = htons(static_cast<uint16_t>(port));
    fd = ListenOn(reinterpret_cast<sockaddr*>(&any6), sizeof(any6), /*dual_stack=*/true);
    if (fd < 0) {
      error = errno;
      sockaddr_in any4{};
      any4.sin_family = AF_INET;
      any4.sin_addr.s_addr = htonl(INADDR_ANY);
      any4.sin_port = htons(static_cast<uint16_t>(port));
      fd = ListenOn(reinterpret_cast<sockaddr*>(&any4), sizeof(any4), /*dual_stack=*/false);
      if (fd < 0) error = errno;
    }
  } else {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string service = std::to_string(port);
    const int resolved = getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
    if (resolved != 0) {
      return absl::UnavailableError(absl::StrCat("gRPC: cannot listen on ", where,
                                                 ": cannot resolve the host (",
                                                 gai_strerror(resolved), ")"));
    }
    for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
      fd = ListenOn(a->ai_addr, a->ai_addrlen, /*dual_stack=*/false);
      if (fd < 0) error = errno;
    }
    freeaddrinfo(found);
  }
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("gRPC: cannot listen on ", where, ": ", std::strerror(error)));
  }
  sockaddr_storage bound{};
  socklen_t bound_length = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_length);
  const int bound_port =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  const int wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd < 0) {
    const int saved = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("gRPC: eventfd() failed: ", std::strerror(saved)));
  }
  return std::unique_ptr<ConnectionAcceptor>(
      new ConnectionAcceptor(fd, wake_fd, bound_port, max_connections));
}

ConnectionAcceptor::ConnectionAcceptor(int listen_fd, int wake_fd, int port, int max_connections)
    : listen_fd_(listen_fd),
      wake_fd_(wake_fd),
      port_(port),
      max_connections_(max_connections < 1 ? 1 : max_connections) {
  reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  handed_.reserve(static_cast<size_t>(max_connections_));
}

ConnectionAcceptor::~ConnectionAcceptor() {
  Stop();
  close(listen_fd_);
  close(wake_fd_);
  if (reserve_fd_ >= 0) close(reserve_fd_);
}

void ConnectionAcceptor::Start(grpc::Server* server) {
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (stopped_ || thread_.joinable()) return;
  server_ = server;
  thread_ = std::thread([this] { AcceptLoop(); });
}

void ConnectionAcceptor::Stop() {
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  stop_.store(true);
  const uint64_t one = 1;
  const ssize_t written = write(wake_fd_, &one, sizeof(one));
  (void)written;  // an eventfd write only fails when the counter would overflow
  if (thread_.joinable()) thread_.join();
  // New connections are refused by the kernel from now on, not left waiting in the backlog.
  shutdown(listen_fd_, SHUT_RDWR);
}

int ConnectionAcceptor::open_connections() {
  std::lock_guard<std::mutex> lock(mu_);
  PruneLocked();
  return static_cast<int>(handed_.size());
}

void ConnectionAcceptor::AcceptLoop() {
  bool retry_later = false;
  while (!stop_.load()) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    const int ready = poll(fds, 2, retry_later ? kRetryMs : -1);
    if (stop_.load()) return;
    if (ready < 0 && errno != EINTR) {
      spdlog::error("gRPC listener: poll() failed: {}", std::strerror(errno));
      retry_later = true;
      continue;
    }
    retry_later = !AcceptAll();
  }
}

bool ConnectionAcceptor::AcceptAll() {
  while (!stop_.load()) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      switch (errno) {
        case EINTR:
        case ECONNABORTED:  // the client gave up while it waited in the backlog
        case EPROTO:
          continue;
        case EAGAIN:
          return true;
        case EMFILE:
        case ENFILE:
          if (ShedOneConnection()) continue;
          return false;
        default:
          // ENOBUFS, ENOMEM, EPERM (a firewall rule): try again soon; never stop listening.
          spdlog::warn("gRPC listener: accept() failed: {}; retrying", std::strerror(errno));
          return false;
      }
    }
    if (!Admit(fd)) {
      close(fd);
      NoteRefused("--max-connections reached");
      continue;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    grpc::AddInsecureChannelFromFd(server_, fd);
  }
  return true;
}

bool ConnectionAcceptor::ShedOneConnection() {
  if (reserve_fd_ < 0) {
    reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
    NoteRefused("out of file descriptors");
    return false;
  }
  close(reserve_fd_);
  reserve_fd_ = -1;
  const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd >= 0) close(fd);
  reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  NoteRefused("out of file descriptors");
  return fd >= 0 && reserve_fd_ >= 0;
}

bool ConnectionAcceptor::Admit(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return false;
  std::lock_guard<std::mutex> lock(mu_);
  if (static_cast<int>(handed_.size()) >= max_connections_) PruneLocked();
  if (static_cast<int>(handed_.size()) >= max_connections_) return false;
  handed_.push_back({fd, st.st_ino});
  return true;
}

void ConnectionAcceptor::PruneLocked() {
  // Linear in the cap, and only run when the cap is reached (or someone asks for the count).
  std::erase_if(handed_, [](const Handed& h) {
    struct stat st {};
    return fstat(h.fd, &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_ino != h.inode;
  });
}

void ConnectionAcceptor::NoteRefused(const char* why) {
  const int64_t refused = refused_.fetch_add(1) + 1;
  const int64_t now = NowNs();
  if (now - last_log_ns_ < std::chrono::nanoseconds(kLogInterval).count()) return;
  int open = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    open = static_cast<int>(handed_.size());
  }
  spdlog::warn("gRPC listener: refused {} connection(s) since the last report ({}; {} open of {})",
               refused - refused_logged_, why, open, max_connections_);
  refused_logged_ = refused;
  last_log_ns_ = now;
}

}  // namespace zigzag
