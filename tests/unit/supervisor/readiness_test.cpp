// Reading a node's head from its answer, as each chain preset says (docs/supervise.md,
// "Readiness"). The presets here are written out as examples/chains.yaml has them.
#include "supervisor/readiness.hpp"

#include <gtest/gtest.h>

namespace aviary::supervisor {
namespace {

Preset nodeos() {
    Preset p;
    p.readiness = "chain";
    p.height = Field{"/head_block_num", "number"};
    p.head_time = Field{"/head_block_time", "iso8601"};
    p.chain_id = Field{"/chain_id", "string"};
    p.block_hash = Field{"/head_block_id", "string"};
    p.node_version = Field{"/server_version_string", "string"};
    p.head_producer = Field{"/head_block_producer", "string"};
    p.schedule = ChainCall{"POST", "/v1/chain/get_producer_schedule", ""};
    p.schedule_list = "/active/producers";
    p.schedule_name = "/producer_name";
    return p;
}

Preset geth() {
    Preset p;
    p.readiness = "chain";
    p.height = Field{"/result/number", "hex"};
    p.head_time = Field{"/result/timestamp", "unix"};
    p.syncing_field = Field{"/result", "bool"};
    return p;
}

Preset lotus() {
    Preset p;
    p.readiness = "chain";
    p.height = Field{"/result/Height", "number"};
    p.head_time = Field{"/result/Blocks/0/Timestamp", "unix"};
    return p;
}

TEST(ReadHead, NodeosGetInfo) {
    auto head = read_head(nodeos(), R"({"server_version":"d133c641","chain_id":
        "aca376f206b8fc25a6ed44dbdc66547c36c6c33e3a119ffbeaef943642f0e906",
        "head_block_num":1234,"head_block_time":"2026-12-04T15:01:02.500"})");
    ASSERT_TRUE(head) << head.error().message;
    EXPECT_EQ(head->height, 1234);
    ASSERT_TRUE(head->head_time);
    EXPECT_EQ(core::format_time(*head->head_time), "2026-12-04T15:01:02.500Z");
    EXPECT_EQ(head->chain_id, "aca376f206b8fc25a6ed44dbdc66547c36c6c33e3a119ffbeaef943642f0e906");
}

TEST(ReadHead, TheHeadsHashAndTheNodesVersionComeWithTheHeight) {
    auto head = read_head(nodeos(), R"({"head_block_num":1234,
        "head_block_id":"000004d2b7b0b1d3a9e1b6fb6d1e1f4c8d5a3e2f1a0b9c8d7e6f5a4b3c2d1e0f",
        "server_version_string":"v5.0.3"})");
    ASSERT_TRUE(head) << head.error().message;
    EXPECT_EQ(head->block_hash, "000004d2b7b0b1d3a9e1b6fb6d1e1f4c8d5a3e2f1a0b9c8d7e6f5a4b3c2d1e0f");
    EXPECT_EQ(head->node_version, "v5.0.3");
    // Absent or null: nothing recorded; a non-string is kept as its JSON text, capped.
    auto bare = read_head(nodeos(), R"({"head_block_num":7,"head_block_id":null})");
    ASSERT_TRUE(bare);
    EXPECT_EQ(bare->block_hash, "");
    EXPECT_EQ(bare->node_version, "");
    auto odd = read_head(nodeos(), R"({"head_block_num":7,"head_block_id":{"/":"bafy"},
        "server_version_string":")" + std::string(1000, 'x') +
                                       R"("})");
    ASSERT_TRUE(odd);
    EXPECT_EQ(odd->block_hash, R"({"/":"bafy"})");
    EXPECT_EQ(odd->node_version.size(), 256U);
    // A version read by a call of its own is not taken from head's answer.
    auto preset = nodeos();
    preset.version_call = ChainCall{"POST", "/", "{}"};
    auto own_call = read_head(preset, R"({"head_block_num":7,"server_version_string":"v5"})");
    ASSERT_TRUE(own_call);
    EXPECT_EQ(own_call->node_version, "");
}

TEST(ReadHead, GethHexNumberAndHexSeconds) {
    auto head = read_head(
        geth(), R"({"jsonrpc":"2.0","id":1,"result":{"number":"0x1b4","timestamp":"0x6756a1c3"}})");
    ASSERT_TRUE(head) << head.error().message;
    EXPECT_EQ(head->height, 436);
    ASSERT_TRUE(head->head_time);
    EXPECT_EQ(head->head_time->time_since_epoch(), std::chrono::seconds{0x6756a1c3});
}

TEST(ReadHead, LotusChainHead) {
    auto head = read_head(lotus(), R"({"jsonrpc":"2.0","result":{"Height":3200000,
        "Blocks":[{"Timestamp":1733324462}]},"id":1})");
    ASSERT_TRUE(head) << head.error().message;
    EXPECT_EQ(head->height, 3200000);
    EXPECT_EQ(head->head_time->time_since_epoch(), std::chrono::seconds{1733324462});
}

TEST(ReadHead, AnswersThatCannotBeReadSayWhy) {
    auto not_json = read_head(nodeos(), "<html>");
    ASSERT_FALSE(not_json);
    EXPECT_NE(not_json.error().message.find("not JSON"), std::string::npos);
    auto missing = read_head(nodeos(), R"({"chain_id":"x"})");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().message, "no /head_block_num in the node's answer");
    auto wrong = read_head(nodeos(), R"({"head_block_num":"twelve"})");
    ASSERT_FALSE(wrong);
    EXPECT_NE(wrong.error().message.find("expected a number"), std::string::npos);
    auto error = read_head(geth(), R"({"jsonrpc":"2.0","id":1,"error":{"code":-32000}})");
    ASSERT_FALSE(error);
    EXPECT_NE(error.error().message.find("the node answered an error"), std::string::npos);
    auto bad_time = read_head(nodeos(), R"({"head_block_num":1,"head_block_time":"yesterday"})");
    ASSERT_FALSE(bad_time);
    EXPECT_NE(bad_time.error().message.find("ISO 8601"), std::string::npos);
}

TEST(ReadSyncing, GethFalseOrAnObject) {
    auto synced = read_syncing(geth(), R"({"jsonrpc":"2.0","id":1,"result":false})");
    ASSERT_TRUE(synced);
    EXPECT_FALSE(*synced);
    auto syncing = read_syncing(
        geth(), R"({"jsonrpc":"2.0","id":1,"result":{"currentBlock":"0x1","highestBlock":"0x9"}})");
    ASSERT_TRUE(syncing);
    EXPECT_TRUE(*syncing);
}

TEST(ReadSchedule, NodeosActiveSchedule) {
    auto names = read_schedule(nodeos(), R"({"active":{"version":3,"producers":[
        {"producer_name":"alpha","authority":[0,{"threshold":1,"keys":[]}]},
        {"producer_name":"bravo","authority":[0,{"threshold":1,"keys":[]}]}]},
        "pending":null,"proposed":null})");
    ASSERT_TRUE(names) << names.error().message;
    EXPECT_EQ(*names, (std::vector<std::string>{"alpha", "bravo"}));
    auto head = read_head(nodeos(), R"({"head_block_num":9,"head_block_producer":"bravo"})");
    ASSERT_TRUE(head);
    EXPECT_EQ(head->head_producer, "bravo");

    // Entries that are names themselves, with schedule_name left out.
    auto plain = nodeos();
    plain.schedule_list = "/producers";
    plain.schedule_name.clear();
    auto listed = read_schedule(plain, R"({"producers":["a","b","c"]})");
    ASSERT_TRUE(listed) << listed.error().message;
    EXPECT_EQ(listed->size(), 3U);
}

TEST(ReadSchedule, AnswersThatCannotBeReadSayWhy) {
    auto none = read_schedule(nodeos(), R"({"active":null})");
    ASSERT_FALSE(none);
    EXPECT_NE(none.error().message.find("no list of producers at /active/producers"),
              std::string::npos)
        << none.error().message;
    auto nameless = read_schedule(nodeos(), R"({"active":{"producers":[{"key":"x"}]}})");
    ASSERT_FALSE(nameless);
    EXPECT_NE(nameless.error().message.find("has no name at /producer_name"), std::string::npos)
        << nameless.error().message;
    EXPECT_FALSE(read_schedule(nodeos(), "<html>"));
}

TEST(RoundOf, EachOfTheSeedsStatusesByTheHeadsProducer) {
    const std::vector<std::string> four{"a", "b", "c", "d"};
    EXPECT_EQ(round_of(four, "b", "b").status, "producing");
    EXPECT_EQ(round_of(four, "a", "b").status, "producing next");
    EXPECT_EQ(round_of(four, "c", "b").status, "just produced");
    EXPECT_EQ(round_of(four, "d", "b").status, "not producing");
    // The order wraps: after d comes a.
    EXPECT_EQ(round_of(four, "d", "a").status, "producing next");
    EXPECT_EQ(round_of(four, "a", "d").status, "just produced");
    for (const auto& head : four) {
        EXPECT_TRUE(round_of(four, head, "c").in_schedule);
    }
}

TEST(RoundOf, OutsideTheScheduleSmallSchedulesAndUnknownProducers) {
    const std::vector<std::string> three{"a", "b", "c"};
    auto outside = round_of(three, "a", "z");
    EXPECT_EQ(outside.status, "not producing");
    EXPECT_FALSE(outside.in_schedule);
    // Two producers: the other one's round is always followed by ours.
    const std::vector<std::string> two{"a", "b"};
    EXPECT_EQ(round_of(two, "b", "a").status, "producing next");
    EXPECT_EQ(round_of(two, "a", "a").status, "producing");
    // Alone: every block is ours.
    EXPECT_EQ(round_of({"a"}, "a", "a").status, "producing");
    // A head made by a producer no longer scheduled: in the schedule, place unknown.
    auto changing = round_of(three, "old", "b");
    EXPECT_EQ(changing.status, "not producing");
    EXPECT_TRUE(changing.in_schedule);
    EXPECT_FALSE(round_of({}, "a", "a").in_schedule);
}

}  // namespace
}  // namespace aviary::supervisor
