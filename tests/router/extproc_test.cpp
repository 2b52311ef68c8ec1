// `llmd route --extproc-port`: a gRPC client speaking Envoy's ext_proc protocol (as Envoy does in
// FULL_DUPLEX_STREAMED mode) against the router with real `llmd serve --sim` endpoints.
#include <gtest/gtest.h>

#include <grpcpp/grpcpp.h>

#include <nlohmann/json.hpp>

#include "envoy/service/ext_proc/v3/external_processor.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "router/extproc.hpp"
#include "router/router.hpp"
#include "support/free_port.hpp"
#include "support/llmd_process.hpp"

namespace llmd::router {
namespace {

namespace ep = envoy::service::ext_proc::v3;
using test_support::Clock;
using test_support::free_port;
using test_support::LlmdProcess;
using namespace std::chrono_literals;

struct Fixture {
  std::vector<std::unique_ptr<LlmdProcess>> servers;
  std::vector<std::string> addresses;
  std::unique_ptr<Router> router;
  std::unique_ptr<ExtProcServer> epp;
  std::unique_ptr<ep::ExternalProcessor::Stub> stub;

  explicit Fixture(int n_servers) {
    for (int i = 0; i < n_servers; ++i) {
      const uint16_t port = free_port();
      servers.push_back(
          std::make_unique<LlmdProcess>(std::vector<std::string>{"--sim", "--port", std::to_string(port)}));
      EXPECT_TRUE(servers.back()->wait_healthy(port, Clock::now() + 20s)) << servers.back()->err();
      addresses.push_back("127.0.0.1:" + std::to_string(port));
    }
    RouterConfig rc;
    rc.http.port = 0;
    PromptKeyer keyer;
    keyer.fingerprint = "sim:vocab32000";
    router = std::make_unique<Router>(rc, default_endpoint_picker_config(), keyer);
    router->start();
    std::string specs;
    for (const auto& a : addresses) specs += a + ",";
    router->endpoints().set(parse_endpoint_list(specs));
    const auto deadline = Clock::now() + 10s;
    while (Clock::now() < deadline) {
      std::size_t fit = 0;
      for (const auto& e : *router->endpoints().snapshot()) fit += e->fit(steady_now_ns(), 2s);
      if (fit == addresses.size()) break;
      std::this_thread::sleep_for(10ms);
    }
    ExtProcConfig ec;
    ec.port = 0;
    epp = std::make_unique<ExtProcServer>(*router, ec);
    auto channel =
        grpc::CreateChannel("127.0.0.1:" + std::to_string(epp->port()), grpc::InsecureChannelCredentials());
    stub = ep::ExternalProcessor::NewStub(channel);
  }
};

ep::ProcessingRequest headers(const std::string& path, bool end_of_stream) {
  ep::ProcessingRequest r;
  auto* h = r.mutable_request_headers();
  for (const auto& [k, v] :
       std::vector<std::pair<std::string, std::string>>{{":method", "POST"},
                                                        {":path", path},
                                                        {"content-type", "application/json"},
                                                        {"x-request-id", "rid-7"}}) {
    auto* hv = h->mutable_headers()->add_headers();
    hv->set_key(k);
    hv->set_raw_value(v);
  }
  h->set_end_of_stream(end_of_stream);
  return r;
}

ep::ProcessingRequest body(const std::string& b, bool end_of_stream) {
  ep::ProcessingRequest r;
  r.mutable_request_body()->set_body(b);
  r.mutable_request_body()->set_end_of_stream(end_of_stream);
  return r;
}

std::string header_of(const ep::HeaderMutation& m, const std::string& key) {
  for (const auto& o : m.set_headers())
    if (o.header().key() == key) return o.header().raw_value();
  return "";
}

TEST(ExtProc, PicksAnEndpointInFullDuplexStreamedModeAndHandsTheBodyBack) {
  Fixture f(2);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  auto stream = f.stub->Process(&ctx);
  const std::string full =
      R"({"model":"sim-model","prompt":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17],"max_tokens":2})";
  ASSERT_TRUE(stream->Write(headers("/v1/completions", false)));
  ASSERT_TRUE(stream->Write(body(full.substr(0, 20), false)));  // the body in two chunks
  ASSERT_TRUE(stream->Write(body(full.substr(20), true)));

  ep::ProcessingResponse r;
  ASSERT_TRUE(stream->Read(&r));
  ASSERT_TRUE(r.has_request_headers()) << r.DebugString();
  const auto& common = r.request_headers().response();
  const std::string dest = header_of(common.header_mutation(), kDestinationHeader);
  EXPECT_TRUE(dest == f.addresses[0] || dest == f.addresses[1]) << dest;
  EXPECT_EQ(header_of(common.header_mutation(), "x-request-id"), "rid-7");
  EXPECT_TRUE(common.clear_route_cache());
  const auto& md = r.dynamic_metadata().fields();
  ASSERT_TRUE(md.contains(kLbMetadataNamespace));
  EXPECT_EQ(md.at(kLbMetadataNamespace).struct_value().fields().at(kDestinationHeader).string_value(), dest);

  ASSERT_TRUE(stream->Read(&r));
  ASSERT_TRUE(r.has_request_body());
  const auto& sb = r.request_body().response().body_mutation().streamed_response();
  EXPECT_EQ(sb.body(), full);
  EXPECT_TRUE(sb.end_of_stream());

  // The response leg passes through: headers continue, body chunks come back as they went.
  ep::ProcessingRequest rh;
  rh.mutable_response_headers()->set_end_of_stream(false);
  ASSERT_TRUE(stream->Write(rh));
  ASSERT_TRUE(stream->Read(&r));
  EXPECT_TRUE(r.has_response_headers());
  ep::ProcessingRequest rb;
  rb.mutable_response_body()->set_body("data: x\n\n");
  rb.mutable_response_body()->set_end_of_stream(true);
  ASSERT_TRUE(stream->Write(rb));
  ASSERT_TRUE(stream->Read(&r));
  EXPECT_EQ(r.response_body().response().body_mutation().streamed_response().body(), "data: x\n\n");
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

ep::ProcessingResponse one_immediate(Fixture& f, const std::string& path, const std::string& b) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  auto stream = f.stub->Process(&ctx);
  stream->Write(headers(path, false));
  stream->Write(body(b, true));
  ep::ProcessingResponse r;
  EXPECT_TRUE(stream->Read(&r));
  stream->WritesDone();
  ep::ProcessingResponse rest;  // a routed request also gets its body back: read to the end
  while (stream->Read(&rest)) {
  }
  stream->Finish();
  return r;
}

TEST(ExtProc, BadBodiesAndNoEndpointAreImmediateResponses) {
  Fixture f(1);
  const auto bad = one_immediate(f, "/v1/completions", "{not json");
  ASSERT_TRUE(bad.has_immediate_response()) << bad.DebugString();
  EXPECT_EQ(bad.immediate_response().status().code(), 400);
  EXPECT_TRUE(nlohmann::json::parse(bad.immediate_response().body())["error"].contains("message"));

  f.servers[0]->stop();  // the only endpoint goes away: ejected once a scrape fails
  const auto deadline = Clock::now() + 5s;
  ep::ProcessingResponse none;
  do {
    none = one_immediate(f, "/v1/completions", R"({"prompt":"hi","max_tokens":1})");
  } while (!none.has_immediate_response() && Clock::now() < deadline);
  ASSERT_TRUE(none.has_immediate_response()) << none.DebugString();
  EXPECT_EQ(none.immediate_response().status().code(), 503);
}

TEST(ExtProc, HeadersOnlyRequestsAndTheHealthService) {
  Fixture f(1);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  auto stream = f.stub->Process(&ctx);
  ASSERT_TRUE(stream->Write(headers("/v1/models", true)));  // GET without a body
  ep::ProcessingResponse r;
  ASSERT_TRUE(stream->Read(&r));
  EXPECT_EQ(header_of(r.request_headers().response().header_mutation(), kDestinationHeader), f.addresses[0]);
  stream->WritesDone();
  stream->Finish();

  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(f.epp->port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext hc;
  hc.set_deadline(std::chrono::system_clock::now() + 5s);
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&hc, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

}  // namespace
}  // namespace llmd::router
