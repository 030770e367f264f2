// The WAL-gathering VFS (src/store/sqlite/wal_vfs.hpp): a commit made through it is in the
// file and visible to every other connection when the commit returns, and large or rewritten
// transactions land intact.
#include "store/sqlite/wal_vfs.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "core/core.hpp"

namespace aviary::store::sqlite {
namespace {

class WalVfs : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("aviary-wal-vfs-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::remove_all(dir_);
        std::filesystem::create_directories(dir_);
        path_ = (dir_ / "test.db").string();
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    /// A connection through the gathering VFS (gathering) or SQLite's default one.
    sqlite3* open(bool gathering) {
        sqlite3* db = nullptr;
        const char* vfs = gathering ? wal_gathering_vfs() : nullptr;
        EXPECT_EQ(
            sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
            SQLITE_OK);
        exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL");
        return db;
    }

    static void exec(sqlite3* db, const std::string& sql) {
        char* error = nullptr;
        int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
        EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (error != nullptr ? error : "");
        sqlite3_free(error);
    }

    static std::int64_t one(sqlite3* db, const std::string& sql) {
        sqlite3_stmt* stmt = nullptr;
        EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
        EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW) << sql << ": " << sqlite3_errmsg(db);
        std::int64_t value = sqlite3_column_int64(stmt, 0);
        sqlite3_finalize(stmt);
        return value;
    }

    static std::string text(sqlite3* db, const std::string& sql) {
        sqlite3_stmt* stmt = nullptr;
        EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
        EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW) << sql;
        std::string value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
        sqlite3_finalize(stmt);
        return value;
    }

    std::filesystem::path dir_;
    std::string path_;
};

TEST_F(WalVfs, IsRegisteredOnceUnderOneName) {
    const char* name = wal_gathering_vfs();
    ASSERT_NE(name, nullptr);
    EXPECT_EQ(std::string{name}, "aviary-wal-gathering");
    EXPECT_EQ(wal_gathering_vfs(), name);
    EXPECT_NE(sqlite3_vfs_find(name), nullptr);
    EXPECT_NE(sqlite3_vfs_find(nullptr), sqlite3_vfs_find(name)) << "not made the default";
}

TEST_F(WalVfs, EveryCommitIsVisibleToOtherConnectionsWhenItReturns) {
    sqlite3* writer = open(true);
    exec(writer, "CREATE TABLE t (id INTEGER PRIMARY KEY, node TEXT, body TEXT)");
    exec(writer, "CREATE INDEX t_node ON t (node, id)");
    sqlite3* plain = open(false);
    sqlite3* gathering = open(true);
    for (int i = 1; i <= 200; ++i) {
        // Each commit touches several pages (the table, an index scattered by node).
        exec(writer, "BEGIN IMMEDIATE");
        for (int j = 0; j < 5; ++j) {
            exec(writer, "INSERT INTO t (node, body) VALUES ('node-" + std::to_string(j * 7 % 11) +
                             "', printf('%.*c', 300, 'x'))");
        }
        exec(writer, "COMMIT");
        ASSERT_EQ(one(plain, "SELECT count(*) FROM t"), i * 5) << "default VFS, commit " << i;
        ASSERT_EQ(one(gathering, "SELECT count(*) FROM t"), i * 5) << "this VFS, commit " << i;
    }
    EXPECT_EQ(text(plain, "PRAGMA integrity_check"), "ok");
    sqlite3_close(gathering);
    sqlite3_close(plain);
    sqlite3_close(writer);
}

TEST_F(WalVfs, ACommitHasReachedTheFileWhenItReturnsEvenIfTheProcessDiesThen) {
    {
        sqlite3* db = open(true);
        exec(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)");
        sqlite3_close(db);
    }
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        // The child commits and dies without closing anything: no close, no checkpoint, so
        // only what reached the WAL file by the time COMMIT returned survives.
        sqlite3* db = nullptr;
        if (sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE, wal_gathering_vfs()) !=
                SQLITE_OK ||
            sqlite3_exec(db,
                         "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0; "
                         "BEGIN; INSERT INTO t (body) VALUES ('first'); COMMIT; "
                         "BEGIN; INSERT INTO t (body) VALUES (printf('%.*c', 200000, 'y')); "
                         "COMMIT;",
                         nullptr, nullptr, nullptr) != SQLITE_OK) {
            ::_exit(2);
        }
        ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    sqlite3* reader = open(false);
    EXPECT_EQ(one(reader, "SELECT count(*) FROM t"), 2);
    EXPECT_EQ(one(reader, "SELECT length(body) FROM t WHERE id = 2"), 200000);
    EXPECT_EQ(text(reader, "PRAGMA integrity_check"), "ok");
    sqlite3_close(reader);
}

TEST_F(WalVfs, ATransactionLargerThanOneWriteLandsWhole) {
    // Several MiB in one commit: gathered runs are written out as they grow, in pieces the
    // default VFS accepts.
    sqlite3* writer = open(true);
    exec(writer, "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)");
    exec(writer, "BEGIN");
    for (int i = 0; i < 3000; ++i) {
        exec(writer, "INSERT INTO t (body) VALUES (printf('%.*c', 2000, 'z'))");
    }
    exec(writer, "COMMIT");
    sqlite3* plain = open(false);
    EXPECT_EQ(one(plain, "SELECT count(*) FROM t"), 3000);
    EXPECT_EQ(one(plain, "SELECT sum(length(body)) FROM t"), 3000 * 2000);
    EXPECT_EQ(text(plain, "PRAGMA integrity_check"), "ok");
    sqlite3_close(plain);
    sqlite3_close(writer);
}

TEST_F(WalVfs, PagesSpilledAndRewrittenInOneTransactionLandAsLastWritten) {
    // A page cache of a few pages makes SQLite spill a transaction's pages to the WAL before
    // COMMIT and rewrite those frames in place when the pages change again: writes that do
    // not extend the gathered run.
    sqlite3* writer = open(true);
    exec(writer, "PRAGMA cache_size = 10");
    exec(writer, "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, body TEXT)");
    exec(writer, "BEGIN");
    for (int i = 0; i < 400; ++i) {
        exec(writer, "INSERT INTO t (n, body) VALUES (0, printf('%.*c', 500, 'w'))");
    }
    for (int round = 1; round <= 5; ++round) {
        exec(writer, "UPDATE t SET n = n + 1");
    }
    exec(writer, "COMMIT");
    sqlite3* plain = open(false);
    EXPECT_EQ(one(plain, "SELECT count(*) FROM t WHERE n = 5"), 400);
    EXPECT_EQ(text(plain, "PRAGMA integrity_check"), "ok");
    sqlite3_close(plain);
    exec(writer, "PRAGMA wal_checkpoint(TRUNCATE)");
    sqlite3* after = open(false);
    EXPECT_EQ(one(after, "SELECT count(*) FROM t WHERE n = 5"), 400);
    sqlite3_close(after);
    sqlite3_close(writer);
}

}  // namespace
}  // namespace aviary::store::sqlite
