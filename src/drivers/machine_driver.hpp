#pragma once
/// machine_driver: the `ssh` and `none` drivers of machines (private to drivers and its tests).
/// A machine is not deployed: it is a host that exists, reached with the OpenSSH client (`ssh`)
/// or only through its out-of-band controls (`none`: IPMI, a PDU). Its work is done by tasks
/// whose steps reach it (docs/machines.md), so every driver op but status is refused, naming
/// what to do instead.
///
/// status of an `ssh` machine: a TCP connection to its address and ssh port, and the server's
/// identification line ("SSH-2.0-OpenSSH_9.2p1 ...", RFC 4253 §4.2) within the probe timeout:
/// running with that line as its version. A `none` machine's state cannot be observed
/// (kUnavailable).
#include <memory>

#include "drivers/drivers.hpp"

namespace aviary::drivers {

/// How long the ssh status probe may take, in all (connect and the identification line).
inline constexpr core::Millis kSshProbeTimeout{std::chrono::seconds{3}};

/// `name` is "ssh" or "none".
std::unique_ptr<Driver> make_machine_driver(std::string_view name,
                                            core::Millis probe_timeout = kSshProbeTimeout);

}  // namespace aviary::drivers
