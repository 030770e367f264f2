#include "config/yaml_reader.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace aviary::config {
namespace {

TEST(YamlReader, EditDistanceCountsEdits) {
    EXPECT_EQ(edit_distance("lease_ttl", "lease_ttl"), 0u);
    EXPECT_EQ(edit_distance("lease_tl", "lease_ttl"), 1u);
    EXPECT_EQ(edit_distance("lesae_ttl", "lease_ttl"), 2u);
    EXPECT_EQ(edit_distance("", "abc"), 3u);
    EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
}

TEST(YamlReader, ErrorsComeInDocumentOrder) {
    YamlReader reader{"x.yaml"};
    YAML::Mark late;
    late.line = 4;
    late.column = 2;
    YAML::Mark early;
    early.line = 0;
    early.column = 0;
    reader.error(late, "b", "second");
    reader.error(early, "a", "first");
    auto failure = reader.failure();
    ASSERT_TRUE(failure);
    EXPECT_EQ(failure->code, core::ErrorCode::kInvalidArgument);
    EXPECT_EQ(failure->message, "x.yaml:1:1: a: first\nx.yaml:5:3: b: second");
}

TEST(YamlReader, ReadsByteSizes) {
    YamlReader reader{"x.yaml"};
    auto read = [&](const char* text) -> std::optional<std::size_t> {
        std::size_t out = 0;
        auto node = YAML::Load(text);
        if (!reader.read_bytes(Value{node, "size", node.Mark()}, out)) {
            return std::nullopt;
        }
        return out;
    };
    EXPECT_EQ(read("4096"), 4096u);
    EXPECT_EQ(read("16KiB"), 16u * 1024);
    EXPECT_EQ(read("1MiB"), 1024u * 1024);
    EXPECT_EQ(read("2GiB"), 2ull * 1024 * 1024 * 1024);
    EXPECT_EQ(read("10KB"), 10'000u);
    EXPECT_EQ(read("0"), std::nullopt);
    EXPECT_EQ(read("1.5MiB"), std::nullopt);
    EXPECT_EQ(read("-1"), std::nullopt);
    EXPECT_EQ(read("16kib"), std::nullopt);
    EXPECT_EQ(read("lots"), std::nullopt);
}

TEST(YamlReader, BooleansAreTrueOrFalseOnly) {
    YamlReader reader{"x.yaml"};
    auto read = [&](const char* text) -> std::optional<bool> {
        bool out = false;
        auto node = YAML::Load(text);
        if (!reader.read_bool(Value{node, "flag", node.Mark()}, out)) {
            return std::nullopt;
        }
        return out;
    };
    EXPECT_EQ(read("true"), true);
    EXPECT_EQ(read("false"), false);
    // YAML 1.1 spellings read as booleans by some tools and as strings by others.
    EXPECT_EQ(read("yes"), std::nullopt);
    EXPECT_EQ(read("on"), std::nullopt);
    EXPECT_EQ(read("1"), std::nullopt);
    auto failure = reader.failure();
    ASSERT_TRUE(failure);
    EXPECT_EQ(failure->message.substr(0, failure->message.find('\n')),
              "x.yaml:1:1: flag: expected true or false, got \"yes\"");
}

TEST(YamlReader, EntriesComeInFileOrderAndRepeatsAreRefused) {
    YamlReader reader{"x.yaml"};
    auto node = YAML::Load("{b: 1, a: 2, b: 3, \"\": 4}");
    std::vector<std::string> seen;
    ASSERT_TRUE(reader.read_entries(Value{node, "m", node.Mark()},
                                    [&](const Value& key, const Value& item) {
                                        seen.push_back(key.path + "=" + item.node.Scalar());
                                    }));
    EXPECT_EQ(seen, (std::vector<std::string>{"m.b=1", "m.a=2"}));
    auto failure = reader.failure();
    ASSERT_TRUE(failure);
    EXPECT_EQ(failure->message,
              "x.yaml:1:14: m.b: key \"b\" appears twice\nx.yaml:1:20: m.: keys must not be empty");
}

TEST(YamlReader, ReadsWideIntegers) {
    YamlReader reader{"x.yaml"};
    auto node = YAML::Load("5000000000");
    std::int64_t out = 0;
    ASSERT_TRUE(reader.read_int(Value{node, "n", node.Mark()}, out, 0, 10'000'000'000));
    EXPECT_EQ(out, 5'000'000'000);
    EXPECT_FALSE(reader.read_int(Value{node, "n", node.Mark()}, out, 0, 1'000));
}

}  // namespace
}  // namespace aviary::config
