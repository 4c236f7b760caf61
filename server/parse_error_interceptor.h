// ParseErrorInterceptorFactory: gRPC 1.51's callback API answers a request message it cannot
// parse (malformed protobuf bytes, a string field that is not valid UTF-8) with UNIMPLEMENTED and
// an empty message, before any of our code runs. This server interceptor turns exactly that
// answer, on the zigzag.v1.Engine methods, into INVALID_ARGUMENT naming the request type. Our
// handlers never answer UNIMPLEMENTED with an empty message, so no other status is touched.
#pragma once

#include "grpcpp/support/server_interceptor.h"

namespace zigzag {

class ParseErrorInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // Null (no interceptor) for methods outside zigzag.v1.Engine.
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;
};

}  // namespace zigzag
