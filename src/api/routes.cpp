#include "api/routes.hpp"

#include <algorithm>
#include <array>

namespace aviary::api {
namespace {

/// The order methods are listed in Allow, whatever order routes were added in.
constexpr std::array<std::string_view, 7> kMethodOrder = {"GET",   "HEAD",   "POST",   "PUT",
                                                          "PATCH", "DELETE", "OPTIONS"};

std::string join_allowed(const std::vector<std::string_view>& methods) {
    std::string out;
    for (auto known : kMethodOrder) {
        if (std::find(methods.begin(), methods.end(), known) != methods.end()) {
            out += out.empty() ? "" : ", ";
            out += known;
        }
    }
    return out;
}

}  // namespace

const std::string& PathParams::operator[](std::string_view name) const {
    for (const auto& [key, value] : values_) {
        if (key == name) {
            return value;
        }
    }
    AVIARY_ASSERT(false, "a handler asked for a path parameter its pattern does not have");
    static const std::string kNone;
    return kNone;
}

bool is_mutating(std::string_view method) {
    return method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE";
}

std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    while (start <= path.size()) {
        auto end = path.find('/', start);
        if (end == std::string_view::npos) {
            end = path.size();
        }
        if (end > start) {
            out.push_back(path.substr(start, end - start));
        }
        start = end + 1;
    }
    return out;
}

void RouteTable::add(Route route) {
    AVIARY_ASSERT(route.pattern.starts_with('/'), "a route pattern starts with /");
    AVIARY_ASSERT(route.method != "HEAD" && route.method != "OPTIONS",
                  "HEAD and OPTIONS are derived from the table, never routed");
    Compiled compiled;
    for (auto part : split_path(route.pattern)) {
        const bool parameter = part.size() > 2 && part.front() == '{' && part.back() == '}';
        AVIARY_ASSERT(parameter || part.find_first_of("{}") == std::string_view::npos,
                      "a route segment is a literal or a whole {name}");
        compiled.segments.push_back(Segment{
            .text = std::string{parameter ? part.substr(1, part.size() - 2) : part},
            .parameter = parameter,
        });
    }
    for (std::size_t i = 0; i < routes_.size(); ++i) {
        // "/jobs/{id}" and "/jobs/{other}" are the same route: compared by shape, not text.
        AVIARY_ASSERT(routes_[i].method != route.method || !same_shape(compiled_[i], compiled),
                      "a method and pattern are routed once");
    }
    routes_.push_back(std::move(route));
    compiled_.push_back(std::move(compiled));
}

bool RouteTable::same_shape(const Compiled& a, const Compiled& b) {
    if (a.segments.size() != b.segments.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.segments.size(); ++i) {
        const auto& x = a.segments[i];
        const auto& y = b.segments[i];
        if (x.parameter != y.parameter || (!x.parameter && x.text != y.text)) {
            return false;
        }
    }
    return true;
}

bool RouteTable::matches(const Compiled& compiled,
                         const std::vector<std::string_view>& parts,
                         PathParams* params) {
    if (compiled.segments.size() != parts.size()) {
        return false;
    }
    for (std::size_t i = 0; i < parts.size(); ++i) {
        const auto& segment = compiled.segments[i];
        if (!segment.parameter && segment.text != parts[i]) {
            return false;
        }
    }
    if (params != nullptr) {
        for (std::size_t i = 0; i < parts.size(); ++i) {
            if (compiled.segments[i].parameter) {
                params->add(compiled.segments[i].text, std::string{parts[i]});
            }
        }
    }
    return true;
}

RouteTable::Match RouteTable::match(std::string_view method, std::string_view path) const {
    const auto parts = split_path(path);
    const std::string_view wanted = method == "HEAD" ? "GET" : method;
    Match out;
    out.probe = true;
    out.scrape = true;
    std::vector<std::string_view> methods;
    // A literal segment beats a parameter in the same place ("/jobs/stats" before "/jobs/{id}"):
    // routes are tried in the order added, so literal routes are added first where they overlap.
    for (std::size_t i = 0; i < routes_.size(); ++i) {
        if (!matches(compiled_[i], parts, nullptr)) {
            continue;
        }
        const auto& route = routes_[i];
        methods.push_back(route.method);
        if (route.method == "GET") {
            methods.push_back("HEAD");
        }
        if (route.cors) {
            out.cors = true;
            out.cors_methods += (out.cors_methods.empty() ? "OPTIONS," : ",") + route.method;
        }
        out.probe = out.probe && route.access == Access::kProbe;
        out.scrape =
            out.scrape && route.access != Access::kCaller && route.access != Access::kInBand;
        if (out.route == nullptr && route.method == wanted) {
            out.route = &route;
            matches(compiled_[i], parts, &out.params);
        }
    }
    if (methods.empty()) {
        out.probe = false;
        out.scrape = false;
    } else {
        methods.push_back("OPTIONS");
        out.allow = join_allowed(methods);
    }
    return out;
}

}  // namespace aviary::api
