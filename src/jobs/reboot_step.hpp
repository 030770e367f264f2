#pragma once
// The reboot step (reboot_step.cpp): ssh, then IPMI, then the PDU, each attempt verified by a
// TCP port that stops answering and answers again. Private to jobs: runner.cpp runs it.
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

}  // namespace aviary::jobs
