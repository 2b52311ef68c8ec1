#include "router/kv_event_subscriber.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <string_view>
#include <zmq.hpp>

#include "common/error.hpp"

namespace llmd::router {

namespace {

// A well-formed message has 3 frames; more are read (ZMQ delivers a message whole) but not kept.
constexpr std::size_t kMaxFrames = 3;

}  // namespace

struct KvEventSubscriber::Zmq {
  zmq::context_t ctx{1};
  zmq::socket_t wake_rx{ctx, zmq::socket_type::pull};  // subscriber thread
  zmq::socket_t wake_tx{ctx, zmq::socket_type::push};  // callers, under cmd_mu_
  std::array<zmq::message_t, kMaxFrames> frames;       // subscriber thread
  zmq::message_t extra;                                // frames past kMaxFrames
};

struct KvEventSubscriber::Connection {
  EndpointId ep = 0;
  std::string address;
  zmq::socket_t socket;
  std::optional<uint64_t> last_seq;  // none until the first message after connecting
  std::shared_ptr<Counters> counters;
};

KvEventCounters KvEventSubscriber::Counters::snapshot() const {
  return {messages.load(std::memory_order_relaxed), events.load(std::memory_order_relaxed),
          malformed.load(std::memory_order_relaxed), unknown_events.load(std::memory_order_relaxed),
          sequence_gaps.load(std::memory_order_relaxed)};
}

KvEventSubscriber::KvEventSubscriber(KvIndex& index, KvEventSubscriberConfig config)
    : index_(index), config_(std::move(config)), zmq_(std::make_unique<Zmq>()), decoder_(config_.decoder) {
  // inproc names are per context, and each subscriber has its own context.
  const std::string wake = "inproc://kv-event-subscriber-wake";
  zmq_->wake_rx.set(zmq::sockopt::linger, 0);
  zmq_->wake_tx.set(zmq::sockopt::linger, 0);
  zmq_->wake_rx.bind(wake);
  zmq_->wake_tx.connect(wake);
  thread_ = std::thread([this] { run(); });
}

KvEventSubscriber::~KvEventSubscriber() {
  {
    std::lock_guard lock(cmd_mu_);
    stop_.store(true);
    zmq_->wake_tx.send(zmq::str_buffer("x"), zmq::send_flags::dontwait);
  }
  thread_.join();
}

void KvEventSubscriber::submit(Command& c) {
  std::unique_lock lock(cmd_mu_);
  if (stop_.load()) fail("KV events: subscriber is stopping");
  commands_.push_back(&c);
  // A full pipe means wake-ups are already pending: the thread runs every queued command on one.
  zmq_->wake_tx.send(zmq::str_buffer("x"), zmq::send_flags::dontwait);
  cmd_cv_.wait(lock, [&] { return c.done; });
  if (!c.error.empty()) throw Error(c.error);
}

void KvEventSubscriber::add(EndpointId ep, std::string zmq_address) {
  Command c;
  c.ep = ep;
  c.address = std::move(zmq_address);
  submit(c);
}

void KvEventSubscriber::remove(EndpointId ep) {
  Command c;
  c.add = false;
  c.ep = ep;
  submit(c);
}

void KvEventSubscriber::execute(Command& c) {
  auto it =
      std::find_if(connections_.begin(), connections_.end(), [&](const auto& x) { return x->ep == c.ep; });
  if (c.add && it != connections_.end() && (*it)->address == c.address) return;
  if (it != connections_.end()) {  // remove, or add with a new address
    connections_.erase(it);        // closes the socket: nothing more arrives for ep
    index_.cleared(c.ep);
    std::lock_guard lock(stats_mu_);
    endpoint_counters_.erase(c.ep);
    last_errors_.erase(c.ep);
  }
  if (!c.add) return;
  auto conn = std::make_unique<Connection>();
  conn->ep = c.ep;
  conn->address = c.address;
  conn->counters = std::make_shared<Counters>();
  try {
    conn->socket = zmq::socket_t(zmq_->ctx, zmq::socket_type::sub);
    conn->socket.set(zmq::sockopt::linger, 0);
    conn->socket.set(zmq::sockopt::rcvhwm, config_.receive_hwm);
    conn->socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(config_.decoder.max_payload_bytes));
    if (c.address.find('[') != std::string::npos) conn->socket.set(zmq::sockopt::ipv6, 1);
    conn->socket.set(zmq::sockopt::subscribe, config_.topic_prefix);
    conn->socket.connect(c.address);
  } catch (const zmq::error_t& e) {
    c.error =
        fmt::format("KV events: cannot subscribe to '{}' for endpoint {}: {}", c.address, c.ep, e.what());
    return;
  }
  {
    std::lock_guard lock(stats_mu_);
    endpoint_counters_[c.ep] = conn->counters;
  }
  connections_.push_back(std::move(conn));
}

void KvEventSubscriber::run() {
  std::vector<zmq::pollitem_t> items;
  auto rebuild = [&] {
    items.clear();
    items.push_back({zmq_->wake_rx.handle(), 0, ZMQ_POLLIN, 0});
    for (const auto& c : connections_) items.push_back({c->socket.handle(), 0, ZMQ_POLLIN, 0});
  };
  rebuild();
  while (!stop_.load()) {
    try {
      zmq::poll(items, config_.poll_timeout);
    } catch (const zmq::error_t&) {
      continue;  // EINTR
    }
    if (items[0].revents & ZMQ_POLLIN) {
      zmq::message_t m;
      while (zmq_->wake_rx.recv(m, zmq::recv_flags::dontwait)) {
      }
      std::deque<Command*> batch;
      {
        std::lock_guard lock(cmd_mu_);
        batch.swap(commands_);
      }
      for (Command* c : batch) {
        execute(*c);
        std::lock_guard lock(cmd_mu_);
        c->done = true;  // the caller may return (and destroy *c) from here on
      }
      cmd_cv_.notify_all();
      rebuild();
      continue;  // the other items' revents describe the old socket list
    }
    for (size_t i = 1; i < items.size(); ++i)
      if (items[i].revents & ZMQ_POLLIN) poll_connection(*connections_[i - 1]);
  }
  // Commands that raced with the destructor: answer them rather than leave their callers waiting.
  std::lock_guard lock(cmd_mu_);
  for (Command* c : commands_) {
    c->error = "KV events: subscriber stopped";
    c->done = true;
  }
  commands_.clear();
  cmd_cv_.notify_all();
}

void KvEventSubscriber::poll_connection(Connection& c) {
  for (size_t n = 0; n < config_.max_messages_per_turn; ++n) {
    if (!c.socket.recv(zmq_->frames[0], zmq::recv_flags::dontwait)) return;
    handle_message(c);
  }
}

void KvEventSubscriber::note_error(Connection& c, std::string error) {
  c.counters->malformed.fetch_add(1, std::memory_order_relaxed);
  total_.malformed.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(stats_mu_);
  last_errors_[c.ep] = std::move(error);
}

void KvEventSubscriber::handle_message(Connection& c) {
  // The first frame is in frames[0]; the rest of the message is already here (ZMQ delivers
  // multipart messages whole), so these receives do not wait.
  size_t n = 1;
  bool more = zmq_->frames[0].more();
  while (more) {
    zmq::message_t& part = n < kMaxFrames ? zmq_->frames[n] : zmq_->extra;
    if (!c.socket.recv(part, zmq::recv_flags::dontwait)) break;
    ++n;
    more = part.more();
  }
  if (n != kMaxFrames)
    return note_error(c, fmt::format("{} frames, expected 3 (topic, sequence, payload)", n));
  const auto seq = kv::decode_sequence(zmq_->frames[1].to_string_view());
  if (!seq) return note_error(c, seq.error());

  // Sequence numbers count even for a payload that then fails to decode: it was sent, not lost.
  if (c.last_seq && *seq != *c.last_seq + 1) {
    c.counters->sequence_gaps.fetch_add(1, std::memory_order_relaxed);
    total_.sequence_gaps.fetch_add(1, std::memory_order_relaxed);
    if (*seq <= *c.last_seq) index_.cleared(c.ep);  // a restarted publisher: its cache is new
  }
  c.last_seq = *seq;

  const auto ok = decoder_.decode_payload(zmq_->frames[2].to_string_view());
  if (!ok) return note_error(c, ok.error());
  const kv::KvEventMessage& m = decoder_.message();
  for (const kv::KvEvent& e : m.events) {
    switch (e.kind) {
      case kv::KvEventBatch::Kind::kStored:
        index_.stored(c.ep, e.hashes, parse_medium(e.medium));
        break;
      case kv::KvEventBatch::Kind::kRemoved:
        index_.removed(c.ep, e.hashes, parse_medium(e.medium));
        break;
      case kv::KvEventBatch::Kind::kCleared:
        index_.cleared(c.ep);
        break;
    }
  }
  c.counters->messages.fetch_add(1, std::memory_order_relaxed);
  c.counters->events.fetch_add(m.events.size(), std::memory_order_relaxed);
  c.counters->unknown_events.fetch_add(m.unknown_events, std::memory_order_relaxed);
  total_.messages.fetch_add(1, std::memory_order_relaxed);
  total_.events.fetch_add(m.events.size(), std::memory_order_relaxed);
  total_.unknown_events.fetch_add(m.unknown_events, std::memory_order_relaxed);
}

KvEventCounters KvEventSubscriber::counters() const {
  return total_.snapshot();
}

std::optional<KvEventCounters> KvEventSubscriber::counters(EndpointId ep) const {
  std::lock_guard lock(stats_mu_);
  const auto it = endpoint_counters_.find(ep);
  if (it == endpoint_counters_.end()) return std::nullopt;
  return it->second->snapshot();
}

std::string KvEventSubscriber::last_error(EndpointId ep) const {
  std::lock_guard lock(stats_mu_);
  const auto it = last_errors_.find(ep);
  return it == last_errors_.end() ? std::string() : it->second;
}

std::size_t KvEventSubscriber::endpoints() const {
  std::lock_guard lock(stats_mu_);
  return endpoint_counters_.size();
}

}  // namespace llmd::router
