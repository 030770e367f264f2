#pragma once
/// sidecar_driver: driver `sidecar` (private to drivers): a node run by `aviary supervise`,
/// reached on its control API (docs/producers.md, "Sidecars in serve's pool").
#include <memory>
#include <string_view>

#include "drivers/drivers.hpp"

namespace aviary::drivers {

std::unique_ptr<Driver> make_sidecar_driver(SidecarSettings settings);

/// The refusal of a sidecar's command by another driver: `node X uses driver sim, which has no
/// backup: it is a command of a supervised node's sidecar (...)`.
core::Error not_a_sidecar(std::string_view driver, const OpRequest& request);

}  // namespace aviary::drivers
