#include <dlfcn.h>
#include <fmt/format.h>

#include <cstring>

#include "core/core.hpp"

namespace aviary::core {

Result<void> open_library(const char* soname,
                          std::string_view needed_by,
                          std::string_view package,
                          std::initializer_list<LibrarySymbol> symbols,
                          ErrorCode code) {
    void* handle = ::dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
        return Error{code, fmt::format("{} needs {} (Debian's {}): {}", needed_by, soname, package,
                                       ::dlerror())};
    }
    // A handle's lookup covers the library and what it depends on (libssl's: libcrypto).
    for (const auto& symbol : symbols) {
        void* address = ::dlsym(handle, symbol.name);
        if (address == nullptr) {
            return Error{code, fmt::format("{} has no {}: the installed {} is too old", soname,
                                           symbol.name, package)};
        }
        // Copied, not assigned through a void**: the slot is a function pointer.
        std::memcpy(symbol.slot, &address, sizeof address);
    }
    return {};
}

}  // namespace aviary::core
