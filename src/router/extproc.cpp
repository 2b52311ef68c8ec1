#include "router/extproc.hpp"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/http_server.hpp"
#include "envoy/service/ext_proc/v3/external_processor.grpc.pb.h"
#include "router/router.hpp"

namespace llmd::router {
namespace {

namespace ep = envoy::service::ext_proc::v3;
namespace core = envoy::config::core::v3;

void set_header(ep::HeaderMutation& m, const std::string& key, const std::string& value) {
  core::HeaderValueOption* o = m.add_set_headers();
  o->mutable_header()->set_key(key);
  o->mutable_header()->set_raw_value(value);
  o->set_append_action(core::HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD);
}

ep::ProcessingResponse immediate(int status, const std::string& message, const std::string& type) {
  ep::ProcessingResponse r;
  ep::ImmediateResponse* im = r.mutable_immediate_response();
  im->mutable_status()->set_code(static_cast<envoy::type::v3::StatusCode>(status));
  im->set_body(http::json_error(status, message, type));
  im->set_details(fmt::format("llmd_epp_{}", status));
  set_header(*im->mutable_headers(), "content-type", "application/json");
  return r;
}

// The primary profile's picks, best first, as many as its picker names.
std::string destinations(const SchedResult& r) {
  std::string out;
  const std::size_t n = std::min(r.primary.ranked.size(), std::max<std::size_t>(r.primary.max_endpoints, 1));
  for (std::size_t i = 0; i < n; ++i) {
    if (i) out += ',';
    out += r.primary.ranked[i]->address();
  }
  return out;
}

class Service final : public ep::ExternalProcessor::Service {
 public:
  Service(Router& router, const ExtProcConfig& cfg) : router_(router), cfg_(cfg) {}

  grpc::Status Process(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<ep::ProcessingResponse, ep::ProcessingRequest>* stream) override {
    ep::ProcessingRequest in;
    http::Headers headers;
    std::string path, body;
    bool answered = false;  // the request leg got its answer (routing or an immediate response)
    while (stream->Read(&in)) {
      ep::ProcessingResponse out;
      switch (in.request_case()) {
        case ep::ProcessingRequest::kRequestHeaders:
          for (const core::HeaderValue& h : in.request_headers().headers().headers()) {
            const std::string v = h.raw_value().empty() ? h.value() : h.raw_value();
            if (h.key() == ":path") path = v.substr(0, v.find('?'));
            headers.add(h.key(), v);
          }
          if (!in.request_headers().end_of_stream()) continue;  // the body follows
          out = headers_only(headers, path);
          answered = true;
          break;
        case ep::ProcessingRequest::kRequestBody:
          if (answered) continue;
          if (body.size() + in.request_body().body().size() > cfg_.max_body_bytes) {
            out = immediate(413, fmt::format("the request body exceeds {} bytes", cfg_.max_body_bytes),
                            "invalid_request_error");
            answered = true;
            break;
          }
          body += in.request_body().body();
          if (!in.request_body().end_of_stream()) continue;
          answered = true;
          if (!route_and_send(stream, headers, path, body)) return grpc::Status::OK;
          continue;
        case ep::ProcessingRequest::kResponseHeaders:
          out.mutable_response_headers()->mutable_response();
          break;
        case ep::ProcessingRequest::kResponseBody: {  // streamed back as it came
          ep::StreamedBodyResponse* sb = out.mutable_response_body()
                                             ->mutable_response()
                                             ->mutable_body_mutation()
                                             ->mutable_streamed_response();
          sb->set_body(in.response_body().body());
          sb->set_end_of_stream(in.response_body().end_of_stream());
          break;
        }
        case ep::ProcessingRequest::kRequestTrailers:
          out.mutable_request_trailers();
          break;
        case ep::ProcessingRequest::kResponseTrailers:
          out.mutable_response_trailers();
          break;
        default:
          return {grpc::StatusCode::INVALID_ARGUMENT, "a ProcessingRequest without a request"};
      }
      if (!stream->Write(out)) break;
      if (out.has_immediate_response()) break;
    }
    return grpc::Status::OK;
  }

 private:
  // The answer to a request without a body: only its headers are mutated.
  ep::ProcessingResponse headers_only(const http::Headers& headers, const std::string& path) {
    Routed r = route(headers, path, {});
    if (r.status != 200) return immediate(r.status, r.error, r.error_type);
    return headers_response(r);
  }

  // The full request is in: headers response with the destination, then the body handed back.
  bool route_and_send(grpc::ServerReaderWriter<ep::ProcessingResponse, ep::ProcessingRequest>* stream,
                      const http::Headers& headers, const std::string& path, const std::string& body) {
    Routed r = route(headers, path, body);
    if (r.status != 200) {
      stream->Write(immediate(r.status, r.error, r.error_type));
      return false;
    }
    if (!stream->Write(headers_response(r))) return false;
    ep::ProcessingResponse b;
    ep::StreamedBodyResponse* sb =
        b.mutable_request_body()->mutable_response()->mutable_body_mutation()->mutable_streamed_response();
    sb->set_body(body);
    sb->set_end_of_stream(true);
    return stream->Write(b);
  }

  Routed route(const http::Headers& headers, const std::string& path, const std::string& body) {
    const Router::Api api = path.ends_with("/chat/completions") ? Router::Api::kChat
                            : path.ends_with("/completions")    ? Router::Api::kCompletions
                                                                : Router::Api::kOther;
    return router_.route(body, api, headers);
  }

  ep::ProcessingResponse headers_response(const Routed& r) {
    ep::ProcessingResponse out;
    ep::CommonResponse* c = out.mutable_request_headers()->mutable_response();
    const std::string dest = destinations(r.decision.result);
    set_header(*c->mutable_header_mutation(), kDestinationHeader, dest);
    set_header(*c->mutable_header_mutation(), std::string(kRequestIdHeader), r.request.request_id);
    if (r.decision.result.prefill)
      set_header(*c->mutable_header_mutation(), "x-prefiller-host-port",
                 r.decision.result.prefill->ranked.front()->address());
    c->set_clear_route_cache(true);
    google::protobuf::Value v;
    v.set_string_value(dest);
    google::protobuf::Struct lb;
    (*lb.mutable_fields())[kDestinationHeader] = v;
    google::protobuf::Value lbv;
    *lbv.mutable_struct_value() = lb;
    (*out.mutable_dynamic_metadata()->mutable_fields())[kLbMetadataNamespace] = lbv;
    return out;
  }

  Router& router_;
  const ExtProcConfig& cfg_;
};

}  // namespace

struct ExtProcServer::Impl {
  ExtProcConfig cfg;
  Service service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  Impl(Router& r, ExtProcConfig c) : cfg(std::move(c)), service(r, cfg) {}
};

ExtProcServer::ExtProcServer(Router& router, ExtProcConfig config)
    : impl_(std::make_unique<Impl>(router, std::move(config))) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder b;
  const std::string addr = fmt::format("{}:{}", impl_->cfg.host, impl_->cfg.port);
  b.AddListeningPort(addr, grpc::InsecureServerCredentials(), &impl_->port);
  b.RegisterService(&impl_->service);
  b.SetMaxReceiveMessageSize(static_cast<int>(impl_->cfg.max_body_bytes + (1u << 20)));
  impl_->server = b.BuildAndStart();
  if (!impl_->server || impl_->port == 0) fail("--extproc-port: cannot listen on {}", addr);
  impl_->server->GetHealthCheckService()->SetServingStatus(true);
}

ExtProcServer::~ExtProcServer() {
  stop();
}

void ExtProcServer::stop() {
  if (!impl_->server) return;
  impl_->server->GetHealthCheckService()->SetServingStatus(false);
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  impl_->server.reset();
}

uint16_t ExtProcServer::port() const {
  return static_cast<uint16_t>(impl_->port);
}

}  // namespace llmd::router
