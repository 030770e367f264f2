#include "api/log_shipping.hpp"

#include <fmt/format.h>
#include <zstd.h>

#include <boost/json.hpp>
#include <limits>
#include <memory>

namespace aviary::api {
namespace {

namespace json = boost::json;

/// The compression level: the shipper runs beside a node and should cost it little CPU;
/// level 3 (zstd's default) already shrinks log lines several times.
constexpr int kLevel = 3;

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

core::Result<std::string> decompress(std::string_view body) {
    std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> context{ZSTD_createDCtx(), &ZSTD_freeDCtx};
    if (!context) {
        return core::Error{core::ErrorCode::kInternal, "cannot allocate a zstd context"};
    }
    std::string out;
    ZSTD_inBuffer in{body.data(), body.size(), 0};
    std::size_t last = 1;
    while (in.pos < in.size || last != 0) {
        const std::size_t room =
            std::min(ZSTD_DStreamOutSize(), kMaxShipmentBytes + 1 - out.size());
        if (room == 0) {
            return invalid(fmt::format("the shipment is larger than {} bytes once decompressed",
                                       kMaxShipmentBytes));
        }
        const auto had = out.size();
        out.resize(had + room);
        ZSTD_outBuffer chunk{out.data() + had, room, 0};
        last = ZSTD_decompressStream(context.get(), &chunk, &in);
        out.resize(had + chunk.pos);
        if (ZSTD_isError(last) != 0) {
            return invalid(fmt::format("the body is not zstd (Content-Encoding: zstd): {}",
                                       ZSTD_getErrorName(last)));
        }
        if (in.pos == in.size && chunk.pos == 0 && last != 0) {
            return invalid("the zstd body ends in the middle of a frame");
        }
    }
    if (out.size() > kMaxShipmentBytes) {
        return invalid(fmt::format("the shipment is larger than {} bytes once decompressed",
                                   kMaxShipmentBytes));
    }
    return out;
}

}  // namespace

std::string encode_shipment(const logs::Shipment& shipment) {
    json::array lines;
    lines.reserve(shipment.records.size());
    for (const auto& r : shipment.records) {
        lines.push_back(json::object{{"seq", r.seq},
                                     {"time_ns", r.time_ns},
                                     {"source", r.source},
                                     {"level", r.level},
                                     {"message", r.message}});
    }
    const auto* first = shipment.records.empty() ? nullptr : &shipment.records.front();
    json::object body{{"stream", shipment.stream},
                      {"node", first != nullptr ? first->node : std::string{}},
                      {"service", first != nullptr ? first->sender : std::string{}},
                      {"dropped", shipment.dropped},
                      {"lines", std::move(lines)}};
    const auto text = json::serialize(body);
    std::string out(ZSTD_compressBound(text.size()), '\0');
    const auto size = ZSTD_compress(out.data(), out.size(), text.data(), text.size(), kLevel);
    out.resize(ZSTD_isError(size) != 0 ? 0 : size);  // cannot fail with a bound-sized buffer
    return out;
}

core::Result<logs::Shipment> decode_shipment(std::string_view body,
                                             std::string_view content_encoding) {
    std::string plain;
    if (content_encoding == "zstd") {
        auto decompressed = decompress(body);
        if (!decompressed) {
            return decompressed.error();
        }
        plain = std::move(*decompressed);
        body = plain;
    } else if (!content_encoding.empty() && content_encoding != "identity") {
        return invalid(
            fmt::format("Content-Encoding \"{}\" is not taken here: send zstd, or plain JSON",
                        content_encoding));
    }
    boost::system::error_code ec;
    json::parse_options options;
    options.max_depth = 8;
    auto value = json::parse(body, ec, {}, options);
    if (ec) {
        return invalid(fmt::format("the shipment is not JSON: {}", ec.message()));
    }
    if (!value.is_object()) {
        return invalid("a shipment is a JSON object {\"stream\", \"lines\", ...}");
    }
    const auto& object = value.as_object();
    logs::Shipment out;
    std::string node;
    std::string service;
    for (const auto& [key, field] : object) {
        auto text = [&](std::string& into) -> core::Result<void> {
            if (!field.is_string()) {
                return invalid(fmt::format("\"{}\" must be a string", std::string_view{key}));
            }
            into = std::string{field.as_string()};
            return {};
        };
        core::Result<void> read;
        if (key == "stream") {
            read = text(out.stream);
        } else if (key == "node") {
            read = text(node);
        } else if (key == "service") {
            read = text(service);
        } else if (key == "dropped") {
            if (!field.is_int64() || field.as_int64() < 0) {
                read = invalid("\"dropped\" must be a count (an integer >= 0)");
            } else {
                out.dropped = static_cast<std::uint64_t>(field.as_int64());
            }
        } else if (key != "lines") {
            read = invalid(fmt::format(
                "unknown field \"{}\" (a shipment has stream, node, service, dropped, lines)",
                std::string_view{key}));
        }
        if (!read) {
            return read.error();
        }
    }
    const auto* lines = object.if_contains("lines");
    if (out.stream.empty() || lines == nullptr || !lines->is_array()) {
        return invalid("a shipment needs \"stream\" (the shipper's id) and \"lines\" (a list)");
    }
    out.records.reserve(lines->as_array().size());
    std::size_t i = 0;
    for (const auto& line : lines->as_array()) {
        auto bad = [&](std::string_view what) {
            return invalid(fmt::format("lines[{}]: {}", i, what));
        };
        if (!line.is_object()) {
            return bad("must be an object {seq, time_ns, source, level, message}");
        }
        const auto& l = line.as_object();
        store::LogRecord record{.sender = service, .node = node};
        const auto* seq = l.if_contains("seq");
        const auto* time = l.if_contains("time_ns");
        const auto* message = l.if_contains("message");
        if (seq == nullptr || !seq->is_int64() || seq->as_int64() <= 0) {
            return bad("\"seq\" must be an integer above 0");
        }
        if (time == nullptr || !time->is_int64() || time->as_int64() < 0) {
            return bad("\"time_ns\" must be nanoseconds since the epoch (an integer)");
        }
        if (message == nullptr || !message->is_string()) {
            return bad("\"message\" must be a string");
        }
        record.seq = seq->as_int64();
        record.time_ns = time->as_int64();
        record.message = std::string{message->as_string()};
        if (const auto* source = l.if_contains("source")) {
            if (!source->is_string()) {
                return bad("\"source\" must be a string");
            }
            record.source = std::string{source->as_string()};
        }
        record.level = 6;
        if (const auto* level = l.if_contains("level")) {
            if (!level->is_int64() || level->as_int64() < std::numeric_limits<int>::min() ||
                level->as_int64() > std::numeric_limits<int>::max()) {
                return bad("\"level\" must be an integer (syslog's: 3 error, 4 warning, 6 info)");
            }
            record.level = static_cast<int>(level->as_int64());
        }
        if (!out.records.empty() && record.seq <= out.records.back().seq) {
            return bad(fmt::format("\"seq\" {} does not rise (the line before has {})", record.seq,
                                   out.records.back().seq));
        }
        out.records.push_back(std::move(record));
        ++i;
    }
    return out;
}

}  // namespace aviary::api
