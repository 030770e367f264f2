#include "api/errors.hpp"

namespace aviary::api {

int jsonrpc_code(core::ErrorCode code) {
    switch (code) {
        case core::ErrorCode::kInvalidArgument:
            return kInvalidParams;
        case core::ErrorCode::kNotFound:
            return kUnknownNodeCode;
        case core::ErrorCode::kAlreadyExists:
            return kExistsCode;
        case core::ErrorCode::kBusy:
            return kBusyCode;
        case core::ErrorCode::kNotOwner:
            return kNotOwnerCode;
        case core::ErrorCode::kUnauthenticated:
            return kUnauthenticatedCode;
        case core::ErrorCode::kPermissionDenied:
            return kPermissionDeniedCode;
        case core::ErrorCode::kUnavailable:
            return kUnavailableCode;
        case core::ErrorCode::kUnimplemented:
            return kUnimplementedCode;
        case core::ErrorCode::kTimeout:
            return kTimeoutCode;
        case core::ErrorCode::kStorage:
            return kStorageCode;
        case core::ErrorCode::kInternal:
            return kInternalError;
    }
    return kInternalError;
}

int http_status(core::ErrorCode code) {
    switch (code) {
        case core::ErrorCode::kInvalidArgument:
            return 400;
        case core::ErrorCode::kNotFound:
            return 404;
        case core::ErrorCode::kAlreadyExists:
        case core::ErrorCode::kBusy:
            return 409;
        case core::ErrorCode::kNotOwner:
            return 403;
        case core::ErrorCode::kUnauthenticated:
            return 401;
        case core::ErrorCode::kPermissionDenied:
            return 403;
        case core::ErrorCode::kUnavailable:
            return 503;
        case core::ErrorCode::kUnimplemented:
            return 501;
        case core::ErrorCode::kTimeout:
            return 504;
        case core::ErrorCode::kStorage:
            return 503;
        case core::ErrorCode::kInternal:
            return 500;
    }
    return 500;
}

}  // namespace aviary::api
