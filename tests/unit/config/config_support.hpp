#pragma once
// Shared by the config tests.
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "config/config.hpp"

namespace aviary::config::test {

/// The message of a config that must not load (kInvalidArgument), or "(loaded without error)".
inline std::string error_of(std::string_view yaml) {
    auto loaded = load_string(yaml, "aviary.yaml");
    if (loaded) {
        return "(loaded without error)";
    }
    EXPECT_EQ(loaded.error().code, core::ErrorCode::kInvalidArgument);
    return loaded.error().message;
}

}  // namespace aviary::config::test
