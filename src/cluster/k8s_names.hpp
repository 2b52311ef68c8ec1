#pragma once
// Kubernetes' rules for names, labels and resource quantities, checked by the spec parser so that
// a bad value is refused with its field path instead of by the API server at apply time.
#include <optional>
#include <string_view>

namespace llmd::cluster {

// RFC 1123 label: a-z, 0-9 and '-', alphanumeric at both ends, at most 63 characters.
bool is_dns1123_label(std::string_view s);
// RFC 1123 subdomain: labels joined by '.', at most 253 characters (Secret, PVC names).
bool is_dns1123_subdomain(std::string_view s);
// A label key: [prefix/]name, prefix a DNS subdomain, name at most 63 of [A-Za-z0-9_.-] with
// alphanumeric ends.
bool is_label_key(std::string_view s);
// A label value: empty, or at most 63 of [A-Za-z0-9_.-] with alphanumeric ends.
bool is_label_value(std::string_view s);

// The value of a Kubernetes quantity ("500m" → 0.5, "4Gi" → 4294967296, "1e3" → 1000), or nothing
// when the text is not one. Grammar: an optionally signed decimal number, then a binary suffix
// (Ki Mi Gi Ti Pi Ei), a decimal one (n u m k M G T P E) or an exponent (e3, E-2).
std::optional<double> parse_quantity(std::string_view s);

}  // namespace llmd::cluster
