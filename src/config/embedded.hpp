#pragma once
// Private to src/config: examples/aviary.yaml, compiled in by embed_text.cmake at build time.
#include <string_view>

namespace aviary::config::generated {

extern const std::string_view kDefaultYaml;

}  // namespace aviary::config::generated
