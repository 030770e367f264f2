#include "store/sqlite/nodes.hpp"

#include <fmt/format.h>

#include <map>
#include <set>

#include "store/sqlite/encoding.hpp"
#include "store/sqlite/events.hpp"
#include "store/sqlite/leases.hpp"

namespace aviary::store::sqlite {
namespace {

constexpr std::string_view kConfigSource = "config";

// A lapsed lease is left out by the join, so the node reads as free before the sweep runs.
constexpr std::string_view kSelectNodes = R"sql(
SELECT n.name, n.driver, n.image_tag, n.labels, n.note, n.maintenance_reason, n.source,
       l.id, l.node, l.owner, l.reason, l.acquired_at, l.expires_at
FROM nodes n LEFT JOIN leases l ON l.node = n.name AND l.expires_at > ?1)sql";

core::Result<core::Node> node_from_row(const Statement& row) {
    auto labels = labels_from_json(row.text(3));
    if (!labels) {
        return labels.error();
    }
    core::Node node;
    node.spec = core::NodeSpec{.name = row.text(0),
                               .driver = row.text(1),
                               .image_tag = row.text(2),
                               .labels = std::move(*labels),
                               .note = row.text(4)};
    node.maintenance_reason = row.text(5);
    node.source = row.text(6);
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
           a.note == b.note;
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
        "INSERT INTO nodes (name, driver, image_tag, labels, note, source) "
        "VALUES (?1, ?2, ?3, ?4, ?5, 'config')",
        spec);
    if (!written) {
        return written;
    }
    report_.added.push_back(spec.name);
    return record("node.added", spec.name, std::string{kNoState}, spec_to_json(spec));
}

core::Result<void> Reconciler::update(const core::NodeSpec& before, const core::NodeSpec& after) {
    auto written = write_spec(
        "UPDATE nodes SET driver = ?2, image_tag = ?3, labels = ?4, note = ?5 WHERE name = ?1",
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
    auto write = db_.prepare(sql);
    if (!write) {
        return write.error();
    }
    return write
        ->bind_all(spec.name, spec.driver, spec.image_tag, labels_to_json(spec.labels), spec.note)
        .run();
}

core::Result<void> Reconciler::record(std::string_view kind,
                                      std::string_view node,
                                      std::string before,
                                      std::string after) {
    return append_event(db_, core::Event{.at = now_,
                                         .actor = std::string{actor_},
                                         .kind = std::string{kind},
                                         .node = std::string{node},
                                         .before = std::move(before),
                                         .after = std::move(after)});
}

}  // namespace

core::Result<ReconcileReport> reconcile_nodes(Connection& db,
                                              const std::vector<core::NodeSpec>& specs,
                                              std::string_view actor,
                                              core::TimePoint now) {
    if (auto valid = check_specs(specs); !valid) {
        return valid.error();
    }
    return Reconciler{db, actor, now}.run(specs);
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

}  // namespace aviary::store::sqlite
