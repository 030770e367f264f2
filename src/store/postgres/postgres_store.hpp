#pragma once
// Private to src/store and its unit tests: opening the PostgreSQL backend.
#include <memory>

#include "core/core.hpp"
#include "store/store.hpp"

namespace aviary::store::postgres {

/// Connects (the writer and `read_connections` readers) and migrates. store::open() calls
/// this for driver "postgres". kUnavailable when the server cannot be reached.
core::Result<std::unique_ptr<Store>> open_postgres(const Settings& settings);

}  // namespace aviary::store::postgres
