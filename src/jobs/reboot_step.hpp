#pragma once
// The steps that watch a machine's TCP port (reboot_step.cpp): reboot (ssh, then IPMI, then the
// PDU, each attempt verified by a port that stops answering and answers again) and connect (a
// TCP connection, tried a few times). Private to jobs: runner.cpp runs them.
#include <boost/asio/awaitable.hpp>
#include <string>

#include "drivers/drivers.hpp"
#include "jobs/engine_impl.hpp"
#include "jobs/jobs.hpp"

namespace aviary::jobs {

/// Runs `step` (a reboot) for `run`'s machine; its result JSON names the method that worked
/// and what each attempt came to. A step error lists every method's failure when none worked.
boost::asio::awaitable<core::Result<std::string>> run_reboot_step(Engine::Impl& engine,
                                                                  Run& run,
                                                                  const StepSpec& step,
                                                                  drivers::Context& context);

/// Runs `step` (a connect): its result JSON says which attempt connected and how long it took;
/// a step error gives the last attempt's reason when none did.
boost::asio::awaitable<core::Result<std::string>> run_connect_step(Run& run,
                                                                   const StepSpec& step,
                                                                   drivers::Context& context);

}  // namespace aviary::jobs
