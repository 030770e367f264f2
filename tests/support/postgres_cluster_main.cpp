// postgres_cluster start|stop DIR [--durable]: the CTest fixture that gives a whole test run
// one PostgreSQL cluster (tests/support/postgres_server.hpp), and bench/scaleout's database.
// `start` leaves the server running and its URL in DIR/url; `stop` stops it and removes DIR.
// --durable keeps fsync and synchronous_commit on (benchmarks).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "support/postgres_server.hpp"

int main(int argc, char** argv) {
    bool durable = argc == 4 && std::string{argv[3]} == "--durable";
    if ((argc != 3 && !durable) ||
        (std::string{argv[1]} != "start" && std::string{argv[1]} != "stop")) {
        std::fprintf(stderr, "usage: postgres_cluster start|stop DIR [--durable]\n");
        return 2;
    }
    std::string verb = argv[1];
    std::string dir = argv[2];
    try {
        if (verb == "start") {
            std::error_code ignored;
            std::filesystem::remove_all(dir, ignored);  // a run killed before its stop
            aviary::test::PostgresServer server{
                dir, aviary::test::PostgresServer::Options{.durable = durable}};
            std::ofstream{dir + "/url"} << server.url() << "\n";
            std::printf("postgres_cluster: %s\n", server.url().c_str());
            server.detach();  // it outlives this process
            return 0;
        }
        return aviary::test::stop_postgres_at(dir) ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "postgres_cluster: %s\n", e.what());
        return 1;
    }
}
