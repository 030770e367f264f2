#pragma once
/// sim_driver: the `sim` driver (private to drivers). Each node is an `aviary sim-node` child
/// of this process, kept in <dir>/sim/<node>/ (data/, state.json, port); see docs/drivers.md.
#include <memory>

#include "drivers/drivers.hpp"

namespace aviary::drivers {

/// `program` is what runs as `PROGRAM sim-node ...` (already resolved: not empty).
std::unique_ptr<Driver> make_sim_driver(Settings settings, std::string program);

}  // namespace aviary::drivers
