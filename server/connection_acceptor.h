// ConnectionAcceptor: the plaintext gRPC listener, with a cap on open connections. gRPC 1.51 has
// no such cap (grpc.max_allowed_incoming_connections came later), and its own listener stops
// accepting for good once accept() fails with EMFILE. This one accepts on a thread of its own,
// closes connections beyond the cap at once (the client sees its connection closed and retries),
// sheds connections instead of failing when file descriptors run out, and hands the rest to the
// gRPC server (grpc::AddInsecureChannelFromFd), whose idle and keepalive limits then apply.
// TLS connections cannot be handed over that way: with TLS, ZigzagServer uses gRPC's listener.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/server.h"

namespace zigzag {

class ConnectionAcceptor {
 public:
  // Binds and listens on host:port (port 0: any free port; "0.0.0.0", "::" or "": every address,
  // IPv6 and IPv4 where the host has both). Unavailable naming the address when it cannot.
  static absl::StatusOr<std::unique_ptr<ConnectionAcceptor>> Listen(const std::string& host,
                                                                    int port, int max_connections);
  ~ConnectionAcceptor();  // Stop()
  ConnectionAcceptor(const ConnectionAcceptor&) = delete;
  ConnectionAcceptor& operator=(const ConnectionAcceptor&) = delete;

  int port() const { return port_; }
  int max_connections() const { return max_connections_; }

  // Starts accepting on a thread of its own and handing connections to `server` (started; it
  // must outlive Stop()). Once only.
  void Start(grpc::Server* server);
  // Stops accepting and closes the listening socket, then returns. Connections already handed
  // over stay gRPC's. Idempotent.
  void Stop();

  // Connections handed to gRPC that are still open.
  int open_connections();
  // Connections closed at once because the cap was reached or descriptors ran out.
  int64_t refused() const { return refused_.load(); }

 private:
  // One connection handed to gRPC: its descriptor and the socket's inode. gRPC closes the
  // descriptor without telling us, and the number may be reused: a different inode (or none)
  // means the connection is gone.
  struct Handed {
    int fd;
    ino_t inode;
  };

  ConnectionAcceptor(int listen_fd, int wake_fd, int port, int max_connections);
  void AcceptLoop();
  // Accepts until the backlog is empty; false when accept() must be retried later.
  bool AcceptAll();
  // Out of descriptors: frees the reserve one to accept and close one connection, so that the
  // backlog drains and clients see a refusal instead of a hang.
  bool ShedOneConnection();
  bool Admit(int fd);  // counts fd in when under the cap
  void PruneLocked();  // forgets connections gRPC has closed; mu_ held
  void NoteRefused(const char* why);

  const int listen_fd_;
  const int wake_fd_;  // eventfd written by Stop
  const int port_;
  const int max_connections_;
  int reserve_fd_ = -1;  // /dev/null, given up to accept one connection when out of descriptors
  grpc::Server* server_ = nullptr;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> refused_{0};
  int64_t refused_logged_ = 0;  // acceptor thread only
  int64_t last_log_ns_ = 0;     // acceptor thread only

  std::mutex mu_;
  std::vector<Handed> handed_;  // guarded by mu_
  std::mutex stop_mu_;          // serialises Stop
  bool stopped_ = false;        // guarded by stop_mu_
};

}  // namespace zigzag
