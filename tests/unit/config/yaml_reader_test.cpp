#include "config/yaml_reader.hpp"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace aviary::config
