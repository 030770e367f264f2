#pragma once
// Files compiled into the binary at build time by embed_script.cmake (one source of truth).
#include <string_view>

namespace aviary::cli::generated {

extern const std::string_view kCompletionBash;  ///< scripts/aviary-completion.bash

}  // namespace aviary::cli::generated
