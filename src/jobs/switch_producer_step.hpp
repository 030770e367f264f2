#pragma once
// The switch_producer step (switch_producer_step.cpp): the producer hand-off between two nodes
// run by sidecars in bp mode (docs/producers.md, "switch-producer"). Private to jobs: runner.cpp
// runs it.
#include <boost/asio/awaitable.hpp>
#include <string>

#include "drivers/drivers.hpp"
#include "jobs/engine_impl.hpp"
#include "jobs/jobs.hpp"

namespace aviary::jobs {

/// Hands production from the node `step.switch_producer.from` names to `run`'s node: checks,
/// then with execute=true demote, confirm, promote, verify. Every step is a line of the job's
/// output. A failure after the demotion leaves both nodes passive and the producer lease parked
/// with the job (never a rollback); the step error says what state it left.
boost::asio::awaitable<core::Result<std::string>> run_switch_producer_step(
    Engine::Impl& engine, Run& run, const StepSpec& step, drivers::Context& context);

}  // namespace aviary::jobs
