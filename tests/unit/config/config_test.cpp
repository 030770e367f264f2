#include "config/config.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "config_support.hpp"

namespace aviary::config {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

const std::string kExample = std::string{AVIARY_SOURCE_DIR} + "/examples/aviary.yaml";

// Each helper names every field with a structured binding, which stops compiling when a field
// is added to a settings struct: the new field must then be compared here, written in
// examples/aviary.yaml and read by the loader, so the example stays the whole truth.
void expect_same(const net::ServerSettings& want, const net::ServerSettings& got) {
    const auto& [listen, io_threads, blocking_threads, max_header_bytes, max_body_bytes,
                 read_timeout, idle_timeout, write_timeout, max_connections, shutdown_grace, tls,
                 websocket] = want;
    const auto& [cert_file, key_file, client_ca_file, require_client_cert] = tls;
    const auto& [max_message_bytes, ws_idle_timeout, max_queued_messages, max_queued_bytes,
                 slow_reader, close_timeout, deflate, deflate_min_bytes] = websocket;
    EXPECT_EQ(got.websocket.max_message_bytes, max_message_bytes);
    EXPECT_EQ(got.websocket.idle_timeout, ws_idle_timeout);
    EXPECT_EQ(got.websocket.max_queued_messages, max_queued_messages);
    EXPECT_EQ(got.websocket.max_queued_bytes, max_queued_bytes);
    EXPECT_EQ(got.websocket.slow_reader, slow_reader);
    EXPECT_EQ(got.websocket.close_timeout, close_timeout);
    EXPECT_EQ(got.websocket.deflate, deflate);
    EXPECT_EQ(got.websocket.deflate_min_bytes, deflate_min_bytes);
    EXPECT_EQ(got.tls.cert_file, cert_file);
    EXPECT_EQ(got.tls.key_file, key_file);
    EXPECT_EQ(got.tls.client_ca_file, client_ca_file);
    EXPECT_EQ(got.tls.require_client_cert, require_client_cert);
    EXPECT_EQ(got.listen, listen);
    EXPECT_EQ(got.io_threads, io_threads);
    EXPECT_EQ(got.blocking_threads, blocking_threads);
    EXPECT_EQ(got.max_header_bytes, max_header_bytes);
    EXPECT_EQ(got.max_body_bytes, max_body_bytes);
    EXPECT_EQ(got.read_timeout, read_timeout);
    EXPECT_EQ(got.idle_timeout, idle_timeout);
    EXPECT_EQ(got.write_timeout, write_timeout);
    EXPECT_EQ(got.max_connections, max_connections);
    EXPECT_EQ(got.shutdown_grace, shutdown_grace);
}

void expect_same(const store::Settings& want, const store::Settings& got) {
    const auto& [driver, path, url, password, connect_timeout, synchronous, read_connections,
                 busy_timeout, event_retention, retention_sweep, heartbeat, leader_ttl] = want;
    EXPECT_EQ(got.heartbeat, heartbeat);
    EXPECT_EQ(got.leader_ttl, leader_ttl);
    EXPECT_EQ(got.driver, driver);
    EXPECT_EQ(got.path, path);
    EXPECT_EQ(got.url, url);
    EXPECT_EQ(got.password, password);
    EXPECT_EQ(got.connect_timeout, connect_timeout);
    EXPECT_EQ(got.synchronous, synchronous);
    EXPECT_EQ(got.read_connections, read_connections);
    EXPECT_EQ(got.busy_timeout, busy_timeout);
    EXPECT_EQ(got.event_retention, event_retention);
    EXPECT_EQ(got.retention_sweep, retention_sweep);
}

void expect_same(const core::NodeSpec& want, const core::NodeSpec& got) {
    const auto& [name, driver, image_tag, labels, note, machine, control_url] = want;
    EXPECT_EQ(got.control_url, control_url);
    EXPECT_EQ(got.name, name);
    EXPECT_EQ(got.driver, driver);
    EXPECT_EQ(got.image_tag, image_tag);
    EXPECT_EQ(got.labels, labels);
    EXPECT_EQ(got.note, note);
    EXPECT_EQ(got.machine, machine);
}

void expect_same(const fleet::Settings& want, const fleet::Settings& got) {
    const auto& [lease_ttl, max_lease_ttl, expiry_sweep, max_wait, wait_heartbeat, nodes,
                 worker_ids, instance] = want;
    EXPECT_EQ(got.worker_ids, worker_ids);
    EXPECT_EQ(got.instance, instance);
    EXPECT_EQ(got.max_wait, max_wait);
    EXPECT_EQ(got.wait_heartbeat, wait_heartbeat);
    EXPECT_EQ(got.lease_ttl, lease_ttl);
    EXPECT_EQ(got.max_lease_ttl, max_lease_ttl);
    EXPECT_EQ(got.expiry_sweep, expiry_sweep);
    ASSERT_EQ(got.nodes.size(), nodes.size());
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        expect_same(nodes[i], got.nodes[i]);
    }
}

void expect_same(const Token& want, const Token& got) {
    const auto& [identity, role, file, env, groups, secret] = want;
    EXPECT_EQ(got.identity, identity);
    EXPECT_EQ(got.role, role);
    EXPECT_EQ(got.file, file);
    EXPECT_EQ(got.env, env);
    EXPECT_EQ(got.groups, groups);
    EXPECT_EQ(got.secret, secret);
}

void expect_same(const jobs::ParamSpec& want, const jobs::ParamSpec& got) {
    const auto& [name, type, pattern, required, default_value, description, max_length,
                 allow_leading_dash, from] = want;
    EXPECT_EQ(got.name, name);
    EXPECT_EQ(jobs::to_string(got.type), jobs::to_string(type)) << name;
    EXPECT_EQ(got.pattern, pattern) << name;
    EXPECT_EQ(got.required, required) << name;
    EXPECT_EQ(got.default_value, default_value) << name;
    EXPECT_EQ(got.description, description) << name;
    EXPECT_EQ(got.max_length, max_length) << name;
    EXPECT_EQ(got.allow_leading_dash, allow_leading_dash) << name;
    EXPECT_EQ(got.from, from) << name;
}

void expect_same(const jobs::HttpStepSpec& want, const jobs::HttpStepSpec& got) {
    const auto& [method, url, headers, body, expect_status, checks, request_timeout, retries,
                 retry_interval] = want;
    EXPECT_EQ(got.method, method);
    EXPECT_EQ(got.url, url);
    EXPECT_EQ(got.headers, headers);
    EXPECT_EQ(got.body, body);
    EXPECT_EQ(got.expect_status, expect_status);
    ASSERT_EQ(got.checks.size(), checks.size());
    for (std::size_t i = 0; i < checks.size(); ++i) {
        const auto& [kind, path, value] = checks[i];
        EXPECT_EQ(jobs::to_string(got.checks[i].kind), jobs::to_string(kind));
        EXPECT_EQ(got.checks[i].path, path);
        EXPECT_EQ(got.checks[i].value, value);
    }
    EXPECT_EQ(got.request_timeout, request_timeout);
    EXPECT_EQ(got.retries, retries);
    EXPECT_EQ(got.retry_interval, retry_interval);
}

void expect_same(const jobs::StepSpec& want, const jobs::StepSpec& got) {
    const auto& [name, kind, op, image_tag, argv, env, condition, interval, http, lease, reboot,
                 connect, switch_producer, timeout] = want;
    EXPECT_EQ(got.switch_producer.from, switch_producer.from) << name;
    EXPECT_EQ(got.switch_producer.execute, switch_producer.execute) << name;
    EXPECT_EQ(got.switch_producer.max_lag, switch_producer.max_lag) << name;
    EXPECT_EQ(got.switch_producer.verify_timeout, switch_producer.verify_timeout) << name;
    EXPECT_EQ(got.connect.host, connect.host) << name;
    EXPECT_EQ(got.connect.port, connect.port) << name;
    EXPECT_EQ(got.connect.attempts, connect.attempts) << name;
    EXPECT_EQ(got.connect.interval, connect.interval) << name;
    EXPECT_EQ(got.connect.timeout, connect.timeout) << name;
    EXPECT_EQ(got.reboot.methods, reboot.methods) << name;
    EXPECT_EQ(got.reboot.ssh_command, reboot.ssh_command) << name;
    EXPECT_EQ(got.reboot.ipmi_command, reboot.ipmi_command) << name;
    EXPECT_EQ(got.reboot.pdu_off_time, reboot.pdu_off_time) << name;
    EXPECT_EQ(got.reboot.verify_port, reboot.verify_port) << name;
    EXPECT_EQ(got.reboot.down_within, reboot.down_within) << name;
    EXPECT_EQ(got.reboot.up_within, reboot.up_within) << name;
    EXPECT_EQ(got.reboot.interval, reboot.interval) << name;
    EXPECT_EQ(got.reboot.probe_timeout, reboot.probe_timeout) << name;
    SCOPED_TRACE("step " + name);
    EXPECT_EQ(got.lease.acquire, lease.acquire) << name;
    EXPECT_EQ(got.lease.owner, lease.owner) << name;
    EXPECT_EQ(got.lease.ttl, lease.ttl) << name;
    EXPECT_EQ(got.lease.reason, lease.reason) << name;
    expect_same(http, got.http);
    EXPECT_EQ(got.name, name);
    EXPECT_EQ(jobs::to_string(got.kind), jobs::to_string(kind)) << name;
    EXPECT_EQ(drivers::to_string(got.op), drivers::to_string(op)) << name;
    EXPECT_EQ(got.image_tag, image_tag) << name;
    EXPECT_EQ(got.argv, argv) << name;
    EXPECT_EQ(got.env, env) << name;
    EXPECT_EQ(jobs::to_string(got.condition), jobs::to_string(condition)) << name;
    EXPECT_EQ(got.interval, interval) << name;
    EXPECT_EQ(got.timeout, timeout) << name;
}

void expect_same(const jobs::ActionSpec& want, const jobs::ActionSpec& got) {
    const auto& [name, description, queue, params, steps, timeout, max_attempts, retry_backoff,
                 retry_backoff_max, destructive, retry_destructive, rerun_safe, exclusive,
                 concurrency, is_public] = want;
    SCOPED_TRACE("action " + name);
    EXPECT_EQ(got.is_public, is_public);
    EXPECT_EQ(got.name, name);
    EXPECT_EQ(got.description, description);
    EXPECT_EQ(got.queue, queue);
    EXPECT_EQ(got.timeout, timeout);
    EXPECT_EQ(got.max_attempts, max_attempts);
    EXPECT_EQ(got.retry_backoff, retry_backoff);
    EXPECT_EQ(got.retry_backoff_max, retry_backoff_max);
    EXPECT_EQ(got.destructive, destructive);
    EXPECT_EQ(got.retry_destructive, retry_destructive);
    EXPECT_EQ(got.rerun_safe, rerun_safe);
    EXPECT_EQ(got.exclusive, exclusive);
    EXPECT_EQ(got.concurrency, concurrency);
    ASSERT_EQ(got.params.size(), params.size());
    for (std::size_t i = 0; i < params.size(); ++i) {
        expect_same(params[i], got.params[i]);
    }
    ASSERT_EQ(got.steps.size(), steps.size());
    for (std::size_t i = 0; i < steps.size(); ++i) {
        expect_same(steps[i], got.steps[i]);
    }
}

void expect_same(const jobs::PermissionRule& want, const jobs::PermissionRule& got) {
    const auto& [name, allow, who, actions, nodes, groups, selector] = want;
    EXPECT_EQ(got.name, name);
    EXPECT_EQ(got.groups, groups) << name;
    EXPECT_EQ(got.allow, allow) << name;
    EXPECT_EQ(got.who, who) << name;
    EXPECT_EQ(got.actions, actions) << name;
    EXPECT_EQ(got.nodes, nodes) << name;
    EXPECT_EQ(got.selector, selector) << name;
}

void expect_same(const jobs::Settings& want, const jobs::Settings& got) {
    const auto& [workers, output_max_lines, kill_grace, heartbeat, heartbeat_timeout, retention,
                 retention_sweep, actions, ssh, ipmi, pdu, permissions, instance] = want;
    EXPECT_EQ(got.instance, instance);
    EXPECT_EQ(got.ipmi.program, ipmi.program);
    EXPECT_EQ(got.ipmi.password_file, ipmi.password_file);
    EXPECT_EQ(got.ipmi.password, ipmi.password);
    EXPECT_EQ(got.ipmi.cipher_suite, ipmi.cipher_suite);
    EXPECT_EQ(got.ipmi.retries, ipmi.retries);
    EXPECT_EQ(got.ipmi.retry_seconds, ipmi.retry_seconds);
    EXPECT_EQ(got.pdu.program, pdu.program);
    EXPECT_EQ(got.pdu.conf_dir, pdu.conf_dir);
    EXPECT_EQ(got.pdu.community, pdu.community);
    EXPECT_EQ(got.pdu.outlet_oid, pdu.outlet_oid);
    EXPECT_EQ(got.pdu.on_value, pdu.on_value);
    EXPECT_EQ(got.pdu.off_value, pdu.off_value);
    EXPECT_EQ(got.pdu.timeout, pdu.timeout);
    EXPECT_EQ(got.pdu.retries, pdu.retries);
    EXPECT_EQ(got.ssh.program, ssh.program);
    EXPECT_EQ(got.ssh.identity_file, ssh.identity_file);
    EXPECT_EQ(got.ssh.known_hosts, ssh.known_hosts);
    EXPECT_EQ(got.ssh.connect_timeout, ssh.connect_timeout);
    EXPECT_EQ(got.workers, workers);
    EXPECT_EQ(got.output_max_lines, output_max_lines);
    EXPECT_EQ(got.kill_grace, kill_grace);
    EXPECT_EQ(got.heartbeat, heartbeat);
    EXPECT_EQ(got.heartbeat_timeout, heartbeat_timeout);
    EXPECT_EQ(got.retention, retention);
    EXPECT_EQ(got.retention_sweep, retention_sweep);
    ASSERT_EQ(got.actions.size(), actions.size());
    for (std::size_t i = 0; i < actions.size(); ++i) {
        expect_same(actions[i], got.actions[i]);
    }
    ASSERT_EQ(got.permissions.size(), permissions.size());
    for (std::size_t i = 0; i < permissions.size(); ++i) {
        expect_same(permissions[i], got.permissions[i]);
    }
}

void expect_same(const drivers::HelmTarget& want, const drivers::HelmTarget& got) {
    const auto& [namespace_name, chart, kube_context, kubeconfig, set, timeout] = want;
    EXPECT_EQ(got.namespace_name, namespace_name);
    EXPECT_EQ(got.chart, chart);
    EXPECT_EQ(got.kube_context, kube_context);
    EXPECT_EQ(got.kubeconfig, kubeconfig);
    EXPECT_EQ(got.set, set);
    EXPECT_EQ(got.timeout, timeout);
}

void expect_same(const drivers::HelmSettings& want, const drivers::HelmSettings& got) {
    const auto& [helm, kubectl, defaults, pools, status_timeout] = want;
    EXPECT_EQ(got.helm, helm);
    EXPECT_EQ(got.kubectl, kubectl);
    expect_same(defaults, got.defaults);
    ASSERT_EQ(got.pools.size(), pools.size());
    for (std::size_t i = 0; i < pools.size(); ++i) {
        const auto& [name, nodes, selector, target] = pools[i];
        EXPECT_EQ(got.pools[i].name, name);
        EXPECT_EQ(got.pools[i].nodes, nodes);
        EXPECT_EQ(got.pools[i].selector, selector);
        expect_same(target, got.pools[i].target);
    }
    EXPECT_EQ(got.status_timeout, status_timeout);
}

void expect_same(const drivers::Settings& want, const drivers::Settings& got) {
    const auto& [dir, sim, helm, sidecar] = want;
    EXPECT_EQ(got.dir, dir);
    const auto& [token, timeout, command_timeout] = sidecar;
    EXPECT_EQ(got.sidecar.token, token);
    EXPECT_EQ(got.sidecar.timeout, timeout);
    EXPECT_EQ(got.sidecar.command_timeout, command_timeout);
    expect_same(helm, got.helm);
    const auto& [block_interval, sync_blocks, snapshot_height, program, start_timeout, stop_grace] =
        sim;
    EXPECT_EQ(got.sim.block_interval, block_interval);
    EXPECT_EQ(got.sim.sync_blocks, sync_blocks);
    EXPECT_EQ(got.sim.snapshot_height, snapshot_height);
    EXPECT_EQ(got.sim.program, program);
    EXPECT_EQ(got.sim.start_timeout, start_timeout);
    EXPECT_EQ(got.sim.stop_grace, stop_grace);
}

void expect_same(const notify::Settings& want, const notify::Settings& got) {
    const auto& [url, tls, token, actions, tags, timeout, retry_backoff, retry_backoff_max, poll] =
        want.grafana;
    const auto& [ca_file, cert_file, key_file] = tls;
    EXPECT_EQ(got.grafana.url, url);
    EXPECT_EQ(got.grafana.tls.ca_file, ca_file);
    EXPECT_EQ(got.grafana.tls.cert_file, cert_file);
    EXPECT_EQ(got.grafana.tls.key_file, key_file);
    EXPECT_EQ(got.grafana.token, token);
    EXPECT_EQ(got.grafana.actions, actions);
    EXPECT_EQ(got.grafana.tags, tags);
    EXPECT_EQ(got.grafana.timeout, timeout);
    EXPECT_EQ(got.grafana.retry_backoff, retry_backoff);
    EXPECT_EQ(got.grafana.retry_backoff_max, retry_backoff_max);
    EXPECT_EQ(got.grafana.poll, poll);
    const auto& [grafana, notifiers, delivery] = want;
    (void)grafana;
    ASSERT_EQ(got.notifiers.size(), notifiers.size());
    for (std::size_t i = 0; i < notifiers.size(); ++i) {
        const auto& [name, type, n_url, secret, n_tls, n_timeout] = notifiers[i];
        EXPECT_EQ(got.notifiers[i].name, name);
        EXPECT_EQ(got.notifiers[i].type, type);
        EXPECT_EQ(got.notifiers[i].url, n_url);
        EXPECT_EQ(got.notifiers[i].secret, secret);
        EXPECT_EQ(got.notifiers[i].tls.ca_file, n_tls.ca_file);
        EXPECT_EQ(got.notifiers[i].timeout, n_timeout);
    }
    const auto& [d_backoff, d_backoff_max, give_up_after, d_poll] = delivery;
    EXPECT_EQ(got.delivery.retry_backoff, d_backoff);
    EXPECT_EQ(got.delivery.retry_backoff_max, d_backoff_max);
    EXPECT_EQ(got.delivery.give_up_after, give_up_after);
    EXPECT_EQ(got.delivery.poll, d_poll);
}

/// A scenario's shape: its name, schedule and the kinds of its steps, nested ones in brackets.
std::string shape(const std::vector<probes::Step>& steps) {
    std::string out;
    for (const auto& step : steps) {
        out += (out.empty() ? "" : " ") + std::string{probes::step_kind_name(step.kind)};
        if (!step.steps.empty()) {
            out += "[" + shape(step.steps) + "]";
        }
    }
    return out;
}

std::string shape(const probes::Scenario& s) {
    return fmt::format("{} every {} within {}{}{}: {}", s.name, core::format_duration(s.interval),
                       core::format_duration(s.timeout), s.enabled ? "" : " (off)",
                       s.node.empty() ? "" : " on " + s.node, shape(s.steps));
}

/// An alarm rule's every field, as one line.
std::string shape(const probes::AlarmRule& a) {
    return fmt::format(
        "{} {} scenarios=[{}] selector={} measure={} threshold={} period={} {}/{} failures={} "
        "objective={} window={} for={} keep={} repeat={} notify=[{}]",
        a.name, probes::alarm_kind_name(a.kind), fmt::join(a.scenarios, ","),
        fmt::join(a.selector, ","), probes::measure_name(a.measure), a.threshold,
        core::format_duration(a.period), a.breaching, a.periods, a.failures, a.objective,
        core::format_duration(a.window), a.pending.count(), a.keep_firing_for.count(),
        a.repeat.count(), fmt::join(a.notify, ","));
}

void expect_same(const probes::Settings& want, const probes::Settings& got) {
    const auto& [scenarios, max_concurrent, max_body_bytes, retention, token, alarms,
                 evaluate_every, silence_actions, public_url, notifiers, gates, gate_poll] = want;
    EXPECT_EQ(got.gate_poll, gate_poll);
    ASSERT_EQ(got.gates.size(), gates.size());
    for (std::size_t i = 0; i < gates.size(); ++i) {
        const auto& [name, selector, scenario, max_age] = gates[i];
        EXPECT_EQ(got.gates[i].name, name);
        EXPECT_EQ(got.gates[i].selector, selector);
        EXPECT_EQ(got.gates[i].scenario, scenario);
        EXPECT_EQ(got.gates[i].max_age, max_age);
    }
    EXPECT_EQ(got.token, token);
    EXPECT_EQ(got.evaluate_every, evaluate_every);
    EXPECT_EQ(got.silence_actions, silence_actions);
    EXPECT_EQ(got.public_url, public_url);
    EXPECT_EQ(got.notifiers, notifiers);
    std::vector<std::string> want_alarms;
    std::vector<std::string> got_alarms;
    for (const auto& a : alarms) {
        want_alarms.push_back(shape(a));
    }
    for (const auto& a : got.alarms) {
        got_alarms.push_back(shape(a));
    }
    EXPECT_EQ(got_alarms, want_alarms);
    EXPECT_EQ(got.max_concurrent, max_concurrent);
    EXPECT_EQ(got.max_body_bytes, max_body_bytes);
    EXPECT_EQ(got.retention, retention);
    std::vector<std::string> want_shapes;
    std::vector<std::string> got_shapes;
    for (const auto& s : scenarios) {
        want_shapes.push_back(shape(s));
    }
    for (const auto& s : got.scenarios) {
        got_shapes.push_back(shape(s));
    }
    EXPECT_EQ(got_shapes, want_shapes);
}

/// Everything but `source` (which names where each came from).
void expect_same(const Config& want, const Config& got) {
    const auto& [source, data_dir, instance, server, store, fleet, jobs, drivers, auth, log, notify,
                 logs, probes] = want;
    expect_same(probes, got.probes);
    (void)source;
    EXPECT_EQ(got.data_dir, data_dir);
    EXPECT_EQ(got.instance, instance);
    expect_same(server, got.server);
    expect_same(store, got.store);
    expect_same(fleet, got.fleet);
    expect_same(jobs, got.jobs);
    expect_same(drivers, got.drivers);
    const auto& [tokens, allowed_hosts, cors_origins] = auth;
    EXPECT_EQ(got.auth.allowed_hosts, allowed_hosts);
    EXPECT_EQ(got.auth.cors_origins, cors_origins);
    ASSERT_EQ(got.auth.tokens.size(), tokens.size());
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        expect_same(tokens[i], got.auth.tokens[i]);
    }
    const auto& [level, format] = log;
    EXPECT_EQ(got.log.level, level);
    EXPECT_EQ(got.log.format, format);
    expect_same(notify, got.notify);
    const auto& [log_store, logs_window, notifications_window, cleanup_interval, retention, redact,
                 idle_timeout, max_upload, max_message_bytes, max_label_bytes, max_fields,
                 max_fields_bytes, max_results, max_read_bytes, retention_batch, tail_max_duration,
                 max_tails_per_identity] = logs;
    const auto& [log_driver, log_path, log_url, log_password, log_connect_timeout,
                 partition_horizon, partition_interval, log_synchronous, log_readers, log_busy,
                 max_streams] = log_store;
    EXPECT_EQ(got.logs.store.driver, log_driver);
    EXPECT_EQ(got.logs.store.path, log_path);
    EXPECT_EQ(got.logs.store.url, log_url);
    EXPECT_EQ(got.logs.store.password, log_password);
    EXPECT_EQ(got.logs.store.connect_timeout, log_connect_timeout);
    EXPECT_EQ(got.logs.store.partition_horizon, partition_horizon);
    EXPECT_EQ(got.logs.store.partition_interval, partition_interval);
    EXPECT_EQ(got.logs.store.synchronous, log_synchronous);
    EXPECT_EQ(got.logs.store.read_connections, log_readers);
    EXPECT_EQ(got.logs.store.busy_timeout, log_busy);
    EXPECT_EQ(got.logs.store.max_streams_per_scope, max_streams);
    EXPECT_EQ(got.logs.logs_window, logs_window);
    EXPECT_EQ(got.logs.notifications_window, notifications_window);
    EXPECT_EQ(got.logs.cleanup_interval, cleanup_interval);
    EXPECT_EQ(got.logs.retention.size(), retention.size());
    EXPECT_EQ(got.logs.redact.size(), redact.size());
    EXPECT_EQ(got.logs.idle_timeout, idle_timeout);
    EXPECT_EQ(got.logs.max_upload, max_upload);
    EXPECT_EQ(got.logs.max_message_bytes, max_message_bytes);
    EXPECT_EQ(got.logs.max_label_bytes, max_label_bytes);
    EXPECT_EQ(got.logs.max_fields, max_fields);
    EXPECT_EQ(got.logs.max_fields_bytes, max_fields_bytes);
    EXPECT_EQ(got.logs.max_results, max_results);
    EXPECT_EQ(got.logs.retention_batch, retention_batch);
    EXPECT_EQ(got.logs.max_read_bytes, max_read_bytes);
    EXPECT_EQ(got.logs.tail_max_duration, tail_max_duration);
    EXPECT_EQ(got.logs.max_tails_per_identity, max_tails_per_identity);
}

jobs::ParamSpec tag_param() {
    return jobs::ParamSpec{.name = "tag",
                           .type = jobs::ParamType::kImageTag,
                           .pattern = "",
                           .required = true,
                           .default_value = "",
                           .description = "The image tag to run."};
}

jobs::StepSpec driver_step(drivers::Op op) {
    jobs::StepSpec step;
    step.kind = jobs::StepKind::kDriver;
    step.op = op;
    step.name = "driver " + std::string{drivers::to_string(op)};
    return step;
}

jobs::StepSpec wait_step(jobs::WaitCondition condition, core::Millis timeout) {
    jobs::StepSpec step;
    step.kind = jobs::StepKind::kWait;
    step.condition = condition;
    step.timeout = timeout;
    step.name = "wait " + std::string{jobs::to_string(condition)};
    return step;
}

/// The built-in actions, written out here so the example cannot change them by accident.
std::vector<jobs::ActionSpec> builtin_actions() {
    using drivers::Op;
    using jobs::WaitCondition;
    std::vector<jobs::ActionSpec> actions(20);
    auto& upgrade = actions[0];
    upgrade.name = "upgrade";
    upgrade.description = "Run a new image tag, keeping the node's data.";
    upgrade.timeout = 10min;
    upgrade.rerun_safe = true;
    upgrade.params = {tag_param()};
    upgrade.steps = {driver_step(Op::kUpgrade), wait_step(WaitCondition::kHeightAdvancing, 2min)};

    auto& snapshot = actions[1];
    snapshot.name = "install-snapshot";
    snapshot.description =
        "Reinstall the node from a snapshot at an image tag; its data is replaced.";
    snapshot.timeout = 10min;
    snapshot.destructive = true;
    snapshot.params = {tag_param()};
    snapshot.steps = {driver_step(Op::kUninstall), driver_step(Op::kWipeData),
                      driver_step(Op::kInstall), wait_step(WaitCondition::kHeightAdvancing, 2min)};

    auto& create = actions[2];
    create.name = "create-canary";
    create.description = "Install the node at an image tag (an installed one is brought to it).";
    create.timeout = 10min;
    create.rerun_safe = true;
    create.params = {tag_param()};
    create.steps = {driver_step(Op::kInstall), wait_step(WaitCondition::kHeightAdvancing, 2min)};

    auto& remove = actions[3];
    remove.name = "delete-canary";
    remove.description = "Uninstall the node and delete its data.";
    remove.timeout = 10min;
    remove.destructive = true;
    remove.steps = {driver_step(Op::kUninstall), driver_step(Op::kWipeData)};

    auto& restart = actions[4];
    restart.name = "restart";
    restart.description = "Restart the node on the image tag it runs.";
    restart.rerun_safe = true;
    restart.steps = {driver_step(Op::kRestart), wait_step(WaitCondition::kRunning, 1min)};

    auto& status = actions[5];
    status.name = "status";
    status.description = "Report the node's status.";
    status.exclusive = false;
    status.rerun_safe = true;
    status.steps = {driver_step(Op::kStatus)};

    auto& noop = actions[6];
    noop.name = "noop";
    noop.description = "Do nothing (tests the job machinery).";
    noop.exclusive = false;
    noop.rerun_safe = true;
    noop.steps.resize(1);
    noop.steps[0].kind = jobs::StepKind::kNoop;
    noop.steps[0].name = "noop";

    const jobs::ParamSpec host{.name = "host",
                               .pattern = "[A-Za-z0-9.:-]+",
                               .description = "The machine's address.",
                               .from = "{{machine.address}}"};
    const jobs::ParamSpec worker{
        .name = "tc_worker_id",
        .required = false,
        .description = "the external worker id the roller endpoint was called for",
        .from = "{{tc_worker_id}}"};
    auto& ping = actions[7];
    ping.name = "ping";
    ping.description = "Ping the machine (the system ping, 4 probes within 5 seconds).";
    ping.is_public = true;
    ping.exclusive = false;
    ping.rerun_safe = true;
    ping.timeout = 30s;
    ping.params = {host, worker};
    ping.steps.resize(1);
    ping.steps[0].kind = jobs::StepKind::kRun;
    ping.steps[0].argv = {"ping", "-c", "4", "-w", "5", "{{params.host}}"};
    ping.steps[0].name = "run ping";

    auto& reimage = actions[8];
    reimage.name = "reimage";
    reimage.description =
        "Reimage the machine. This built-in only says what it would do: replace its step with "
        "your provisioning tool's command (an argv, templated).";
    reimage.is_public = true;
    reimage.destructive = true;
    reimage.timeout = 1h;
    reimage.params = {host,
                      jobs::ParamSpec{.name = "image",
                                      .type = jobs::ParamType::kImageTag,
                                      .required = false,
                                      .default_value = "default",
                                      .description = "The image."},
                      worker};
    reimage.steps.resize(1);
    reimage.steps[0].kind = jobs::StepKind::kRun;
    reimage.steps[0].argv = {"echo", "reimage", "{{params.host}}", "with", "{{params.image}}"};
    reimage.steps[0].name = "run echo";

    auto& reboot = actions[9];
    reboot.name = "reboot";
    reboot.description =
        "Reboot the machine: ssh's reboot, then an IPMI power cycle, then its PDU outlet off and "
        "on, each verified (its ssh port stops answering, then answers again).";
    reboot.is_public = true;
    reboot.destructive = true;
    reboot.timeout = 45min;
    reboot.params = {host, worker};
    reboot.steps.resize(1);
    reboot.steps[0].kind = jobs::StepKind::kReboot;
    reboot.steps[0].name = "reboot";

    const std::string person_pattern = "[A-Za-z0-9][A-Za-z0-9._@-]*";
    auto& loan = actions[10];
    loan.name = "loan";
    loan.description = "Lend the machine (or node) to a person until the TTL; aviary who shows it.";
    loan.params = {
        jobs::ParamSpec{
            .name = "person", .pattern = person_pattern, .description = "Who borrows it."},
        jobs::ParamSpec{.name = "ttl",
                        .pattern = "[0-9]+(ms|s|m|h|d)",
                        .required = false,
                        .default_value = "24h",
                        .description = "How long."}};
    loan.steps.resize(1);
    loan.steps[0].kind = jobs::StepKind::kLease;
    loan.steps[0].lease = jobs::LeaseStepSpec{
        .acquire = true, .owner = "{{params.person}}", .ttl = "{{params.ttl}}", .reason = "loan"};
    loan.steps[0].name = "lease acquire";

    auto& give_back = actions[11];
    give_back.name = "return-loan";
    give_back.description =
        "Give a loaned machine (or node) back; with person, only if it is theirs.";
    give_back.exclusive = false;
    give_back.params = {
        jobs::ParamSpec{.name = "person",
                        .pattern = person_pattern,
                        .required = false,
                        .description = "Who gives it back (empty, whoever holds it)."}};
    give_back.steps.resize(1);
    give_back.steps[0].kind = jobs::StepKind::kLease;
    give_back.steps[0].lease = jobs::LeaseStepSpec{.acquire = false, .owner = "{{params.person}}"};
    give_back.steps[0].name = "lease release";

    // Supervised nodes (driver sidecar).
    auto& backup = actions[12];
    backup.name = "backup";
    backup.description = "Back up the node's data dir through its sidecar (docs/backups.md).";
    backup.timeout = 2h;
    backup.steps = {driver_step(Op::kBackup)};
    auto& restore = actions[13];
    restore.name = "restore";
    restore.description = "Restore the newest usable backup through the node's sidecar.";
    restore.timeout = 2h;
    restore.destructive = true;
    restore.steps = {driver_step(Op::kRestore)};
    auto& reload = actions[14];
    reload.name = "reload";
    reload.description = "Restart the node through its sidecar (refused while it produces).";
    reload.rerun_safe = true;
    reload.steps = {driver_step(Op::kReload), wait_step(WaitCondition::kRunning, 2min)};
    auto& pause = actions[15];
    pause.name = "pause-production";
    pause.description =
        "Safely pause block production (bp mode); the producer lease is given back.";
    pause.steps = {driver_step(Op::kPauseProduction)};
    auto& resume = actions[16];
    resume.name = "resume-production";
    resume.description =
        "Resume block production (bp mode); the sidecar claims the producer lease.";
    resume.steps = {driver_step(Op::kResumeProduction)};
    auto& handoff = actions[17];
    handoff.name = "switch-producer";
    handoff.description =
        "Hand block production from node `from` to this node, both supervised in bp mode: "
        "checks, then (with execute) demote, confirm, promote, verify (docs/producers.md).";
    handoff.timeout = 10min;
    handoff.params = {
        jobs::ParamSpec{.name = "from",
                        .type = jobs::ParamType::kDnsLabel,
                        .description = "The node producing now."},
        jobs::ParamSpec{.name = "execute",
                        .type = jobs::ParamType::kBoolean,
                        .required = false,
                        .default_value = "false",
                        .description = "true to act; false prints the plan and runs the checks "
                                       "only."},
        jobs::ParamSpec{.name = "max_lag",
                        .type = jobs::ParamType::kInteger,
                        .required = false,
                        .default_value = "3",
                        .description = "The most blocks this node may be behind `from`."}};
    handoff.steps.resize(1);
    handoff.steps[0].kind = jobs::StepKind::kSwitchProducer;
    handoff.steps[0].name = "switch producer";
    auto& rolling = actions[18];
    rolling.name = "config-reload";
    rolling.description =
        "Apply a changed config by a restart, one node at a time across the fleet: what a "
        "registered sidecar asks for when its config changes.";
    rolling.queue = "rolling";
    rolling.concurrency = 1;
    rolling.rerun_safe = true;
    rolling.timeout = 15min;
    rolling.steps = {driver_step(Op::kReload), wait_step(WaitCondition::kSynced, 10min)};
    auto& echo = actions[19];
    echo.name = "echo";
    echo.description =
        "Print a text (the canary scenarios check the job machinery end to end with it).";
    echo.exclusive = false;
    echo.rerun_safe = true;
    echo.timeout = 30s;
    echo.params = {jobs::ParamSpec{.name = "text", .description = "The text to print."}};
    echo.steps.resize(1);
    echo.steps[0].kind = jobs::StepKind::kRun;
    echo.steps[0].argv = {"echo", "{{params.text}}"};
    echo.steps[0].name = "run echo";
    return actions;
}

/// The default-constructed Config with the built-in actions: what any file without actions
/// loads as.
Config default_with_builtins() {
    Config want;
    want.jobs.actions = builtin_actions();
    return want;
}

/// The default-constructed Config with the built-in actions and the demo fleet the example
/// declares.
Config default_with_demo_fleet() {
    Config want = default_with_builtins();
    for (const char* name : {"lotus-0", "lotus-1", "lotus-2"}) {
        want.fleet.nodes.push_back(core::NodeSpec{.name = name,
                                                  .driver = "sim",
                                                  .image_tag = "v1.0.0",
                                                  .labels = {{"chain", "lotus"}},
                                                  .note = ""});
    }
    core::NodeSpec loopback{.name = "loopback-1", .driver = "none"};
    loopback.machine = core::MachineSpec{.hostname = "localhost",
                                         .address = "127.0.0.1",
                                         .ssh_user = "root",
                                         .ssh_port = 22,
                                         .groups = {"demo"}};
    want.fleet.nodes.push_back(loopback);
    want.fleet.worker_ids = {core::WorkerId{.id = "tc-worker-1", .machine = "loopback-1"}};
    // The Bacalhau canary's five scenarios, against serve's own job API.
    auto step = [](probes::StepKind kind, std::vector<probes::Step> inner = {}) {
        probes::Step s;
        s.kind = kind;
        s.steps = std::move(inner);
        return s;
    };
    using probes::StepKind;
    auto poll = [&] { return step(StepKind::kPoll, {step(StepKind::kHttp)}); };
    auto scenario = [](std::string name, std::vector<probes::Step> steps) {
        probes::Scenario s;
        s.name = std::move(name);
        s.steps = std::move(steps);
        return s;
    };
    want.probes.scenarios = {
        scenario("list", {step(StepKind::kHttp)}),
        scenario("submit", {step(StepKind::kHttp), poll()}),
        scenario("submitAndDescribe",
                 {step(StepKind::kHttp), poll(), step(StepKind::kHttp), step(StepKind::kHttp)}),
        scenario("submitAndGet", {step(StepKind::kHttp), poll(), step(StepKind::kHttp)}),
        scenario("submitWithConcurrency",
                 {step(StepKind::kParallel, {step(StepKind::kHttp), poll()})}),
    };
    for (auto& s : want.probes.scenarios) {
        if (s.name != "list") {
            s.node = "lotus-0";  // its maintenance, or an upgrade on it, silences their alarms
        }
    }
    probes::AlarmRule availability{.name = "availability"};
    probes::AlarmRule failing{.name = "failing",
                              .kind = probes::AlarmKind::kConsecutiveFailures,
                              .measure = probes::Measure::kSuccess};
    probes::AlarmRule slo{.name = "slo", .kind = probes::AlarmKind::kSlo};
    want.probes.alarms = {availability, failing, slo};
    return want;
}

std::string read_text(const std::string& path) {
    std::ifstream in{path, std::ios::binary};
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

using test::error_of;

/// A directory removed at the end of the test.
class TempDir {
public:
    TempDir() {
        path_ = fs::temp_directory_path() / ("aviary-config-test-" + std::to_string(::getpid()) +
                                             "-" + std::to_string(next_++));
        fs::create_directories(path_);
    }
    ~TempDir() { fs::remove_all(path_); }
    const fs::path& path() const { return path_; }
    fs::path write(const std::string& name, const std::string& text) const {
        auto file = path_ / name;
        std::ofstream{file, std::ios::binary} << text;
        return file;
    }

private:
    static inline int next_ = 0;
    fs::path path_;
};

// --- the example is the default ---------------------------------------------------------------

TEST(Config, EmbeddedDefaultIsDefaultConfigWithDemoFleet) {
    auto loaded = load_string(embedded_default(), "aviary.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    expect_same(default_with_demo_fleet(), *loaded);
    EXPECT_EQ(loaded->source, "aviary.yaml");
}

TEST(Config, ExampleFileIsDefaultConfigWithDemoFleet) {
    auto loaded = load_file(kExample);
    ASSERT_TRUE(loaded) << loaded.error().message;
    expect_same(default_with_demo_fleet(), *loaded);
    EXPECT_EQ(loaded->source, kExample);
}

TEST(Config, EmbeddedDefaultIsTheExampleFileVerbatim) {
    EXPECT_EQ(embedded_default(), read_text(kExample));
}

TEST(Config, EmptyDocumentIsDefaultConfigWithBuiltinsAndNoNodes) {
    auto loaded = load_string("# nothing to change\n", "empty.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    expect_same(default_with_builtins(), *loaded);
}

TEST(Config, BuiltinActionsEachValidate) {
    for (const auto& action : builtin_actions()) {
        auto valid = jobs::validate_action(action);
        EXPECT_TRUE(valid) << valid.error().message;
    }
}

// --- built-in actions and a file's own --------------------------------------------------------

std::vector<std::string> action_names(const Config& config) {
    std::vector<std::string> names;
    for (const auto& action : config.jobs.actions) {
        names.push_back(action.name);
    }
    return names;
}

TEST(Config, FileActionsComeFirstThenEveryBuiltinTheyDoNotName) {
    auto loaded = load_string(R"(
jobs:
  actions:
    hello:
      steps: [noop]
)",
                              "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(action_names(*loaded), (std::vector<std::string>{"hello",
                                                               "upgrade",
                                                               "install-snapshot",
                                                               "create-canary",
                                                               "delete-canary",
                                                               "restart",
                                                               "status",
                                                               "noop",
                                                               "ping",
                                                               "reimage",
                                                               "reboot",
                                                               "loan",
                                                               "return-loan",
                                                               "backup",
                                                               "restore",
                                                               "reload",
                                                               "pause-production",
                                                               "resume-production",
                                                               "switch-producer",
                                                               "config-reload",
                                                               "echo"}));
}

TEST(Config, FileActionReplacesTheBuiltinOfTheSameName) {
    auto loaded = load_string(R"(
jobs:
  actions:
    restart:
      description: ours
      steps:
        - run: [systemctl, restart, "{{node}}"]
)",
                              "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    auto names = action_names(*loaded);
    EXPECT_EQ(std::count(names.begin(), names.end(), "restart"), 1);
    EXPECT_EQ(names.front(), "restart");
    const auto& restart = loaded->jobs.actions.front();
    EXPECT_EQ(restart.description, "ours");
    EXPECT_FALSE(restart.rerun_safe);  // nothing of the built-in is inherited
    ASSERT_EQ(restart.steps.size(), 1u);
    EXPECT_EQ(restart.steps[0].argv,
              (std::vector<std::string>{"systemctl", "restart", "{{node}}"}));
    EXPECT_EQ(names.size(), builtin_actions().size());
}

TEST(Config, FileWithJobsSettingsButNoActionsHasTheBuiltins) {
    auto loaded = load_string("jobs:\n  workers: 4\n", "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->jobs.workers, 4);
    expect_same(default_with_builtins().jobs.actions[0], loaded->jobs.actions[0]);
    EXPECT_EQ(loaded->jobs.actions.size(), builtin_actions().size());
}

TEST(Config, BuiltinsAreAddedToAFileToo) {
    TempDir dir;
    auto file = dir.write("aviary.yaml", "data_dir: /srv/aviary\n");
    auto loaded = load_file(file.string());
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(action_names(*loaded), action_names(default_with_builtins()));
}

TEST(Config, ReadsEveryKindOfValue) {
    auto loaded = load_string(R"(
data_dir: /srv/aviary
log: {level: debug, format: json}
server:
  listen: 0.0.0.0:8080
  io_threads: 4
  max_header_bytes: 8192
  max_body_bytes: 2MiB
  idle_timeout: 1m30s
store: {synchronous: normal, path: ":memory:", event_retention: 7d}
fleet:
  lease_ttl: 2h
  nodes:
    - name: geth-0
      driver: helm
      labels: {chain: geth, region: eu}
      note: shared with the indexer team
)",
                              "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->data_dir, "/srv/aviary");
    EXPECT_EQ(loaded->log.level, "debug");
    EXPECT_EQ(loaded->log.format, "json");
    EXPECT_EQ(loaded->server.listen, "0.0.0.0:8080");
    EXPECT_EQ(loaded->server.io_threads, 4);
    EXPECT_EQ(loaded->server.max_header_bytes, 8192u);
    EXPECT_EQ(loaded->server.max_body_bytes, 2u * 1024 * 1024);
    EXPECT_EQ(loaded->server.idle_timeout, 90s);
    EXPECT_EQ(loaded->store.synchronous, "normal");
    EXPECT_EQ(loaded->store.path, ":memory:");
    EXPECT_EQ(loaded->store.event_retention, 7 * 24h);
    EXPECT_EQ(loaded->fleet.lease_ttl, 2h);
    ASSERT_EQ(loaded->fleet.nodes.size(), 1u);
    EXPECT_EQ(loaded->fleet.nodes[0].driver, "helm");
    EXPECT_EQ(loaded->fleet.nodes[0].image_tag, "");
    EXPECT_EQ(loaded->fleet.nodes[0].labels, (core::Labels{{"chain", "geth"}, {"region", "eu"}}));
    EXPECT_EQ(loaded->fleet.nodes[0].note, "shared with the indexer team");
}

// --- error format -----------------------------------------------------------------------------

TEST(Config, UnknownKeyNamesPositionAndSuggestsClosest) {
    EXPECT_EQ(error_of("fleet:\n  lease_tl: 1h\n"),
              "aviary.yaml:2:3: fleet.lease_tl: unknown key \"lease_tl\"; did you mean "
              "\"lease_ttl\"?");
}

TEST(Config, UnknownKeyFarFromEveryKeyHasNoSuggestion) {
    EXPECT_EQ(error_of("colour: blue\n"), "aviary.yaml:1:1: colour: unknown key \"colour\"");
}

TEST(Config, BadDurationNamesFileLineColumnAndPath) {
    std::string yaml;
    for (int i = 0; i < 12; ++i) {
        yaml += "# padding\n";
    }
    yaml += "fleet:\n";
    yaml += "  lease_ttl:    thirty\n";  // line 14, value at column 17
    auto message = error_of(yaml);
    EXPECT_EQ(message, "aviary.yaml:14:17: fleet.lease_ttl: " +
                           core::parse_duration("thirty").error().message);
    EXPECT_TRUE(message.starts_with(
        R"(aviary.yaml:14:17: fleet.lease_ttl: expected a duration like "30s", got "thirty")"))
        << message;
}

TEST(Config, YamlSyntaxErrorHasPosition) {
    EXPECT_EQ(error_of("server:\n  listen: [127.0.0.1:1337\nfleet: {}\n"),
              "aviary.yaml:3:6: end of sequence flow not found");
}

TEST(Config, CollectsEveryErrorInDocumentOrder) {
    EXPECT_EQ(error_of("server:\n  io_threads: 0\n  read_timeout: -1s\nlog: {level: loud}\n"),
              "aviary.yaml:2:15: server.io_threads: expected an integer from 1 to 64, got \"0\"\n"
              "aviary.yaml:3:17: server.read_timeout: " +
                  core::parse_duration("-1s").error().message +
                  "\n"
                  "aviary.yaml:4:14: log.level: unknown log level \"loud\" (trace, debug, info, "
                  "warn, error, off)");
}

TEST(Config, WebSocketLimitsAreReadAndCheckedWhereTheyAre) {
    EXPECT_EQ(error_of("server:\n  websocket:\n    slow_reader: wait\n    max_queued_messages: 0\n"
                       "    ping: 5s\n"),
              "aviary.yaml:3:18: server.websocket.slow_reader: unknown slow reader policy \"wait\" "
              "(close, drop)\n"
              "aviary.yaml:4:26: server.websocket.max_queued_messages: expected an integer from 1 "
              "to 1000000, got \"0\"\n"
              "aviary.yaml:5:5: server.websocket.ping: unknown key \"ping\"");
}

TEST(Config, RepeatedKeyIsAnError) {
    EXPECT_EQ(error_of("data_dir: a\ndata_dir: b\n"),
              "aviary.yaml:2:1: data_dir: key \"data_dir\" appears twice");
}

TEST(Config, WrongShapeIsAnError) {
    EXPECT_EQ(error_of("server: [1, 2]\n"),
              "aviary.yaml:1:9: server: expected a mapping, got a sequence");
    EXPECT_EQ(error_of("- a\n"), "aviary.yaml:1:1: expected a mapping, got a sequence");
    EXPECT_EQ(error_of("data_dir:\n"), "aviary.yaml:1:1: data_dir: expected a string, got nothing");
}

TEST(Config, MissingFileNamesThePath) {
    auto loaded = load_file("/nonexistent/aviary.yaml");
    ASSERT_FALSE(loaded);
    EXPECT_EQ(loaded.error().code, core::ErrorCode::kNotFound);
    EXPECT_EQ(loaded.error().message, "config file \"/nonexistent/aviary.yaml\" does not exist");
}

TEST(Config, FileErrorsNameTheFile) {
    TempDir dir;
    auto file = dir.write("bad.yaml", "fleet:\n  expiry_sweep: soon\n");
    auto loaded = load_file(file.string());
    ASSERT_FALSE(loaded);
    EXPECT_TRUE(loaded.error().message.starts_with(file.string() + ":2:17: fleet.expiry_sweep: "))
        << loaded.error().message;
}

// --- validation -------------------------------------------------------------------------------

TEST(Config, ListenMustBeHostPort) {
    auto message = error_of("server:\n  listen: nowhere\n");
    EXPECT_TRUE(message.starts_with("aviary.yaml:2:11: server.listen: ")) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(Config, ThreadCountsAreBounded) {
    EXPECT_EQ(error_of("server: {io_threads: 65}\n"),
              "aviary.yaml:1:22: server.io_threads: expected an integer from 1 to 64, got \"65\"");
    EXPECT_EQ(error_of("server: {blocking_threads: many}\n"),
              "aviary.yaml:1:28: server.blocking_threads: expected an integer from 1 to 1024, got "
              "\"many\"");
}

TEST(Config, DurationsMustBePositive) {
    EXPECT_EQ(error_of("store: {busy_timeout: 0s}\n"),
              "aviary.yaml:1:23: store.busy_timeout: must be positive, got \"0s\"");
}

TEST(Config, MaxLeaseTtlMustCoverLeaseTtl) {
    EXPECT_EQ(error_of("fleet:\n  lease_ttl: 2h\n  max_lease_ttl: 1h\n"),
              "aviary.yaml:3:18: fleet.max_lease_ttl: max_lease_ttl (1h) must be at least "
              "lease_ttl (2h)");
}

TEST(Config, PostgresStoreNeedsAUrlAndAUrlMeansPostgres) {
    EXPECT_EQ(error_of("store: {driver: postgres}\n"),
              "aviary.yaml:1:17: store.driver: the postgres store needs store.url "
              "(postgresql://user@host:5432/database)");
    EXPECT_EQ(error_of("store: {driver: mysql}\n"),
              "aviary.yaml:1:17: store.driver: unknown store driver \"mysql\" (sqlite, postgres)");
    EXPECT_EQ(error_of("store: {driver: sqlite, url: 'postgresql://a@db/x'}\n"),
              "aviary.yaml:1:30: store.url: store.url is for driver postgres; driver is sqlite");
    EXPECT_EQ(error_of("store: {url: 'mysql://db/x'}\n"),
              "aviary.yaml:1:14: store.url: store.url must be a postgresql:// URI or a libpq "
              "keyword string (host=... dbname=...)");
    EXPECT_EQ(
        error_of("store: {synchronous: off}\n"),
        "aviary.yaml:1:22: store.synchronous: unknown synchronous mode \"off\" (full, normal)");
    auto loaded = load_string("store: {url: 'postgresql://aviary@db:5432/aviary'}\n", "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->store.driver, "postgres");
    EXPECT_EQ(loaded->store.url, "postgresql://aviary@db:5432/aviary");
}

TEST(Config, LogsKeepBitahoysWindowsAndRefuseWindowsThatKeepNothing) {
    auto defaults = load_string("# nothing\n", "t.yaml");
    ASSERT_TRUE(defaults) << defaults.error().message;
    EXPECT_EQ(defaults->logs.logs_window, std::chrono::seconds{60});
    EXPECT_EQ(defaults->logs.cleanup_interval, std::chrono::seconds{5});
    EXPECT_EQ(defaults->logs.notifications_window.count(), 0) << "notifications are kept";
    EXPECT_EQ(defaults->logs.idle_timeout, std::chrono::seconds{30});
    EXPECT_EQ(defaults->logs.store.path, "") << "serve puts it under data_dir";
    auto loaded = load_string(R"(logs:
  path: /var/lib/aviary/logs.db
  synchronous: normal
  logs_timewindow: 10m
  notifications_timewindow: 7d
  cleanup_interval: 30s
  idle_timeout: 2m
  max_upload: 500
  max_message_bytes: 8KiB
  max_results: 200
)",
                              "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->logs.store.path, "/var/lib/aviary/logs.db");
    EXPECT_EQ(loaded->logs.store.synchronous, "normal");
    EXPECT_EQ(loaded->logs.logs_window, std::chrono::minutes{10});
    EXPECT_EQ(loaded->logs.notifications_window, std::chrono::hours{24 * 7});
    EXPECT_EQ(loaded->logs.cleanup_interval, std::chrono::seconds{30});
    EXPECT_EQ(loaded->logs.idle_timeout, std::chrono::minutes{2});
    EXPECT_EQ(loaded->logs.max_upload, 500U);
    EXPECT_EQ(loaded->logs.max_message_bytes, 8192U);
    EXPECT_EQ(loaded->logs.max_results, 200U);
    EXPECT_EQ(error_of("logs: {logs_timewindow: 0s}\n"),
              "aviary.yaml:1:25: logs.logs_timewindow: must be positive, got \"0s\"");
    EXPECT_EQ(error_of("logs: {idle_timeout: 500ms}\n"),
              "aviary.yaml:1:7: logs: logs.idle_timeout must be at least 1s, got 500ms");
    EXPECT_EQ(
        error_of("logs: {max_upload: 0}\n"),
        "aviary.yaml:1:20: logs.max_upload: expected an integer from 1 to 1000000, got \"0\"");
    auto rules = load_string(R"(logs:
  retention:
    - {sender: "validator-*", level: 3, window: 7d}
    - {kind: notifications, scope: team-a, window: 24h}
    - {node: "canary-*", source: stderr, service: nodeos, window: 2h}
)",
                             "t.yaml");
    ASSERT_TRUE(rules) << rules.error().message;
    ASSERT_EQ(rules->logs.retention.size(), 3U);
    EXPECT_EQ(rules->logs.retention[2].selector.node_glob, "canary-*");
    EXPECT_EQ(rules->logs.retention[2].selector.source_glob, "stderr");
    EXPECT_EQ(rules->logs.retention[2].selector.sender_glob, "nodeos");
    auto partitioned = load_string("logs: {partition_interval: 10m}\n", "t.yaml");
    ASSERT_TRUE(partitioned) << partitioned.error().message;
    EXPECT_EQ(partitioned->logs.store.partition_interval, std::chrono::minutes{10});
    EXPECT_EQ(error_of("logs: {partition_interval: 30s}\n"),
              "aviary.yaml:1:28: logs.partition_interval: must be at least 1m, got 30s");
    EXPECT_EQ(error_of("logs: {max_streams_per_scope: 0}\n"),
              "aviary.yaml:1:31: logs.max_streams_per_scope: expected an integer from 1 to "
              "10000000, got \"0\"");
    EXPECT_EQ(rules->logs.retention[0].kind, store::LogKind::kLog);
    EXPECT_EQ(rules->logs.retention[0].selector.sender_glob, "validator-*");
    EXPECT_EQ(rules->logs.retention[0].selector.max_level, 3);
    EXPECT_EQ(rules->logs.retention[0].window, std::chrono::hours{24 * 7});
    EXPECT_EQ(rules->logs.retention[1].kind, store::LogKind::kNotification);
    EXPECT_EQ(rules->logs.retention[1].selector.scope, "team-a");
    auto redact = load_string(
        "logs:\n  redact:\n    - {pattern: 'password=\\S+', replacement: 'password=***'}\n",
        "t.yaml");
    ASSERT_TRUE(redact) << redact.error().message;
    ASSERT_EQ(redact->logs.redact.size(), 1U);
    EXPECT_EQ(redact->logs.redact[0].pattern, "password=\\S+");
    EXPECT_EQ(redact->logs.redact[0].replacement, "password=***");
    EXPECT_EQ(error_of("logs:\n  redact:\n    - {pattern: '(unclosed'}\n").substr(0, 60),
              "aviary.yaml:3:17: logs.redact[0].pattern: not a regular expr");
    EXPECT_EQ(error_of("logs:\n  redact:\n    - {pattern: 'pw=\\S+', replacement: 'pw=$1'}\n"),
              "aviary.yaml:3:7: logs.redact[0]: the replacement uses $1 but the pattern has 0 "
              "group(s)");
    EXPECT_EQ(
        error_of("logs:\n  retention:\n    - {window: 1h}\n"),
        "aviary.yaml:3:7: logs.retention[0]: a retention rule needs a service (sender), node, "
        "source, level or scope to select its records (the kind's own window is "
        "logs_timewindow)");
    EXPECT_EQ(error_of("logs:\n  retention:\n    - {sender: a}\n"),
              "aviary.yaml:3:7: logs.retention[0]: a retention rule needs a window: how long its "
              "records are kept");
    EXPECT_EQ(error_of("logs:\n  retention:\n    - {sender: a, window: 1h, kind: metrics}\n"),
              "aviary.yaml:3:37: logs.retention[0].kind: unknown kind \"metrics\" (logs, "
              "notifications)");
}

TEST(Config, InstanceNamesArePlainWordsAndLeadershipOutlastsAHeartbeat) {
    EXPECT_EQ(error_of("instance: 'a b'\n"),
              "aviary.yaml:1:11: instance: instance name \"a b\" must be 1-63 of a-z, A-Z, 0-9, "
              "'-', '.' and '_'");
    EXPECT_EQ(error_of("store: {heartbeat: 5s, leader_ttl: 5s}\n"),
              "aviary.yaml:1:8: store: store.leader_ttl (5s) must be longer than store.heartbeat "
              "(5s): a leader would lapse between its beats");
    auto loaded = load_string("instance: serve-b.eu_1\n", "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->instance, "serve-b.eu_1");
}

TEST(Config, StorePasswordComesApartFromTheUrlAndIsNeverEchoed) {
    for (const char* url :
         {"postgresql://aviary:hunter2@db/aviary", "host=db dbname=aviary password=hunter2"}) {
        auto message = error_of(std::string{"store: {url: '"} + url + "'}\n");
        EXPECT_EQ(message,
                  "aviary.yaml:1:14: store.url: store.url holds a password, and the URL is logged: "
                  "put the password in store.password_file or store.password_env");
        EXPECT_EQ(message.find("hunter2"), std::string::npos);
    }
    ::setenv("AVIARY_TEST_PG_PASSWORD", "s3cret-db", 1);
    auto loaded = load_string(
        "store:\n  url: postgresql://aviary@db/aviary\n  password_env: AVIARY_TEST_PG_PASSWORD\n",
        "t.yaml");
    ::unsetenv("AVIARY_TEST_PG_PASSWORD");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->store.password, "s3cret-db");
    // A user name with an @ in a query value is not a password.
    EXPECT_EQ(config::check_store_url("postgresql://aviary@db/aviary?application_name=a:b"),
              std::nullopt);
}

TEST(Config, LogFormatIsTextOrJson) {
    EXPECT_EQ(error_of("log: {format: xml}\n"),
              "aviary.yaml:1:15: log.format: unknown log format \"xml\" (text, json)");
    EXPECT_TRUE(load_string("log: {level: warning}\n", "t.yaml"));
}

TEST(Config, NodeNamesAreDnsLabels) {
    EXPECT_EQ(error_of("fleet:\n  nodes:\n    - name: Lotus_0\n"),
              "aviary.yaml:3:13: fleet.nodes[0].name: node name \"Lotus_0\" is not a DNS-1123 "
              "label (1-63 of a-z, 0-9 and '-', starting and ending with a letter or digit)");
    EXPECT_EQ(error_of("fleet:\n  nodes:\n    - driver: sim\n"),
              "aviary.yaml:3:7: fleet.nodes[0]: a node needs a name");
}

TEST(Config, DuplicateNodesAreRefused) {
    EXPECT_EQ(error_of("fleet:\n  nodes:\n    - name: lotus-0\n    - name: lotus-0\n"),
              "aviary.yaml:4:13: fleet.nodes[1].name: node \"lotus-0\" is declared twice (first "
              "at line 3)");
}

TEST(Config, NodeDriverAndLabelsAreChecked) {
    EXPECT_EQ(error_of("fleet:\n  nodes:\n    - {name: a, driver: ssh}\n"),
              "aviary.yaml:3:25: fleet.nodes[0].driver: unknown node driver \"ssh\" "
              "(sim, helm, sidecar)");
    EXPECT_EQ(error_of("fleet:\n  nodes:\n    - {name: a, labels: {\"\": x}}\n"),
              "aviary.yaml:3:26: fleet.nodes[0].labels.: keys must not be empty");
}

TEST(Config, ASidecarNodeNeedsAControlUrlAndOnlyItHasOne) {
    auto loaded = load_string(
        "fleet:\n  nodes:\n    - {name: bp-a, driver: sidecar, control_url: "
        "\"http://10.0.0.7:8080\"}\n",
        "aviary.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    ASSERT_EQ(loaded->fleet.nodes.size(), 1U);
    EXPECT_EQ(loaded->fleet.nodes[0].driver, "sidecar");
    EXPECT_EQ(loaded->fleet.nodes[0].control_url, "http://10.0.0.7:8080");
    EXPECT_EQ(error_of("fleet:\n  nodes:\n    - {name: bp-a, driver: sidecar}\n"),
              "aviary.yaml:3:7: fleet.nodes[0]: node bp-a: driver sidecar needs a control_url "
              "(the sidecar's control API, http://HOST:PORT)");
    EXPECT_EQ(error_of("fleet:\n  nodes:\n    - {name: bp-a, driver: sidecar, control_url: "
                       "\"http://10.0.0.7:8080/v1\"}\n"),
              "aviary.yaml:3:50: fleet.nodes[0].control_url: node bp-a: control_url "
              "\"http://10.0.0.7:8080/v1\" must be http://HOST[:PORT] with no path, query or "
              "fragment");
    EXPECT_EQ(error_of("fleet:\n  nodes:\n    - {name: a, control_url: \"http://h:1\"}\n"),
              "aviary.yaml:3:30: fleet.nodes[0].control_url: node a: control_url is for driver "
              "sidecar, not sim");
}

TEST(Config, TheSidecarDriversTokenComesFromTheEnvironmentNeverInline) {
    ::setenv("AVIARY_TEST_SIDECAR_TOKEN", "s3cret-sidecar", 1);
    auto loaded = load_string(
        "drivers:\n  sidecar: {token_env: AVIARY_TEST_SIDECAR_TOKEN, timeout: 3s, "
        "command_timeout: 1h}\n",
        "aviary.yaml");
    ::unsetenv("AVIARY_TEST_SIDECAR_TOKEN");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->drivers.sidecar.token, "s3cret-sidecar");
    EXPECT_EQ(loaded->drivers.sidecar.timeout, core::Millis{3000});
    EXPECT_EQ(loaded->drivers.sidecar.command_timeout, core::Millis{3'600'000});
    auto inline_token = error_of("drivers:\n  sidecar: {token: abc}\n");
    EXPECT_NE(inline_token.find("drivers.sidecar.token"), std::string::npos) << inline_token;
    EXPECT_EQ(inline_token.find("abc\""), std::string::npos) << inline_token;
    auto unset = error_of("drivers:\n  sidecar: {token_env: AVIARY_TEST_NO_SUCH_VAR}\n");
    EXPECT_NE(unset.find("AVIARY_TEST_NO_SUCH_VAR"), std::string::npos) << unset;
}

TEST(Config, ASwitchProducerStepReadsItsFieldsAndRefusesOthers) {
    auto loaded = load_string(R"(jobs:
  actions:
    hand-over:
      params:
        source: {type: dns_label}
      steps:
        - switch_producer: {from: "{{params.source}}", execute: "true", max_lag: "5",
                            verify_timeout: 1m}
)",
                              "aviary.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    const auto& step = loaded->jobs.actions.front().steps.at(0);
    EXPECT_EQ(step.kind, jobs::StepKind::kSwitchProducer);
    EXPECT_EQ(step.switch_producer.from, "{{params.source}}");
    EXPECT_EQ(step.switch_producer.execute, "true");
    EXPECT_EQ(step.switch_producer.max_lag, "5");
    EXPECT_EQ(step.switch_producer.verify_timeout, core::Millis{60'000});
    auto unknown = error_of(R"(jobs:
  actions:
    hand-over:
      steps:
        - switch_producer: {to: b}
)");
    EXPECT_NE(unknown.find("switch_producer"), std::string::npos) << unknown;
    EXPECT_NE(unknown.find("\"to\""), std::string::npos) << unknown;
    // Its default templates need the params they name.
    auto params =
        error_of("jobs:\n  actions:\n    h:\n      steps:\n        - switch_producer: {}\n");
    EXPECT_EQ(params,
              "aviary.yaml:3:5: jobs.actions.h: steps[0].switch_producer.from: unknown "
              "param \"from\"");
}

// --- fleet.machines and fleet.worker_ids ------------------------------------------------------

TEST(Config, MachinesAreNodesWithHowToReachTheHost) {
    auto loaded = load_string(
        "fleet:\n"
        "  nodes:\n"
        "    - {name: lotus-0}\n"
        "  machines:\n"
        "    - name: t-linux-1\n"
        "      hostname: t-linux-1.test.example\n"
        "      address: 127.0.0.1\n"
        "      ssh_user: relops\n"
        "      ssh_port: 2222\n"
        "      ipmi_address: \"127.0.0.1:6230\"\n"
        "      ipmi_user: admin\n"
        "      pdu_host: \"[::1]:1161\"\n"
        "      pdu_outlet: 4\n"
        "      groups: [lab, linux]\n"
        "      labels: {rack: r1}\n"
        "    - {name: t-mac-1, driver: none, hostname: t-mac-1}\n"
        "  worker_ids:\n"
        "    - {id: tc-worker-1, machine: t-linux-1}\n"
        "    - {id: tc-worker-2}\n",
        "aviary.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    const auto& nodes = loaded->fleet.nodes;
    ASSERT_EQ(nodes.size(), 3u);
    EXPECT_FALSE(nodes[0].machine);
    EXPECT_EQ(nodes[1].name, "t-linux-1");
    EXPECT_EQ(nodes[1].driver, "ssh");
    EXPECT_EQ(nodes[1].labels, (core::Labels{{"rack", "r1"}}));
    ASSERT_TRUE(nodes[1].machine);
    EXPECT_EQ(*nodes[1].machine, (core::MachineSpec{.hostname = "t-linux-1.test.example",
                                                    .address = "127.0.0.1",
                                                    .ssh_user = "relops",
                                                    .ssh_port = 2222,
                                                    .ipmi_address = "127.0.0.1:6230",
                                                    .ipmi_user = "admin",
                                                    .pdu_host = "[::1]:1161",
                                                    .pdu_outlet = 4,
                                                    .groups = {"lab", "linux"}}));
    EXPECT_EQ(nodes[1].machine->reach(), "127.0.0.1");
    EXPECT_EQ(nodes[2].driver, "none");
    ASSERT_TRUE(nodes[2].machine);
    EXPECT_EQ(nodes[2].machine->ssh_user, "root");
    EXPECT_EQ(nodes[2].machine->ssh_port, 22);
    EXPECT_EQ(nodes[2].machine->reach(), "t-mac-1");
    EXPECT_EQ(loaded->fleet.worker_ids,
              (std::vector<core::WorkerId>{{.id = "tc-worker-1", .machine = "t-linux-1"},
                                           {.id = "tc-worker-2", .machine = ""}}));
}

TEST(Config, BadMachinesAreRefusedWhereTheyAre) {
    EXPECT_EQ(error_of("fleet:\n  machines:\n    - {hostname: a}\n"),
              "aviary.yaml:3:7: fleet.machines[0]: a machine needs a name");
    EXPECT_EQ(error_of("fleet:\n  machines:\n    - {name: m1}\n"),
              "aviary.yaml:3:7: fleet.machines[0]: machine \"m1\" needs a hostname or an address");
    EXPECT_EQ(error_of("fleet:\n  machines:\n    - {name: m1, address: \"http://x\"}\n"),
              "aviary.yaml:3:27: fleet.machines[0].address: \"http://x\" is not a host name or IP "
              "address");
    EXPECT_EQ(error_of("fleet:\n  machines:\n    - {name: m1, address: a, driver: helm}\n"),
              "aviary.yaml:3:38: fleet.machines[0].driver: unknown machine driver \"helm\" (ssh, "
              "none)");
    EXPECT_EQ(error_of("fleet:\n  machines:\n    - {name: m1, address: a, ssh_port: 0}\n"),
              "aviary.yaml:3:40: fleet.machines[0].ssh_port: expected an integer from 1 to 65535, "
              "got \"0\"");
    EXPECT_EQ(error_of("fleet:\n  machines:\n    - {name: m1, address: a, pdu_outlet: 3}\n"),
              "aviary.yaml:3:42: fleet.machines[0].pdu_outlet: machine \"m1\": pdu_host and "
              "pdu_outlet (from 1) go together");
    EXPECT_EQ(error_of("fleet:\n  machines:\n    - {name: m1, address: a, groups: [x, x]}\n"),
              "aviary.yaml:3:42: fleet.machines[0].groups[1]: group \"x\" is listed twice");
    EXPECT_EQ(error_of("fleet:\n  nodes:\n    - {name: m1}\n  machines:\n"
                       "    - {name: m1, address: a}\n"),
              "aviary.yaml:5:14: fleet.machines[0].name: \"m1\" is declared twice (first at line "
              "3): machines and nodes share one namespace");
}

TEST(Config, WorkerIdsNameADeclaredMachineOrNone) {
    EXPECT_EQ(error_of("fleet:\n  worker_ids:\n    - {id: tc-1, machine: nowhere}\n"),
              "aviary.yaml:3:27: fleet.worker_ids[0].machine: worker id \"tc-1\": no machine "
              "\"nowhere\" is declared in fleet.machines");
    EXPECT_EQ(error_of("fleet:\n  nodes:\n    - {name: lotus-0}\n  worker_ids:\n"
                       "    - {id: tc-1, machine: lotus-0}\n"),
              "aviary.yaml:5:27: fleet.worker_ids[0].machine: worker id \"tc-1\": \"lotus-0\" is a "
              "node, not a machine");
    EXPECT_EQ(error_of("fleet:\n  worker_ids:\n    - {id: tc-1}\n    - {id: tc-1}\n"),
              "aviary.yaml:4:12: fleet.worker_ids[1].id: worker id \"tc-1\" is listed twice (first "
              "at line 3)");
    EXPECT_EQ(error_of("fleet:\n  worker_ids:\n    - {id: \"tc 1\"}\n"),
              "aviary.yaml:3:12: fleet.worker_ids[0].id: worker id \"tc 1\" must be 1-128 of A-Z, "
              "a-z, 0-9, '.', '_' and '-', not starting with '-'");
    EXPECT_EQ(error_of("fleet:\n  worker_ids:\n    - {id: \"-oX\"}\n"),
              "aviary.yaml:3:12: fleet.worker_ids[0].id: worker id \"-oX\" must be 1-128 of A-Z, "
              "a-z, 0-9, '.', '_' and '-', not starting with '-'");
    EXPECT_EQ(error_of("fleet:\n  worker_ids:\n    - {machine: m}\n"),
              "aviary.yaml:3:7: fleet.worker_ids[0]: a worker id needs an id");
}

// --- server.tls -------------------------------------------------------------------------------

TEST(Config, TlsFilesAreReadFromTheConfigFilesDirectory) {
    TempDir dir;
    dir.write("aviary.crt", "cert");
    dir.write("aviary.key", "key");
    auto ca = dir.write("clients.crt", "ca");
    auto file = dir.write("aviary.yaml",
                          "server:\n  tls:\n    cert_file: aviary.crt\n    key_file: aviary.key\n"
                          "    client_ca_file: " +
                              ca.string() + "\n    require_client_cert: true\n");
    auto loaded = load_file(file.string());
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->server.tls.cert_file, (dir.path() / "aviary.crt").string());
    EXPECT_EQ(loaded->server.tls.key_file, (dir.path() / "aviary.key").string());
    EXPECT_EQ(loaded->server.tls.client_ca_file, ca.string());
    EXPECT_TRUE(loaded->server.tls.require_client_cert);
}

TEST(Config, UnreadableTlsFilesAreNamedAtTheirPosition) {
    EXPECT_EQ(error_of("server:\n  tls:\n    cert_file: /nonexistent/aviary.crt\n"
                       "    key_file: /nonexistent/aviary.key\n"),
              "aviary.yaml:3:16: server.tls.cert_file: cannot read TLS certificate file "
              "\"/nonexistent/aviary.crt\": No such file or directory\n"
              "aviary.yaml:4:15: server.tls.key_file: cannot read TLS key file "
              "\"/nonexistent/aviary.key\": No such file or directory");
    TempDir dir;
    EXPECT_EQ(error_of("server:\n  tls:\n    client_ca_file: " + dir.path().string() + "\n"),
              "aviary.yaml:3:21: server.tls.client_ca_file: TLS client CA file \"" +
                  dir.path().string() +
                  "\" is a directory\n"
                  "aviary.yaml:3:21: server.tls.client_ca_file: client_ca_file needs cert_file "
                  "and key_file: client certificates are checked only over TLS");
}

TEST(Config, TlsKeyWithoutCertificateIsAnError) {
    TempDir dir;
    auto key = dir.write("aviary.key", "key");
    EXPECT_EQ(error_of("server:\n  tls:\n    key_file: " + key.string() + "\n"),
              "aviary.yaml:3:15: server.tls.key_file: key_file without cert_file: set both to "
              "serve TLS");
    auto cert = dir.write("aviary.crt", "cert");
    EXPECT_EQ(error_of("server:\n  tls:\n    cert_file: " + cert.string() + "\n"),
              "aviary.yaml:3:16: server.tls.cert_file: cert_file without key_file: set both to "
              "serve TLS");
}

TEST(Config, RequiredClientCertificateNeedsAClientCa) {
    EXPECT_EQ(error_of("server:\n  tls: {require_client_cert: true}\n"),
              "aviary.yaml:2:30: server.tls.require_client_cert: require_client_cert needs "
              "client_ca_file to verify them against");
    EXPECT_EQ(error_of("server:\n  tls: {require_client_cert: yes}\n"),
              "aviary.yaml:2:30: server.tls.require_client_cert: expected true or false, got "
              "\"yes\"");
    EXPECT_EQ(error_of("server:\n  tls: {cert: x}\n"),
              "aviary.yaml:2:9: server.tls.cert: unknown key \"cert\"");
}

// --- secrets ----------------------------------------------------------------------------------

TEST(Config, TokenSecretComesFromFileWithNewlineTrimmed) {
    TempDir dir;
    dir.write("alice.token", "s3cret-alice\n");
    // Relative token files are read from the config file's directory.
    auto file = dir.write("aviary.yaml",
                          "auth:\n  tokens:\n    - {identity: alice, role: admin, file: "
                          "alice.token}\n");
    auto loaded = load_file(file.string());
    ASSERT_TRUE(loaded) << loaded.error().message;
    ASSERT_EQ(loaded->auth.tokens.size(), 1u);
    EXPECT_EQ(loaded->auth.tokens[0].identity, "alice");
    EXPECT_EQ(loaded->auth.tokens[0].role, "admin");
    EXPECT_EQ(loaded->auth.tokens[0].file, "alice.token");
    EXPECT_EQ(loaded->auth.tokens[0].secret, "s3cret-alice");
}

TEST(Config, TokenGroupsAreRead) {
    ::setenv("AVIARY_TEST_CI_TOKEN", "s3cret-ci", 1);
    auto loaded = load_string(
        "auth:\n  tokens:\n    - {identity: ci, env: AVIARY_TEST_CI_TOKEN, groups: [ci, deploy]}\n",
        "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    ASSERT_EQ(loaded->auth.tokens.size(), 1u);
    EXPECT_EQ(loaded->auth.tokens[0].groups, (std::vector<std::string>{"ci", "deploy"}));
    EXPECT_EQ(error_of("auth:\n  tokens:\n    - identity: ci\n      env: AVIARY_TEST_CI_TOKEN\n"
                       "      groups: [ci, \"\", ci]\n"),
              "aviary.yaml:5:20: auth.tokens[0].groups[1]: \"\" is not a group name (non-empty, "
              "no spaces)\n"
              "aviary.yaml:5:24: auth.tokens[0].groups[2]: group \"ci\" is listed twice");
    EXPECT_EQ(error_of("auth:\n  tokens:\n    - {identity: ci, env: AVIARY_TEST_CI_TOKEN, groups: "
                       "ci}\n"),
              "aviary.yaml:3:57: auth.tokens[0].groups: expected a sequence, got \"ci\"");
    ::unsetenv("AVIARY_TEST_CI_TOKEN");
}

TEST(Config, TokenSecretComesFromEnvironment) {
    ::setenv("AVIARY_TEST_CI_TOKEN", "s3cret-ci", 1);
    auto loaded = load_string("auth:\n  tokens:\n    - {identity: ci, env: AVIARY_TEST_CI_TOKEN}\n",
                              "t.yaml");
    ::unsetenv("AVIARY_TEST_CI_TOKEN");
    ASSERT_TRUE(loaded) << loaded.error().message;
    ASSERT_EQ(loaded->auth.tokens.size(), 1u);
    EXPECT_EQ(loaded->auth.tokens[0].role, "user");
    EXPECT_EQ(loaded->auth.tokens[0].secret, "s3cret-ci");
}

TEST(Config, InlineSecretIsRefusedWithoutEchoingIt) {
    for (const char* key : {"token", "secret"}) {
        auto message = error_of(std::string{"auth:\n  tokens:\n    - identity: alice\n      "} +
                                key + ": hunter2\n");
        EXPECT_EQ(message, std::string{"aviary.yaml:4:"} + (key[0] == 't' ? "14" : "15") +
                               ": auth.tokens[0]." + key +
                               ": tokens must come from a file or an environment variable, "
                               "never inline");
        EXPECT_EQ(message.find("hunter2"), std::string::npos);
    }
}

TEST(Config, MissingEnvironmentVariableIsNamed) {
    ::unsetenv("AVIARY_TEST_UNSET_TOKEN");
    EXPECT_EQ(error_of("auth:\n  tokens:\n    - {identity: ci, env: AVIARY_TEST_UNSET_TOKEN}\n"),
              "aviary.yaml:3:27: auth.tokens[0].env: environment variable "
              "\"AVIARY_TEST_UNSET_TOKEN\" is not set");
    ::setenv("AVIARY_TEST_EMPTY_TOKEN", "", 1);
    EXPECT_EQ(error_of("auth:\n  tokens:\n    - {identity: ci, env: AVIARY_TEST_EMPTY_TOKEN}\n"),
              "aviary.yaml:3:27: auth.tokens[0].env: environment variable "
              "\"AVIARY_TEST_EMPTY_TOKEN\" is empty");
    ::unsetenv("AVIARY_TEST_EMPTY_TOKEN");
}

TEST(Config, MissingOrEmptyTokenFileIsNamed) {
    TempDir dir;
    auto empty = dir.write("empty.token", "\n");
    auto missing = dir.path() / "missing.token";
    auto message = error_of("auth:\n  tokens:\n    - {identity: a, file: " + empty.string() +
                            "}\n    - {identity: b, file: " + missing.string() + "}\n");
    EXPECT_EQ(message, "aviary.yaml:3:27: auth.tokens[0].file: token file \"" + empty.string() +
                           "\" is empty\n"
                           "aviary.yaml:4:27: auth.tokens[1].file: cannot read token file \"" +
                           missing.string() + "\": No such file or directory");
}

TEST(Config, TokenNeedsExactlyOneSourceAndUniqueIdentity) {
    ::setenv("AVIARY_TEST_TOKEN", "x", 1);
    EXPECT_EQ(error_of("auth:\n  tokens:\n    - {identity: a}\n"),
              "aviary.yaml:3:7: auth.tokens[0]: a token needs exactly one of \"file\" or \"env\"");
    EXPECT_EQ(error_of("auth:\n  tokens:\n    - {identity: a, env: X, file: y}\n"),
              "aviary.yaml:3:7: auth.tokens[0]: a token needs exactly one of \"file\" or \"env\"");
    EXPECT_EQ(error_of("auth:\n  tokens:\n    - {env: AVIARY_TEST_TOKEN}\n"),
              "aviary.yaml:3:7: auth.tokens[0]: a token needs a non-empty identity");
    EXPECT_EQ(error_of("auth:\n  tokens:\n    - {identity: a, env: AVIARY_TEST_TOKEN}\n"
                       "    - {identity: a, env: AVIARY_TEST_TOKEN}\n"),
              "aviary.yaml:4:18: auth.tokens[1].identity: token identity \"a\" is declared twice "
              "(first at line 3)");
    EXPECT_EQ(
        error_of("auth:\n  tokens:\n    - {identity: a, role: root, env: AVIARY_TEST_TOKEN}\n"),
        "aviary.yaml:3:27: auth.tokens[0].role: unknown role \"root\" (admin, user)");
    ::unsetenv("AVIARY_TEST_TOKEN");
}

}  // namespace
}  // namespace aviary::config
