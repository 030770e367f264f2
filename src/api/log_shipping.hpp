#pragma once
// Private to api: the wire format between a sidecar's log shipper and serve
// (POST /api/v1/logs/ship, docs/logs.md "Shipping from sidecars"), both directions, so the two
// ends cannot drift apart.
#include <cstddef>
#include <string>
#include <string_view>

#include "core/core.hpp"
#include "logs/logs.hpp"

namespace aviary::api {

/// Decompressed shipments larger than this are refused (a small compressed body can expand
/// without bound).
constexpr std::size_t kMaxShipmentBytes = std::size_t{32} * 1024 * 1024;

/// The body of a shipment: JSON, compressed with zstd (Content-Encoding: zstd). The node and
/// service labels are the batch's (a sidecar ships one node): its first record's.
std::string encode_shipment(const logs::Shipment& shipment);

/// Reads a shipment's body. `content_encoding` is the request's header ("" or "identity":
/// plain JSON; "zstd"). kInvalidArgument naming what is wrong and where.
core::Result<logs::Shipment> decode_shipment(std::string_view body,
                                             std::string_view content_encoding);

}  // namespace aviary::api
