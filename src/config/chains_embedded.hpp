#pragma once
// Private to src/config (and its tests): examples/chains.yaml, the built-in chain presets of
// `aviary supervise`, compiled in by embed_text.cmake at build time, and its reader.
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "supervisor/supervisor.hpp"

namespace aviary::config {

namespace generated {

extern const std::string_view kChainsYaml;

}  // namespace generated

/// Reads a chains file (a `chains:` mapping of name -> preset, as examples/chains.yaml), the
/// presets in file order. `source` names it in errors (`FILE:LINE:COL: key.path: message`).
core::Result<std::vector<supervisor::Preset>> read_chains(std::string_view yaml,
                                                          std::string_view source);

}  // namespace aviary::config
