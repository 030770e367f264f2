#pragma once
/// sim_files: the small files the sim driver and `aviary sim-node` share (private to drivers).
///
/// Every write is atomic (a temporary file beside the target, then rename), so a reader sees
/// the old contents or the new, never half a file: the driver polls the port file while the
/// node writes it, and a node killed mid-block leaves its previous height.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "core/core.hpp"

namespace aviary::drivers::sim {

/// Writes `text` to `path` through `path.tmp.<pid>` and a rename. kUnavailable naming the file.
core::Result<void> write_file_atomically(const std::filesystem::path& path, std::string_view text);

/// The whole file, or nullopt when it does not exist. kUnavailable when it cannot be read.
core::Result<std::optional<std::string>> read_file(const std::filesystem::path& path);

/// A whole non-negative number with optional surrounding whitespace ("1234\n").
std::optional<std::int64_t> parse_count(std::string_view text);

/// DATA_DIR/height, or nullopt when the data dir holds no height yet. kUnavailable for an
/// unreadable or malformed file.
core::Result<std::optional<std::int64_t>> read_height(const std::filesystem::path& data_dir);
/// Persists `height` to DATA_DIR/height, atomically.
core::Result<void> write_height(const std::filesystem::path& data_dir, std::int64_t height);

/// The height of a snapshot written by write_sim_snapshot. kUnavailable naming the file when it
/// is missing or not a sim snapshot.
core::Result<std::int64_t> read_snapshot(const std::filesystem::path& path);

/// The port in a port file ("43210\n"), or nullopt while there is no such file (or it does not
/// hold a port).
std::optional<std::uint16_t> read_port(const std::filesystem::path& path);

}  // namespace aviary::drivers::sim
