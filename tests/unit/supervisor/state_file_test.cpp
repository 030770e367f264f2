// The sidecar's state file (src/supervisor/state_file.hpp): what maintenance survives on.
#include "supervisor/state_file.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace aviary::supervisor {
namespace {

class StateFileTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("aviary-state-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::remove_all(dir_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::filesystem::path dir_;
};

TEST_F(StateFileTest, AMissingFileIsTheDefaultAndTheDirIsMade) {
    auto state = read_state_file(dir_.string());
    ASSERT_TRUE(state) << state.error().message;
    EXPECT_FALSE(state->maintenance);
    EXPECT_EQ(state->starts, 0U);
    EXPECT_TRUE(std::filesystem::is_directory(dir_));
}

TEST_F(StateFileTest, WhatIsWrittenIsReadBack) {
    ASSERT_TRUE(read_state_file(dir_.string()));
    ASSERT_TRUE(write_state_file(dir_.string(),
                                 StateFile{.maintenance = true, .starts = 7, .restarts = 3}));
    auto state = read_state_file(dir_.string());
    ASSERT_TRUE(state) << state.error().message;
    EXPECT_TRUE(state->maintenance);
    EXPECT_EQ(state->starts, 7U);
    EXPECT_EQ(state->restarts, 3U);
    EXPECT_FALSE(std::filesystem::exists(state_file_path(dir_.string()) + ".tmp"));
}

TEST_F(StateFileTest, ABadFileIsRefusedNamingItAndWhy) {
    ASSERT_TRUE(read_state_file(dir_.string()));
    std::ofstream{state_file_path(dir_.string())} << R"({"maintenance":"yes"})";
    auto state = read_state_file(dir_.string());
    ASSERT_FALSE(state);
    EXPECT_EQ(state.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_NE(state.error().message.find(state_file_path(dir_.string())), std::string::npos);
    EXPECT_NE(state.error().message.find("\"maintenance\" must be true or false"),
              std::string::npos);
    std::ofstream{state_file_path(dir_.string())} << "not json";
    EXPECT_FALSE(read_state_file(dir_.string()));
}

}  // namespace
}  // namespace aviary::supervisor
