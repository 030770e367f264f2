// The aviary binary: one executable, several roles (DESIGN §1).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "api/api.hpp"
#include "config/config.hpp"

namespace {

using namespace aviary;

struct ServeFlags {
    std::string config_path;
    std::string listen;
    std::string data_dir;
};

int run_serve(const ServeFlags& flags) {
    auto config = flags.config_path.empty()
                      ? config::load_string(config::embedded_default(), "<embedded default>")
                      : config::load_file(flags.config_path);
    if (!config) {
        std::fprintf(stderr, "aviary: invalid configuration:\n%s\n",
                     config.error().message.c_str());
        return 2;
    }
    // Flags win over the file.
    if (!flags.listen.empty()) {
        config->server.listen = flags.listen;
    }
    if (!flags.data_dir.empty()) {
        config->data_dir = flags.data_dir;
    }
    return api::serve(std::move(*config));
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"aviary: a control plane for fleets of long-running nodes"};
    app.require_subcommand(1);

    ServeFlags serve_flags;
    auto* serve = app.add_subcommand("serve", "run the control plane (JSON-RPC on :1337)");
    serve->add_option("--config", serve_flags.config_path,
                      "YAML config file (default: the embedded examples/aviary.yaml)");
    serve->add_option("--listen", serve_flags.listen, "HOST:PORT to listen on (port 0: any)");
    serve->add_option("--data-dir", serve_flags.data_dir, "where the SQLite store lives");

    auto* version = app.add_subcommand("version", "print the version and commit");

    CLI11_PARSE(app, argc, argv);
    if (*version) {
        std::printf("aviary %s (commit %s)\n", std::string{api::version()}.c_str(),
                    std::string{api::commit()}.c_str());
        return 0;
    }
    if (*serve) {
        return run_serve(serve_flags);
    }
    return 2;
}
