#pragma once
// Internal to the file workloads: reading the whole input file, with the error naming it.
#include <string>

namespace llmd::bench {

// Throws llmd::Error "PATH: cannot open: reason".
std::string read_workload_file(const std::string& path);

}  // namespace llmd::bench
