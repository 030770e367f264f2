#include "store/sql/nodes.hpp"

#include <fmt/format.h>

#include <map>
#include <set>

#include "store/sql/encoding.hpp"
#include "store/sql/events.hpp"
#include "store/sql/leases.hpp"
#include "store/sql/waiters.hpp"

namespace aviary::store::sql {
namespace {

constexpr std::string_view kConfigSource = "config";

// A lapsed lease is left out by the join, so the node reads as free before the sweep runs.
constexpr std::string_view kSelectNodes = R"sql(
SELECT n.name, n.driver, n.image_tag, n.labels, n.note, n.maintenance_reason, n.source,
       l.id, l.node, l.owner, l.reason, l.acquired_at, l.expires_at, l.exclusive, n.deployed_tag,
       n.machine, n.control_url, n.gate_until
FROM nodes n LEFT JOIN leases l ON l.node = n.name AND l.expires_at > ?1)sql";

core::Result<core::Node> node_from_row(const Statement& row) {
    auto labels = labels_from_json(row.text(3));
    if (!labels) {
        return labels.error();
    }
    auto machine = machine_from_json(row.text(0), row.text(15));
    if (!machine) {
        return machine.error();
    }
    core::Node node;
    node.spec = core::NodeSpec{.name = row.text(0),
                               .driver = row.text(1),
                               .image_tag = row.text(2),
                               .labels = std::move(*labels),
                               .note = row.text(4),
                               .machine = std::move(*machine),
                               .control_url = row.text(16)};
    node.maintenance_reason = row.text(5);
    node.source = row.text(6);
    node.deployed_tag = row.text(14);
    if (!row.is_null(17)) {
        node.gate_until = row.time(17);
    }
    if (!row.is_null(7)) {
        node.lease = lease_from_row(row, 7);
        node.state = core::NodeState::kLeased;
    }
    // Maintenance wins: a leased node taken out of service is not usable by its holder either.
    if (!node.maintenance_reason.empty()) {
        node.state = core::NodeState::kMaintenance;
    }
    return node;
}

core::Result<std::vector<core::Node>> collect_nodes(Statement& select) {
    std::vector<core::Node> nodes;
    while (true) {
        auto row = select.step();
        if (!row) {
            return row.error();
        }
        if (!*row) {
            return nodes;
        }
        auto node = node_from_row(select);
        if (!node) {
            return node.error();
        }
        nodes.push_back(std::move(*node));
    }
}

core::Result<void> check_specs(const std::vector<core::NodeSpec>& specs) {
    std::set<std::string_view> seen;
    for (const auto& spec : specs) {
        if (!core::is_dns_label(spec.name)) {
            return core::Error{core::ErrorCode::kInvalidArgument,
                               fmt::format("node name \"{}\" is not a DNS label", spec.name)};
        }
        if (!seen.insert(spec.name).second) {
            return core::Error{core::ErrorCode::kInvalidArgument,
                               fmt::format("node {} is declared twice", spec.name)};
        }
    }
    return {};
}

bool same_spec(const core::NodeSpec& a, const core::NodeSpec& b) {
    return a.driver == b.driver && a.image_tag == b.image_tag && a.labels == b.labels &&
           a.note == b.note && a.machine == b.machine && a.control_url == b.control_url;
}

core::Error declared_in_config(std::string_view name) {
    return core::Error{core::ErrorCode::kAlreadyExists,
                       fmt::format("node {} is declared in the config; edit the config", name)};
}

core::Result<void> write_spec(Connection& db, std::string_view sql, const core::NodeSpec& spec) {
    auto write = db.prepare(sql);
    if (!write) {
        return write.error();
    }
    return write
        ->bind_all(spec.name, spec.driver, spec.image_tag, labels_to_json(spec.labels), spec.note,
                   machine_to_json(spec.machine), spec.control_url)
        .run();
}

core::Result<void> record_node(Connection& db,
                               core::TimePoint at,
                               std::string_view actor,
                               std::string_view kind,
                               std::string_view node,
                               std::string before,
                               std::string after) {
    return append_event(db, core::Event{.at = at,
                                        .actor = std::string{actor},
                                        .kind = std::string{kind},
                                        .node = std::string{node},
                                        .before = std::move(before),
                                        .after = std::move(after)});
}

core::Result<void> set_maintenance_reason(Connection& db,
                                          std::string_view name,
                                          std::string_view reason) {
    auto update = db.prepare("UPDATE nodes SET maintenance_reason = ?2 WHERE name = ?1");
    if (!update) {
        return update.error();
    }
    return update->bind_all(name, reason).run();
}

/// Ends `lease`'s row on its node only (the other nodes of a multi-node lease stay held).
core::Result<void> end_node_lease(Connection& db,
                                  const core::Lease& lease,
                                  std::string_view actor,
                                  core::TimePoint now) {
    auto remove = db.prepare("DELETE FROM leases WHERE node = ?1 AND id = ?2");
    if (!remove) {
        return remove.error();
    }
    if (auto done = remove->bind_all(lease.node, lease.id).run(); !done) {
        return done;
    }
    return record_node(db, now, actor, "lease.freed", lease.node, lease_to_json(lease),
                       std::string{kNoState});
}

core::Result<NodeChange> changed_node(Connection& db,
                                      std::string_view name,
                                      core::TimePoint now,
                                      bool created,
                                      std::optional<core::Lease> ended) {
    auto node = select_node(db, name, now);
    if (!node) {
        return node.error();
    }
    return NodeChange{.node = std::move(*node), .created = created, .ended = std::move(ended)};
}

/// One reconcile: the writes and events of each kind of change.
class Reconciler {
public:
    Reconciler(Connection& db, std::string_view actor, core::TimePoint now)
        : db_(db), actor_(actor), now_(now) {}

    core::Result<ReconcileReport> run(const std::vector<core::NodeSpec>& specs);

private:
    core::Result<void> reconcile_one(const core::NodeSpec& spec, const core::Node* stored);
    core::Result<void> add(const core::NodeSpec& spec);
    core::Result<void> update(const core::NodeSpec& before, const core::NodeSpec& after);
    core::Result<void> remove_unless_leased(const core::NodeSpec& spec);
    core::Result<void> write_spec(std::string_view sql, const core::NodeSpec& spec);
    core::Result<void> record(std::string_view kind,
                              std::string_view node,
                              std::string before,
                              std::string after);

    Connection& db_;
    std::string_view actor_;
    core::TimePoint now_;
    ReconcileReport report_;
};

core::Result<ReconcileReport> Reconciler::run(const std::vector<core::NodeSpec>& specs) {
    auto stored = select_nodes(db_, now_);
    if (!stored) {
        return stored.error();
    }
    std::map<std::string, core::Node, std::less<>> existing;
    for (auto& node : *stored) {
        std::string name = node.spec.name;
        existing.emplace(std::move(name), std::move(node));
    }
    std::map<std::string_view, const core::NodeSpec*> wanted;
    for (const auto& spec : specs) {
        wanted.emplace(spec.name, &spec);
    }
    for (const auto& [name, spec] : wanted) {
        auto it = existing.find(name);
        auto done = reconcile_one(*spec, it == existing.end() ? nullptr : &it->second);
        if (!done) {
            return done.error();
        }
    }
    for (const auto& [name, node] : existing) {
        if (node.source == kConfigSource && !wanted.contains(name)) {
            if (auto done = remove_unless_leased(node.spec); !done) {
                return done.error();
            }
        }
    }
    return std::move(report_);
}

core::Result<void> Reconciler::reconcile_one(const core::NodeSpec& spec, const core::Node* stored) {
    if (stored == nullptr) {
        return add(spec);
    }
    // A node added through the API keeps the API's definition even if the config names it.
    if (stored->source != kConfigSource || same_spec(stored->spec, spec)) {
        return {};
    }
    return update(stored->spec, spec);
}

core::Result<void> Reconciler::add(const core::NodeSpec& spec) {
    auto written = write_spec(
        "INSERT INTO nodes (name, driver, image_tag, labels, note, machine, control_url, source) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'config')",
        spec);
    if (!written) {
        return written;
    }
    report_.added.push_back(spec.name);
    return record("node.added", spec.name, std::string{kNoState}, spec_to_json(spec));
}

core::Result<void> Reconciler::update(const core::NodeSpec& before, const core::NodeSpec& after) {
    auto written = write_spec(
        "UPDATE nodes SET driver = ?2, image_tag = ?3, labels = ?4, note = ?5, machine = ?6, "
        "control_url = ?7 WHERE name = ?1",
        after);
    if (!written) {
        return written;
    }
    report_.updated.push_back(after.name);
    return record("node.updated", after.name, spec_to_json(before), spec_to_json(after));
}

core::Result<void> Reconciler::remove_unless_leased(const core::NodeSpec& spec) {
    // A lapsed lease ends first (with its own event): it must not keep the node, and its row
    // would block the delete through the foreign key.
    if (auto lapsed = end_lapsed_lease(db_, spec.name, actor_, now_); !lapsed) {
        return lapsed.error();
    }
    auto remove = db_.prepare(
        "DELETE FROM nodes WHERE name = ?1 "
        "AND NOT EXISTS (SELECT 1 FROM leases WHERE leases.node = nodes.name)");
    if (!remove) {
        return remove.error();
    }
    if (auto done = remove->bind_all(spec.name).run(); !done) {
        return done;
    }
    if (db_.changes() == 0) {
        report_.kept_leased.push_back(spec.name);
        return record("node.kept", spec.name, spec_to_json(spec), spec_to_json(spec));
    }
    report_.removed.push_back(spec.name);
    return record("node.removed", spec.name, spec_to_json(spec), std::string{kNoState});
}

core::Result<void> Reconciler::write_spec(std::string_view sql, const core::NodeSpec& spec) {
    return sql::write_spec(db_, sql, spec);
}

core::Result<void> Reconciler::record(std::string_view kind,
                                      std::string_view node,
                                      std::string before,
                                      std::string after) {
    return record_node(db_, now_, actor_, kind, node, std::move(before), std::move(after));
}

}  // namespace

core::Result<ReconcileReport> reconcile_nodes(Connection& db,
                                              const std::vector<core::NodeSpec>& specs,
                                              std::string_view actor,
                                              core::TimePoint now,
                                              Served& served) {
    if (auto valid = check_specs(specs); !valid) {
        return valid.error();
    }
    auto report = Reconciler{db, actor, now}.run(specs);
    if (!report) {
        return report;
    }
    // Added or relabelled nodes may be what someone waits for.
    if (auto done = serve_waiters(db, now, served); !done) {
        return done.error();
    }
    return report;
}

core::Result<NodeChange> put_node(Connection& db,
                                  const core::NodeSpec& spec,
                                  std::string_view actor,
                                  core::TimePoint now,
                                  Served& served) {
    if (!core::is_dns_label(spec.name)) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("node name \"{}\" is not a DNS label", spec.name)};
    }
    auto stored = select_node(db, spec.name, now);
    if (!stored && stored.error().code != core::ErrorCode::kNotFound) {
        return stored.error();
    }
    if (stored && stored->source == kConfigSource) {
        return declared_in_config(spec.name);
    }
    // A write through the other kind's route would drop (or invent) the machine's properties.
    if (stored && stored->spec.machine.has_value() != spec.machine.has_value()) {
        return core::Error{core::ErrorCode::kAlreadyExists,
                           fmt::format("{} is a {}, not a {}", spec.name,
                                       stored->spec.machine ? "machine" : "node",
                                       spec.machine ? "machine" : "node")};
    }
    bool created = !stored;
    if (created || !same_spec(stored->spec, spec)) {
        auto written = write_spec(
            db,
            created ? "INSERT INTO nodes (name, driver, image_tag, labels, note, machine, "
                      "control_url, source) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'api')"
                    : "UPDATE nodes SET driver = ?2, image_tag = ?3, labels = ?4, note = ?5, "
                      "machine = ?6, control_url = ?7 WHERE name = ?1",
            spec);
        if (!written) {
            return written.error();
        }
        auto recorded = record_node(
            db, now, actor, created ? "node.added" : "node.updated", spec.name,
            created ? std::string{kNoState} : spec_to_json(stored->spec), spec_to_json(spec));
        if (!recorded) {
            return recorded.error();
        }
        if (auto done = serve_waiters(db, now, served); !done) {
            return done.error();
        }
    }
    return changed_node(db, spec.name, now, created, std::nullopt);
}

core::Result<void> remove_node(Connection& db,
                               std::string_view name,
                               std::string_view actor,
                               core::TimePoint now,
                               bool machine) {
    auto stored = select_node(db, name, now);
    if (!stored) {
        return stored.error();
    }
    if (stored->spec.machine.has_value() != machine) {
        return core::Error{
            core::ErrorCode::kNotFound,
            fmt::format("{} is a {}, not a {}", name, stored->spec.machine ? "machine" : "node",
                        machine ? "machine" : "node")};
    }
    if (stored->source == kConfigSource) {
        return declared_in_config(name);
    }
    if (stored->lease) {
        return core::Error{
            core::ErrorCode::kBusy,
            fmt::format("node {} is leased by {} until {}; release it first", name,
                        stored->lease->owner, core::format_time(stored->lease->expires_at))};
    }
    // A lapsed lease row would block the delete through the foreign key.
    if (auto lapsed = end_lapsed_lease(db, name, actor, now); !lapsed) {
        return lapsed.error();
    }
    auto remove = db.prepare("DELETE FROM nodes WHERE name = ?1");
    if (!remove) {
        return remove.error();
    }
    if (auto done = remove->bind_all(name).run(); !done) {
        return done;
    }
    return record_node(db, now, actor, "node.removed", name, spec_to_json(stored->spec),
                       std::string{kNoState});
}

core::Result<NodeChange> start_maintenance(Connection& db,
                                           std::string_view name,
                                           std::string_view reason,
                                           std::string_view actor,
                                           core::TimePoint now) {
    if (reason.empty()) {
        return core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("a reason is required to take node {} out of service", name)};
    }
    auto stored = select_node(db, name, now);
    if (!stored) {
        return stored.error();
    }
    std::optional<core::Lease> ended;
    if (stored->lease) {
        // Out of service means out of the holder's hands too; the event says who ended it.
        auto rows = end_node_lease(db, *stored->lease, actor, now);
        if (!rows) {
            return rows.error();
        }
        ended = stored->lease;
    }
    if (auto lapsed = end_lapsed_lease(db, name, actor, now); !lapsed) {
        return lapsed.error();
    }
    if (auto set = set_maintenance_reason(db, name, reason); !set) {
        return set.error();
    }
    auto recorded =
        record_node(db, now, actor, "node.maintenance_started", name,
                    maintenance_to_json(stored->maintenance_reason), maintenance_to_json(reason));
    if (!recorded) {
        return recorded.error();
    }
    return changed_node(db, name, now, false, std::move(ended));
}

core::Result<bool> set_gate(Connection& db,
                            std::string_view name,
                            core::TimePoint until,
                            core::TimePoint seen,
                            core::TimePoint now,
                            Served& served) {
    auto update = db.prepare(
        "UPDATE nodes SET gate_until = ?2 WHERE name = ?1 AND gate_until = ?3 AND NOT EXISTS "
        "(SELECT 1 FROM leases WHERE node = ?1 AND expires_at > ?4)");
    if (!update) {
        return update.error();
    }
    if (auto done = update->bind_all(name, until, seen, now).run(); !done) {
        return done.error();
    }
    if (db.changes() != 1) {
        auto known = select_node(db, name, now);
        if (!known) {
            return known.error();
        }
        return false;
    }
    if (auto done = serve_waiters(db, now, served); !done) {
        return done.error();
    }
    return true;
}

core::Result<void> configure_gates(Connection& db,
                                   const std::vector<std::string>& gated,
                                   core::TimePoint now,
                                   Served& served) {
    const auto names = strings_to_json_array(gated);
    auto ungate = db.prepare(
        fmt::format("UPDATE nodes SET gate_until = NULL WHERE gate_until IS NOT NULL AND "
                    "name NOT IN ({})",
                    json_array_values(db.dialect(), 1)));
    if (!ungate) {
        return ungate.error();
    }
    if (auto done = ungate->bind_all(names).run(); !done) {
        return done;
    }
    auto gate = db.prepare(
        fmt::format("UPDATE nodes SET gate_until = 0 WHERE gate_until IS NULL AND name IN ({})",
                    json_array_values(db.dialect(), 1)));
    if (!gate) {
        return gate.error();
    }
    if (auto done = gate->bind_all(names).run(); !done) {
        return done;
    }
    return serve_waiters(db, now, served);
}

core::Result<NodeChange> end_maintenance(Connection& db,
                                         std::string_view name,
                                         std::string_view actor,
                                         core::TimePoint now,
                                         Served& served) {
    auto stored = select_node(db, name, now);
    if (!stored) {
        return stored.error();
    }
    if (stored->maintenance_reason.empty()) {
        return NodeChange{.node = std::move(*stored)};
    }
    if (auto set = set_maintenance_reason(db, name, ""); !set) {
        return set.error();
    }
    auto recorded =
        record_node(db, now, actor, "node.maintenance_ended", name,
                    maintenance_to_json(stored->maintenance_reason), std::string{kNoState});
    if (!recorded) {
        return recorded.error();
    }
    if (auto done = serve_waiters(db, now, served); !done) {
        return done.error();
    }
    return changed_node(db, name, now, false, std::nullopt);
}

core::Result<std::vector<core::Node>> select_nodes(Connection& db, core::TimePoint now) {
    auto select = db.prepare(fmt::format("{} ORDER BY n.name", kSelectNodes));
    if (!select) {
        return select.error();
    }
    select->bind_all(now);
    return collect_nodes(*select);
}

core::Result<core::Node> select_node(Connection& db, std::string_view name, core::TimePoint now) {
    auto select = db.prepare(fmt::format("{} WHERE n.name = ?2", kSelectNodes));
    if (!select) {
        return select.error();
    }
    select->bind_all(now, name);
    auto nodes = collect_nodes(*select);
    if (!nodes) {
        return nodes.error();
    }
    if (nodes->empty()) {
        return core::Error{core::ErrorCode::kNotFound, fmt::format("unknown node {}", name)};
    }
    return std::move(nodes->front());
}

}  // namespace aviary::store::sql
