// RETURN_IF_ERROR and ASSIGN_OR_RETURN for absl::Status / absl::StatusOr.
// Debian's Abseil (20220623) does not ship its own status macros, so they are defined once here.
// Use them at every module boundary instead of exceptions; CHECK only for broken invariants.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ZZ_STATUS_CONCAT_INNER(a, b) a##b
#define ZZ_STATUS_CONCAT(a, b) ZZ_STATUS_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                \
  do {                                       \
    ::absl::Status zz_status_ = (expr);      \
    if (!zz_status_.ok()) return zz_status_; \
  } while (0)

#define ZZ_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return std::move(tmp).status(); \
  lhs = std::move(tmp).value()

// ASSIGN_OR_RETURN(auto x, F()); or ASSIGN_OR_RETURN(existing, F());
#define ASSIGN_OR_RETURN(lhs, expr) \
  ZZ_ASSIGN_OR_RETURN_IMPL(ZZ_STATUS_CONCAT(zz_statusor_, __LINE__), lhs, expr)
