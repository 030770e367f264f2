#pragma once
// Private to api: the one place core::ErrorCode becomes a wire code.
#include "core/core.hpp"

namespace aviary::api {

/// JSON-RPC 2.0 codes: the spec's, then aviary's application codes (docs/api.md lists them).
enum JsonRpcCode : int {
    kParseError = -32700,
    kInvalidRequest = -32600,
    kMethodNotFound = -32601,
    kInvalidParams = -32602,
    kInternalError = -32603,
    kBusyCode = -32001,
    kNotOwnerCode = -32002,
    kUnknownNodeCode = -32003,
    kExistsCode = -32004,
    kUnavailableCode = -32005,
    kUnimplementedCode = -32006,
    kPermissionDeniedCode = -32007,
    kUnauthenticatedCode = -32008,
    kTimeoutCode = -32009,
    kStorageCode = -32010,
    /// A node action called with "Wait": true ran and did not succeed (failed, timed out or
    /// was cancelled): the message gives the job's error, data.job the job. Not an ErrorCode:
    /// the call itself worked, as the original's synchronous call returned helm's error.
    kJobFailedCode = -32011,
};

int jsonrpc_code(core::ErrorCode code);
int http_status(core::ErrorCode code);

}  // namespace aviary::api
