#pragma once
// Test support: a private CA and certificates made with the `openssl` command at test time, so
// TLS tests never depend on files that expire in the repository.
#include <string>
#include <vector>

namespace aviary::test {

/// Files written under `dir` by make_test_pki(). Paths are absolute.
struct TestPki {
    std::string ca_cert;  ///< the CA that signed server and client
    std::string ca_key;
    std::string server_cert;  ///< CN and SAN "localhost", SAN IP 127.0.0.1 and ::1
    std::string server_key;
    std::string client_cert;  ///< CN "client-1", extendedKeyUsage clientAuth
    std::string client_key;
    std::string other_ca_cert;  ///< a second CA that signed nothing here: "unknown CA"
    std::string expired_cert;   ///< signed by ca_cert for "localhost", expired yesterday
    std::string expired_key;
};

/// Makes the CA, the server and client certificates, an unrelated CA and an expired server
/// certificate in `dir`. Aborts the test binary (with openssl's output) if openssl fails.
TestPki make_test_pki(const std::string& dir);

/// Signs a new server certificate for `names` (DNS names; entries that parse as IP addresses
/// become IP SANs) with the CA of `pki`, written as `stem`.crt / `stem`.key in `dir`.
/// Returns {cert, key}.
std::pair<std::string, std::string> make_server_cert(const TestPki& pki,
                                                     const std::string& dir,
                                                     const std::string& stem,
                                                     const std::vector<std::string>& names);

}  // namespace aviary::test
