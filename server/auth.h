// Optional bearer-token authentication for the Engine service: with a token configured, every
// Engine call must carry the metadata "authorization: Bearer <token>", else UNAUTHENTICATED.
// Health checks and reflection are not checked (probes must work without secrets).
#pragma once

#include <string>

#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"

namespace zigzag {

class BearerTokenAuth {
 public:
  // An empty token turns authentication off.
  explicit BearerTokenAuth(std::string token) : token_(std::move(token)) {}

  bool enabled() const { return !token_.empty(); }

  // OK when authentication is off or the call carries the right token.
  grpc::Status Check(const grpc::CallbackServerContext& context) const;

 private:
  std::string token_;
};

// Compares without stopping at the first difference, so timing does not reveal how much of a
// guessed token is right.
bool ConstantTimeEquals(const std::string& a, const std::string& b);

}  // namespace zigzag
