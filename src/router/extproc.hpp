#pragma once
// `llmd route --extproc-port 9002`: the router as an Envoy external processor, the endpoint
// picker (EPP) of the Gateway API Inference Extension. Envoy's ext_proc filter streams each
// request to it (FULL_DUPLEX_STREAMED bodies); once the body is complete the router schedules it
// and answers with the `x-gateway-destination-endpoint` header and the same value under the
// `envoy.lb` dynamic metadata namespace (the picked endpoint first, then fallbacks, comma-
// separated), then hands the body back unchanged. No fit endpoint → an immediate 503, saturation
// → 429, a body that is not an OpenAI request → 400. Responses flow through untouched. gRPC's
// health service answers on the same port.
//
// Threading: gRPC's own threads run the streams; each calls Router::route, which is thread-safe.
#include <cstdint>
#include <memory>
#include <string>

namespace llmd::router {

class Router;

inline constexpr const char* kDestinationHeader = "x-gateway-destination-endpoint";
inline constexpr const char* kLbMetadataNamespace = "envoy.lb";

struct ExtProcConfig {
  static constexpr uint16_t kDefaultPort = 9002;  // GIE's EPP port
  static constexpr std::size_t kDefaultMaxBodyBytes = 32u << 20;
  std::string host = "127.0.0.1";
  uint16_t port = kDefaultPort;                       // 0: any free port (port() tells)
  std::size_t max_body_bytes = kDefaultMaxBodyBytes;  // larger request bodies get an immediate 413
};

class ExtProcServer {
 public:
  // Binds and serves at once; throws llmd::Error when it cannot bind.
  ExtProcServer(Router& router, ExtProcConfig config);
  ~ExtProcServer();  // stop()
  void stop();
  uint16_t port() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmd::router
