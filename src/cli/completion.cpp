// aviary completion bash: prints the completion script the binary was built with.
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/embedded.hpp"

namespace aviary::cli {

int run_completion(const std::string& shell) {
    if (shell != "bash") {
        return report(Failure{kExitUsage, "only bash completion is available"});
    }
    std::fwrite(generated::kCompletionBash.data(), 1, generated::kCompletionBash.size(), stdout);
    return kExitOk;
}

}  // namespace aviary::cli
