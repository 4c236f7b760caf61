// Mapping absl::Status (core's errors) onto grpc::Status and back. The codes are the same
// numbers in both (both follow google.rpc.Code), so the mapping is one to one; the message is
// kept as is. Knows nothing of requests.
#pragma once

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace zigzag {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// "OK", "CANCELLED", ..., "UNAUTHENTICATED" (as gRPC spells them); "UNKNOWN" for other values.
const char* GrpcCodeName(grpc::StatusCode code);

}  // namespace zigzag
