#pragma once
// Private to api: domain objects as JSON, one shape for every surface (JSON-RPC, REST).
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "fleet/fleet.hpp"
#include "jobs/jobs.hpp"

namespace aviary::api {

/// A node as Status and GET /api/v1/nodes show it (docs/api.md, NODE).
boost::json::object node_json(const core::Node& node);
/// A machine's properties: {"hostname","address","ssh_user","ssh_port","ipmi_address",
/// "ipmi_user","pdu_host","pdu_outlet","groups"}. Never a secret: none is stored.
boost::json::object machine_properties_json(const core::MachineSpec& machine);
/// GET /api/v1/machines: a node's fields, "name", the properties beside them and the worker
/// ids that map to it.
boost::json::object machine_json(const core::Node& node,
                                 const std::vector<core::WorkerId>& workers);
/// One node's lease (tweety's per-node view).
boost::json::object lease_json(const core::Lease& lease);
/// A lease of one or more nodes sharing an id (REST's LEASE).
boost::json::object lease_set_json(const std::vector<core::Lease>& leases);
/// Groups leases by id, keeping first-seen order.
std::vector<std::vector<core::Lease>> group_by_id(const std::vector<core::Lease>& leases);
boost::json::object waiter_json(const fleet::Waiter& waiter);
boost::json::object event_json(const core::Event& event);
boost::json::object labels_json(const core::Labels& labels);
/// "chain=lotus,zone=a"
std::string selector_text(const core::Labels& selector);
/// A job (docs/api.md, JOB): one shape for tweety, REST and (later) the roller's status. Adds
/// `status`, the roller's name for the state (docs/api.md).
boost::json::object job_json(const core::Job& job);
/// The roller's status name: PENDING, RUNNING, COMPLETE, FAILED or CANCELLED.
std::string_view roller_status(core::JobState state);
/// A line of a job's output: {seq, at, stream, text, attempt, step}.
boost::json::object output_line_json(const core::OutputLine& line);
/// An action of the catalog (GET /api/v1/actions).
boost::json::object action_json(const jobs::ActionSpec& action);
/// REST's error body: {"error": {"code": "busy", "message": "…"}}.
boost::json::object error_json(const core::Error& error);

}  // namespace aviary::api
