#include "store/sqlite/wal_vfs.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <mutex>
#include <new>
#include <string>

namespace aviary::store::sqlite {
namespace {

/// A run of gathered bytes is written out once it passes this size.
constexpr std::size_t kMaxGathered = 1U << 20U;

/// The most one write hands the wrapped VFS: the unix VFS writes at most 128 KiB - 1 bytes
/// per call (it masks the length) and reports a shorter write as a full disk.
constexpr std::size_t kMaxWrite = 124U << 10U;

/// What SQLite allocates for each open file (szOsFile bytes): this header, then the wrapped
/// VFS's own file object.
struct File {
    sqlite3_file base;         // first: SQLite sees a File* as a sqlite3_file*
    sqlite3_file* inner;       // the wrapped VFS's file, in the same allocation, after this header
    File* wal = nullptr;       // on a database file: its open WAL file, flushed at the barrier
    File* database = nullptr;  // on a WAL file: the database file it belongs to
    std::string gathered;      // on a WAL file: bytes not yet written, starting at gathered_at
    sqlite3_int64 gathered_at = 0;
};

constexpr std::size_t kHeaderSize = (sizeof(File) + 15U) & ~std::size_t{15U};

File* as_file(sqlite3_file* file) {
    return reinterpret_cast<File*>(file);
}
sqlite3_file* inner(sqlite3_file* file) {
    return as_file(file)->inner;
}
const sqlite3_io_methods* methods(sqlite3_file* file) {
    return inner(file)->pMethods;
}

/// Writes the gathered run, if any, as one write.
int flush(File& file) {
    if (file.gathered.empty()) {
        return SQLITE_OK;
    }
    int rc = SQLITE_OK;
    for (std::size_t done = 0; done < file.gathered.size() && rc == SQLITE_OK;) {
        const std::size_t size = std::min(kMaxWrite, file.gathered.size() - done);
        rc = file.inner->pMethods->xWrite(file.inner, file.gathered.data() + done,
                                          static_cast<int>(size),
                                          file.gathered_at + static_cast<sqlite3_int64>(done));
        done += size;
    }
    file.gathered.clear();
    return rc;
}

int flush(sqlite3_file* file) {
    return flush(*as_file(file));
}

// --- Methods shared by both kinds of file: straight through to the wrapped file -------------

int pass_read(sqlite3_file* f, void* buffer, int amount, sqlite3_int64 offset) {
    return methods(f)->xRead(inner(f), buffer, amount, offset);
}
int pass_write(sqlite3_file* f, const void* buffer, int amount, sqlite3_int64 offset) {
    return methods(f)->xWrite(inner(f), buffer, amount, offset);
}
int pass_truncate(sqlite3_file* f, sqlite3_int64 size) {
    return methods(f)->xTruncate(inner(f), size);
}
int pass_sync(sqlite3_file* f, int flags) {
    return methods(f)->xSync(inner(f), flags);
}
int pass_file_size(sqlite3_file* f, sqlite3_int64* size) {
    return methods(f)->xFileSize(inner(f), size);
}
int pass_file_control(sqlite3_file* f, int op, void* arg) {
    return methods(f)->xFileControl(inner(f), op, arg);
}
int lock(sqlite3_file* f, int level) {
    return methods(f)->xLock(inner(f), level);
}
int unlock(sqlite3_file* f, int level) {
    return methods(f)->xUnlock(inner(f), level);
}
int check_reserved_lock(sqlite3_file* f, int* out) {
    return methods(f)->xCheckReservedLock(inner(f), out);
}
int sector_size(sqlite3_file* f) {
    return methods(f)->xSectorSize(inner(f));
}
int device_characteristics(sqlite3_file* f) {
    return methods(f)->xDeviceCharacteristics(inner(f));
}
int shm_map(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
    return methods(f)->xShmMap(inner(f), region, size, extend, out);
}
int shm_lock(sqlite3_file* f, int offset, int n, int flags) {
    return methods(f)->xShmLock(inner(f), offset, n, flags);
}
int shm_unmap(sqlite3_file* f, int delete_flag) {
    return methods(f)->xShmUnmap(inner(f), delete_flag);
}
int fetch(sqlite3_file* f, sqlite3_int64 offset, int amount, void** out) {
    return methods(f)->xFetch(inner(f), offset, amount, out);
}
int unfetch(sqlite3_file* f, sqlite3_int64 offset, void* page) {
    return methods(f)->xUnfetch(inner(f), offset, page);
}

int close_plain(sqlite3_file* f) {
    File* file = as_file(f);
    if (file->wal != nullptr) {
        file->wal->database = nullptr;
    }
    int rc = methods(f)->xClose(inner(f));
    file->~File();
    return rc;
}

/// SQLite calls this on the database file between writing the two copies of a new wal-index
/// header: the commit becomes visible to other connections right after it.
void shm_barrier(sqlite3_file* f) {
    if (File* wal = as_file(f)->wal; wal != nullptr) {
        // The barrier cannot fail; a failed write shows again at the next write or sync,
        // which SQLite checks (the bytes are gone from the buffer either way, as a failed
        // pwrite would leave them).
        (void)flush(*wal);
    }
    methods(f)->xShmBarrier(inner(f));
}

// --- The WAL file ---------------------------------------------------------------------------

int wal_write(sqlite3_file* f, const void* buffer, int amount, sqlite3_int64 offset) {
    File& file = *as_file(f);
    const auto size = static_cast<std::size_t>(amount);
    if (!file.gathered.empty() &&
        offset != file.gathered_at + static_cast<sqlite3_int64>(file.gathered.size())) {
        // Not an append to the run (a frame of this transaction rewritten): out in order.
        if (int rc = flush(file); rc != SQLITE_OK) {
            return rc;
        }
        return pass_write(f, buffer, amount, offset);
    }
    if (file.gathered.empty()) {
        file.gathered_at = offset;
    }
    file.gathered.append(static_cast<const char*>(buffer), size);
    if (file.gathered.size() >= kMaxGathered) {
        return flush(file);
    }
    return SQLITE_OK;
}

int wal_read(sqlite3_file* f, void* buffer, int amount, sqlite3_int64 offset) {
    if (int rc = flush(f); rc != SQLITE_OK) {
        return rc;
    }
    return pass_read(f, buffer, amount, offset);
}
int wal_truncate(sqlite3_file* f, sqlite3_int64 size) {
    if (int rc = flush(f); rc != SQLITE_OK) {
        return rc;
    }
    return pass_truncate(f, size);
}
int wal_sync(sqlite3_file* f, int flags) {
    if (int rc = flush(f); rc != SQLITE_OK) {
        return rc;
    }
    return pass_sync(f, flags);
}
int wal_file_size(sqlite3_file* f, sqlite3_int64* size) {
    if (int rc = flush(f); rc != SQLITE_OK) {
        return rc;
    }
    return pass_file_size(f, size);
}
int wal_file_control(sqlite3_file* f, int op, void* arg) {
    if (int rc = flush(f); rc != SQLITE_OK) {
        return rc;
    }
    return pass_file_control(f, op, arg);
}
int wal_close(sqlite3_file* f) {
    File* file = as_file(f);
    int flushed = flush(*file);
    if (file->database != nullptr) {
        file->database->wal = nullptr;
    }
    int rc = methods(f)->xClose(inner(f));
    file->~File();
    return flushed != SQLITE_OK ? flushed : rc;
}

/// The methods of a wrapping file, at the version of the file it wraps (SQLite calls the
/// shared-memory methods only from version 2, the fetch methods only from version 3).
sqlite3_io_methods make_methods(bool wal, int version) {
    sqlite3_io_methods m{};
    m.iVersion = version;
    m.xClose = wal ? wal_close : close_plain;
    m.xRead = wal ? wal_read : pass_read;
    m.xWrite = wal ? wal_write : pass_write;
    m.xTruncate = wal ? wal_truncate : pass_truncate;
    m.xSync = wal ? wal_sync : pass_sync;
    m.xFileSize = wal ? wal_file_size : pass_file_size;
    m.xLock = lock;
    m.xUnlock = unlock;
    m.xCheckReservedLock = check_reserved_lock;
    m.xFileControl = wal ? wal_file_control : pass_file_control;
    m.xSectorSize = sector_size;
    m.xDeviceCharacteristics = device_characteristics;
    m.xShmMap = shm_map;
    m.xShmLock = shm_lock;
    m.xShmBarrier = shm_barrier;
    m.xShmUnmap = shm_unmap;
    m.xFetch = fetch;
    m.xUnfetch = unfetch;
    return m;
}

const sqlite3_io_methods kMethods[2][3] = {
    {make_methods(false, 1), make_methods(false, 2), make_methods(false, 3)},
    {make_methods(true, 1), make_methods(true, 2), make_methods(true, 3)},
};

// --- The VFS --------------------------------------------------------------------------------

sqlite3_vfs* wrapped(sqlite3_vfs* vfs) {
    return static_cast<sqlite3_vfs*>(vfs->pAppData);
}

int vfs_open(sqlite3_vfs* vfs, const char* name, sqlite3_file* f, int flags, int* out_flags) {
    auto* file = new (f) File{};
    file->inner = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + kHeaderSize);
    file->inner->pMethods = nullptr;
    int rc = wrapped(vfs)->xOpen(wrapped(vfs), name, file->inner, flags, out_flags);
    if (rc != SQLITE_OK) {
        if (file->inner->pMethods != nullptr) {
            file->inner->pMethods->xClose(file->inner);
        }
        file->~File();
        f->pMethods = nullptr;
        return rc;
    }
    const bool wal = (flags & SQLITE_OPEN_WAL) != 0 && name != nullptr;
    if (wal) {
        // The database file was opened through this VFS too (every connection's main file
        // is), so it is a File.
        file->database = as_file(sqlite3_database_file_object(name));
        file->database->wal = file;
    }
    const int version = std::clamp(file->inner->pMethods->iVersion, 1, 3);
    f->pMethods = &kMethods[wal ? 1 : 0][version - 1];
    return SQLITE_OK;
}

int vfs_delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
    return wrapped(vfs)->xDelete(wrapped(vfs), name, sync_dir);
}
int vfs_access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
    return wrapped(vfs)->xAccess(wrapped(vfs), name, flags, out);
}
int full_pathname(sqlite3_vfs* vfs, const char* name, int size, char* out) {
    return wrapped(vfs)->xFullPathname(wrapped(vfs), name, size, out);
}
void* dl_open(sqlite3_vfs* vfs, const char* name) {
    return wrapped(vfs)->xDlOpen(wrapped(vfs), name);
}
void dl_error(sqlite3_vfs* vfs, int size, char* out) {
    wrapped(vfs)->xDlError(wrapped(vfs), size, out);
}
void (*dl_sym(sqlite3_vfs* vfs, void* handle, const char* symbol))() {
    return wrapped(vfs)->xDlSym(wrapped(vfs), handle, symbol);
}
void dl_close(sqlite3_vfs* vfs, void* handle) {
    wrapped(vfs)->xDlClose(wrapped(vfs), handle);
}
int randomness(sqlite3_vfs* vfs, int size, char* out) {
    return wrapped(vfs)->xRandomness(wrapped(vfs), size, out);
}
int vfs_sleep(sqlite3_vfs* vfs, int micros) {
    return wrapped(vfs)->xSleep(wrapped(vfs), micros);
}
int current_time(sqlite3_vfs* vfs, double* out) {
    return wrapped(vfs)->xCurrentTime(wrapped(vfs), out);
}
int last_error(sqlite3_vfs* vfs, int size, char* out) {
    return wrapped(vfs)->xGetLastError(wrapped(vfs), size, out);
}
int current_time_int64(sqlite3_vfs* vfs, sqlite3_int64* out) {
    return wrapped(vfs)->xCurrentTimeInt64(wrapped(vfs), out);
}

}  // namespace

const char* wal_gathering_vfs() {
    static sqlite3_vfs vfs{};
    static const char* name = []() -> const char* {
        sqlite3_vfs* base = sqlite3_vfs_find(nullptr);
        // Version 2 gives xCurrentTimeInt64; the shared-memory methods are on the files.
        if (base == nullptr || base->iVersion < 2) {
            return nullptr;
        }
        vfs.iVersion = 2;
        vfs.szOsFile = static_cast<int>(kHeaderSize) + base->szOsFile;
        vfs.mxPathname = base->mxPathname;
        vfs.zName = "aviary-wal-gathering";
        vfs.pAppData = base;
        vfs.xOpen = vfs_open;
        vfs.xDelete = vfs_delete;
        vfs.xAccess = vfs_access;
        vfs.xFullPathname = full_pathname;
        vfs.xDlOpen = dl_open;
        vfs.xDlError = dl_error;
        vfs.xDlSym = dl_sym;
        vfs.xDlClose = dl_close;
        vfs.xRandomness = randomness;
        vfs.xSleep = vfs_sleep;
        vfs.xCurrentTime = current_time;
        vfs.xGetLastError = last_error;
        vfs.xCurrentTimeInt64 = current_time_int64;
        if (sqlite3_vfs_register(&vfs, 0) != SQLITE_OK) {
            return nullptr;
        }
        return vfs.zName;
    }();
    return name;
}

}  // namespace aviary::store::sqlite
