#include "support/test_certs.hpp"

#include <arpa/inet.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace aviary::test {
namespace {

void run_or_abort(const std::string& command) {
    std::string line = command + " 2>&1";
    FILE* pipe = ::popen(line.c_str(), "r");
    if (pipe == nullptr) {
        std::fprintf(stderr, "test_certs: cannot run: %s\n", command.c_str());
        std::abort();
    }
    std::string output;
    char buffer[4096];
    while (auto n = std::fread(buffer, 1, sizeof buffer, pipe)) {
        output.append(buffer, n);
    }
    if (::pclose(pipe) != 0) {
        std::fprintf(stderr, "test_certs: failed: %s\n%s\n", command.c_str(), output.c_str());
        std::abort();
    }
}

bool is_ip(const std::string& text) {
    unsigned char buffer[16];
    return ::inet_pton(AF_INET, text.c_str(), buffer) == 1 ||
           ::inet_pton(AF_INET6, text.c_str(), buffer) == 1;
}

std::string san_line(const std::vector<std::string>& names) {
    std::string out = "subjectAltName=";
    for (std::size_t i = 0; i < names.size(); ++i) {
        out += (i > 0 ? "," : "");
        out += (is_ip(names[i]) ? "IP:" : "DNS:") + names[i];
    }
    return out;
}

void write_file(const std::string& path, const std::string& text) {
    std::ofstream out{path, std::ios::trunc};
    out << text;
}

void make_ca(const std::string& dir, const std::string& stem, const std::string& cn) {
    run_or_abort(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "
        "'/CN=" +
        cn + "' -keyout " + dir + "/" + stem + ".key -out " + dir + "/" + stem +
        ".crt -addext basicConstraints=critical,CA:TRUE -addext "
        "keyUsage=critical,keyCertSign,cRLSign");
}

/// A key and a certificate signed by the CA at ca_stem, with the extensions in `extensions`.
/// `days` may be negative (then the certificate's validity ends in the past).
void make_leaf(const std::string& dir,
               const std::string& ca_cert,
               const std::string& ca_key,
               const std::string& stem,
               const std::string& cn,
               const std::string& extensions,
               int days) {
    const std::string base = dir + "/" + stem;
    write_file(base + ".ext", extensions + "\n");
    run_or_abort("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj '/CN=" +
                 cn + "' -keyout " + base + ".key -out " + base + ".csr");
    if (days > 0) {
        run_or_abort("openssl x509 -req -in " + base + ".csr -CA " + ca_cert + " -CAkey " + ca_key +
                     " -CAcreateserial -days " + std::to_string(days) + " -extfile " + base +
                     ".ext -out " + base + ".crt");
        return;
    }
    // Expired: openssl ca can set both ends of the validity in the past; a throwaway CA
    // database keeps it quiet.
    write_file(base + ".index", "");
    write_file(base + ".cnf", "[ca]\ndefault_ca=own\n[own]\ndatabase=" + base +
                                  ".index\nnew_certs_dir=" + dir + "\nserial=" + base +
                                  ".serial\ndefault_md=sha256\npolicy=any\n"
                                  "unique_subject=no\n[any]\ncommonName=supplied\n");
    write_file(base + ".serial", "1000\n");
    run_or_abort("openssl ca -batch -notext -config " + base + ".cnf -cert " + ca_cert +
                 " -keyfile " + ca_key + " -startdate 20200101000000Z -enddate 20200102000000Z" +
                 " -extfile " + base + ".ext -in " + base + ".csr -out " + base + ".crt");
}

}  // namespace

TestPki make_test_pki(const std::string& dir) {
    make_ca(dir, "ca", "aviary test CA");
    make_ca(dir, "other-ca", "another test CA");
    TestPki pki;
    pki.ca_cert = dir + "/ca.crt";
    pki.ca_key = dir + "/ca.key";
    pki.other_ca_cert = dir + "/other-ca.crt";
    std::tie(pki.server_cert, pki.server_key) =
        make_server_cert(pki, dir, "server", {"localhost", "127.0.0.1", "::1"});
    make_leaf(dir, pki.ca_cert, pki.ca_key, "client", "client-1", "extendedKeyUsage=clientAuth", 2);
    pki.client_cert = dir + "/client.crt";
    pki.client_key = dir + "/client.key";
    make_leaf(dir, pki.ca_cert, pki.ca_key, "expired", "localhost",
              san_line({"localhost", "127.0.0.1"}) + "\nextendedKeyUsage=serverAuth", -1);
    pki.expired_cert = dir + "/expired.crt";
    pki.expired_key = dir + "/expired.key";
    return pki;
}

std::pair<std::string, std::string> make_server_cert(const TestPki& pki,
                                                     const std::string& dir,
                                                     const std::string& stem,
                                                     const std::vector<std::string>& names) {
    make_leaf(dir, pki.ca_cert, pki.ca_key, stem, names.empty() ? "localhost" : names.front(),
              san_line(names) + "\nextendedKeyUsage=serverAuth", 2);
    return {dir + "/" + stem + ".crt", dir + "/" + stem + ".key"};
}

}  // namespace aviary::test
