#include <pthread.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/core.hpp"

namespace aviary::core {

void assert_failed(const char* cond, const char* why, const char* file, int line) {
    flush_logs();  // what led here
    std::fprintf(stderr, "aviary: assertion failed at %s:%d: %s (%s)\n", file, line, why, cond);
    std::abort();
}

std::string_view to_string(ErrorCode code) {
    switch (code) {
        case ErrorCode::kInvalidArgument:
            return "invalid_argument";
        case ErrorCode::kNotFound:
            return "not_found";
        case ErrorCode::kAlreadyExists:
            return "already_exists";
        case ErrorCode::kBusy:
            return "busy";
        case ErrorCode::kNotOwner:
            return "not_owner";
        case ErrorCode::kUnauthenticated:
            return "unauthenticated";
        case ErrorCode::kPermissionDenied:
            return "permission_denied";
        case ErrorCode::kUnavailable:
            return "unavailable";
        case ErrorCode::kUnimplemented:
            return "unimplemented";
        case ErrorCode::kTimeout:
            return "timeout";
        case ErrorCode::kStorage:
            return "storage";
        case ErrorCode::kInternal:
            return "internal";
    }
    return "internal";
}

std::string_view to_string(NodeState state) {
    switch (state) {
        case NodeState::kFree:
            return "free";
        case NodeState::kLeased:
            return "leased";
        case NodeState::kMaintenance:
            return "maintenance";
    }
    return "free";
}

bool is_dns_label(std::string_view name) {
    if (name.empty() || name.size() > 63) {
        return false;
    }
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    for (char c : name) {
        if (!alnum(c) && c != '-') {
            return false;
        }
    }
    return alnum(name.front()) && alnum(name.back());
}

bool labels_match(const Labels& labels, const Labels& selector) {
    for (const auto& [key, value] : selector) {
        auto it = labels.find(key);
        if (it == labels.end() || it->second != value) {
            return false;
        }
    }
    return true;
}

void name_this_thread(std::string_view name) {
    std::string shown{name.substr(0, 15)};  // the kernel's limit, with the terminating NUL
    pthread_setname_np(pthread_self(), shown.c_str());
}

}  // namespace aviary::core
