#pragma once
// Private to src/supervisor: the sidecar's own state, one small JSON file under its state dir,
// so maintenance survives a restart of the sidecar (docs/supervise.md, "State").
#include <cstdint>
#include <string>

#include "core/core.hpp"

namespace aviary::supervisor {

struct StateFile {
    bool maintenance = false;
    std::uint64_t starts = 0;
    std::uint64_t restarts = 0;
    /// Why the data dir must be restored before the next start; empty: it need not be.
    std::string restore_pending;
};

std::string state_file_path(const std::string& state_dir);
/// Makes the state dir when missing; a missing file is the default state. Errors name the file
/// and what is wrong with it (kInvalidArgument for bad contents, kStorage for I/O).
core::Result<StateFile> read_state_file(const std::string& state_dir);
/// Replaces the file atomically (a temporary file, rename). `durable` also syncs it before the
/// rename (the maintenance flag must survive a crash; the start counts may lag one).
core::Result<void> write_state_file(const std::string& state_dir,
                                    const StateFile& state,
                                    bool durable = true);

}  // namespace aviary::supervisor
