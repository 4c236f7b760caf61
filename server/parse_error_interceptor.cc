#include "server/parse_error_interceptor.h"

#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "zigzag/v1/engine.pb.h"

namespace zigzag {
namespace {

class ParseErrorInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit ParseErrorInterceptor(std::string message) : message_(std::move(message)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED &&
          status.error_message().empty()) {
        methods->ModifySendStatus(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message_));
      }
    }
    methods->Proceed();
  }

 private:
  const std::string message_;
};

}  // namespace

grpc::experimental::Interceptor* ParseErrorInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  // info->method() is "/zigzag.v1.Engine/Generate".
  const std::string_view method = info->method() == nullptr ? "" : info->method();
  const google::protobuf::ServiceDescriptor* service =
      v1::GenerateRequest::descriptor()->file()->FindServiceByName("Engine");
  const std::string prefix = absl::StrCat("/", service->full_name(), "/");
  if (method.substr(0, prefix.size()) != prefix) return nullptr;
  const google::protobuf::MethodDescriptor* found =
      service->FindMethodByName(std::string(method.substr(prefix.size())));
  if (found == nullptr) return nullptr;
  return new ParseErrorInterceptor(absl::StrCat(
      "the request is not a valid ", found->input_type()->full_name(),
      ": the bytes are not that protobuf message, or a string field is not valid UTF-8"));
}

}  // namespace zigzag
