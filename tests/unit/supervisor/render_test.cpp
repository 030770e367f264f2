// Rendered node config (src/supervisor/render.hpp): templates, values, signature providers.
#include "supervisor/render.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "files.hpp"

namespace aviary::supervisor {
namespace {

namespace fs = std::filesystem;
using Values = std::vector<std::pair<std::string, std::string>>;

using test::read;
using test::write;

class RenderFileTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("aviary-render-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }
    fs::path dir_;
};

TEST(RenderTemplate, FillsEachPlaceholderWithSpacesOrWithout) {
    auto out =
        render_template("agent-name = {{agent}}\np2p-peer-address = {{ peer }}:9876\n",
                        "config.ini", Values{{"agent", "bp-1"}, {"peer", "10.0.0.2"}}, {}, "");
    ASSERT_TRUE(out) << out.error().message;
    EXPECT_EQ(*out, "agent-name = bp-1\np2p-peer-address = 10.0.0.2:9876\n");
}

TEST(RenderTemplate, SignatureProvidersAreOneLinePerKey) {
    auto out = render_template("plugin = eosio::producer_plugin\n{{ signature_providers }}\n",
                               "config.ini", {}, {"EOS6MRyAjQq8ud7hVNYcfnVPJ", "PUB_K1_abc"},
                               "KEOSD:http://127.0.0.1:6666/v1/wallet/sign_digest");
    ASSERT_TRUE(out) << out.error().message;
    EXPECT_EQ(
        *out,
        "plugin = eosio::producer_plugin\n"
        "signature-provider = "
        "EOS6MRyAjQq8ud7hVNYcfnVPJ=KEOSD:http://127.0.0.1:6666/v1/wallet/sign_digest\n"
        "signature-provider = PUB_K1_abc=KEOSD:http://127.0.0.1:6666/v1/wallet/sign_digest\n");
}

TEST(RenderTemplate, AMissingValueNamesTheLineAndTheName) {
    auto out = render_template("a = 1\nb = {{ nope }}\n", "conf/config.ini", {}, {}, "");
    ASSERT_FALSE(out);
    EXPECT_EQ(out.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_EQ(out.error().message, "conf/config.ini:2: {{ nope }} has no value (render.values)");
}

TEST(RenderTemplate, AnUnclosedOrBadPlaceholderNamesItsLine) {
    auto unclosed = template_names("a = 1\n\nb = {{ name\n}}\n", "t.ini");
    ASSERT_FALSE(unclosed);
    EXPECT_EQ(unclosed.error().message, "t.ini:3: \"{{\" without its \"}}\"");
    auto bad = template_names("x = {{ two words }}\n", "t.ini");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().message,
              "t.ini:1: \"{{ two words }}\" is not a value name (letters, digits, '_')");
}

TEST(RenderTemplate, NamesAreListedOnceInOrderOfFirstUse) {
    auto names = template_names("{{b}} {{a}}\n{{ b }} {{signature_providers}}\n", "t");
    ASSERT_TRUE(names) << names.error().message;
    EXPECT_EQ(*names, (std::vector<std::string>{"b", "a", "signature_providers"}));
}

TEST(ParseKeys, AJsonArrayOfKeysAndNothingElse) {
    auto keys = parse_keys(R"(["EOS5abc","PUB_K1_def"])", "http://127.0.0.1:6666");
    ASSERT_TRUE(keys) << keys.error().message;
    EXPECT_EQ(*keys, (std::vector<std::string>{"EOS5abc", "PUB_K1_def"}));
    EXPECT_FALSE(parse_keys(R"({"keys":[]})", "u"));
    // A key that would break out of its config line is refused.
    auto injected = parse_keys(R"(["EOS5abc\nproducer-name = evil"])", "http://k");
    ASSERT_FALSE(injected);
    EXPECT_NE(injected.error().message.find("not a public key"), std::string::npos);
}

TEST_F(RenderFileTest, ValuesFromFilesAndTheEnvironmentAndTheOutputIsPrivate) {
    write(dir_ / "config.ini", "key = {{ secret }}\nregion = {{ region }}\n");
    write(dir_ / "secret", "hunter2\n");
    ::setenv("AVIARY_RENDER_TEST_REGION", "eu-west", 1);
    RenderSettings settings{
        .template_path = (dir_ / "config.ini").string(),
        .output = (dir_ / "out" / "config.ini").string(),
        .values = {{"secret", ValueSource{ValueSource::Kind::kFile, (dir_ / "secret").string()}},
                   {"region", ValueSource{ValueSource::Kind::kEnv, "AVIARY_RENDER_TEST_REGION"}}}};
    auto written = render_file(settings, {});
    ASSERT_TRUE(written) << written.error().message;
    EXPECT_TRUE(*written);
    EXPECT_EQ(read(settings.output), "key = hunter2\nregion = eu-west\n");
    struct stat st {};
    ASSERT_EQ(::stat(settings.output.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600U);
    // The same text again: the file is left alone.
    written = render_file(settings, {});
    ASSERT_TRUE(written) << written.error().message;
    EXPECT_FALSE(*written);
    // A changed value file changes the output.
    write(dir_ / "secret", "correct horse\n");
    written = render_file(settings, {});
    ASSERT_TRUE(written) << written.error().message;
    EXPECT_TRUE(*written);
    EXPECT_EQ(read(settings.output), "key = correct horse\nregion = eu-west\n");
    ::unsetenv("AVIARY_RENDER_TEST_REGION");
}

TEST_F(RenderFileTest, AnErrorNamesTheValueButNeverShowsASecret) {
    write(dir_ / "config.ini", "key = {{ secret }}\n");
    RenderSettings settings{
        .template_path = (dir_ / "config.ini").string(),
        .output = (dir_ / "config.out").string(),
        .values = {{"secret", ValueSource{ValueSource::Kind::kEnv, "AVIARY_RENDER_TEST_UNSET"}}}};
    ::unsetenv("AVIARY_RENDER_TEST_UNSET");
    auto written = render_file(settings, {});
    ASSERT_FALSE(written);
    EXPECT_EQ(written.error().message,
              "value secret: the environment has no AVIARY_RENDER_TEST_UNSET");
    EXPECT_FALSE(fs::exists(settings.output));

    settings.values = {{"secret", ValueSource{ValueSource::Kind::kText, "s3cr3t-value"}}};
    write(dir_ / "config.ini", "key = {{ secret }}\nother = {{ missing }}\n");
    written = render_file(settings, {});
    ASSERT_FALSE(written);
    EXPECT_EQ(written.error().message.find("s3cr3t-value"), std::string::npos);
    EXPECT_NE(written.error().message.find("{{ missing }}"), std::string::npos);
}

}  // namespace
}  // namespace aviary::supervisor
