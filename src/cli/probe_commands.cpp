// `aviary probe run NAME` (docs/probes.md): the Bacalhau canary's local runner, with an exit
// code that says how the run went (the original always exited 0).
#include "cli/probe_commands.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <cctype>
#include <cstdio>
#include <exception>
#include <string>

#include "api/api.hpp"
#include "cli/client.hpp"
#include "cli/render.hpp"
#include "config/config.hpp"
#include "net/net.hpp"
#include "probes/probes.hpp"

namespace aviary::cli {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;

std::string step_line(const probes::StepResult& step) {
    std::string indent(static_cast<std::size_t>(2 + 2 * step.depth), ' ');
    std::string name = (step.cleanup ? "cleanup: " : "") + step.name;
    std::string line = fmt::format("{}{:<7} {:<44} {:>7} ms", indent,
                                   probes::outcome_name(step.outcome), name, step.duration.count());
    if (!step.message.empty()) {
        line += "  " + step.message;
    }
    return line;
}

}  // namespace

ProbeCommands add_probe_commands(CLI::App& app,
                                 ProbeRunFlags& flags,
                                 ProbeListFlags& list,
                                 AlarmFlags& alarm) {
    ProbeCommands commands;
    commands.list = app.add_subcommand(
        "probes", "the server's canary scenarios: last run, availability, next run");
    auto* probe = app.add_subcommand("probe", "canary scenarios (docs/probes.md)");
    probe->require_subcommand(1);
    commands.run = probe->add_subcommand(
        "run", "run one scenario here and now, printing each step; exit 0 when it passed");
    commands.run->add_option("name", flags.name, "the scenario, e.g. submitAndGet")->required();
    commands.run->add_option(
        "--config", flags.config_path,
        "the YAML file whose probes.scenarios hold it (default: the built-in ones)");
    commands.runs = probe->add_subcommand("runs", "a scenario's runs on the server, newest first");
    commands.runs->add_option("name", list.name, "the scenario")->required();
    commands.runs->add_option("--limit", list.limit, "how many (1-1000)")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    commands.alarms = app.add_subcommand(
        "alarms",
        "the canary alarms: firing or ok, since when, what they read, what silences them");
    commands.notifications = commands.alarms->add_subcommand(
        "notifications", "the alarm notifications sent (or still being sent), newest first");
    commands.notifications->add_option("--limit", alarm.limit, "how many (1-1000)")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    commands.silences = app.add_subcommand("silences", "the silences in force");
    commands.silences->add_flag("--ended", alarm.ended, "those that ended too");
    auto* silence = app.add_subcommand("silence", "silence alarms for a while, with a reason");
    silence->require_subcommand(1);
    commands.silence_add = silence->add_subcommand(
        "add", "silence the alarms MATCHER names: \"*\", a rule, a scenario or RULE/SCENARIO");
    commands.silence_add->add_option("matcher", alarm.matcher, "what to silence")->required();
    commands.silence_add->add_option("--for", alarm.duration, "how long (at most 90d)")
        ->capture_default_str();
    commands.silence_add->add_option("--reason", alarm.reason, "why: shown wherever it silences")
        ->required();
    commands.silence_expire = silence->add_subcommand("expire", "end a silence now");
    commands.silence_expire->add_option("id", alarm.id, "the silence's id")->required();
    return commands;
}

namespace {

std::string percent(const json::value& ratio) {
    if (!ratio.is_number()) {
        return "-";
    }
    return fmt::format("{:.2f}%", ratio.to_number<double>() * 100.0);
}

std::string string_of(const json::value& v) {
    return v.is_string() ? std::string{v.get_string()} : std::string{};
}

std::string ago(const json::value& at, core::TimePoint now) {
    auto t = core::parse_time(string_of(at));
    return t ? relative(*t, now) : std::string{"-"};
}

}  // namespace

int run_probes_list(const Context& context) {
    auto reply = context.client.call("GET", "/api/v1/probes");
    if (!reply) {
        return report(reply.failure());
    }
    if (context.json) {
        print_json_text(reply->body);
        return kExitOk;
    }
    const auto now = core::SystemClock{}.now();
    Table table{{"NAME", "LAST", "WHEN", "1H", "24H", "30D", "NEXT", "MESSAGE"}};
    for (const auto& p : reply->json.at("probes").as_array()) {
        const auto& last = p.at("last");
        const auto& windows = p.at("windows");
        table.add({string_of(p.at("name")), last.is_object() ? string_of(last.at("outcome")) : "-",
                   last.is_object() ? ago(last.at("started_at"), now) : "-",
                   percent(windows.at("1h").at("availability")),
                   percent(windows.at("24h").at("availability")),
                   percent(windows.at("30d").at("availability")),
                   p.at("next_run_at").is_string() ? ago(p.at("next_run_at"), now) : "off",
                   last.is_object() ? string_of(last.at("message")) : ""});
    }
    std::fputs(table.empty() ? "no scenarios\n" : table.text().c_str(), stdout);
    return kExitOk;
}

int run_alarm_command(const Context& context,
                      const ProbeCommands& commands,
                      const AlarmFlags& flags) {
    Outcome<Reply> reply = Failure{};
    if (*commands.notifications) {
        reply = context.client.call(
            "GET", fmt::format("/api/v1/alarms/notifications?limit={}", flags.limit));
    } else if (*commands.alarms) {
        reply = context.client.call("GET", "/api/v1/alarms");
    } else if (*commands.silences) {
        reply = context.client.call(
            "GET", flags.ended ? "/api/v1/silences?ended=true" : "/api/v1/silences");
    } else if (*commands.silence_add) {
        reply = context.client.call("POST", "/api/v1/silences",
                                    json::value{{"matcher", flags.matcher},
                                                {"duration", flags.duration},
                                                {"reason", flags.reason}});
    } else {
        reply = context.client.call("DELETE", fmt::format("/api/v1/silences/{}", encode(flags.id)));
    }
    if (!reply) {
        return report(reply.failure());
    }
    if (context.json) {
        print_json_text(reply->body);
        return kExitOk;
    }
    const auto now = core::SystemClock{}.now();
    if (*commands.notifications) {
        Table table{{"ID", "WHEN", "ALARM", "KIND", "NOTIFIER", "OUTCOME", "ATTEMPTS", "ERROR"}};
        for (const auto& n : reply->json.at("notifications").as_array()) {
            table.add({std::to_string(n.at("id").to_number<std::int64_t>()), ago(n.at("at"), now),
                       string_of(n.at("alarm")), string_of(n.at("kind")),
                       string_of(n.at("notifier")), string_of(n.at("outcome")),
                       std::to_string(n.at("attempts").to_number<std::int64_t>()),
                       string_of(n.at("last_error"))});
        }
        std::fputs(table.empty() ? "no notifications yet\n" : table.text().c_str(), stdout);
        return kExitOk;
    }
    if (*commands.alarms) {
        Table table{{"ALARM", "STATE", "SINCE", "SILENCED", "READING"}};
        for (const auto& a : reply->json.at("alarms").as_array()) {
            table.add(
                {string_of(a.at("name")), string_of(a.at("state")), ago(a.at("since"), now),
                 string_of(a.at("silenced_by")).empty() ? "-" : string_of(a.at("silenced_by")),
                 string_of(a.at("summary"))});
        }
        std::fputs(table.empty() ? "no alarms yet\n" : table.text().c_str(), stdout);
        return kExitOk;
    }
    auto silence_row = [&](const json::value& s) {
        return std::vector<std::string>{string_of(s.at("id")), string_of(s.at("matcher")),
                                        ago(s.at("ends_at"), now), string_of(s.at("created_by")),
                                        string_of(s.at("reason"))};
    };
    Table table{{"ID", "MATCHER", "ENDS", "BY", "REASON"}};
    if (*commands.silences) {
        for (const auto& s : reply->json.at("silences").as_array()) {
            table.add(silence_row(s));
        }
    } else {
        table.add(silence_row(reply->json));
    }
    std::fputs(table.empty() ? "no silences\n" : table.text().c_str(), stdout);
    return kExitOk;
}

int run_probe_runs(const Context& context, const ProbeListFlags& flags) {
    const bool named =
        !flags.name.empty() && std::all_of(flags.name.begin(), flags.name.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' ||
                   c == '.';
        });
    if (!named) {
        std::fprintf(stderr,
                     "aviary probe runs: \"%s\" is not a scenario name (letters, digits, _, - "
                     "and .)\n",
                     flags.name.c_str());
        return kExitUsage;
    }
    auto reply = context.client.call(
        "GET", fmt::format("/api/v1/probes/{}/runs?limit={}", flags.name, flags.limit));
    if (!reply) {
        return report(reply.failure());
    }
    if (context.json) {
        print_json_text(reply->body);
        return kExitOk;
    }
    const auto now = core::SystemClock{}.now();
    Table table{{"ID", "WHEN", "OUTCOME", "DURATION", "INSTANCE", "MESSAGE"}};
    for (const auto& r : reply->json.at("runs").as_array()) {
        table.add({std::to_string(r.at("id").to_number<std::int64_t>()),
                   ago(r.at("started_at"), now), string_of(r.at("outcome")),
                   fmt::format("{} ms", r.at("duration_ms").to_number<std::int64_t>()),
                   string_of(r.at("instance")), string_of(r.at("message"))});
    }
    std::fputs(table.empty() ? "no runs yet\n" : table.text().c_str(), stdout);
    return kExitOk;
}

int run_probe(const ProbeRunFlags& flags) {
    auto loaded = flags.config_path.empty()
                      ? config::load_string(config::embedded_default(), "<embedded default>")
                      : config::load_file(flags.config_path);
    if (!loaded) {
        std::fprintf(stderr, "aviary probe run: %s\n", loaded.error().message.c_str());
        return kExitUsage;
    }
    const auto* scenario = probes::find_scenario(loaded->probes, flags.name);
    if (scenario == nullptr) {
        std::string names;
        for (const auto& s : loaded->probes.scenarios) {
            names += (names.empty() ? "" : ", ") + s.name;
        }
        std::fprintf(stderr, "aviary probe run: no scenario \"%s\" in %s (it has: %s)\n",
                     flags.name.c_str(), loaded->source.c_str(),
                     names.empty() ? "none" : names.c_str());
        return kExitUsage;
    }
    std::string server = flags.server;
    while (server.ends_with('/')) {
        server.pop_back();
    }
    if (!flags.json) {
        std::printf("%s: %zu step%s, timeout %s, {{server}} = %s\n", scenario->name.c_str(),
                    scenario->steps.size(), scenario->steps.size() == 1 ? "" : "s",
                    core::format_duration(scenario->timeout).c_str(), server.c_str());
        std::fflush(stdout);
    }
    asio::io_context io;
    net::ClientSettings client_settings;
    client_settings.tls.ca_file = flags.ca_file;
    net::HttpClient http{io.get_executor(), client_settings};
    net::BlockingPool blocking{2};
    probes::RunContext context;
    context.http = &http;
    context.blocking = &blocking;
    context.vars["server"] = server;
    // {{token}}: --token (AVIARY_TOKEN), else the file's probes.token_file or token_env.
    context.vars["token"] = flags.token.empty() ? loaded->probes.token : flags.token;
    context.vars["node"] = scenario->node;
    core::redactor().add_secret(context.vars["token"]);  // never printed, even in a message
    context.max_body_bytes = loaded->probes.max_body_bytes;
    if (!flags.json) {
        context.on_step = [](probes::StepResult step) {
            step.message = core::redact(step.message);
            std::printf("%s\n", step_line(step).c_str());
            std::fflush(stdout);
        };
    }
    probes::RunResult result;
    std::exception_ptr failure;
    asio::co_spawn(io, probes::run_scenario(*scenario, std::move(context)),
                   [&](std::exception_ptr e, probes::RunResult r) {
                       failure = e;
                       result = std::move(r);
                   });
    io.run();
    blocking.stop();
    if (failure) {
        std::rethrow_exception(failure);
    }
    result.message = core::redact(result.message);
    for (auto& step : result.steps) {
        step.message = core::redact(step.message);
    }
    if (flags.json) {
        std::printf("%s\n", api::probe_result_json(result).c_str());
    } else {
        // Steps inside a poll or parallel were held back while they ran: show the last try's.
        bool shown_nested = false;
        for (const auto& step : result.steps) {
            shown_nested |= step.depth > 0;
        }
        if (shown_nested) {
            std::printf("steps inside polls and parallels (the last try):\n");
            for (const auto& step : result.steps) {
                if (step.depth > 0) {
                    std::printf("%s\n", step_line(step).c_str());
                }
            }
        }
        if (result.outcome == probes::Outcome::kPassed) {
            std::printf("passed in %lld ms\n", static_cast<long long>(result.duration.count()));
        } else {
            std::printf("%s in %lld ms: %s\n",
                        std::string{probes::outcome_name(result.outcome)}.c_str(),
                        static_cast<long long>(result.duration.count()), result.message.c_str());
        }
    }
    return result.outcome == probes::Outcome::kPassed ? kExitOk : kExitRefused;
}

}  // namespace aviary::cli
